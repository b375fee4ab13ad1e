#!/usr/bin/env bash
# The libvirt driver's accelerator, on a host whose /dev/kvm is present: the
# domain type follows a real KVM probe, not libvirt's capabilities (which on
# some hosts offer a kvm that cannot run guests); a forced kvm that cannot
# start says so, naming the setting, and is not retried under TCG; purging
# the last instance and switching away leave libvirt as it was but for the
# network vmctl keeps.
. "$(dirname "$0")/libvirt/lvns.sh"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt/lvlib.sh"

img=$(lv_image fast)
n=${LVT_PREFIX}k
domtype() { virsh -q dumpxml "vmctl-$1" 2>/dev/null | sed -n "s/^<domain type='\([a-z]*\)'.*/\1/p"; }
# What the user's libvirt holds: domains, networks, storage pools.
inventory() {
	{ virsh -q list --all --name; virsh -q net-list --all --name | sed 's/^/net /'
	  virsh -q pool-list --all --name | sed 's/^/pool /'; } 2>/dev/null | sed '/^$/d' | sort
}
before=$(inventory)

# The oracle: the same question asked of qemu outside vmctl's helpers.
if "$LV_QEMU_HELPER" --probe-accel kvm >/dev/null 2>&1; then kvm_works=1; else kvm_works=0; fi
lv_log "KVM runs guests on this host: $kvm_works"
[ -e /dev/kvm ] || lv_fail "this test is for hosts with /dev/kvm (test-libvirt-accel-nokvm covers the others)"

vmctl set local.driver=libvirt
expect_rc 0
vmctl get local.libvirt.accel
expect_rc 0
[ "$OUT" = auto ] || fail "local.libvirt.accel defaults to '$OUT', not auto"
vmctl set local.libvirt.accel=qemu
expect_error 'auto, kvm, tcg'

vmctl launch "$img" --name "$n" --timeout "$FAST_TIMEOUT"
expect_rc 0
want=qemu; [ "$kvm_works" = 1 ] && want=kvm
[ "$(domtype "$n")" = "$want" ] || fail "the domain has type '$(domtype "$n")', expected $want"
grep -qE "accelerator: (kvm|tcg) \(local\.libvirt\.accel=auto: .+\)" "$VMCTL_DATA/vmctld.log" ||
	fail "the broker's log does not say which accelerator the libvirt helper chose and why"
vmctl exec "$n" -- true
expect_rc 0

if [ "$kvm_works" = 0 ]; then
	# Forced kvm where KVM cannot run guests: a clear failure, no silent TCG.
	vmctl stop "$n"
	expect_rc 0
	vmctl set local.libvirt.accel=kvm
	expect_rc 0
	vmctl start "$n" --timeout "$FAST_TIMEOUT"
	expect_error 'kvm'
	expect_err 'local\.libvirt\.accel=kvm'
	expect_err 'local\.libvirt\.accel=tcg'
	[ "$(domtype "$n")" = kvm ] || fail "the failed start was retried as '$(domtype "$n")'"
	expect_state "$n" Stopped
	vmctl set local.libvirt.accel=tcg
	expect_rc 0
	vmctl start "$n" --timeout "$FAST_TIMEOUT"
	expect_rc 0
	[ "$(domtype "$n")" = qemu ] || fail "with tcg the domain has type '$(domtype "$n")'"
fi

# Switching away: a stopped instance's domain goes (it is defined again at
# the next start); the instance stays listed under the shared scope.
vmctl stop "$n"
expect_rc 0
vmctl set local.driver=qemu
expect_rc 0
[ -z "$(domtype "$n")" ] || fail "vmctl-$n is still defined after switching away from libvirt"
expect_state "$n" Stopped
vmctl set local.driver=libvirt
expect_rc 0
vmctl start "$n" --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl delete --purge "$n"
expect_rc 0

# Only the network the docs say vmctl keeps is new.
after=$(inventory)
expected=$(printf '%s\nnet vmctl\n' "$before" | sed '/^$/d' | sort -u)
[ "$after" = "$expected" ] ||
	fail "libvirt after the last purge is not as before plus the network vmctl:
before: $(echo $before)
after:  $(echo $after)"

e2e_log PASS
