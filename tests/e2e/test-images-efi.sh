#!/bin/bash
# An image with no kernel beside it boots through UEFI firmware (OVMF, then
# the GRUB on its EFI system partition): it reaches Running, its console shows
# the firmware's bootloader handing over to the guest's init, and the
# instance keeps its own firmware variable store.
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:?VMCTL_SOURCE_DIR must name the source tree}
# tools/build-efi-image.sh caches its result next to the fast image.
EFI_DIR=${E2E_EFI_IMAGES:-$IMAGES}
EFI_IMAGE=$EFI_DIR/efi.qcow2
LAUNCH_TIMEOUT=$((FAST_TIMEOUT + 300)) # firmware and GRUB come on top of the kernel

if [ ! -f "$EFI_IMAGE" ] || [ "$EFI_IMAGE" -ot "$FAST_IMAGE" ]; then
	run bash "$SRC/tools/build-efi-image.sh" "$EFI_DIR"
	expect_rc 0
fi
# Our own link, so that a rebuild replacing the file cannot change it mid-test.
mkdir -p "$E2E_TMP/efi"
ln "$EFI_IMAGE" "$E2E_TMP/efi/efi.qcow2" 2>/dev/null || cp "$EFI_IMAGE" "$E2E_TMP/efi/efi.qcow2" ||
	fail "cannot copy $EFI_IMAGE"

vmctl launch "$E2E_TMP/efi/efi.qcow2" --name uefi --timeout "$LAUNCH_TIMEOUT"
expect_rc 0
expect_state uefi Running

inst_dir=$(dirname "$(ls "$VMCTL_DATA"/scopes/*/instances/uefi/disk.qcow2)")
[ -f "$inst_dir/efivars.fd" ] || fail "the instance has no firmware variable store of its own"
console=$inst_dir/console.log
# The guest's init announces itself on the serial console once the firmware
# and GRUB have handed over to the kernel.
wait_until "$FAST_TIMEOUT" grep -qE "vmctl-fastinit: .*ready" "$console" ||
	fail "the console shows no sign of the guest's init"
grep -q "Linux version" "$console" || fail "the console shows no kernel booting"
# The kernel came from the disk's own GRUB, with the disk's root partition.
vmctl exec uefi -- cat /proc/cmdline
expect_rc 0
expect_out "root=/dev/vda2"

vmctl stop uefi
expect_rc 0
vmctl start uefi --timeout "$LAUNCH_TIMEOUT"
expect_rc 0
expect_state uefi Running

vmctl delete --purge uefi
expect_rc 0
[ ! -e "$inst_dir/efivars.fd" ] || fail "the variable store outlived its instance"
e2e_log PASS
