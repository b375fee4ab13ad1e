#!/usr/bin/env bash
# Id maps of native mounts with the qemu driver: 9p shows host ids
# unchanged, so a map of an id onto itself holds (the guest sees the host's
# owners, files the guest user creates belong to the same id on the host)
# and any other map is refused, not recorded and silently ignored.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || { e2e_log "SKIP: needs root (qemu can chown only as root)"; exit 0; }

share=$E2E_TMP/share
mkdir -p "$share"
chmod 0777 "$share"
echo "owned by 1234" >"$share/theirs"
chown 1234:2345 "$share/theirs"

launch_fast idm
expect_rc 0
vmctl stop idm
expect_rc 0

vmctl mount --type native -u 1000:1001 "$share" idm:/mnt/share
expect_error 'cannot map host uid 1000 to guest uid 1001.*only a map of an id onto itself \(1000:1000\)'
expect_rc 2
vmctl mount --type native -u 1000:1000 -g 0:1000 "$share" idm:/mnt/share
expect_error 'cannot map host gid 0 to guest gid 1000'
vmctl info idm
expect_rc 0
expect_no_out "$share"

vmctl mount --type native -u 1000:1000 -g 1000:1000 "$share" idm:/mnt/share
expect_rc 0
vmctl info idm --format json
expect_rc 0
expect_out '"uid_map": *"1000:1000"'

vmctl start idm --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl exec idm -- stat -c '%u:%g' /mnt/share/theirs
expect_rc 0
[ "$OUT" = 1234:2345 ] || fail "the guest sees the host's 1234:2345 file as owned by '$OUT'"
vmctl exec idm -- sh -c 'id -u; id -g; echo from the guest >/mnt/share/mine'
expect_rc 0
[ "$(printf '%s\n' "$OUT" | tr '\n' ' ')" = "1000 1000 " ] ||
	fail "the guest user is '$OUT', expected uid and gid 1000"
[ "$(stat -c '%u:%g' "$share/mine")" = 1000:1000 ] ||
	fail "a file the guest user 1000 created belongs to $(stat -c '%u:%g' "$share/mine") on the host"
[ "$(cat "$share/mine")" = "from the guest" ] || fail "the host reads '$(cat "$share/mine")'"

e2e_log PASS
