#!/usr/bin/env bash
# local.lxd.instance-type against a private LXD (tests/e2e/lxd/lxdlib.sh)
# that cannot run virtual machines (no vhost_vsock here): vm is refused at
# launch with LXD's own reason and nothing made in LXD; auto makes a
# container of a container image (`vmctl info` says so) and refuses a qcow2
# with the reason; the driver's VM image import (run on its own, as the
# driver refuses before it) gives LXD a VIRTUAL-MACHINE image, once.
. "$(dirname "$0")/lxd/lxdlib.sh"
. "$(dirname "$0")/lib.sh"
lxd_start

n=lxv$$
LXD_TIMEOUT=${E2E_LXD_TIMEOUT:-300}
IMPORT=$VMCTL_BIN_DIR/lxd-vm-import
[ -x "$IMPORT" ] || fail "$IMPORT is missing (built with the lxd helper's tests)"
nothing_in_lxd() {
	[ -z "$(lxc list --format csv -c n)" ] || fail "$1: LXD has instances: $(lxc list --format csv -c n)"
	[ -z "$(lxc image list --format csv -c f)" ] || fail "$1: LXD has images: $(lxc image list --format csv -c f)"
}

vmctl set local.lxd.socket="$LXD_SOCKET"
expect_rc 0
vmctl set local.driver=lxd
expect_rc 0

# vm: refused before anything is made, with what LXD says.
vmctl set local.lxd.instance-type=vm
expect_rc 0
vmctl launch "$FAST_IMAGE" --name "${n}v" --timeout 120
expect_error "local\.lxd\.instance-type=vm: LXD on $LXD_SOCKET cannot run virtual machines: .*not supported on this server"
e2e_log "refusal: $ERR"
nothing_in_lxd "after a refused vm launch"
vmctl list
expect_rc 0
expect_no_out "${n}v"
# A container image cannot be a VM.
vmctl launch "$LXD_IMAGE" --name "${n}t" --timeout 120
expect_error "instance-type=vm makes LXD virtual machines from a qcow2 disk"
nothing_in_lxd "after a container image refused as a vm"

# auto: a qcow2 needs a VM, which LXD cannot run here; a tarball is a container.
vmctl set local.lxd.instance-type=auto
expect_rc 0
vmctl launch "$FAST_IMAGE" --name "${n}q" --timeout 120
expect_error "is a qcow2 disk, which needs an LXD virtual machine, and LXD on .* cannot run them: .*not supported on this server"
nothing_in_lxd "after a qcow2 refused with auto"
vmctl launch "$LXD_IMAGE" --name "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
[ "$(lxc list --format csv -c nt "^$n\$")" = "$n,CONTAINER" ] ||
	fail "LXD has '$(lxc list --format csv -c nt "^$n\$")' for $n, not a container"
vmctl info "$n"
expect_rc 0
expect_out '^Type: +container$'
vmctl delete --purge "$n"
expect_rc 0
lxc image delete "$(lxc image list --format csv -c f | head -n 1)" ||
	fail "could not delete the container image"
nothing_in_lxd "after delete --purge"

# The VM image of a qcow2: imported once, found again by its alias.
run "$IMPORT" "$LXD_SOCKET" "$FAST_IMAGE"
expect_rc 0
fp=$OUT
[[ $fp =~ ^[0-9a-f]{64}$ ]] || fail "the import printed '$fp', not a fingerprint"
sha=$(sha256sum "$FAST_IMAGE" | cut -d' ' -f1)
row=$(lxc image list --format csv -c lfdt)
e2e_log "lxc image list: $row"
case $row in
"vmctl-vm-$sha,${fp:0:12},vmctl: fast.qcow2,VIRTUAL-MACHINE") ;;
*) fail "lxc image list shows '$row', not the aliased VIRTUAL-MACHINE image ${fp:0:12}" ;;
esac
lxc image show "$fp" | grep -q "vmctl.sha256: $sha" || fail "the image lacks its vmctl.sha256 property"
run "$IMPORT" "$LXD_SOCKET" "$FAST_IMAGE"
expect_rc 0
[ "$OUT" = "$fp" ] || fail "a second import gave '$OUT', not $fp"
[ "$(lxc image list --format csv -c f | wc -l)" = 1 ] || fail "a second import made another image"
lxc image delete "$fp" || fail "lxc image delete $fp failed"
nothing_in_lxd "after deleting the VM image"
e2e_log "PASS (LXD $LXD_VERSION)"
