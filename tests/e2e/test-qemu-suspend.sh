#!/usr/bin/env bash
# Suspend on a real guest: the QEMU process exits, the state is kept in the
# instance's disk, and start resumes it: a process started before the
# suspend is still running, and the guest did not boot again.
. "$(dirname "$0")/lib.sh"

launch_fast sus
expect_rc 0
vmctl exec sus -- sh -c 'setsid sleep 424242 </dev/null >/dev/null 2>&1 & echo $!'
expect_rc 0
pid=$OUT
[ -n "$pid" ] || fail "no pid for the guest's sleeper"
vmctl exec sus -- cut -d. -f1 /proc/uptime
expect_rc 0
up_before=$OUT

vmctl suspend sus
expect_rc 0
expect_state sus Suspended
[ -z "$(qemu_pids)" ] || fail "a QEMU process is still running after suspend"

vmctl start sus --timeout "$FAST_TIMEOUT"
expect_rc 0
expect_state sus Running
vmctl exec sus -- sh -c "tr '\\0' ' ' </proc/$pid/cmdline"
expect_rc 0
[ "$OUT" = "sleep 424242 " ] ||
	fail "process $pid is not the sleeper after resume (cmdline '$OUT')"
vmctl exec sus -- cut -d. -f1 /proc/uptime
expect_rc 0
[ "$OUT" -ge "$up_before" ] || fail "the guest's uptime went from $up_before to $OUT: it booted again"

e2e_log PASS
