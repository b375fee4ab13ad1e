#!/usr/bin/env bash
# Classic mounts (the default type) on a real guest under the qemu driver:
# sshfs in the guest over the broker's SSH, sftp-server on the host. A host
# file is visible, a file written in the guest lands on the host as the
# host user, the id maps apply, the mount survives stop/start and a broker
# SIGKILL, umount removes it and leaves nothing running on the host, and a
# guest without sshfs gets a clear error; launch --mount mounts at launch.
. "$(dirname "$0")/lib.sh"

share=$E2E_TMP/share
two=$E2E_TMP/two
mkdir -p "$share" "$two"
echo "written on the host" >"$share/before"
echo "second" >"$two/file"

sftp_pids() { e2e_pids_named sftp-server; }
# ssh processes of mounts: their command line runs sshfs in the guest.
mount_ssh_pids() {
	local p
	for p in $(e2e_pids_named ssh); do
		grep -qzF 'sshfs' "/proc/$p/cmdline" 2>/dev/null && echo "$p"
	done
}
count() { "$@" | grep -c . || true; }
guest_reads() { # PATH EXPECTED
	vmctl exec cm -- cat "$1"
	[ "$RC" -eq 0 ] && [ "$OUT" = "$2" ]
}

launch_fast cm
expect_rc 0

vmctl mount "$share" cm:/mnt/share
expect_rc 0
guest_reads /mnt/share/before "written on the host" || fail "the guest reads '$OUT' from the mount"

# Written in the guest (as ubuntu): on the host, it is the host user's.
vmctl exec cm -- sh -c 'echo from-guest >/mnt/share/from-guest'
expect_rc 0
[ "$(cat "$share/from-guest" 2>/dev/null)" = from-guest ] || fail "the guest's file is not on the host"
[ "$(stat -c %u:%g "$share/from-guest")" = "$(id -u):$(id -g)" ] ||
	fail "the guest's file is owned by $(stat -c %u:%g "$share/from-guest") on the host"
# The default map: the host user is the guest's ubuntu (1000).
vmctl exec cm -- stat -c %u:%g /mnt/share/before
expect_rc 0
[ "$OUT" = 1000:1000 ] || fail "the host user's file shows as $OUT in the guest, not 1000:1000"

# An explicit map.
vmctl mount -u "$(id -u):0" -g "$(id -g):0" "$two" cm:/mnt/two
expect_rc 0
vmctl exec cm -- stat -c %u:%g /mnt/two/file
expect_rc 0
[ "$OUT" = 0:0 ] || fail "with -u $(id -u):0 the file shows as $OUT in the guest"

vmctl mount "$share" cm:/mnt/share
expect_error 'already mounted'
vmctl info cm
expect_rc 0
expect_out "$share => /mnt/share"
expect_out "$two => /mnt/two"
[ "$(count sftp_pids)" = 2 ] || fail "$(count sftp_pids) sftp-server processes for 2 mounts"

# Every start mounts it again.
vmctl stop cm
expect_rc 0
wait_until 30 eval '[ "$(count sftp_pids)" = 0 ]' || fail "sftp-server still runs with cm stopped"
vmctl start cm --timeout "$FAST_TIMEOUT"
expect_rc 0
echo later >"$share/after"
guest_reads /mnt/share/after later || fail "after stop/start the guest reads '$OUT'"

# The broker killed: its sftp-servers and ssh die with it; the next broker
# mounts again.
bpid=$(broker_pids)
[ -n "$bpid" ] || fail "no broker"
kill -KILL $bpid
wait_until 30 eval '[ "$(count sftp_pids)" = 0 ] && [ "$(count mount_ssh_pids)" = 0 ]' ||
	fail "the mount processes outlived the broker: $(sftp_pids) $(mount_ssh_pids)"
vmctl list
expect_rc 0
wait_until 120 guest_reads /mnt/share/after later || fail "the mount did not come back after the broker restart"
wait_until 60 eval '[ "$(count sftp_pids)" = 2 ]' || fail "$(count sftp_pids) sftp-server processes after the restart"

# umount: gone in the guest, nothing left on the host.
vmctl umount cm:/mnt/share
expect_rc 0
vmctl exec cm -- sh -c 'grep -c " /mnt/share fuse.sshfs " /proc/mounts || true'
[ "$OUT" = 0 ] || fail "/mnt/share is still mounted in the guest after umount"
[ "$(count sftp_pids)" = 1 ] || fail "$(count sftp_pids) sftp-server processes for the 1 mount left"
vmctl umount cm
expect_rc 0
[ "$(count sftp_pids)" = 0 ] || fail "sftp-server still runs after umount: $(sftp_pids)"
[ "$(count mount_ssh_pids)" = 0 ] || fail "the ssh of a mount still runs after umount: $(mount_ssh_pids)"
vmctl info cm
expect_rc 0
expect_no_out "$share"

# launch --mount: mounted once the instance is ready.
vmctl launch "$FAST_IMAGE" --name lm --timeout "$FAST_TIMEOUT" --mount "$share:/mnt/l" --mount-type bogus
expect_error "unknown mount type 'bogus'"
launch_fast lm --mount "$share:/mnt/l"
expect_rc 0
vmctl exec lm -- cat /mnt/l/before
expect_rc 0
[ "$OUT" = "written on the host" ] || fail "launch --mount: the guest reads '$OUT'"
vmctl info lm
expect_out "$share => /mnt/l"
vmctl delete --purge lm
expect_rc 0
wait_until 30 eval '[ "$(count sftp_pids)" = 0 ]' || fail "sftp-server still runs after lm was deleted"

# A guest without sshfs: a clear error, nothing recorded, nothing left.
vmctl exec cm -- sudo mount --bind /dev/null /usr/bin/sshfs
expect_rc 0
vmctl mount "$share" cm:/mnt/share
expect_error 'has no sshfs.*apt install sshfs'
vmctl info cm
expect_rc 0
expect_no_out "$share"
[ "$(count sftp_pids)" = 0 ] || fail "sftp-server still runs after a failed mount"

e2e_log PASS
