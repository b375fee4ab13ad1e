#!/usr/bin/env bash
# Native (9p) mounts on a real guest: a file written on the host appears in
# the guest, the mount is persisted and applied at every start, umount
# removes it. (Classic mounts: test-qemu-classic-mount.sh.)
. "$(dirname "$0")/lib.sh"

share=$E2E_TMP/share
mkdir -p "$share"
echo "written on the host" >"$share/before"

launch_fast mnt
expect_rc 0

vmctl mount --type native "$share" mnt:/mnt/share
expect_error 'needs it stopped'

vmctl stop mnt
expect_rc 0
vmctl mount --type native "$E2E_TMP/nosuch" mnt:/mnt/share
expect_error 'no such file|not a folder'
vmctl mount --type native "$share" mnt:/mnt/share
expect_rc 0
vmctl mount --type native "$share" mnt:/mnt/share
expect_error 'already mounted'
vmctl info mnt
expect_rc 0
expect_out "Mounts: +$share => /mnt/share"

vmctl start mnt --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl exec mnt -- cat /mnt/share/before
expect_rc 0
[ "$OUT" = "written on the host" ] || fail "the guest reads '$OUT' from the mount"
# Written while the guest runs: seen at once.
echo "later" >"$share/after"
vmctl exec mnt -- cat /mnt/share/after
expect_rc 0
[ "$OUT" = later ] || fail "the guest reads '$OUT' for a file written after the start"

# Applied at every start, not only the first.
vmctl stop mnt
expect_rc 0
vmctl start mnt --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl exec mnt -- cat /mnt/share/after
expect_rc 0
[ "$OUT" = later ] || fail "after a restart the guest reads '$OUT' from the mount"

# QEMU cannot save a VM with a 9p mount in use: the mount is let go for the
# suspend and comes back with the resume.
vmctl suspend mnt
expect_rc 0
expect_state mnt Suspended
vmctl start mnt --timeout "$FAST_TIMEOUT"
expect_rc 0
echo "after resume" >"$share/resumed"
vmctl exec mnt -- cat /mnt/share/resumed
expect_rc 0
[ "$OUT" = "after resume" ] || fail "after suspend and resume the guest reads '$OUT' from the mount"

vmctl umount mnt:/mnt/share
expect_error 'needs it stopped'
vmctl stop mnt
expect_rc 0
vmctl umount mnt:/elsewhere
expect_error 'nothing is mounted at mnt:/elsewhere'
vmctl umount mnt
expect_rc 0
vmctl info mnt
expect_rc 0
expect_no_out "$share"
vmctl start mnt --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl exec mnt -- sh -c 'grep -c " /mnt/share 9p " /proc/mounts || true'
[ "$OUT" = 0 ] || fail "/mnt/share is still mounted after umount"

e2e_log PASS
