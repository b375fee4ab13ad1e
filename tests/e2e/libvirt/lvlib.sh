# Shared by tests/e2e/test-libvirt-*.sh (sourced): a private virtlogd and
# libvirtd started by the test as children (no systemd here) and stopped at
# the end, with every domain the test defined removed.
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

# One system libvirtd at a time: tests of several ctest runs take turns.
exec {LV_LOCK_FD}>"${LV_LOCK:-/run/lock/vmctl-e2e-libvirt.lock}" || lv_fail "cannot open the lock file"
lv_log "taking the libvirt test lock (other libvirt tests go first)"
flock -w "${LV_LOCK_WAIT:-1800}" "$LV_LOCK_FD" || lv_fail "another libvirt test held the lock too long"

# The system daemons run as root; a user's session daemons do not collide.
if pgrep -u 0 -x libvirtd >/dev/null || pgrep -u 0 -x virtlogd >/dev/null; then
	lv_fail "a system libvirtd or virtlogd is already running; these tests start and stop their own"
fi

LV_RUN=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-lv.XXXXXX")
export LV_RUN

lv_start_daemon() {
	local name=$1 sock=$2
	rm -f "$LV_RUN/$name.pid"
	# Not handing the daemon our lock: it must end with this test.
	"$name" -d -p "$LV_RUN/$name.pid" {LV_LOCK_FD}>&- || lv_fail "$name did not start"
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

# PIDs whose command line contains $1 (a path or name of this run; a dot
# in it matching any character is harmless). One pgrep, not a process per
# /proc entry: on a busy host that scan took tens of seconds.
lv_pids_mentioning() {
	pgrep -f -- "$1" | grep -vx "$$" || true
}

lv_domains() { virsh -q list --all --name 2>/dev/null | grep "^vmctl-$LVT_PREFIX" || true; }

lv_cleanup() {
	local rc=$? d
	trap - EXIT
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		lv_log "keeping $LV_RUN, the daemons and the domains"
		exit "$rc"
	fi
	if [ -S /run/libvirt/libvirt-sock ] && [ -s "$LV_RUN/libvirtd.pid" ]; then
		for d in $(lv_domains); do
			virsh -q destroy "$d" >/dev/null 2>&1
			virsh -q undefine --managed-save "$d" >/dev/null 2>&1
		done
	fi
	# QEMU processes of this run that a killed libvirtd left behind, and
	# helpers still running.
	for p in $(lv_pids_mentioning "vmctl-$LVT_PREFIX") $(lv_pids_mentioning "$LV_RUN/"); do
		kill -KILL "$p" 2>/dev/null
	done
	lv_stop_daemon libvirtd
	lv_stop_daemon virtlogd
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
lv_start_daemon virtlogd /run/libvirt/virtlogd-sock
lv_start_libvirtd
lv_log "libvirtd and virtlogd running; work folder $LV_RUN"
