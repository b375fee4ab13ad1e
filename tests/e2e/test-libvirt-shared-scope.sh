#!/usr/bin/env bash
# qemu and libvirt share one instance scope: an instance made under one
# driver is listed, started and stopped under the other with the same disk,
# both ways; libvirt keeps no domain of theirs once its helper has left.
. "$(dirname "$0")/libvirt/lvns.sh"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt/lvlib.sh"

img=$(lv_image fast)
a=${LVT_PREFIX}a
b=${LVT_PREFIX}b
guest_file() { vmctl exec "$1" -- cat /home/ubuntu/mark; expect_rc 0; [ "$OUT" = "$2" ] ||
	fail "$1: /home/ubuntu/mark holds '$OUT', expected '$2'"; }
put_file() { vmctl exec "$1" -- sh -c "echo $2 >/home/ubuntu/mark && sync"; expect_rc 0; }
domstate() { virsh -q domstate "vmctl-$1" 2>/dev/null; }

# qemu -> libvirt
vmctl set local.driver=qemu
expect_rc 0
vmctl launch "$img" --name "$a" --timeout "$FAST_TIMEOUT"
expect_rc 0
put_file "$a" made-under-qemu
vmctl stop "$a"
expect_rc 0
! lv_defined "$a" || fail "the qemu driver should not have made a libvirt domain"

vmctl set local.driver=libvirt
expect_rc 0
expect_state "$a" Stopped
vmctl start "$a" --timeout "$FAST_TIMEOUT"
expect_rc 0
expect_state "$a" Running
[ "$(domstate "$a")" = running ] || fail "libvirt says vmctl-$a is '$(domstate "$a")', not running"
guest_file "$a" made-under-qemu
put_file "$a" changed-under-libvirt
vmctl stop "$a"
expect_rc 0
expect_state "$a" Stopped

# libvirt -> qemu
vmctl launch "$img" --name "$b" --timeout "$FAST_TIMEOUT"
expect_rc 0
put_file "$b" made-under-libvirt
vmctl stop "$b"
expect_rc 0

vmctl set local.driver=qemu
expect_rc 0
expect_state "$a" Stopped
expect_state "$b" Stopped
vmctl start "$a" "$b" --timeout "$FAST_TIMEOUT"
expect_rc 0
guest_file "$a" changed-under-libvirt
guest_file "$b" made-under-libvirt
# The libvirt helper undefined the stopped instances' domains as it left.
! lv_defined "$b" || fail "vmctl-$b is '$(domstate "$b")' while qemu runs $b, not undefined"
[ -n "$(qemu_pids)" ] || fail "no QEMU process of the qemu driver"
vmctl stop "$a" "$b"
expect_rc 0

# Purged under qemu: nothing of them is defined in libvirt when it is back
# (orphans of a helper that died are tested in test-libvirt-helper-retire).
vmctl delete --purge "$a" "$b"
expect_rc 0
vmctl set local.driver=libvirt
expect_rc 0
vmctl list
expect_rc 0
gone() { ! lv_defined "$a" && ! lv_defined "$b"; }
wait_until 60 gone || fail "the domains of purged instances are still defined: $(lv_domains)"

e2e_log PASS
