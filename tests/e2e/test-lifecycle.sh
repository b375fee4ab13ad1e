#!/usr/bin/env bash
# The life of one instance as a user drives it: launch, exec, stop, start,
# delete, recover, purge, each step checked through `vmctl list` and exec.
. "$(dirname "$0")/lib.sh"

release=$(image_kernel_release)
[ -n "$release" ] || fail "no kernel-release beside the images"

launch_fast life
expect_rc 0
expect_state life Running
# The guest's address shows in list (user-mode networking gives 10.0.2.15).
vmctl list
expect_out '^life +Running +10\.0\.2\.15 '

vmctl exec life -- uname -r
expect_rc 0
[ "$OUT" = "$release" ] || fail "uname -r printed '$OUT', expected '$release'"

vmctl stop life
expect_rc 0
expect_state life Stopped
[ -z "$(qemu_pids)" ] || fail "a QEMU process is still running after stop"

vmctl start life --timeout "$FAST_TIMEOUT"
expect_rc 0
expect_state life Running
vmctl exec life -- uname -r
expect_rc 0
[ "$OUT" = "$release" ] || fail "after restart, uname -r printed '$OUT'"

vmctl delete life
expect_rc 0
expect_state life Deleted
[ -z "$(qemu_pids)" ] || fail "a QEMU process is still running after delete"

vmctl recover life
expect_rc 0
expect_state life Stopped

vmctl delete --purge life
expect_rc 0
expect_not_listed life
[ ! -e "$VMCTL_DATA/scopes/qemu/instances/life" ] ||
	fail "the instance folder is still there after delete --purge"

e2e_log PASS
