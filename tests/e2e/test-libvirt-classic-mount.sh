#!/usr/bin/env bash
# Classic mounts under the libvirt driver, which has no native mounts: the
# broker's sshfs-over-SSH works the same as with qemu. A host file is
# visible, what the guest writes is the host user's, the mount survives
# stop/start and a broker SIGKILL, and umount leaves nothing running.
. "$(dirname "$0")/libvirt/lvns.sh"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/libvirt/lvlib.sh"

img=$(lv_image fast)
n=${LVT_PREFIX}m
share=$E2E_TMP/share
mkdir -p "$share"
echo "written on the host" >"$share/before"

sftp_pids() { e2e_pids_named sftp-server; }
mount_ssh_pids() {
	local p
	for p in $(e2e_pids_named ssh); do
		grep -qzF 'sshfs' "/proc/$p/cmdline" 2>/dev/null && echo "$p"
	done
}
count() { "$@" | grep -c . || true; }
guest_reads() { # PATH EXPECTED
	vmctl exec "$n" -- cat "$1"
	[ "$RC" -eq 0 ] && [ "$OUT" = "$2" ]
}

vmctl set local.driver=libvirt
expect_rc 0
vmctl launch "$img" --name "$n" --timeout "$FAST_TIMEOUT"
expect_rc 0

vmctl mount --type native "$share" "$n:/mnt/share"
expect_error 'not supported by the libvirt driver'
vmctl mount "$share" "$n:/mnt/share"
expect_rc 0
guest_reads /mnt/share/before "written on the host" || fail "the guest reads '$OUT' from the mount"
vmctl exec "$n" -- sh -c 'echo from-guest >/mnt/share/from-guest'
expect_rc 0
[ "$(cat "$share/from-guest" 2>/dev/null)" = from-guest ] || fail "the guest's file is not on the host"
[ "$(stat -c %u "$share/from-guest")" = "$(id -u)" ] || fail "the guest's file is not the host user's"
vmctl info "$n"
expect_out "$share => /mnt/share"

vmctl stop "$n"
expect_rc 0
wait_until 30 eval '[ "$(count sftp_pids)" = 0 ]' || fail "sftp-server still runs with $n stopped"
vmctl start "$n" --timeout "$FAST_TIMEOUT"
expect_rc 0
echo later >"$share/after"
guest_reads /mnt/share/after later || fail "after stop/start the guest reads '$OUT'"

kill -KILL $(broker_pids)
wait_until 30 eval '[ "$(count sftp_pids)" = 0 ] && [ "$(count mount_ssh_pids)" = 0 ]' ||
	fail "the mount processes outlived the broker"
vmctl list
expect_rc 0
wait_until 120 guest_reads /mnt/share/after later || fail "the mount did not come back after the broker restart"

vmctl umount "$n"
expect_rc 0
vmctl exec "$n" -- sh -c 'grep -c " /mnt/share fuse.sshfs " /proc/mounts || true'
[ "$OUT" = 0 ] || fail "/mnt/share is still mounted in the guest after umount"
[ "$(count sftp_pids)" = 0 ] || fail "sftp-server still runs after umount"
[ "$(count mount_ssh_pids)" = 0 ] || fail "the ssh of the mount still runs after umount"

vmctl delete --purge "$n"
expect_rc 0
e2e_log PASS
