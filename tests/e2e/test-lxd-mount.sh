#!/usr/bin/env bash
# Native mounts on the lxd driver (LXD disk devices, id maps as raw.idmap),
# against a private LXD (tests/e2e/lxd/lxdlib.sh): a host folder owned by
# uid 1000 mounted with -u/-g 1000:1000 shows in the container as the
# guest user's, a file the guest writes belongs to 1000 on the host, the
# mount lasts across stop/start, info lists it, umount removes it; a map
# root may not make is refused with the line to add; and `vmctl mount` and
# `vmctl umount` on the running container act at once, without a restart.
. "$(dirname "$0")/lxd/lxdlib.sh"
. "$(dirname "$0")/lib.sh"
lxd_allow_host_ids 1000
lxd_start

n=lxm$$
LXD_TIMEOUT=${E2E_LXD_TIMEOUT:-300}
mount_devices() { lxc config device list "$1" 2>/dev/null | grep '^vmctl-mount-'; }

share=$LXD_RUN/share
mkdir -p "$share"
echo "from the host" >"$share/hello"
chown -R 1000:1000 "$share"
chmod 755 "$share"

vmctl set local.lxd.socket="$LXD_SOCKET"
expect_rc 0
vmctl set local.driver=lxd
expect_rc 0
vmctl launch "$LXD_IMAGE" --name "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
vmctl exec "$n" -- id -u
[ "$OUT" = 1000 ] || fail "the guest user is uid '$OUT', not 1000 as this test assumes"

vmctl stop "$n"
expect_rc 0
vmctl mount --type native -u 1000:1000 -g 1000:1000 "$share" "$n:/mnt/x"
expect_rc 0
[ -n "$(mount_devices "$n")" ] || fail "LXD has no disk device for the mount: $(lxc config device list "$n")"
[ "$(lxc config get "$n" raw.idmap)" = "$(printf 'uid 1000 1000\ngid 1000 1000')" ] ||
	fail "raw.idmap of $n is '$(lxc config get "$n" raw.idmap)'"
vmctl info "$n"
expect_rc 0
expect_out "$share.*/mnt/x|/mnt/x.*$share"

vmctl start "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
vmctl exec "$n" -- cat /mnt/x/hello
expect_rc 0
[ "$OUT" = "from the host" ] || fail "the guest reads '$OUT' from the mount"
vmctl exec "$n" -- stat -c %u:%g /mnt/x/hello
expect_rc 0
[ "$OUT" = 1000:1000 ] || fail "the host file is owned by $OUT in the guest, not 1000:1000"
vmctl exec "$n" -- sh -c 'echo from the guest >/mnt/x/written'
expect_rc 0
[ "$(cat "$share/written" 2>/dev/null)" = "from the guest" ] || fail "the guest's file is not on the host"
[ "$(stat -c %u:%g "$share/written")" = 1000:1000 ] ||
	fail "the guest's file belongs to $(stat -c %u:%g "$share/written") on the host, not 1000:1000"

# Kept across a stop and a start.
vmctl stop "$n"
expect_rc 0
vmctl start "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
vmctl exec "$n" -- cat /mnt/x/written
expect_rc 0
[ "$OUT" = "from the guest" ] || fail "after stop and start, the guest reads '$OUT'"

# Maps the driver cannot honour are refused before anything is recorded.
vmctl stop "$n"
expect_rc 0
mkdir -p "$LXD_RUN/other"
vmctl mount --type native -u 4242:4242 "$LXD_RUN/other" "$n:/mnt/y"
expect_error 'root:4242:1'
# LXD maps ids for the whole container: one guest id has one host id.
vmctl mount --type native -u 1001:1000 "$LXD_RUN/other" "$n:/mnt/y"
expect_error 'contradict'
vmctl info "$n"
expect_no_out '/mnt/y'

vmctl umount "$n:/mnt/x"
expect_rc 0
[ -z "$(mount_devices "$n")" ] || fail "LXD still has the mount's device: $(mount_devices "$n")"
[ -z "$(lxc config get "$n" raw.idmap)" ] || fail "raw.idmap is left: $(lxc config get "$n" raw.idmap)"
vmctl info "$n"
expect_no_out '/mnt/x'
vmctl start "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
vmctl exec "$n" -- test -e /mnt/x/hello
expect_fail

# Live, on the running container, through vmctl (the lxd helper says
# native_mounts_live): the device comes and goes at once, without a
# restart, and info agrees; a map the running container does not have yet
# is refused and leaves the record as it was.
live=$LXD_RUN/live
mkdir -p "$live"
echo live >"$live/f"
chmod 755 "$live"
chmod 644 "$live/f"
pid_before=$(lxc info "$n" | awk '/^PID:/ {print $2}')
vmctl mount --type native "$live" "$n:/mnt/live"
expect_rc 0
vmctl exec "$n" -- cat /mnt/live/f
expect_rc 0
[ "$OUT" = live ] || fail "a live mount does not show in the running container: '$OUT'"
[ "$(lxc info "$n" | awk '/^PID:/ {print $2}')" = "$pid_before" ] ||
	fail "the container was restarted for a live mount"
vmctl info "$n"
expect_rc 0
expect_out "$live.*/mnt/live|/mnt/live.*$live"
vmctl mount --type native -u 1000:1000 "$live" "$n:/mnt/live2"
expect_error 'take effect when the container starts; stop it first'
vmctl info "$n"
expect_no_out '/mnt/live2'
[ "$(mount_devices "$n" | wc -l)" = 1 ] || fail "LXD's devices after a refused mount: $(mount_devices "$n")"
vmctl umount "$n:/mnt/live"
expect_rc 0
vmctl exec "$n" -- test -e /mnt/live/f
expect_fail
[ -z "$(mount_devices "$n")" ] || fail "LXD still has the live mount's device"
vmctl info "$n"
expect_no_out '/mnt/live'
[ "$(lxc info "$n" | awk '/^PID:/ {print $2}')" = "$pid_before" ] ||
	fail "the container was restarted for a live umount"

vmctl delete --purge "$n"
expect_rc 0
[ -z "$(lxc list --format csv -c n)" ] || fail "LXD has instances left: $(lxc list --format csv -c n)"
e2e_log "PASS (LXD $LXD_VERSION)"
