#!/usr/bin/env bash
# qemu -> lxd -> qemu -> lxd with a running instance in each scope (a
# private LXD, tests/e2e/lxd/lxdlib.sh): each is running again when its
# scope comes back, and it is the same instance. qemu suspends on leaving,
# so a process started before the switch is still there; lxd has no
# suspend, its container is stopped and started again, so a file it wrote
# on its disk is still there.
. "$(dirname "$0")/lxd/lxdlib.sh"
. "$(dirname "$0")/lib.sh"
lxd_start

q=swq$$
l=swl$$
LXD_TIMEOUT=${E2E_LXD_TIMEOUT:-300}
lxc_status() { lxc list --format csv -c ns "^$1\$" 2>/dev/null | awk -F, -v n="$1" '$1 == n { print $2 }'; }
# SCOPE_ROW := "STATE SCOPE DRIVER" of NAME in `vmctl list --all-scopes`.
scope_row() {
	vmctl list --all-scopes
	expect_rc 0
	SCOPE_ROW=$(printf '%s\n' "$OUT" | awk -v n="$1" '$1 == n { print $2, $(NF-1), $NF }')
}

vmctl set local.lxd.socket="$LXD_SOCKET"
expect_rc 0
vmctl get local.driver
expect_rc 0
[ "$OUT" = qemu ] || fail "the driver is '$OUT' at the start, not qemu"
launch_fast "$q"
expect_rc 0
vmctl exec "$q" -- sh -c 'setsid sleep 424242 </dev/null >/dev/null 2>&1 & echo $!'
expect_rc 0
qpid=$OUT
[ -n "$qpid" ] || fail "no pid for the sleeper in $q"

# qemu -> lxd: q is suspended (no QEMU left), the lxd scope starts empty.
vmctl set local.driver=lxd
expect_rc 0
[ -z "$(qemu_pids)" ] || fail "a QEMU process runs after leaving the qemu scope"
scope_row "$q"
[ "$SCOPE_ROW" = "Suspended qemu qemu" ] || fail "list --all-scopes shows $q as '$SCOPE_ROW'"
vmctl launch "$LXD_IMAGE" --name "$l" --timeout "$LXD_TIMEOUT"
expect_rc 0
vmctl exec "$l" -- stat -f -c %T /var/tmp
expect_rc 0
[ "$OUT" != tmpfs ] || fail "/var/tmp of the container is a tmpfs: the mark would not survive a stop"
mark=made-before-the-switch-$$
vmctl exec "$l" -- sh -c "echo $mark >/var/tmp/mark && sync"
expect_rc 0

# lxd -> qemu: l is stopped (lxd cannot suspend), q resumes with its sleeper.
vmctl set local.driver=qemu
expect_rc 0
[ "$(lxc_status "$l")" = STOPPED ] || fail "LXD says $l is '$(lxc_status "$l")' after leaving the lxd scope"
wait_until 120 state_is "$q" Running || fail "$q is not running again after coming back to qemu"
vmctl exec "$q" -- sh -c "tr '\\0' ' ' </proc/$qpid/cmdline"
expect_rc 0
[ "$OUT" = "sleep 424242 " ] || fail "process $qpid in $q is not the sleeper after the switch back ('$OUT')"
scope_row "$l"
[ "$SCOPE_ROW" = "Stopped lxd lxd" ] || fail "list --all-scopes shows $l as '$SCOPE_ROW'"

# qemu -> lxd again: l is started again with its file.
vmctl set local.driver=lxd
expect_rc 0
wait_until 120 state_is "$l" Running || fail "$l is not running again after coming back to lxd"
[ "$(lxc_status "$l")" = RUNNING ] || fail "LXD says $l is '$(lxc_status "$l")'"
# Running is the container's state; its sshd comes up a moment later.
read_mark() { vmctl exec "$l" -- cat /var/tmp/mark && [ "$RC" -eq 0 ]; }
wait_until 120 read_mark || fail "cannot read /var/tmp/mark of $l after coming back to lxd"
[ "$OUT" = "$mark" ] || fail "/var/tmp/mark of $l holds '$OUT', not '$mark'"
scope_row "$q"
[ "$SCOPE_ROW" = "Suspended qemu qemu" ] || fail "list --all-scopes shows $q as '$SCOPE_ROW'"

e2e_log PASS
