#!/usr/bin/env bash
# A delayed stop (stop --time) survives kill -9 of the broker: the next
# command's broker still shows it, can cancel it, and carries it out when its
# time comes; one that fell due while no broker ran is carried out as soon as
# a broker starts again. A cancel, a plain stop or a delete removes it for
# good.
. "$(dirname "$0")/lib.sh"

# The whole STATE column: "Delayed shutdown" has a space.
full_state() {
	vmctl list
	[ "$RC" -eq 0 ] || return 1
	STATE=$(printf '%s\n' "$OUT" | awk -v n="$1" '$1 == n { print $2 ($3 == "shutdown" ? " " $3 : ""); exit }')
}

# Kill the broker with SIGKILL and check it is gone (the VM keeps running).
kill_broker() {
	local broker
	broker=$(broker_pids)
	[ -n "$broker" ] || fail "no broker is running"
	e2e_log "killing broker $broker"
	# shellcheck disable=SC2086
	kill -KILL $broker
	wait_until 10 sh -c "! kill -0 $broker 2>/dev/null" || fail "broker $broker survived kill -9"
	[ -n "$(qemu_pids)" ] || fail "the VM died with the broker"
}

launch_fast sp
expect_rc 0

# Cancel after a restart.
vmctl stop --time 1 sp
expect_rc 0
first=$(broker_pids)
kill_broker
vmctl info sp
expect_rc 0
expect_out 'State: +Delayed shutdown'
[ "$(broker_pids)" != "$first" ] || fail "no new broker was started"
vmctl stop --cancel sp
expect_rc 0
expect_no_out 'no delayed stop'
[ -z "$ERR" ] || fail "stop --cancel warned: $ERR"
full_state sp
[ "$STATE" = Running ] || fail "list shows sp as '$STATE' after stop --cancel"
# The cancellation itself survives a restart too.
kill_broker
full_state sp
[ "$STATE" = Running ] || fail "after a restart list shows sp as '$STATE', the cancelled stop came back"

# Carried out on time by the restarted broker.
vmctl stop --time 1 sp
expect_rc 0
started=$(date +%s)
kill_broker
vmctl info sp
expect_rc 0
expect_out 'State: +Delayed shutdown'
wait_until 240 state_is sp Stopped || fail "sp did not stop within 4 minutes of stop --time 1"
waited=$(($(date +%s) - started))
[ "$waited" -ge 55 ] || fail "sp stopped after $waited s, before its minute was up"

# Fallen due while no broker ran: carried out at the broker's start.
vmctl start sp --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl stop --time 1 sp
expect_rc 0
kill_broker
e2e_log "waiting 65 s with no broker"
sleep 65
# The broker that starts now finds it overdue and carries it out at once,
# rather than giving it a new minute: its log says so (how soon the stop
# then ends is the guest's business, not a bound of this test).
overdue=$(grep -c 'sp: delayed stop due in 0 s' "$VMCTL_DATA/vmctld.log")
vmctl version
expect_rc 0
[ "$(grep -c 'sp: delayed stop due in 0 s' "$VMCTL_DATA/vmctld.log")" -gt "$overdue" ] ||
	fail "the broker did not find the stop of sp overdue: $(grep 'sp: delayed stop' "$VMCTL_DATA/vmctld.log")"
wait_until 240 state_is sp Stopped || fail "the overdue stop of sp was not carried out at the broker's start"

# A plain stop removes a pending one: restarted later, nothing stops sp.
vmctl start sp --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl stop --time 1 sp
expect_rc 0
vmctl stop sp
expect_rc 0
vmctl start sp --timeout "$FAST_TIMEOUT"
expect_rc 0
kill_broker
full_state sp
[ "$STATE" = Running ] || fail "after a plain stop, a start and a restart sp is '$STATE'"

# So does a delete: recovered and started again, sp has no pending stop.
vmctl stop --time 1 sp
expect_rc 0
vmctl delete sp
expect_rc 0
vmctl recover sp
expect_rc 0
vmctl start sp --timeout "$FAST_TIMEOUT"
expect_rc 0
full_state sp
[ "$STATE" = Running ] || fail "after delete, recover and start sp is '$STATE'"
kill_broker
full_state sp
[ "$STATE" = Running ] || fail "after delete, recover, start and a restart sp is '$STATE'"

e2e_log PASS
