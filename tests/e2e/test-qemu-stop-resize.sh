#!/usr/bin/env bash
# Delayed stop (stop --time, --cancel) and resizing a stopped instance
# (set local.NAME.cpus|memory|disk) on a real guest.
. "$(dirname "$0")/lib.sh"

# The whole STATE column: "Delayed shutdown" has a space.
full_state() {
	vmctl list
	[ "$RC" -eq 0 ] || return 1
	STATE=$(printf '%s\n' "$OUT" | awk -v n="$1" '$1 == n { print $2 ($3 == "shutdown" ? " " $3 : ""); exit }')
}

launch_fast rs
expect_rc 0

vmctl stop --time 1 rs
expect_rc 0
full_state rs
[ "$STATE" = "Delayed shutdown" ] || fail "list shows rs as '$STATE' after stop --time 1"
vmctl info rs
expect_rc 0
expect_out 'State: +Delayed shutdown'
vmctl stop --cancel rs
expect_rc 0
full_state rs
[ "$STATE" = Running ] || fail "list shows rs as '$STATE' after stop --cancel"

vmctl stop --time 1 rs
expect_rc 0
started=$(date +%s)
wait_until 240 state_is rs Stopped || fail "rs did not stop within 4 minutes of stop --time 1"
waited=$(($(date +%s) - started))
[ "$waited" -ge 55 ] || fail "rs stopped after $waited s, before its minute was up"

vmctl set local.rs.disk=1G
expect_error 'can only grow'
expect_rc 2
vmctl set local.rs.cpus=2
expect_rc 0
vmctl set local.rs.memory=1536M
expect_rc 0
vmctl set local.rs.disk=7G
expect_rc 0
vmctl get local.rs.disk
expect_rc 0
[ "$OUT" = 7.0GiB ] || fail "get local.rs.disk says '$OUT'"

vmctl start rs --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl set local.rs.cpus=1
expect_error 'needs it stopped'
vmctl exec rs -- sh -c 'nproc; awk "/MemTotal/ { print int(\$2 / 1024) }" /proc/meminfo; cat /sys/block/vda/size'
expect_rc 0
set -- $OUT
[ "${1:-}" = 2 ] || fail "the guest has ${1:-?} CPUs, expected 2"
[ "${2:-0}" -gt 1200 ] && [ "${2:-0}" -le 1536 ] || fail "the guest has ${2:-?} MiB, expected about 1536"
[ "${3:-0}" -eq $((7 * 1024 * 1024 * 2)) ] || fail "the guest's disk has ${3:-?} sectors, expected 7 GiB"

e2e_log PASS
