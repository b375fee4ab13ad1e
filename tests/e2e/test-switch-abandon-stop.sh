#!/usr/bin/env bash
# A switch to another driver of the same scope stops its instances (one
# driver cannot resume the other's saved state). A guest that ignores the
# ACPI power button (b: its acpid killed) is not powered off by force: the
# switch gives it VMCTL_SWITCH_REST_TIMEOUT seconds, then is abandoned,
# naming b; a, already stopped by it, is started again; local.driver stays
# qemu and b runs on untouched (the same boot).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/switch/stublib.sh"
stub_install stubq qemu
export VMCTL_SWITCH_REST_TIMEOUT=10

launch_fast a
expect_rc 0
launch_fast b
expect_rc 0
vmctl exec b -- sudo pkill -f '[a]cpid -c'
expect_rc 0
boot_id b
boot_b=$BOOT
pid_b=$(qemu_pid_of b)

vmctl set local.driver=stubq
expect_error 'could not stop b before switching drivers: .*did not power off within 10 s'
expect_err 'the switch to the stubq driver is abandoned: running again: a, local.driver is still qemu'
grep -q 'b: the guest did not power off within 10 s; forcing it' "$VMCTL_DATA/vmctld.log" &&
	fail "the qemu helper forced b off"

vmctl get local.driver
expect_rc 0
[ "$OUT" = qemu ] || fail "local.driver is '$OUT' after the abandoned switch"
expect_state a Running
expect_state b Running
[ "$(qemu_pid_of b)" = "$pid_b" ] || fail "b's QEMU is not the one it had"
boot_id b
[ "$BOOT" = "$boot_b" ] || fail "b booted again ($boot_b, now $BOOT)"
a_up() { vmctl exec a -- true && [ "$RC" -eq 0 ]; }
wait_until 120 a_up || fail "a does not answer after being started again"
[ ! -e "$VMCTL_DATA/switch.journal" ] || fail "the switch journal is left: $(cat "$VMCTL_DATA/switch.journal")"

e2e_log PASS
