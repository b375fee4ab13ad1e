# Shared by tests/e2e/test-libvirt-*.sh (sourced, after libvirt/lvns.sh put
# the test in namespaces of its own): a private virtlogd and libvirtd
# started by the test as children (no systemd here) on private state
# folders, and stopped at the end with every domain, network, dnsmasq and
# QEMU of the test removed, whether it passed or failed.
#
# Environment: VMCTL_BIN_DIR (BUILD/bin; the helper is BUILD/libexec/vmctl),
# VMCTL_TEST_IMAGES (default /var/cache/vmctl-test-images), E2E_KEEP=1 keeps
# the daemons, the domains and the files for a post-mortem.

set -u

LV_NAME=$(basename "$0" .sh)
LV_BIN=${VMCTL_BIN_DIR:?VMCTL_BIN_DIR must name the folder holding vmctl}
LV_HELPER=${VMCTL_HELPER:-$LV_BIN/../libexec/vmctl/vmctl-libvirt-helper}
LV_QEMU_HELPER=$LV_BIN/../libexec/vmctl/vmctl-qemu-helper
LV_PY=/usr/bin/python3
LV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Instance names of this run start with this, so cleanup touches only ours.
LVT_PREFIX=lvt$$
export LVT_PREFIX LV_HELPER LV_QEMU_HELPER

lv_log() { echo "[$LV_NAME $(date +%H:%M:%S)] $*" >&2; }
lv_fail() {
	lv_log "FAIL: $*"
	exit 1
}

[ "$(id -u)" -eq 0 ] || lv_fail "must run as root (libvirtd, qemu:///system)"
for t in libvirtd virtlogd virsh genisoimage ssh ssh-keygen qemu-img; do
	command -v "$t" >/dev/null || lv_fail "$t is missing; run tools/install-deps.sh"
done
[ -x "$LV_HELPER" ] || lv_fail "$LV_HELPER is not built"
"$LV_PY" -c 'import msgpack' 2>/dev/null || lv_fail "python3-msgpack is missing"
[ -f "${VMCTL_TEST_IMAGES:-/var/cache/vmctl-test-images}/fast.qcow2" ] ||
	lv_fail "test images missing (run tools/build-image.sh)"

[ -n "${LV_IN_NAMESPACE:-}" ] || lv_fail "source libvirt/lvns.sh first: the daemons must be private"

LV_RUN=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-lv.XXXXXX")
export LV_RUN

# Private state: libvirt's run, state, log and cache folders and its
# configuration, seen only in this mount namespace. The daemons keep their
# default paths (qemu:///system) and reach only each other.
lv_private_state() {
	local d
	ip link set lo up || lv_fail "cannot bring up lo in the test's network namespace"
	for d in /run/libvirt /var/lib/libvirt /var/log/libvirt; do
		mkdir -p "$d"
		mount -t tmpfs -o mode=0755 vmctl-test "$d" || lv_fail "cannot mount a tmpfs on $d"
	done
	# The configuration files (not the system's domains and networks), and
	# the QEMU capability cache, which saves libvirtd's ~8 s probe.
	mkdir -p "$LV_RUN/etc" "$LV_RUN/cache"
	find /etc/libvirt -maxdepth 1 -type f -exec cp -p {} "$LV_RUN/etc/" \;
	[ -d /var/cache/libvirt ] && cp -a /var/cache/libvirt/. "$LV_RUN/cache/"
	mount --bind "$LV_RUN/etc" /etc/libvirt || lv_fail "cannot mount over /etc/libvirt"
	mkdir -p /var/cache/libvirt
	mount --bind "$LV_RUN/cache" /var/cache/libvirt || lv_fail "cannot mount over /var/cache/libvirt"
	if [ "${LV_HIDE_KVM:-0}" = 1 ]; then
		lv_hide_kvm
	fi
}

# A /dev of this namespace with every entry of the real one but kvm.
lv_hide_kvm() {
	local old e name
	old=$(mktemp -d /run/vmctl-lv-dev.XXXXXX)
	mount --rbind /dev "$old" || lv_fail "cannot bind /dev"
	mount -t tmpfs -o mode=0755 vmctl-test-dev /dev || lv_fail "cannot mount a tmpfs on /dev"
	for e in "$old"/*; do
		name=${e##*/}
		[ "$name" != kvm ] || continue
		if [ -L "$e" ]; then
			cp -a "$e" "/dev/$name"
		elif [ -d "$e" ]; then
			mkdir "/dev/$name" && mount --rbind "$e" "/dev/$name"
		else
			touch "/dev/$name" && mount --bind "$e" "/dev/$name"
		fi
	done
	umount -l "$old" && rmdir "$old"
	[ ! -e /dev/kvm ] || lv_fail "/dev/kvm is still visible"
	lv_log "/dev/kvm hidden in the test's namespace"
}

