#!/usr/bin/env bash
# The LXD daemon going away while the lxd helper runs, against a private
# LXD (tests/e2e/lxd/lxdlib.sh): with it killed (its containers keep
# running), `vmctl list` answers with every instance Unknown and the reason
# naming the socket, calls fail saying so; started again, the helper's event
# stream comes back and the states are right again (a running instance
# Running, a stopped one Stopped), without a restart of anything of vmctl.
. "$(dirname "$0")/lxd/lxdlib.sh"
. "$(dirname "$0")/lib.sh"
lxd_start

n=lxg$$
s=${n}s
LXD_TIMEOUT=${E2E_LXD_TIMEOUT:-300}

vmctl set local.lxd.socket="$LXD_SOCKET"
expect_rc 0
vmctl set local.driver=lxd
expect_rc 0
vmctl launch "$LXD_IMAGE" --name "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
vmctl launch "$LXD_IMAGE" --name "$s" --timeout "$LXD_TIMEOUT"
expect_rc 0
vmctl stop "$s"
expect_rc 0
expect_state "$n" Running
expect_state "$s" Stopped
helper=$(e2e_pids_named vmctl-lxd-helpe)
[ -n "$helper" ] || fail "no lxd helper runs"
connects=$(grep -c "following LXD's lifecycle events" "$VMCTL_DATA/vmctld.log")

lxd_daemon_kill
not_reachable="LXD is not reachable: LXD socket $LXD_SOCKET: .*; is lxd running\\?"
# The answer comes from the helper (not the broker's wait for it), so the
# generous timeout is only there against a slow machine.
vmctl list --timeout 60
expect_rc 0
expect_no_out "did not answer"
[ -z "$ERR" ] || fail "list warned: $ERR" # none: the helper answered
state_is "$n" Unknown || fail "with LXD away, list shows $n as '$STATE', not Unknown"
state_is "$s" Unknown || fail "with LXD away, list shows $s as '$STATE', not Unknown"
vmctl list --timeout 60
expect_out "^$n: $not_reachable$"
expect_out "^$s: $not_reachable$"
vmctl info "$n" --timeout 60
expect_rc 0
expect_out "^Reason: +LXD socket $LXD_SOCKET: .*; is lxd running\\?$"
vmctl stop "$n" --timeout 60
expect_error "LXD socket $LXD_SOCKET: .*is lxd running\\?"
wait_until 30 grep -q "LXD's event stream: .*states are polled until it is back" \
	"$VMCTL_DATA/vmctld.log" || fail "the helper did not say that LXD's event stream is down"

lxd_daemon_run
# Back: the event stream connects again and the poll it makes puts the
# states right, with no vmctl command needed in between.
wait_until 60 eval '[ "$(grep -c "following LXD'"'"'s lifecycle events" "$VMCTL_DATA/vmctld.log")" -gt "$connects" ]' ||
	fail "the helper did not follow LXD's events again"
wait_until 60 grep -q "$n is now running" "$VMCTL_DATA/vmctld.log" ||
	fail "the broker was not told that $n is running again"
expect_state "$n" Running
expect_state "$s" Stopped
vmctl list
expect_no_out "^$n: "
expect_no_out "^$s: "
[ "$(e2e_pids_named vmctl-lxd-helpe)" = "$helper" ] || fail "the lxd helper was restarted"
vmctl exec "$n" -- hostname
expect_rc 0
[ "$OUT" = "$n" ] || fail "after LXD came back, hostname in $n is '$OUT'"

vmctl delete --purge "$n" "$s"
expect_rc 0
[ -z "$(lxc list --format csv -c n)" ] || fail "LXD has instances left: $(lxc list --format csv -c n)"
e2e_log "PASS (LXD $LXD_VERSION)"
