#!/usr/bin/env bash
# A real guest behind the virtualbox driver: the stand-in VBoxManage
# (tests/fixtures/vbox) boots the VM's disk in QEMU with the NAT forward the
# helper asked for (VBOX_STANDIN_QEMU=1), so that launch waits for SSH on
# 127.0.0.1:PORT as it would with VirtualBox, and exec, stop and delete work
# on a guest that answers. Needs the UEFI test image (VirtualBox boots an
# image's own boot loader; the fast image's kernel is given apart).
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
EFI_IMAGE=${E2E_EFI_IMAGES:-$IMAGES}/efi.qcow2
LAUNCH_TIMEOUT=$((FAST_TIMEOUT + 300)) # firmware and GRUB come on top of the kernel
# tools/build-efi-image.sh caches its result next to the fast image.
if [ ! -f "$EFI_IMAGE" ] || [ "$EFI_IMAGE" -ot "$FAST_IMAGE" ]; then
	run bash "$SRC/tools/build-efi-image.sh" "$(dirname "$EFI_IMAGE")"
	expect_rc 0
fi
[ -f /usr/share/ovmf/OVMF.fd ] || fail "OVMF is not installed"
mkdir -p "$E2E_TMP/efi"
ln "$EFI_IMAGE" "$E2E_TMP/efi/efi.qcow2" 2>/dev/null || cp "$EFI_IMAGE" "$E2E_TMP/efi/efi.qcow2" ||
	fail "cannot copy $EFI_IMAGE"

export VBOX_STANDIN_QEMU=1
export VBOX_STANDIN_LOG=$E2E_TMP/vboxmanage.log
export VBOX_STANDIN_STATE=$E2E_TMP/vbox-state.json
vmctl set local.virtualbox.manage="$SRC/tests/fixtures/vbox/VBoxManage"
expect_rc 0
vmctl set local.driver=virtualbox
expect_rc 0

vmctl launch "$E2E_TMP/efi/efi.qcow2" --name boot --timeout "$LAUNCH_TIMEOUT"
expect_rc 0
expect_state boot Running
[ -n "$(qemu_pids)" ] || fail "no QEMU behind the stand-in"
port=$(grep -o 'vmctl-ssh,tcp,127.0.0.1,[0-9]*,,22' "$VBOX_STANDIN_LOG" | head -1 | cut -d, -f4)
vmctl info boot --format json
expect_rc 0
expect_out "\"ssh_port\": $port,"

vmctl exec boot -- cat /proc/sys/kernel/hostname
expect_rc 0
expect_out '^boot$'

vmctl stop boot
expect_rc 0
expect_state boot Stopped
grep -qxF '["controlvm", "boot", "acpipowerbutton"]' "$VBOX_STANDIN_LOG" ||
	fail "stop did not press the ACPI power button"
wait_until 30 sh -c "[ -z \"\$(for p in $(qemu_pids); do kill -0 \$p 2>/dev/null && echo \$p; done)\" ]" ||
	fail "QEMU still runs after stop"

vmctl delete --purge boot
expect_rc 0
expect_not_listed boot
e2e_log PASS
