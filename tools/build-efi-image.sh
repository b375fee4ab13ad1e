#!/usr/bin/env bash
# Build a test disk that boots through UEFI firmware from a bootloader on the
# disk, the way real cloud images do (no kernel given to QEMU):
#
#   tools/build-efi-image.sh [--verify] [DIR]
#
# DIR (default $VMCTL_TEST_IMAGES, else /var/cache/vmctl-test-images) must hold
# the fast image of tools/build-image.sh (fast.qcow2, fast.initrd,
# fast.cmdline, kernel-release). Writes DIR/efi.qcow2, a GPT disk with
#
#   1  EFI system partition (FAT, made with mtools, no loop mount):
#        EFI/BOOT/BOOTX64.EFI   standalone GRUB (grub-efi-amd64-bin)
#        EFI/BOOT/grub.cfg      boots /vmlinuz and /initrd with the fast command line
#        vmlinuz, initrd        the host's compressed kernel, the fast initrd
#   2  root: the fast image's ext4 file system (root=/dev/vda2)
#
# and nothing beside it, so vmctl launches it through firmware (OVMF).
# --verify boots it under QEMU with OVMF and waits for the guest's init.
set -euo pipefail

die() { echo "build-efi-image: $*" >&2; exit 1; }
say() { echo "build-efi-image: $*" >&2; }

verify=0
dir=${VMCTL_TEST_IMAGES:-/var/cache/vmctl-test-images}
while [ $# -gt 0 ]; do
	case $1 in
	--verify) verify=1 ;;
	-h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown option $1 (try --help)" ;;
	*) dir=$1 ;;
	esac
	shift
done

for t in qemu-img sfdisk mformat mmd mcopy grub-mkstandalone dd truncate; do
	command -v "$t" >/dev/null || die "$t is missing; run tools/install-deps.sh"
done
for f in fast.qcow2 fast.initrd fast.cmdline kernel-release; do
	[ -f "$dir/$f" ] || die "$dir/$f is missing; run tools/build-image.sh $dir first"
done
kver=$(cat "$dir/kernel-release")
kernel=/boot/vmlinuz-$kver
# GRUB's linux command needs the compressed kernel with its boot header (the
# fast image's vmlinuz is the bare ELF, for QEMU's direct boot).
[ -f "$kernel" ] || die "$kernel is missing (package linux-image-$kver)"
[ -d /usr/lib/grub/x86_64-efi ] || die "GRUB's EFI modules are missing (package grub-efi-amd64-bin)"

work=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-efi-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

MiB=$((1024 * 1024))
esp_mib=64

# ---- the root file system -----------------------------------------------------
qemu-img convert -q -f qcow2 -O raw "$dir/fast.qcow2" "$work/root.raw"
root_bytes=$(stat -c %s "$work/root.raw")
root_mib=$(((root_bytes + MiB - 1) / MiB))

# ---- the EFI system partition --------------------------------------------------
cmdline=$(sed -E 's#(^| )root=[^ ]*#\1root=/dev/vda2#' "$dir/fast.cmdline")
case $cmdline in
*root=/dev/vda2*) ;;
*) cmdline="root=/dev/vda2 $cmdline" ;;
esac
cat >"$work/embed.cfg" <<'EOF'
search --no-floppy --set=root --file /EFI/BOOT/grub.cfg
configfile ($root)/EFI/BOOT/grub.cfg
EOF
cat >"$work/grub.cfg" <<EOF
set timeout=0
linux /vmlinuz $cmdline
initrd /initrd
boot
EOF
grub-mkstandalone -O x86_64-efi -o "$work/BOOTX64.EFI" \
	--install-modules="part_gpt fat search search_fs_file configfile normal linux echo test efi_gop" \
	--modules="part_gpt fat search_fs_file" \
	"boot/grub/grub.cfg=$work/embed.cfg"

truncate -s ${esp_mib}M "$work/esp.img"
# 64 MiB = 131072 sectors: 32 sectors/track, 64 heads, 64 cylinders.
mformat -i "$work/esp.img" -t 64 -h 64 -s 32 -v VMCTL-ESP ::
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp.img" "$work/grub.cfg" ::/EFI/BOOT/grub.cfg
mcopy -i "$work/esp.img" "$kernel" ::/vmlinuz
mcopy -i "$work/esp.img" "$dir/fast.initrd" ::/initrd

# ---- the partitioned disk ------------------------------------------------------
# 1 MiB for the GPT, the ESP, the root, 1 MiB for the backup GPT.
truncate -s $((1 + esp_mib + root_mib + 1))M "$work/disk.raw"
sfdisk --quiet "$work/disk.raw" <<EOF
label: gpt
start=$((MiB / 512)), size=$((esp_mib * MiB / 512)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system"
start=$(((1 + esp_mib) * MiB / 512)), size=$((root_mib * MiB / 512)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
EOF
dd if="$work/esp.img" of="$work/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.raw" of="$work/disk.raw" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$dir/efi.qcow2.new"
mv "$dir/efi.qcow2.new" "$dir/efi.qcow2"
# A disk without direct-boot files beside it boots through firmware.
rm -f "$dir/efi.vmlinuz" "$dir/efi.initrd" "$dir/efi.cmdline"
say "wrote $dir/efi.qcow2 (ESP ${esp_mib} MiB + root ${root_mib} MiB, root=/dev/vda2)"

[ $verify -eq 1 ] || exit 0

# ---- boot it through OVMF --------------------------------------------------------
code=/usr/share/OVMF/OVMF_CODE_4M.fd
vars=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -f "$code" ] && [ -f "$vars" ] || die "OVMF is missing (package ovmf)"
cp "$vars" "$work/vars.fd"
: >"$work/console.log"
qemu-system-x86_64 -machine q35 -accel tcg,thread=multi -cpu max -m 512M \
	-nodefaults -no-user-config -display none \
	-drive "if=pflash,format=raw,unit=0,readonly=on,file=$code" \
	-drive "if=pflash,format=raw,unit=1,file=$work/vars.fd" \
	-drive "file=$dir/efi.qcow2,if=virtio,format=qcow2,snapshot=on" \
	-serial "file:$work/console.log" -nic none &
qemu=$!
start=$(date +%s)
ok=0
while kill -0 $qemu 2>/dev/null && [ $(($(date +%s) - start)) -lt 300 ]; do
	if grep -q "vmctl-fastinit:" "$work/console.log"; then
		ok=1
		break
	fi
	sleep 1
done
kill $qemu 2>/dev/null || true
wait $qemu 2>/dev/null || true
if [ $ok -ne 1 ]; then
	say "the guest did not reach its init; console log follows"
	cat "$work/console.log" >&2
	exit 1
fi
say "booted through OVMF and GRUB to the guest's init in $(($(date +%s) - start)) s"
