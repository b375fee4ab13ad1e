#!/usr/bin/env bash
# A VM never dies because its helper did: after `kill -9` of the qemu helper,
# the QEMU process keeps running and the instance is listed Running again
# once the broker has restarted the helper.
. "$(dirname "$0")/lib.sh"

launch_fast survivor
expect_rc 0
expect_state survivor Running

qemu=$(qemu_pids)
[ -n "$qemu" ] || fail "no QEMU process found for the instance"
helper=$(helper_pids)
[ -n "$helper" ] || fail "no vmctl-qemu-helper process found"
e2e_log "killing helper $helper (QEMU $qemu)"
# shellcheck disable=SC2086
kill -KILL $helper

sleep 1
alive "$qemu" || fail "QEMU died with its helper"

wait_until 60 state_is survivor Running ||
	fail "the instance is not listed Running after the helper was killed (last: '$STATE')"
new_helper=$(helper_pids)
[ -n "$new_helper" ] || fail "no helper is running after the restart"
[ "$new_helper" != "$helper" ] || fail "the killed helper is still listed"
[ "$(qemu_pids)" = "$qemu" ] || fail "QEMU was restarted (was $qemu, now $(qemu_pids))"

vmctl exec survivor -- echo alive
expect_rc 0
[ "$OUT" = alive ] || fail "exec after the helper restart printed '$OUT'"

# The restarted helper still controls the VM.
vmctl stop survivor
expect_rc 0
expect_state survivor Stopped
alive "$qemu" && fail "QEMU still runs after stop"

e2e_log PASS
