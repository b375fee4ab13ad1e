#!/usr/bin/env bash
# Build the bootable test images vmctl's demo and end-to-end tests use, from
# the host's own Debian packages and kernel (no internet beyond the Debian
# mirror apt already uses).
#
#   tools/build-image.sh [--verify[=fast,full]] [--force] [OUTDIR]
#
# OUTDIR defaults to $VMCTL_TEST_IMAGES, else /var/cache/vmctl-test-images.
# VMCTL_DEBIAN_MIRROR overrides the mirror taken from apt's sources;
# VMCTL_IMAGE_STATUS_FILE, when set, receives the image paths once built.
# It receives two images, each a qcow2 disk with direct-boot files beside it
# (the convention of core/vmctld/image.h):
#
#   full.{qcow2,vmlinuz,initrd,cmdline}  systemd + real cloud-init (NoCloud)
#   fast.{qcow2,vmlinuz,initrd,cmdline}  same disk, init=/sbin/vmctl-fastinit:
#                                        a shell PID 1 that reads the NoCloud
#                                        seed, starts sshd, obeys ACPI power-off
#   kernel-release                       the guest kernel's `uname -r`
#
# The debootstrap tree is cached in OUTDIR/.build; the images are rebuilt only
# when an input changed (this script, the kernel, the package list, the
# mirror). --force rebuilds the images (not the cached tree); --verify boots
# each image under QEMU with a NoCloud seed and logs in over SSH.
set -euo pipefail

die() { echo "build-image: $*" >&2; exit 1; }
say() { echo "build-image: $*" >&2; }

verify=0
verify_variants="fast full"
force=0
outdir=${VMCTL_TEST_IMAGES:-/var/cache/vmctl-test-images}
while [ $# -gt 0 ]; do
	case $1 in
	--verify) verify=1 ;;
	--verify=*) verify=1 verify_variants=${1#--verify=} ;;
	--force) force=1 ;;
	-h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown option $1 (try --help)" ;;
	*) outdir=$1 ;;
	esac
	shift
done

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap needs it)"
for t in debootstrap mkfs.ext4 qemu-img xz cpio depmod modprobe flock sha256sum; do
	command -v "$t" >/dev/null || die "$t is missing; run tools/install-deps.sh"
done
[ -x /bin/busybox ] || die "/bin/busybox is missing (package busybox-static)"

# Packages of the guest. debootstrap does not resolve virtual packages, hence
# python3-cffi-backend; without dbus and libpam-systemd logind ignores the ACPI
# power button; busybox gives the fast init udhcpc and acpid; sshfs is what
# classic mounts run in the guest.
GUEST_PACKAGES=systemd-sysv,udev,dbus,libpam-systemd,sudo,openssh-server,cloud-init,python3-cffi-backend,ifupdown,isc-dhcp-client,iproute2,netbase,kmod,e2fsprogs,busybox,sshfs

# ---- inputs ----------------------------------------------------------------

# The kernel: the running one if it is installed here (a container usually runs
# a foreign kernel), else the newest installed linux-image.
pick_kernel() {
	local r
	r=$(uname -r)
	if [ -f "/boot/vmlinuz-$r" ] && [ -d "/lib/modules/$r/kernel" ]; then
		echo "$r"
		return
	fi
	for f in $(ls -1v /boot/vmlinuz-* 2>/dev/null | tac); do
		r=${f#/boot/vmlinuz-}
		if [ -d "/lib/modules/$r/kernel" ]; then
			echo "$r"
			return
		fi
	done
}
kver=$(pick_kernel)
[ -n "$kver" ] || die "no installed kernel with modules in /boot and /lib/modules (package linux-image-amd64)"
# virtio, 9p and FUSE (classic mounts) must exist, as modules or built in (Debian's cloud kernel
# lacks 9p).
for opt in VIRTIO_BLK VIRTIO_NET 9P_FS FUSE_FS; do
	grep -qE "^CONFIG_$opt=[ym]" "/boot/config-$kver" 2>/dev/null ||
		die "kernel $kver lacks CONFIG_$opt; install linux-image-amd64"
done

suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$suite" ] || die "cannot tell the Debian release from /etc/os-release"

# The Debian mirror apt uses for $suite, from one-line and deb822 sources.
find_mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v s="$suite" '$1 == "deb" {
			i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i + 1) == s) { print $i; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v s="$suite" '
			function flush() { if (deb && suiteok && uri != "") { print uri; found = 1 } deb = 0; suiteok = 0; uri = "" }
			/^[ \t]*$/ { flush(); if (found) exit; next }
			/^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) suiteok = 1 }
			/^URIs:/ { uri = $2 }
			END { if (!found) flush() }' "$f"
	done
}
mirror=${VMCTL_DEBIAN_MIRROR:-$(find_mirror | head -n1)}
[ -n "$mirror" ] || die "no Debian mirror for $suite in /etc/apt/sources.list*; set VMCTL_DEBIAN_MIRROR"

