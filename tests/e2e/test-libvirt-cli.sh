#!/usr/bin/env bash
# vmctl on the libvirt driver as a user drives it: launch, exec, suspend and
# resume keeping a process, stop/start, unsupported features, libvirtd
# killed and restarted under a running instance, delete/recover/purge.
. "$(dirname "$0")/libvirt/lvns.sh"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt/lvlib.sh"

img=$(lv_image fast)
n=${LVT_PREFIX}c
domstate() { virsh -q domstate "vmctl-$1" 2>/dev/null; }

vmctl set local.driver=libvirt
expect_rc 0
vmctl version
expect_rc 0
expect_out 'driver +libvirt'

vmctl launch "$img" --name "$n" --timeout "$FAST_TIMEOUT"
expect_rc 0
expect_state "$n" Running
[ "$(domstate "$n")" = running ] || fail "libvirt does not run vmctl-$n"
vmctl info "$n"
expect_rc 0
expect_out 'IPv4: +10\.98\.0\.[0-9]+'
vmctl exec "$n" -- hostname
expect_rc 0
[ "$OUT" = "$n" ] || fail "hostname in the guest is '$OUT'"

# suspend = libvirt managed save; start restores it with its processes.
vmctl exec "$n" -- sh -c 'nohup sleep 100000 >/dev/null 2>&1 & echo $!'
expect_rc 0
sleeper=$OUT
vmctl suspend "$n"
expect_rc 0
expect_state "$n" Suspended
virsh -q dominfo "vmctl-$n" | grep -q 'Managed save: *yes' || fail "no managed save image"
vmctl start "$n" --timeout "$FAST_TIMEOUT"
expect_rc 0
expect_state "$n" Running
vmctl exec "$n" -- sh -c "kill -0 $sleeper && echo alive"
expect_rc 0
[ "$OUT" = alive ] || fail "the process started before suspend did not survive it"

# libvirtd goes away under the running instance and comes back.
lv_stop_daemon libvirtd KILL
wait_until 30 state_is "$n" Unknown || fail "with libvirtd gone, list shows '$STATE', not Unknown"
vmctl stop "$n"
expect_error 'cannot reach libvirt'
lv_start_libvirtd
wait_until 90 state_is "$n" Running || fail "after libvirtd returned, list shows '$STATE'"
vmctl exec "$n" -- sh -c "kill -0 $sleeper && echo alive"
expect_rc 0
[ "$OUT" = alive ] || fail "the guest did not keep running while libvirtd was away"

vmctl stop "$n"
expect_rc 0
expect_state "$n" Stopped
[ "$(domstate "$n")" = "shut off" ] || fail "libvirt says vmctl-$n is '$(domstate "$n")'"
vmctl start "$n" --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl exec "$n" -- sh -c "kill -0 $sleeper 2>/dev/null && echo alive || echo gone"
[ "$OUT" = gone ] || fail "after stop/start the guest should have booted afresh"

# Features the libvirt driver lacks are refused up front, naming who has them.
vmctl snapshot "$n"
expect_error 'not supported by the libvirt driver'
expect_err 'qemu'
vmctl clone "$n"
expect_error 'not supported by the libvirt driver'

vmctl delete "$n"
expect_rc 0
expect_state "$n" Deleted
vmctl recover "$n"
expect_rc 0
expect_state "$n" Stopped
vmctl delete --purge "$n"
expect_rc 0
expect_not_listed "$n"
! lv_defined "$n" || fail "vmctl-$n is still defined in libvirt after purge"

e2e_log PASS
