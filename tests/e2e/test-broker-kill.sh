#!/usr/bin/env bash
# `kill -9` of vmctld loses nothing: the next vmctl command starts a new
# broker, which still knows the instance, and the VM kept running.
. "$(dirname "$0")/lib.sh"

launch_fast keeper
expect_rc 0
expect_state keeper Running

qemu=$(qemu_pids)
[ -n "$qemu" ] || fail "no QEMU process found for the instance"
broker=$(broker_pids)
[ -n "$broker" ] || fail "no vmctld process found"
e2e_log "killing broker $broker (QEMU $qemu)"
# shellcheck disable=SC2086
kill -KILL $broker
sleep 1
alive "$qemu" || fail "QEMU died with the broker"

# The first command after the crash brings the broker back by itself.
vmctl list
expect_rc 0
expect_out '^keeper '
new_broker=$(broker_pids)
[ -n "$new_broker" ] || fail "no broker runs after vmctl list"
[ "$new_broker" != "$broker" ] || fail "the killed broker is still there"

wait_until 60 state_is keeper Running ||
	fail "keeper is not listed Running after the broker restart (last: '$STATE')"
[ "$(qemu_pids)" = "$qemu" ] || fail "QEMU was restarted (was $qemu, now $(qemu_pids))"

vmctl exec keeper -- echo still here
expect_rc 0
[ "$OUT" = "still here" ] || fail "exec after the broker restart printed '$OUT'"

e2e_log PASS
