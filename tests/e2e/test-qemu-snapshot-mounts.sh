#!/usr/bin/env bash
# A snapshot carries the instance's native mounts (with their id maps):
# restoring one taken with a mount brings the mount back, applied at the next
# start; restoring one taken before a mount was added takes the mount away.
. "$(dirname "$0")/lib.sh"

share=$E2E_TMP/share
mkdir -p "$share"

# Is /mnt/share a 9p mount in the guest? MOUNTED := count of such mounts.
mounted_in_guest() {
	vmctl exec sm -- sh -c 'grep -c " /mnt/share 9p " /proc/mounts || true'
	expect_rc 0
	MOUNTED=$OUT
}

launch_fast sm
expect_rc 0
vmctl stop sm
expect_rc 0

vmctl snapshot sm --name bare
expect_rc 0

vmctl mount --type native -u 1000:1000 -g 1000:1000 "$share" sm:/mnt/share
expect_rc 0
vmctl snapshot sm --name shared
expect_rc 0

vmctl umount sm
expect_rc 0
vmctl info sm
expect_rc 0
expect_no_out "$share"

# Restoring the snapshot taken with the mount brings it back, maps included.
vmctl restore --destructive sm.shared
expect_rc 0
vmctl info sm
expect_rc 0
expect_out "Mounts: +$share => /mnt/share"
vmctl info sm --format json
expect_rc 0
expect_out '"uid_map": *"1000:1000"'
expect_out '"gid_map": *"1000:1000"'

echo "written after the restore" >"$share/restored"
vmctl start sm --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl exec sm -- cat /mnt/share/restored
expect_rc 0
[ "$OUT" = "written after the restore" ] || fail "the guest reads '$OUT' from the restored mount"
vmctl stop sm
expect_rc 0

# A mount added after a snapshot is gone once that snapshot is restored
# (without --destructive: the current state, mount included, is kept).
vmctl restore sm.bare
expect_rc 0
expect_err 'kept as snapshot sm\.snapshot3'
vmctl info sm
expect_rc 0
expect_no_out "$share"
expect_no_out '/mnt/share'
vmctl start sm --timeout "$FAST_TIMEOUT"
expect_rc 0
mounted_in_guest
[ "$MOUNTED" = 0 ] || fail "/mnt/share is mounted in the guest after restoring a snapshot without it"
vmctl stop sm
expect_rc 0

# ... and the state kept before that restore has it again.
vmctl restore --destructive sm.snapshot3
expect_rc 0
vmctl info sm
expect_rc 0
expect_out "Mounts: +$share => /mnt/share"

e2e_log PASS
