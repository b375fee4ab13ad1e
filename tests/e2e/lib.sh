# Shared functions of the end-to-end tests (sourced, not run).
#
# Each test gets its own data folder ($VMCTL_DATA), hence its own broker,
# helper and VMs; on exit, whatever the outcome, every process that mentions
# that folder (broker, helper, QEMU) is killed and the folder removed.
#
# Environment (set by tests/e2e/CMakeLists.txt, or by hand):
#   VMCTL_BIN_DIR      folder holding vmctl and vmctld (BUILD/bin)
#   VMCTL_SOURCE_DIR   the source tree (for tools/build-image.sh)
#   VMCTL_TEST_IMAGES  the test images (default /var/cache/vmctl-test-images)
#   E2E_KEEP=1         keep the data folder and the VMs for a post-mortem

set -u

E2E_NAME=$(basename "$0" .sh)
VMCTL=${VMCTL_BIN_DIR:?VMCTL_BIN_DIR must name the folder holding vmctl}/vmctl
IMAGES=${VMCTL_TEST_IMAGES:-/var/cache/vmctl-test-images}
FAST_IMAGE=$IMAGES/fast.qcow2
FULL_IMAGE=$IMAGES/full.qcow2
# Launches under emulation on a busy 2-core machine: generous, still bounded.
FAST_TIMEOUT=${E2E_FAST_TIMEOUT:-240}
FULL_TIMEOUT=${E2E_FULL_TIMEOUT:-900}

# Last command run by `run`.
OUT= ERR= RC=0

e2e_log() { echo "[$E2E_NAME $(date +%H:%M:%S)] $*" >&2; }

fail() {
	e2e_log "FAIL: $*"
	exit 1
}

[ -x "$VMCTL" ] || fail "$VMCTL is not built"
[ -f "$FAST_IMAGE" ] && [ -f "$FULL_IMAGE" ] ||
	fail "test images missing in $IMAGES (run tools/build-image.sh)"
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is not installed"

VMCTL_DATA=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-e2e.XXXXXX")
export VMCTL_DATA
E2E_TMP=$VMCTL_DATA.tmp
mkdir -p "$E2E_TMP"

# Processes belonging to this test: their command line or environment
# names our data folder (the broker and helper inherit VMCTL_DATA; QEMU's
# command line holds the instance folder).
e2e_pids() {
	{
		grep -lzxF "VMCTL_DATA=$VMCTL_DATA" /proc/[0-9]*/environ
		grep -lzF "$VMCTL_DATA/" /proc/[0-9]*/cmdline
	} 2>/dev/null | cut -d/ -f3 | sort -un | grep -vx "$$"
}

# PIDs of our processes whose executable name is exactly $1.
e2e_pids_named() {
	local p
	for p in $(e2e_pids); do
		[ "$({ cat "/proc/$p/comm"; } 2>/dev/null)" = "$1" ] && echo "$p"
	done
}
qemu_pids() {
	local p
	for p in $(e2e_pids); do
		case $({ cat "/proc/$p/comm"; } 2>/dev/null) in
		qemu-system-*) echo "$p" ;;
		esac
	done
}
# comm is cut at 15 characters.
helper_pids() { e2e_pids_named vmctl-qemu-help; }
broker_pids() { e2e_pids_named vmctld; }

# Is the process running (a zombie, not yet reaped by whoever inherited it,
# is not)?
alive() {
	local st
	st=$({ awk '/^State:/ { print $2 }' "/proc/$1/status"; } 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ]
}

e2e_cleanup() {
	local rc=$? pids p
	trap - EXIT
	if [ "$rc" -ne 0 ]; then
		e2e_log "exit status $rc; the broker's log ends with:"
		tail -n 40 "$VMCTL_DATA/vmctld.log" >&2 2>/dev/null
		for f in "$VMCTL_DATA"/scopes/*/instances/*/console.log; do
			[ -f "$f" ] || continue
			e2e_log "console of ${f%/console.log}:"
			tail -n 15 "$f" >&2
		done
	fi
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		e2e_log "keeping $VMCTL_DATA and its processes: $(e2e_pids | tr '\n' ' ')"
		exit "$rc"
	fi
	# Only what vmctl started on our behalf, not our own subshells.
	pids=$(for p in $(e2e_pids); do
		case $({ cat "/proc/$p/comm"; } 2>/dev/null) in
		vmctl | vmctld | vmctl-* | qemu-* | ssh | scp | sftp-server | genisoimage) echo "$p" ;;
		esac
	done)
	if [ -n "$pids" ]; then
		# shellcheck disable=SC2086
		kill -TERM $pids 2>/dev/null
		for _ in $(seq 1 30); do
			pids=$(for p in $pids; do kill -0 "$p" 2>/dev/null && echo "$p"; done)
			[ -n "$pids" ] || break
			sleep 0.1
		done
		# shellcheck disable=SC2086
		[ -z "$pids" ] || kill -KILL $pids 2>/dev/null
	fi
	rm -rf "$VMCTL_DATA" "$E2E_TMP"
	exit "$rc"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

