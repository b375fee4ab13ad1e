#!/usr/bin/env bash
# A switch that cannot bring an instance to rest is abandoned: a's guest is
# suspended, b's QEMU is frozen (SIGSTOP: its monitor never answers, so it
# cannot be suspended); the switch fails naming b, a is running again (the
# same boot, resumed, not booted again), local.driver is still qemu, and
# nothing of the switch is left behind. Then switches that go through: each
# instance comes back as it was (running resumed, suspended, stopped).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/switch/stublib.sh"
stub_install

launch_fast a
expect_rc 0
launch_fast b
expect_rc 0
boot_id a
boot_a=$BOOT
pid_b=$(qemu_pid_of b)
[ -n "$pid_b" ] || fail "no QEMU process for b"
frozen=$pid_b
thaw() { [ -z "$frozen" ] || kill -CONT "$frozen" 2>/dev/null; frozen=; }
trap 'rc=$?; thaw; (exit $rc); e2e_cleanup' EXIT
kill -STOP "$pid_b"

vmctl set local.driver=stub
expect_error 'could not suspend b before switching drivers'
expect_err 'the switch to the stub driver is abandoned: running again: a, local.driver is still qemu'
expect_no_out .
thaw

vmctl get local.driver
expect_rc 0
[ "$OUT" = qemu ] || fail "local.driver is '$OUT' after the abandoned switch"
vmctl version
expect_rc 0
expect_out 'driver +qemu'
expect_state a Running
expect_state b Running
boot_id a
[ "$BOOT" = "$boot_a" ] || fail "a booted again ($boot_a, now $BOOT) instead of being resumed"
vmctl exec b -- true
expect_rc 0
[ ! -e "$VMCTL_DATA/switch.journal" ] || fail "the switch journal is left: $(cat "$VMCTL_DATA/switch.journal")"
grep -q 'switch_state' "$VMCTL_DATA/scopes/qemu/instances.yaml" &&
	fail "instances.yaml keeps a switch_state after the abandoned switch"

# With nothing frozen the switch goes through, and coming back restores
# each instance as it was: a running one resumed (the same boot), a
# suspended one still suspended, then a stopped one still stopped.
vmctl suspend b
expect_rc 0
round_trip() {
	vmctl set local.driver=stub
	expect_rc 0
	# The empty scope says where the instances are, and which driver had them.
	vmctl list
	expect_rc 0
	[ "$OUT" = "No instances in the stub scope; 2 in the qemu scope, see --all-scopes." ] ||
		fail "vmctl list in the empty stub scope says '$OUT'"
	vmctl list --all-scopes
	expect_rc 0
	expect_out '^Name +State +IPv4 +Image +Scope +Driver$'
	expect_out '^a +Suspended +-- +file://[^ ]+ +qemu +qemu$'
	expect_out '^b +(Suspended|Stopped) +-- +file://[^ ]+ +qemu +qemu$'
	vmctl set local.driver=qemu
	expect_rc 0
	wait_until 120 state_is a Running || fail "a is not running again after coming back to qemu"
	boot_id a
	[ "$BOOT" = "$boot_a" ] || fail "a booted again ($boot_a, now $BOOT) instead of being resumed"
}
round_trip
expect_state b Suspended
[ -z "$(qemu_pid_of b)" ] || fail "b has a QEMU process while it should be suspended"
vmctl stop --force b
expect_rc 0
expect_state b Stopped
round_trip
expect_state b Stopped
vmctl list --all-scopes
expect_rc 0
expect_out '^a +Running +[0-9.]+ +file://[^ ]+ +qemu +qemu$'

[ -z "$(qemu_pid_of b)" ] || fail "b has a QEMU process while it should be stopped"
e2e_log PASS
