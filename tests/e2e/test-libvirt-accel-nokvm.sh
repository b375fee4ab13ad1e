#!/usr/bin/env bash
# The libvirt driver on a host without /dev/kvm (hidden in the test's mount
# namespace, for libvirtd and the helpers alike): libvirt itself refuses kvm
# domains, the helper's probe says why, and instances run as type qemu.
export LV_HIDE_KVM=1
. "$(dirname "$0")/libvirt/lvns.sh"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt/lvlib.sh"

img=$(lv_image fast)
n=${LVT_PREFIX}n

[ ! -e /dev/kvm ] || fail "/dev/kvm is visible in the test's namespace"
virsh -q domcapabilities --virttype kvm >/dev/null 2>&1 &&
	fail "libvirt offers kvm domains without /dev/kvm"

vmctl set local.driver=libvirt
expect_rc 0
vmctl launch "$img" --name "$n" --timeout "$FAST_TIMEOUT"
expect_rc 0
virsh -q dumpxml "vmctl-$n" | grep -q "^<domain type='qemu'" ||
	fail "the domain is not of type qemu"
grep -q "accelerator: tcg (local.libvirt.accel=auto: /dev/kvm does not exist)" "$VMCTL_DATA/vmctld.log" ||
	fail "the broker's log does not say that /dev/kvm does not exist"
vmctl exec "$n" -- true
expect_rc 0
vmctl delete --purge "$n"
expect_rc 0

e2e_log PASS
