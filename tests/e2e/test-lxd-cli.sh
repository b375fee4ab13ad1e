#!/usr/bin/env bash
# vmctl on the lxd driver as a user drives it, against a private LXD
# (tests/e2e/lxd/lxdlib.sh): launch from the locally built container image
# (real systemd and cloud-init), an unreachable socket, exec, info, stop, start, restart, the
# features LXD's row lacks refused naming qemu, a qemu disk refused, delete
# --purge leaving nothing in LXD, and drift (an instance stopped and deleted
# with lxc behind vmctl's back, the stop heard by LXD's event stream).
. "$(dirname "$0")/lxd/lxdlib.sh"
. "$(dirname "$0")/lib.sh"
lxd_start

n=lxt$$
LXD_TIMEOUT=${E2E_LXD_TIMEOUT:-300}
lxc_status() { lxc list --format csv -c ns "^$1\$" 2>/dev/null | awk -F, -v n="$1" '$1 == n { print $2 }'; }

# A socket nobody answers on: the driver is unusable and says why.
vmctl set local.lxd.socket="$LXD_RUN/none.socket"
expect_rc 0
# Refused before anything changes, with the helper's reason.
vmctl set local.driver=lxd
expect_error "cannot switch to the lxd driver: .*LXD socket $LXD_RUN/none.socket: .*is lxd running\?; local.driver is still qemu"
vmctl get local.driver
expect_out '^qemu$'
vmctl drivers
expect_out "^lxd: the lxd driver cannot run on this host: LXD socket $LXD_RUN/none.socket: .*is lxd running\?$"

# A socket that takes connections and never answers (a hung daemon): the
# hello is not held for it, the driver is taken as usable and the log says why.
/usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
held = []
while True:
    held.append(s.accept()[0])
' "$LXD_RUN/mute.socket" &
MUTE_PID=$!
wait_until 10 test -S "$LXD_RUN/mute.socket" || fail "the mute socket did not appear"
vmctl set local.lxd.socket="$LXD_RUN/mute.socket"
expect_rc 0
vmctl set local.driver=lxd
expect_rc 0
wait_until 30 grep -q "mute.socket took the connection but did not answer within 1 s" \
	"$VMCTL_DATA/vmctld.log" || fail "the lxd helper did not say that LXD does not answer"
vmctl version
expect_rc 0
expect_no_out 'helper unusable'
vmctl set local.driver=qemu
expect_rc 0
kill "$MUTE_PID"
wait "$MUTE_PID" 2>/dev/null

vmctl set local.lxd.socket="$LXD_SOCKET"
expect_rc 0
vmctl set local.driver=lxd
expect_rc 0
vmctl version
expect_rc 0
expect_out 'driver +lxd'

vmctl launch "$LXD_IMAGE" --name "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
expect_state "$n" Running
expect_out "$n +Running +10\.99\.0\.[0-9]+"
[ "$(lxc_status "$n")" = RUNNING ] || fail "LXD says $n is '$(lxc_status "$n")'"
vmctl exec "$n" -- hostname
expect_rc 0
[ "$OUT" = "$n" ] || fail "hostname in the container is '$OUT'"
vmctl exec "$n" -- cloud-init status
expect_rc 0
expect_out 'status: done'
vmctl info "$n"
expect_rc 0
expect_out 'IPv4: +10\.99\.0\.[0-9]+'
# The resources given at launch are LXD's limits.
[ "$(lxc config get "$n" limits.cpu)" = 1 ] || fail "limits.cpu is '$(lxc config get "$n" limits.cpu)'"
[ "$(lxc config get "$n" limits.memory)" = 1073741824 ] ||
	fail "limits.memory is '$(lxc config get "$n" limits.memory)'"

# Not in LXD's row of the drivers table.
vmctl snapshot "$n"
expect_error 'qemu'
vmctl clone "$n"
expect_error 'qemu'
vmctl suspend "$n"
expect_error 'qemu'
[ "$(lxc_status "$n")" = RUNNING ] || fail "a refused command changed $n: $(lxc_status "$n")"

# The bridges LXD can attach instances to.
vmctl networks
expect_rc 0
expect_out "$LXD_BRIDGE +bridge"

# A disk image is not a container image.
vmctl launch "$FAST_IMAGE" --name "${n}q" --timeout 60
expect_error 'container image'
[ -z "$(lxc_status "${n}q")" ] || fail "LXD has ${n}q after a refused launch"

vmctl stop "$n"
expect_rc 0
expect_state "$n" Stopped
[ "$(lxc_status "$n")" = STOPPED ] || fail "LXD says $n is '$(lxc_status "$n")' after stop"
vmctl start "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
expect_state "$n" Running
vmctl restart "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
expect_state "$n" Running
vmctl exec "$n" -- hostname
expect_rc 0
[ "$OUT" = "$n" ] || fail "after a restart, hostname is '$OUT'"

vmctl delete --purge "$n"
expect_rc 0
expect_not_listed "$n"
[ -z "$(lxc_status "$n")" ] || fail "LXD still has $n after delete --purge"

# Drift: an instance deleted behind vmctl's back does not break the list.
d=${n}d
vmctl launch "$LXD_IMAGE" --name "$d" --timeout "$LXD_TIMEOUT"
expect_rc 0
grep -q "following LXD's lifecycle events" "$VMCTL_DATA/vmctld.log" ||
	fail "the lxd helper does not follow LXD's events"
stops_logged() { grep -c "$d is now stopped" "$VMCTL_DATA/vmctld.log"; }
stops=$(stops_logged)
lxc stop --force "$d" || fail "lxc stop $d failed"
# The broker hears of it from the helper, without a vmctl list, by LXD's event.
wait_until 30 eval '[ "$(stops_logged)" -gt "$stops" ]' || fail "the broker was not told that $d stopped"
grep -q "$d: LXD event instance-stopped" "$VMCTL_DATA/vmctld.log" ||
	fail "the helper did not hear LXD's event that $d stopped"
wait_until 30 state_is "$d" Stopped || fail "with $d stopped in LXD, list shows '$STATE', not Stopped"
vmctl list
expect_rc 0
expect_no_out "^$d: "
lxc delete --force "$d" || fail "lxc delete $d failed"
vmctl list
expect_rc 0
wait_until 30 state_is "$d" Unknown || fail "with $d deleted in LXD, list shows '$STATE', not Unknown"
grep -q "$d: LXD has no such instance" "$VMCTL_DATA/vmctld.log" ||
	fail "the broker's log does not say that LXD lost $d"
# The reason is the user's to see: a line under the table, a field elsewhere.
vmctl list
expect_rc 0
expect_out "^$d: LXD has no instance $d \\(deleted outside vmctl\\?\\)$"
vmctl list --format json
expect_rc 0
expect_out "\"reason\": \"LXD has no instance $d \\(deleted outside vmctl\\?\\)\""
vmctl list --format csv
expect_rc 0
expect_out "^Name,State,IPv4,Image,Reason$"
expect_out "^$d,Unknown,.*,LXD has no instance $d \\(deleted outside vmctl\\?\\)$"
vmctl info "$d"
expect_rc 0
expect_out "^Reason: +LXD has no instance $d \\(deleted outside vmctl\\?\\)$"
vmctl delete --purge "$d"
expect_rc 0
expect_not_listed "$d"
[ -z "$(lxc list --format csv -c n)" ] || fail "LXD has instances left: $(lxc list --format csv -c n)"
e2e_log "PASS (LXD $LXD_VERSION)"