lv_start_daemon() {
	local name=$1 sock=$2
	rm -f "$LV_RUN/$name.pid"
	"$name" -d -p "$LV_RUN/$name.pid" || lv_fail "$name did not start"
	for _ in $(seq 1 200); do
		[ -s "$LV_RUN/$name.pid" ] && [ -S "$sock" ] && return 0
		sleep 0.1
	done
	lv_fail "$name did not create $sock"
}

lv_start_libvirtd() { lv_start_daemon libvirtd /run/libvirt/libvirt-sock; }

lv_stop_daemon() {
	local name=$1 sig=${2:-TERM} pid
	[ -s "$LV_RUN/$name.pid" ] || return 0
	pid=$(cat "$LV_RUN/$name.pid")
	kill -"$sig" "$pid" 2>/dev/null
	for _ in $(seq 1 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	rm -f "$LV_RUN/$name.pid"
}

lv_domains() { virsh -q list --all --name 2>/dev/null | grep "^vmctl-$LVT_PREFIX" || true; }

# lv_defined NAME: is the domain vmctl-NAME defined? The test fails when
# libvirt cannot be asked, so that "not defined" never passes for a libvirtd
# that is gone. (Call it directly, not in $(...), for lv_fail to end the test.)
lv_defined() {
	local names
	names=$(virsh -q list --all --name 2>&1) || lv_fail "virsh list failed: $names"
	printf '%s\n' "$names" | grep -qxF "vmctl-$1"
}

# Every process in the test's network namespace that is not the test's own
# shell: libvirtd, virtlogd, the networks' dnsmasq, QEMU, helpers, ssh.
lv_namespace_pids() {
	local ns p
	ns=$(readlink /proc/$$/ns/net)
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$ns" ] || continue
		case $(cat "/proc/$p/comm" 2>/dev/null) in
		dnsmasq | libvirtd | virtlogd | qemu-* | vmctl* | ssh) echo "$p" ;;
		esac
	done
}

lv_cleanup() {
	local rc=$? d n left
	trap - EXIT
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		lv_log "keeping $LV_RUN, the daemons and the domains (in namespaces of pid $$)"
		exit "$rc"
	fi
	if [ -S /run/libvirt/libvirt-sock ] && [ -s "$LV_RUN/libvirtd.pid" ]; then
		for d in $(lv_domains); do
			virsh -q destroy "$d" >/dev/null 2>&1
			virsh -q undefine --managed-save "$d" >/dev/null 2>&1
		done
		# libvirt stops the networks' dnsmasq and removes their bridges.
		for n in $(virsh -q net-list --name 2>/dev/null); do
			virsh -q net-destroy "$n" >/dev/null 2>&1
		done
	fi
	lv_stop_daemon libvirtd
	lv_stop_daemon virtlogd
	# What a killed libvirtd left behind (QEMU, dnsmasq) and helpers still running.
	for d in $(lv_namespace_pids); do
		kill -KILL "$d" 2>/dev/null
	done
	left=$(lv_namespace_pids)
	if [ -n "$left" ]; then
		sleep 1
		left=$(lv_namespace_pids)
	fi
	if [ -n "$left" ]; then
		lv_log "FAIL: processes of the test survived its cleanup: $(echo $left)"
		rc=1
	fi
	rm -rf "$LV_RUN"
	# Sourced after tests/e2e/lib.sh: its cleanup (broker, helpers, data
	# folder) runs last and exits with our status.
	if declare -F e2e_cleanup >/dev/null; then
		(exit "$rc")
		e2e_cleanup
	fi
	exit "$rc"
}

# lv_image VARIANT: hard-link (else copy) the test image VARIANT and its
# boot files into the work folder and print the disk's path. An overlay
# names its base by path, so a rebuild of the shared images while the test
# runs must not swap the base under its guests.
lv_image() {
	local v=${1:-fast} src=${VMCTL_TEST_IMAGES:-/var/cache/vmctl-test-images} e
	mkdir -p "$LV_RUN/images"
	for e in qcow2 vmlinuz initrd cmdline; do
		ln "$src/$v.$e" "$LV_RUN/images/$v.$e" 2>/dev/null ||
			cp "$src/$v.$e" "$LV_RUN/images/$v.$e" || lv_fail "cannot copy $src/$v.$e"
	done
	echo "$LV_RUN/images/$v.qcow2"
}

trap lv_cleanup EXIT
trap 'exit 130' INT TERM
lv_private_state
lv_start_daemon virtlogd /run/libvirt/virtlogd-sock
lv_start_libvirtd
lv_log "libvirtd and virtlogd running; work folder $LV_RUN"
