#!/usr/bin/env bash
# A launch whose VM dies ends at once with a message naming the console log
# and keeps the instance; `stop --force`, `delete` and `delete --purge` cancel
# a launch in progress, and the waiting launch says so. Every launch runs
# under `timeout 120` with a much longer --timeout: one that only ends at its
# deadline fails the test (status 124) rather than hanging it.
. "$(dirname "$0")/lib.sh"

# launch_bg NAME: start a launch in the background (LPID), its stderr in $E2E_TMP/NAME.err.
LPID=
launch_bg() {
	e2e_log "\$ vmctl launch $FAST_IMAGE --name $1 --timeout 600 &"
	timeout 120 "$VMCTL" launch "$FAST_IMAGE" --name "$1" --timeout 600 \
		>"$E2E_TMP/$1.out" 2>"$E2E_TMP/$1.err" </dev/null &
	LPID=$!
}
# progress_says NAME TEXT: the launch of NAME has shown TEXT.
progress_says() { grep -qF -- "$2" "$E2E_TMP/$1.err"; }
# launch_end NAME: wait for the background launch; its status in RC, stderr in ERR.
launch_end() {
	wait "$LPID"
	RC=$?
	ERR=$(cat "$E2E_TMP/$1.err")
	printf '%s\n' "$ERR" | sed 's/^/  err| /' >&2
	e2e_log "  the launch of $1 ended with status $RC"
	[ "$RC" -ne 124 ] || fail "the launch of $1 only ended when timeout killed it"
}
# QEMU of instance NAME (its command line names the instance folder).
qemu_pid_of() {
	local p
	for p in $(qemu_pids); do
		grep -qzF "$VMCTL_DATA/scopes/qemu/instances/$1/" "/proc/$p/cmdline" 2>/dev/null && echo "$p"
	done
}

# 1. QEMU killed while the launch waits for SSH.
launch_bg doomed
wait_until 120 progress_says doomed "Waiting for doomed to answer SSH" ||
	fail "the launch of doomed never got to waiting for SSH"
pid=$(qemu_pid_of doomed)
[ -n "$pid" ] || fail "no QEMU process for doomed"
e2e_log "kill -9 of QEMU $pid"
kill -9 $pid
launch_end doomed
expect_error 'doomed stopped before it answered SSH'
expect_err 'no longer running'
expect_err "console log is $VMCTL_DATA/scopes/qemu/instances/doomed/console.log"
expect_err 'instance is kept'
expect_state doomed Stopped
vmctl delete --purge doomed
expect_rc 0
expect_not_listed doomed

# 2. stop --force while the launch waits for SSH.
launch_bg forced
wait_until 120 progress_says forced "Waiting for forced to answer SSH" ||
	fail "the launch of forced never got to waiting for SSH"
vmctl stop --force forced
expect_rc 0
launch_end forced
expect_error 'launch of forced was cancelled by vmctl stop --force'
expect_state forced Stopped
[ -z "$(qemu_pid_of forced)" ] || fail "QEMU of forced still runs after stop --force"

# 3. delete while the launch waits for SSH.
launch_bg dropped
wait_until 120 progress_says dropped "Waiting for dropped to answer SSH" ||
	fail "the launch of dropped never got to waiting for SSH"
vmctl delete dropped
expect_rc 0
launch_end dropped
expect_error 'launch of dropped was cancelled by vmctl delete'
expect_state dropped Deleted
[ -z "$(qemu_pid_of dropped)" ] || fail "QEMU of dropped still runs after delete"

# 4. delete --purge as soon as the instance is recorded, while a step of the
# launch (seed, create or start) may still be in flight: whichever it is,
# the launch ends cancelled and nothing is left.
launch_bg early
wait_until 120 progress_says early "Creating early" ||
	fail "the launch of early never got to creating the instance"
vmctl delete --purge early
expect_rc 0
launch_end early
expect_error 'launch of early was cancelled by vmctl delete --purge'
expect_not_listed early
[ ! -e "$VMCTL_DATA/scopes/qemu/instances/early" ] || fail "the folder of early was left behind"
[ -z "$(qemu_pid_of early)" ] || fail "QEMU of early still runs after delete --purge"

# A plain stop is refused while a launch holds the instance, saying what cancels it.
launch_bg patient
wait_until 120 progress_says patient "Waiting for patient to answer SSH" ||
	fail "the launch of patient never got to waiting for SSH"
vmctl stop patient
expect_error 'being launched.*stop --force'
vmctl delete --purge patient
expect_rc 0
launch_end patient
expect_error 'cancelled'
expect_not_listed patient

e2e_log PASS