# apt may reach the mirror through a proxy; debootstrap's wget needs it too.
apt_proxy=$(apt-config dump 2>/dev/null | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p' | head -n1)
if [ -n "$apt_proxy" ] && [ -z "${http_proxy:-}" ]; then
	export http_proxy=$apt_proxy
fi

mkdir -p "$outdir/.build"
outdir=$(cd "$outdir" && pwd)
build=$outdir/.build

# One builder at a time per output folder; later callers wait and then find
# the images up to date.
exec 9>"$build/lock"
flock 9

base_key=$(printf '%s\n' "$suite" "$mirror" "$GUEST_PACKAGES" minbase-1 | sha256sum | cut -c1-16)
# Comments do not count: editing one must not replace images in use.
image_key=$(
	{
		echo "$base_key" "$kver"
		grep -v '^[[:space:]]*#' "$0"
		sha256sum "/boot/vmlinuz-$kver" /bin/busybox | cut -d' ' -f1
	} | sha256sum | cut -c1-16
)

outputs_present() {
	local v e
	for v in full fast; do
		for e in qcow2 vmlinuz initrd cmdline; do
			[ -s "$outdir/$v.$e" ] || return 1
		done
	done
	[ -s "$outdir/kernel-release" ]
}

# $VMCTL_IMAGE_STATUS_FILE, when set, receives the paths of the images
# (for whoever waits for them).
write_status() {
	local f=${VMCTL_IMAGE_STATUS_FILE:-}
	[ -n "$f" ] || return 0
	{
		echo "images built $(date -u +%Y-%m-%dT%H:%M:%SZ) kernel $kver key $image_key"
		for v in full fast; do
			echo "$v: $outdir/$v.qcow2 $outdir/$v.vmlinuz $outdir/$v.initrd $outdir/$v.cmdline"
			echo "$v cmdline: $(cat "$outdir/$v.cmdline")"
		done
	} >"$f.tmp" && mv "$f.tmp" "$f"
}

# ---- stage 1: the debootstrap tree (cached) ----------------------------------

base=$build/base-$base_key
if [ ! -f "$base.done" ]; then
	rm -rf "$base" "$base.tmp"
	rm -rf "$build"/base-*
	say "debootstrap $suite from $mirror (about 2 minutes)"
	debootstrap --variant=minbase --include="$GUEST_PACKAGES" \
		"$suite" "$base.tmp" "$mirror" >"$build/debootstrap.log" 2>&1 ||
		die "debootstrap failed; see $build/debootstrap.log"
	rm -f "$base.tmp"/var/cache/apt/archives/*.deb
	rm -rf "$base.tmp"/var/lib/apt/lists/*
	mv "$base.tmp" "$base"
	touch "$base.done"
fi

if [ "$force" -eq 0 ] && outputs_present && [ "$(cat "$build/image-key" 2>/dev/null)" = "$image_key" ]; then
	say "images in $outdir are up to date"
	write_status
	if [ "$verify" -eq 0 ]; then
		exit 0
	fi
fi

# ---- stage 2: the image tree -------------------------------------------------

work=$build/work
cleanup_work() { rm -rf "$work"; }
trap cleanup_work EXIT

build_images() {
	rm -rf "$work"
	mkdir -p "$work"
	local root=$work/root
	say "assembling the guest tree (kernel $kver)"
	cp -a "$base" "$root"

	# Kernel modules: all but the families no virtual machine needs.
	mkdir -p "$root/lib/modules"
	(cd /lib/modules && tar -cf - \
		--exclude="$kver/kernel/drivers/gpu" \
		--exclude="$kver/kernel/drivers/media" \
		--exclude="$kver/kernel/drivers/net/wireless" \
		--exclude="$kver/kernel/drivers/infiniband" \
		--exclude="$kver/kernel/drivers/staging" \
		--exclude="$kver/kernel/drivers/bluetooth" \
		--exclude="$kver/kernel/drivers/iio" \
		--exclude="$kver/kernel/drivers/isdn" \
		--exclude="$kver/kernel/sound" \
		--exclude="$kver/kernel/net/wireless" \
		--exclude="$kver/kernel/net/mac80211" \
		--exclude="$kver/kernel/net/bluetooth" \
		"$kver") | (cd "$root/lib/modules" && tar -xf -)
	depmod -b "$root" "$kver"

	configure_tree "$root"

	# The disk: an ext4 file system made from the tree, no loop mount.
	local used_mb size_mb
	used_mb=$(du -sm "$root" | cut -f1)
	size_mb=$(((used_mb * 13 / 10 + 300 + 63) / 64 * 64))
	say "making a ${size_mb} MiB ext4 file system"
	truncate -s "${size_mb}M" "$work/disk.raw"
	mkfs.ext4 -q -F -L vmctl-root -m 1 -d "$root" "$work/disk.raw" ||
		die "mkfs.ext4 -d failed"
	qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
	rm -f "$work/disk.raw"

	make_kernel "$work/vmlinuz"
	make_initrd "$work/initrd"

	# Both variants share the disk, kernel and initrd; only the command line
	# (which init runs) differs.
	local common="root=/dev/vda rw console=ttyS0 net.ifnames=0 random.trust_cpu=on"
	echo "$common" >"$work/full.cmdline"
	echo "$common init=/sbin/vmctl-fastinit" >"$work/fast.cmdline"

	# Hard links where the file system allows: the images are read-only bases.
	local v e src
	for v in full fast; do
		for e in qcow2 vmlinuz initrd; do
			src=$work/$e
			[ "$e" = qcow2 ] && src=$work/disk.qcow2
			rm -f "$outdir/$v.$e.new"
			ln "$src" "$outdir/$v.$e.new" 2>/dev/null || cp "$src" "$outdir/$v.$e.new"
		done
		cp "$work/$v.cmdline" "$outdir/$v.cmdline.new"
	done
	for v in full fast; do
		for e in qcow2 vmlinuz initrd cmdline; do
			mv -f "$outdir/$v.$e.new" "$outdir/$v.$e"
		done
	done
	echo "$kver" >"$outdir/kernel-release.new"
	mv -f "$outdir/kernel-release.new" "$outdir/kernel-release"
	echo "$image_key" >"$build/image-key"
	rm -rf "$work"
}

# Everything the guest needs beyond the packages.
configure_tree() {
	local root=$1

	echo vmctl-guest >"$root/etc/hostname"
	printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	printf '# <file system> <mount point> <type> <options> <dump> <pass>\n/dev/vda / ext4 rw,errors=remount-ro 0 0\n' >"$root/etc/fstab"
	: >"$root/etc/machine-id"
	rm -f "$root/var/lib/dbus/machine-id"

	# Each instance makes its own host keys on first boot.
	rm -f "$root"/etc/ssh/ssh_host_*
	mkdir -p "$root/etc/ssh/sshd_config.d"
	cat >"$root/etc/ssh/sshd_config.d/50-vmctl.conf" <<-'EOF'
		PasswordAuthentication no
		UseDNS no
	EOF

	# Real cloud-init, NoCloud only, nothing that needs the internet.
	mkdir -p "$root/etc/cloud/cloud.cfg.d"
	cat >"$root/etc/cloud/cloud.cfg.d/90-vmctl.cfg" <<-'EOF'
		datasource_list: [ NoCloud, None ]
		# minbase has no locales; generating one fails
		locale: false
		manage_etc_hosts: true
		ssh_genkeytypes: [ ed25519, ecdsa ]
		system_info:
		  # DHCP inside systemd-networkd: ifupdown's dhclient scripts fork
		  # hundreds of processes, minutes under a loaded emulator.
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

	# Boot speed under emulation: nothing waits for a network that is not
	# configured, journald stays in memory.
	local unit
	for unit in systemd-networkd-wait-online.service e2scrub_reap.service \
		e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer fstrim.timer \
		getty@tty1.service; do
		ln -sf /dev/null "$root/etc/systemd/system/$unit"
	done
	mkdir -p "$root/etc/systemd/system/multi-user.target.wants" "$root/etc/systemd/system/sockets.target.wants"
	ln -sf /lib/systemd/system/systemd-networkd.service "$root/etc/systemd/system/multi-user.target.wants/"
	ln -sf /lib/systemd/system/systemd-networkd.socket "$root/etc/systemd/system/sockets.target.wants/"
	mkdir -p "$root/etc/systemd/journald.conf.d"
	printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/50-vmctl.conf"

	# Only the loopback for ifupdown: cloud-init configures eth0 through
	# systemd-networkd (full boot), vmctl-fastinit with udhcpc (fast boot).
	cat >"$root/etc/network/interfaces" <<-'EOF'
		auto lo
		iface lo inet loopback
		source /etc/network/interfaces.d/*
	EOF

	# Drivers whose probing costs seconds under emulation and that no
	# instance uses (cloud-init's blkid probe of fd0 retries for seconds).
	cat >"$root/etc/modprobe.d/vmctl.conf" <<-'EOF'
		blacklist floppy
		blacklist parport_pc
		blacklist pcspkr
		blacklist kvm
		blacklist kvm_amd
		blacklist kvm_intel
	EOF

	install_fastinit "$root"
}

install_fastinit() {
	local root=$1
	mkdir -p "$root/etc/vmctl-fastinit/acpi/PWRF"

	cat >"$root/sbin/vmctl-fastinit" <<-'EOF'
		#!/bin/sh
		# vmctl fast init: a PID 1 for test guests that boots to SSH in seconds.
		# It reads the NoCloud seed (local-hostname from meta-data, SSH keys from
		# user-data), creates the user ubuntu, brings up eth0 with DHCP, starts
		# sshd and powers off on the ACPI power button. Nothing else of
		# cloud-init runs: use the full image for that.
		export PATH=/usr/sbin:/usr/bin:/sbin:/bin
		BB=/bin/busybox
		log() { read -r up _ </proc/uptime; echo "vmctl-fastinit: [$up] $*" >/dev/console; }

		# Shell builtins where they do: each process costs here.
		mounted() {
			while read -r _ mp _; do [ "$mp" = "$1" ] && return 0; done </proc/mounts
			return 1
		}
		mount -t proc proc /proc
		mounted /sys || mount -t sysfs sysfs /sys
		mounted /dev || mount -t devtmpfs devtmpfs /dev
		mkdir -p /dev/pts /dev/shm
		mount -t devpts -o gid=5,mode=620 devpts /dev/pts
		mount -t tmpfs -o mode=1777 tmpfs /dev/shm
		mount -t tmpfs -o mode=755 tmpfs /run
		mount -t tmpfs -o mode=1777 tmpfs /tmp
		while read -r _ mp _ opts _; do
			[ "$mp" = / ] && case $opts in ro,*|ro) mount -o remount,rw / ;; esac
		done </proc/mounts
		mkdir -p /run/sshd /run/lock
		ip link set lo up
		log "started"

		# Drivers: those of the PCI and virtio devices present (as udev would
		# load them) and what the seed, the power button, 9p mounts and
		# classic (sshfs, FUSE) mounts need.
		# Not a full coldplug: floppy, parport, kvm and the like cost seconds
		# under emulation. Every process counts here, hence one modprobe.
		modprobe -a -q -b $(cat /sys/bus/pci/devices/*/modalias /sys/bus/virtio/devices/*/modalias 2>/dev/null) \
			virtio_net sr_mod isofs button evdev 9p 9pnet_virtio fuse 2>/dev/null
		log "drivers loaded"

		# DHCP (kept running for lease renewals) and the power button handler
		# work in the background while the rest goes on.
		$BB udhcpc -i eth0 -s /etc/vmctl-fastinit/udhcpc.script -f -S -t 30 -T 1 -A 2 >/dev/null 2>&1 &
		$BB acpid -c /etc/vmctl-fastinit/acpi -l /run/acpid.log

		# The NoCloud seed: the ISO 9660 volume labelled cidata (a CD-ROM
		# may take a moment to appear).
		seed=
		i=0
		while [ $i -lt 50 ]; do
			dev=$(blkid -L cidata 2>/dev/null)
			if [ -n "$dev" ]; then
				mkdir -p /run/vmctl-seed
				if mount -o ro "$dev" /run/vmctl-seed 2>/dev/null; then seed=/run/vmctl-seed; break; fi
			fi
			i=$((i + 1))
			$BB usleep 100000
		done
		[ -n "$seed" ] || log "no cidata seed found"
		log "seed read"

		name=
		if [ -n "$seed" ] && [ -f "$seed/meta-data" ]; then
			name=$(sed -n 's/^[[:space:]]*local-hostname:[[:space:]]*["'\'']\{0,1\}\([A-Za-z0-9.-]*\).*/\1/p' "$seed/meta-data")
			name=${name%%[!A-Za-z0-9.-]*}
		fi
		[ -n "$name" ] || read -r name </etc/hostname
		echo "$name" >/proc/sys/kernel/hostname
		echo "$name" >/etc/hostname
		grep -q "[[:space:]]$name\$" /etc/hosts || printf '127.0.1.1\t%s\n' "$name" >>/etc/hosts

		# The user, written directly: useradd and friends cost seconds here.
		if ! grep -q '^ubuntu:' /etc/passwd; then
			echo 'ubuntu:x:1000:1000:vmctl:/home/ubuntu:/bin/bash' >>/etc/passwd
			echo 'ubuntu:*:20000:0:99999:7:::' >>/etc/shadow
			echo 'ubuntu:x:1000:' >>/etc/group
			echo 'ubuntu:!::' >>/etc/gshadow
			(umask 0337 && echo 'ubuntu ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/90-vmctl-ubuntu)
		fi
		mkdir -p /home/ubuntu/.ssh

		# SSH keys from user-data, which may be a MIME multipart, even with
		# base64 parts.
		keys=/home/ubuntu/.ssh/authorized_keys
		: >$keys
		if [ -n "$seed" ] && [ -f "$seed/user-data" ]; then
			ud=$seed/user-data
			if grep -qi '^content-transfer-encoding:[[:space:]]*base64' "$ud"; then
				python3 - "$ud" >/run/vmctl-user-data 2>/dev/null <<-'PY' && ud=/run/vmctl-user-data
		import email, sys
		msg = email.message_from_binary_file(open(sys.argv[1], "rb"))
		for part in msg.walk():
		    if not part.is_multipart():
		        sys.stdout.write((part.get_payload(decode=True) or b"").decode("utf-8", "replace") + "\n")
		PY
			fi
			grep -oE '(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) AAAA[A-Za-z0-9+/]+=*' "$ud" >$keys
		fi
		[ -s $keys ] || log "no SSH keys in the seed"
		chown -R 1000:1000 /home/ubuntu
		log "user ready"

		# `cloud-init status --wait` (which launchers use to know the guest is
		# configured) reads these files; without systemd it would otherwise
		# wait for a cloud-init run that never comes. They say what happened:
		# the seed was handled here.
		# And the real `cloud-init status` costs tens of seconds of emulated
		# Python: answer it from a shell script instead.
		mount --bind /usr/lib/vmctl-fastinit/cloud-init /usr/bin/cloud-init
		mkdir -p /run/cloud-init
		now=$(date +%s)
		ds="DataSourceNoCloud [seed=${dev:-none}] (handled by vmctl-fastinit)"
		printf '{"v1": {"datasource": "%s", "init": {"errors": [], "start": %s, "finished": %s}, "stage": null}}\n' \
			"$ds" "$now" "$now" >/run/cloud-init/status.json
		printf '{"v1": {"datasource": "%s", "errors": []}}\n' "$ds" >/run/cloud-init/result.json

		[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
		/usr/sbin/sshd -o HostKey=/etc/ssh/ssh_host_ed25519_key || log "sshd failed to start"

		# Grow the file system to the size of the instance's disk.
		resize2fs /dev/vda >/dev/null 2>&1 &
		log "ready: $name"

		# PID 1 must reap orphans: waiting for a job makes the shell collect
		# every exited child, not only its own.
		while :; do
			sleep 60 &
			wait $!
		done
	EOF
	chmod 755 "$root/sbin/vmctl-fastinit"

	# `cloud-init` while vmctl-fastinit is PID 1: status from the files it
	# wrote, anything else to the real program.
	mkdir -p "$root/usr/lib/vmctl-fastinit"
	cp "$root/usr/bin/cloud-init" "$root/usr/lib/vmctl-fastinit/cloud-init.real"
	cat >"$root/usr/lib/vmctl-fastinit/cloud-init" <<-'EOF'
		#!/bin/sh
		# cloud-init did not run in this boot: vmctl-fastinit handled the
		# NoCloud seed (hostname, SSH keys) and wrote /run/cloud-init.
		if [ "$1" = status ]; then
			if [ -f /run/cloud-init/result.json ]; then
				echo "status: done"
				exit 0
			fi
			echo "status: not run"
			exit 0
		fi
		exec /usr/bin/python3 /usr/lib/vmctl-fastinit/cloud-init.real "$@"
	EOF
	chmod 755 "$root/usr/lib/vmctl-fastinit/cloud-init"

	cat >"$root/etc/vmctl-fastinit/acpi/PWRF/00000080" <<-'EOF'
		#!/bin/sh
		# ACPI power button: stop the services, flush the disk and power off.
		echo "vmctl-fastinit: power button, powering off" >/dev/console
		kill -TERM -1 2>/dev/null
		sleep 1
		sync
		mount -o remount,ro / 2>/dev/null
		sync
		/bin/busybox poweroff -f
	EOF
	chmod 755 "$root/etc/vmctl-fastinit/acpi/PWRF/00000080"

	cat >"$root/etc/vmctl-fastinit/udhcpc.script" <<-'EOF'
		#!/bin/sh
		# udhcpc event handler: configure eth0 from the lease.
		case $1 in
		deconfig)
			ip -4 addr flush dev "$interface"
			ip link set "$interface" up
			;;
		bound|renew)
			ip -4 addr flush dev "$interface"
			ip addr add "$ip/${mask:-24}" dev "$interface"
			for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
			: >/etc/resolv.conf.new
			for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf.new; done
			[ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf.new
			mv /etc/resolv.conf.new /etc/resolv.conf
			;;
		esac
		exit 0
	EOF
	chmod 755 "$root/etc/vmctl-fastinit/udhcpc.script"
}

# The uncompressed kernel boots ~2.5 s faster under TCG than the bzImage
# (whose self-decompression is emulated); QEMU loads it through its PVH note.
make_kernel() {
	local out=$1 src=/boot/vmlinuz-$kver off
	if grep -q '^CONFIG_PVH=y' "/boot/config-$kver" 2>/dev/null; then
		for off in $(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$src" | cut -d: -f1); do
			tail -c +$((off + 1)) "$src" | xz -dc >"$out" 2>/dev/null || true
			if [ "$(head -c4 "$out" | od -An -c | tr -d ' ')" = '177ELF' ]; then
				return 0
			fi
		done
		for off in $(LC_ALL=C grep -aboP '\x1f\x8b\x08' "$src" | cut -d: -f1); do
			tail -c +$((off + 1)) "$src" | gzip -dc >"$out" 2>/dev/null || true
			if [ "$(head -c4 "$out" | od -An -c | tr -d ' ')" = '177ELF' ]; then
				return 0
			fi
		done
		for off in $(LC_ALL=C grep -aboP '\x28\xb5\x2f\xfd' "$src" | cut -d: -f1); do
			tail -c +$((off + 1)) "$src" | zstd -dcq >"$out" 2>/dev/null || true
			if [ "$(head -c4 "$out" | od -An -c | tr -d ' ')" = '177ELF' ]; then
				return 0
			fi
		done
	fi
	say "using the compressed kernel (no PVH or unknown compression)"
	cp "$src" "$out"
}

# A busybox initramfs that loads the disk drivers, mounts root= and hands over
# to init= (default /sbin/init). Debian's own initramfs would do the same with
# udev, several seconds slower under emulation.
make_initrd() {
	local out=$1 ird=$work/initrd.d m line
	mkdir -p "$ird"/{bin,dev,proc,sys,newroot}
	cp /bin/busybox "$ird/bin/busybox"
	: >"$ird/modules"
	for m in virtio_pci virtio_blk virtio_scsi sd_mod ext4; do
		modprobe -S "$kver" --show-depends "$m" 2>/dev/null | while read -r line; do
			case $line in
			insmod\ *)
				line=${line#insmod }
				line=${line%% *}
				if ! grep -qxF "${line#/}" "$ird/modules"; then
					mkdir -p "$ird$(dirname "$line")"
					cp "$line" "$ird$line"
					echo "${line#/}" >>"$ird/modules"
				fi
				;;
			esac
		done
	done
	cat >"$ird/init" <<-'EOF'
		#!/bin/busybox sh
		/bin/busybox --install -s /bin
		export PATH=/bin
		mount -t devtmpfs devtmpfs /dev
		mount -t proc proc /proc
		mount -t sysfs sysfs /sys
		while read -r m; do insmod "/$m" 2>/dev/null; done </modules
		root= init=/sbin/init mode=rw fstype=ext4
		for arg in $(cat /proc/cmdline); do
			case $arg in
			root=*) root=${arg#root=} ;;
			init=*) init=${arg#init=} ;;
			rootfstype=*) fstype=${arg#rootfstype=} ;;
			ro) mode=ro ;;
			rw) mode=rw ;;
			esac
		done
		case $root in
		LABEL=*|UUID=*) root=$(findfs "$root") ;;
		esac
		i=0
		while [ ! -b "$root" ] && [ $i -lt 200 ]; do usleep 50000; i=$((i + 1)); done
		if ! mount -t "$fstype" -o "$mode" "$root" /newroot; then
			echo "initrd: cannot mount root=$root; dropping to a shell"
			exec sh
		fi
		mount --move /dev /newroot/dev
		umount /proc /sys
		exec switch_root /newroot "$init" "$@"
	EOF
	chmod 755 "$ird/init"
	(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
}

