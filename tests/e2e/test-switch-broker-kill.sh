#!/usr/bin/env bash
# The broker killed (SIGKILL) in the middle of a driver switch: the next
# command's broker finishes or undoes it from DATA/switch.journal, so that
# every instance is as it was and local.driver says where they are.
#  1. Killed while an instance is being brought to rest (its QEMU frozen so
#     that the suspend is still going on): undone, local.driver stays qemu,
#     a runs on (the same boot), b stays stopped.
#  2. Killed once every instance was at rest and the helpers were being
#     swapped (the files as such a broker leaves them: the journal says
#     "swapping", the scope left recorded, local.driver not yet saved):
#     finished, local.driver is stub; switching back resumes a.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/switch/stublib.sh"
stub_install
log=$VMCTL_DATA/vmctld.log
journal=$VMCTL_DATA/switch.journal

launch_fast a
expect_rc 0
launch_fast b
expect_rc 0
vmctl stop b
expect_rc 0
boot_id a
boot_a=$BOOT

# 1. Killed while bringing a to rest.
pid_a=$(qemu_pid_of a)
[ -n "$pid_a" ] || fail "no QEMU process for a"
frozen=$pid_a
thaw() { [ -z "$frozen" ] || kill -CONT "$frozen" 2>/dev/null; frozen=; }
trap 'rc=$?; thaw; (exit $rc); e2e_cleanup' EXIT
kill -STOP "$pid_a"
broker=$(broker_pids)
[ -n "$broker" ] || fail "no broker"
"$VMCTL" set local.driver=stub >"$E2E_TMP/set.out" 2>&1 &
set_pid=$!
wait_until 60 grep -q 'bringing 1 instance(s) to rest' "$log" ||
	fail "the broker never said it was bringing the instances to rest"
[ -s "$journal" ] || fail "no switch journal while the switch is going on"
grep -q '^phase resting$' "$journal" || fail "the journal says: $(cat "$journal")"
kill -KILL $broker
wait "$set_pid"
st=$?
e2e_log "the interrupted set said: $(cat "$E2E_TMP/set.out") (status $st)"
[ "$st" -ne 0 ] || fail "vmctl set succeeded while its broker was killed"
thaw
broker_gone() { ! alive "$broker"; }
wait_until 30 broker_gone || fail "the broker survived SIGKILL"

vmctl get local.driver
expect_rc 0
[ "$OUT" = qemu ] || fail "local.driver is '$OUT' after the interrupted switch was undone"
grep -q 'was interrupted while its instances were brought to rest: undoing it' "$log" ||
	fail "the new broker does not say it undid the switch"
[ ! -e "$journal" ] || fail "the journal is left: $(cat "$journal")"
wait_until 120 state_is a Running || fail "a is not running after the undone switch"
expect_state b Stopped
boot_id a
[ "$BOOT" = "$boot_a" ] || fail "a booted again ($boot_a, now $BOOT)"
[ "$(qemu_pid_of a)" = "$pid_a" ] || fail "a's QEMU is not the one it had ($pid_a, now $(qemu_pid_of a))"
[ -z "$(qemu_pid_of b)" ] || fail "b was started by the undone switch"
[ "$(helper_pids | wc -l)" -eq 1 ] || fail "qemu helpers running: $(helper_pids | tr '\n' ' ')"

# 2. Killed while swapping helpers: the real switch leaves these files but
# for local.driver, saved and the journal removed right after.
vmctl set local.driver=stub
expect_rc 0
kill -KILL $(broker_pids)
no_broker() { [ -z "$(broker_pids)" ]; }
wait_until 30 no_broker || fail "the broker survived SIGKILL"
sed -i 's/^local\.driver: .*/local.driver: qemu/' "$VMCTL_DATA/settings.yaml"
cat >"$journal" <<EOT
from qemu qemu
to stub stub
phase swapping
instance a running suspend done
instance b stopped none pending
EOT
vmctl list
expect_rc 0
grep -q 'was interrupted after its instances were at rest: finishing it' "$log" ||
	fail "the new broker does not say it finished the switch"
[ ! -e "$journal" ] || fail "the journal is left: $(cat "$journal")"
vmctl get local.driver
expect_rc 0
[ "$OUT" = stub ] || fail "local.driver is '$OUT' after the interrupted switch was finished"
[ -z "$(qemu_pids)" ] || fail "a QEMU runs while the stub driver is active"
vmctl set local.driver=qemu
expect_rc 0
wait_until 120 state_is a Running || fail "a is not running again after coming back to qemu"
expect_state b Stopped
boot_id a
[ "$BOOT" = "$boot_a" ] || fail "a booted again ($boot_a, now $BOOT) instead of being resumed"

e2e_log PASS
