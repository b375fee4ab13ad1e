#!/usr/bin/env bash
# Build the container image the lxd driver's tests launch: an LXD unified
# tarball (metadata.yaml + rootfs/, uncompressed) from the same debootstrap
# tree as the qemu test images (tools/build-image.sh keeps it in
# OUTDIR/.build), with systemd, openssh-server and real cloud-init.
#
#   tools/build-lxd-image.sh [--force] [OUTDIR]
#
# OUTDIR defaults to $VMCTL_TEST_IMAGES, else /var/cache/vmctl-test-images.
# It receives lxd.tar (give it to vmctl as `vmctl launch OUTDIR/lxd.tar` or
# file://OUTDIR/lxd.tar; the broker takes a tarball whose first member is
# metadata.yaml as an image of format "lxd", for the lxd driver only).
#
# cloud-init reads its NoCloud seed from /var/lib/cloud/seed/nocloud-net,
# which LXD writes from the image's templates when the container is
# created: meta-data from the container's name, user-data, vendor-data and
# network-config from the config keys cloud-init.user-data,
# cloud-init.vendor-data and cloud-init.network-config (what the lxd helper
# sets from the broker's seed files).
#
# The debootstrap tree is made by tools/build-image.sh when missing; the
# tarball is rebuilt only when this script or the tree changed.
set -euo pipefail

die() { echo "build-lxd-image: $*" >&2; exit 1; }
say() { echo "build-lxd-image: $*" >&2; }

force=0
outdir=${VMCTL_TEST_IMAGES:-/var/cache/vmctl-test-images}
while [ $# -gt 0 ]; do
	case $1 in
	--force) force=1 ;;
	-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown option $1 (try --help)" ;;
	*) outdir=$1 ;;
	esac
	shift
done

[ "$(id -u)" -eq 0 ] || die "must run as root (the tree is owned by root)"
for t in tar flock sha256sum; do
	command -v "$t" >/dev/null || die "$t is missing; run tools/install-deps.sh"
done
here=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
build=$outdir/.build

# The tree: tools/build-image.sh's stage 1 (it holds the same lock).
if ! ls -d "$build"/base-*.done >/dev/null 2>&1; then
	say "no debootstrap tree in $build; running tools/build-image.sh"
	"$here/build-image.sh" "$outdir"
fi
mkdir -p "$build"
exec 9>"$build/lock"
flock 9
done_mark=$(ls -1 "$build"/base-*.done 2>/dev/null | head -n1)
[ -n "$done_mark" ] || die "tools/build-image.sh left no debootstrap tree in $build"
base=${done_mark%.done}

key=$({ basename "$base"; grep -v '^[[:space:]]*#' "$0"; } | sha256sum | cut -c1-16)
if [ "$force" -eq 0 ] && [ -s "$outdir/lxd.tar" ] && [ "$(cat "$build/lxd-image-key" 2>/dev/null)" = "$key" ]; then
	say "$outdir/lxd.tar is up to date"
	exit 0
fi

work=$build/lxd-work
cleanup_work() { rm -rf "$work"; }
trap cleanup_work EXIT
rm -rf "$work"
mkdir -p "$work/templates"
root=$work/rootfs
say "assembling the container tree from $base"
cp -a "$base" "$root"

echo vmctl-guest >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
: >"$root/etc/fstab"
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/ssh/sshd_config.d" "$root/etc/cloud/cloud.cfg.d"
printf 'PasswordAuthentication no\nUseDNS no\n' >"$root/etc/ssh/sshd_config.d/50-vmctl.conf"
cat >"$root/etc/cloud/cloud.cfg.d/90-vmctl.cfg" <<-'EOF'
	datasource_list: [ NoCloud, None ]
	# minbase has no locales; generating one fails
	locale: false
	manage_etc_hosts: true
	ssh_genkeytypes: [ ed25519, ecdsa ]
	system_info:
	  network:
	    renderers: [ networkd ]
	  default_user:
	    name: ubuntu
	    lock_passwd: true
	    gecos: vmctl
	    groups: [ adm, sudo ]
	    sudo: [ "ALL=(ALL) NOPASSWD:ALL" ]
	    shell: /bin/bash
EOF
cat >"$root/etc/network/interfaces" <<-'EOF'
	auto lo
	iface lo inet loopback
	source /etc/network/interfaces.d/*
EOF
for unit in systemd-networkd-wait-online.service e2scrub_reap.service e2scrub_all.timer \
	apt-daily.timer apt-daily-upgrade.timer fstrim.timer getty@tty1.service; do
	ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
mkdir -p "$root/etc/systemd/system/multi-user.target.wants" "$root/etc/systemd/system/sockets.target.wants"
ln -sf /lib/systemd/system/systemd-networkd.service "$root/etc/systemd/system/multi-user.target.wants/"
ln -sf /lib/systemd/system/systemd-networkd.socket "$root/etc/systemd/system/sockets.target.wants/"

# The NoCloud seed, written by LXD from the container's config at creation.
cat >"$work/templates/meta-data.tpl" <<-'EOF'
	instance-id: {{ container.name }}
	local-hostname: {{ container.name }}
EOF
printf '%s\n' '{{ config_get("cloud-init.user-data", properties.default) }}' >"$work/templates/user-data.tpl"
printf '%s\n' '{{ config_get("cloud-init.vendor-data", properties.default) }}' >"$work/templates/vendor-data.tpl"
cat >"$work/templates/network-config.tpl" <<-'EOF'
	{% if config_get("cloud-init.network-config", "") == "" %}version: 2
	ethernets:
	  eth0:
	    dhcp4: true
	{% else %}{{ config_get("cloud-init.network-config", "") }}{% endif %}
EOF
printf '%s\n' '{{ container.name }}' >"$work/templates/hostname.tpl"
cat >"$work/metadata.yaml" <<-EOF
	architecture: $(uname -m)
	creation_date: $(date +%s)
	properties:
	  description: vmctl test image (Debian $(. "$root/etc/os-release" && echo "$VERSION_CODENAME"), systemd, cloud-init, openssh-server)
	  os: debian
	  release: $(. "$root/etc/os-release" && echo "$VERSION_CODENAME")
	  default: "#cloud-config\n{}"
	templates:
	  /var/lib/cloud/seed/nocloud-net/meta-data:
	    when: [create, copy]
	    template: meta-data.tpl
	  /var/lib/cloud/seed/nocloud-net/user-data:
	    when: [create, copy]
	    template: user-data.tpl
	  /var/lib/cloud/seed/nocloud-net/vendor-data:
	    when: [create, copy]
	    template: vendor-data.tpl
	  /var/lib/cloud/seed/nocloud-net/network-config:
	    when: [create, copy]
	    template: network-config.tpl
	  /etc/hostname:
	    when: [create, copy]
	    template: hostname.tpl
EOF

# metadata.yaml first: the broker recognises the tarball by its first member.
say "packing $outdir/lxd.tar"
tar --numeric-owner --xattrs -C "$work" -cf "$work/lxd.tar" metadata.yaml templates rootfs
mv -f "$work/lxd.tar" "$outdir/lxd.tar"
echo "$key" >"$build/lxd-image-key"
say "built $outdir/lxd.tar ($(du -m "$outdir/lxd.tar" | cut -f1) MiB)"