if [ "$force" -eq 1 ] || ! outputs_present || [ "$(cat "$build/image-key" 2>/dev/null)" != "$image_key" ]; then
	build_images
	say "images ready in $outdir"
	write_status
fi

# ---- optional: boot each image and log in -----------------------------------

verify_image() {
	local v=$1 tmp=$2 port=$3 start pid rc=1 i
	qemu-img create -q -f qcow2 -F qcow2 -b "$outdir/$v.qcow2" "$tmp/$v-disk.qcow2" 4G
	printf 'instance-id: verify-%s\nlocal-hostname: verify-%s\n' "$v" "$v" >"$tmp/meta-data"
	printf '#cloud-config\nssh_authorized_keys:\n  - %s\n' "$(cat "$tmp/key.pub")" >"$tmp/user-data"
	genisoimage -quiet -output "$tmp/$v-seed.iso" -volid cidata -joliet -rock "$tmp/user-data" "$tmp/meta-data"
	start=$(date +%s)
	qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 1024 \
		-display none -serial "file:$tmp/$v-console.log" -monitor none \
		-qmp "unix:$tmp/$v-qmp.sock,server=on,wait=off" \
		-kernel "$outdir/$v.vmlinuz" -initrd "$outdir/$v.initrd" -append "$(cat "$outdir/$v.cmdline")" \
		-drive "file=$tmp/$v-disk.qcow2,if=virtio,format=qcow2" \
		-drive "file=$tmp/$v-seed.iso,if=virtio,format=raw,readonly=on" \
		-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 &
	pid=$!
	# Generous: a loaded 2-core host emulating the CPU is slow.
	while [ $(($(date +%s) - start)) -lt 420 ]; do
		if ssh -q -i "$tmp/key" -p "$port" -o BatchMode=yes -o StrictHostKeyChecking=no \
			-o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 ubuntu@127.0.0.1 \
			'echo "$(hostname) $(uname -r)"' >"$tmp/$v-ssh.out" 2>/dev/null; then
			rc=0
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	if [ "$rc" -eq 0 ]; then
		say "$v: ssh after $(($(date +%s) - start)) s: $(cat "$tmp/$v-ssh.out")"
		grep -q "^verify-$v " "$tmp/$v-ssh.out" || { say "$v: wrong hostname"; rc=1; }
		# ACPI power-off must end QEMU within seconds.
		printf '{"execute":"qmp_capabilities"}\n{"execute":"system_powerdown"}\n' |
			timeout 5 python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read()); import time; time.sleep(1)' "$tmp/$v-qmp.sock" || true
		start=$(date +%s)
		for i in $(seq 1 180); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "$v: still running 90 s after system_powerdown"
			rc=1
		else
			say "$v: powered off $(($(date +%s) - start)) s after system_powerdown"
		fi
	else
		say "$v: no ssh; console log follows"
		tail -n 40 "$tmp/$v-console.log" >&2
	fi
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	return $rc
}

if [ "$verify" -eq 1 ]; then
	command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing"
	vtmp=$(mktemp -d)
	trap 'rm -rf "$vtmp"' EXIT
	ssh-keygen -q -t ed25519 -N '' -f "$vtmp/key"
	failed=0 port=10022
	for v in ${verify_variants//,/ }; do
		verify_image "$v" "$vtmp" $port || failed=1
		port=$((port + 1))
	done
	[ "$failed" -eq 0 ] || die "verification failed"
	say "both images boot and accept SSH"
fi