# run CMD...: run it, keeping stdout in $OUT, stderr in $ERR, status in $RC.
run() {
	e2e_log "\$ $*"
	"$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err" </dev/null
	RC=$?
	OUT=$(cat "$E2E_TMP/out")
	ERR=$(cat "$E2E_TMP/err")
	[ -z "$OUT" ] || printf '%s\n' "$OUT" | sed 's/^/  out| /' >&2
	[ -z "$ERR" ] || printf '%s\n' "$ERR" | sed 's/^/  err| /' >&2
	[ "$RC" -eq 0 ] || e2e_log "  exit status $RC"
	return 0
}
vmctl() { run "$VMCTL" "$@"; }

expect_rc() {
	[ "$RC" -eq "$1" ] || fail "expected exit status $1, got $RC"
}
expect_fail() {
	[ "$RC" -ne 0 ] || fail "expected a failure, got exit status 0"
}
expect_out() {
	printf '%s\n' "$OUT" | grep -qE -- "$1" || fail "stdout does not match /$1/"
}
expect_err() {
	printf '%s\n' "$ERR" | grep -qiE -- "$1" || fail "stderr does not match /$1/ (case-insensitive)"
}
expect_no_out() {
	! printf '%s\n' "$OUT" | grep -qE -- "$1" || fail "stdout unexpectedly matches /$1/"
}
# A failure a user can act on: non-zero status and a message on stderr
# (matching $1), nothing pretending success on stdout.
expect_error() {
	expect_fail
	[ -n "$ERR" ] || fail "no error message on stderr"
	[ -z "${1:-}" ] || expect_err "$1"
}

# STATE := the STATE column of NAME in `vmctl list` ("" when not listed).
# Non-zero when `vmctl list` itself fails.
STATE=
list_state() {
	STATE=
	vmctl list
	[ "$RC" -eq 0 ] || return 1
	STATE=$(printf '%s\n' "$OUT" | awk -v n="$1" '$1 == n { print $2; exit }')
}
expect_state() {
	list_state "$1" || fail "vmctl list failed"
	[ "$STATE" = "$2" ] || fail "vmctl list shows $1 as '${STATE:-<absent>}', expected $2"
}
expect_listed() {
	list_state "$1" || fail "vmctl list failed"
	[ -n "$STATE" ] || fail "vmctl list does not show $1"
}
expect_not_listed() {
	list_state "$1" || fail "vmctl list failed"
	[ -z "$STATE" ] || fail "vmctl list still shows $1 ($STATE)"
}
# LISTING := names and states of `vmctl list` (addresses may change under us).
LISTING=
list_names_states() {
	vmctl list
	[ "$RC" -eq 0 ] || fail "vmctl list failed"
	LISTING=$(printf '%s\n' "$OUT" | awk 'NR > 1 { print $1, $2 }')
}

# wait_until SECONDS CMD...: retry CMD every second until it succeeds.
wait_until() {
	local limit=$1 start
	shift
	start=$(date +%s)
	until "$@"; do
		[ $(($(date +%s) - start)) -lt "$limit" ] || return 1
		sleep 1
	done
}

state_is() { list_state "$1" && [ "$STATE" = "$2" ]; }

launch_fast() { vmctl launch "$FAST_IMAGE" --name "$1" --timeout "$FAST_TIMEOUT" "${@:2}"; }
launch_full() { vmctl launch "$FULL_IMAGE" --name "$1" --timeout "$FULL_TIMEOUT" "${@:2}"; }

# The kernel release the test images boot (written by tools/build-image.sh).
image_kernel_release() { cat "$IMAGES/kernel-release"; }

e2e_log "data folder $VMCTL_DATA"
