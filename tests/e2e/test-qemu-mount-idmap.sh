#!/usr/bin/env bash
# Id maps of native mounts with the qemu driver: the share is served from an
# idmapped mount of its source, so a host file owned by 4242:4343 shows as
# the guest user's 1000:1000, a file the guest user creates belongs to
# 4242:4343 on the host, ids the map does not name show as themselves, an
# inconsistent map is refused and not recorded, and nothing of the
# idmapped mount outlives the VM or touches the source.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root (idmapped mounts); the test suite runs as root"

# Mounts under our data folder, one mount point per line.
mounts_here() {
	awk -v d="$VMCTL_DATA/" 'index($5, d) == 1 { print $5, $6 }' /proc/self/mountinfo
}

# A test that stops half-way leaves its VM running: detach its idmapped
# mounts before the data folder is removed, then clean up as usual.
idm_cleanup() {
	local rc=$? m
	for m in $(mounts_here | cut -d' ' -f1); do
		umount -l "$m" 2>/dev/null
	done
	(exit "$rc")
	e2e_cleanup
}
trap idm_cleanup EXIT

share=$E2E_TMP/share
mkdir -p "$share"
chmod 0777 "$share"
echo "owned by 4242" >"$share/theirs"
chown 4242:4343 "$share/theirs"
echo "owned by root" >"$share/roots"
chown 0:0 "$share/roots"
echo "owned by 1234" >"$share/other"
chown 1234:2345 "$share/other"
src_before=$(cd "$share" && stat -c '%n %u:%g %a' theirs roots other .)

launch_fast idm
expect_rc 0
vmctl stop idm
expect_rc 0

# One guest id given for two host ids: refused, nothing recorded.
vmctl mount --type native -u 5:1000 -u 6:1000 "$share" idm:/mnt/share
expect_error 'inconsistent uid map: guest uid 1000 appears in both'
expect_rc 2
vmctl mount --type native -u 4242:1000 -g 4343:1000 -g 4343:1001 "$share" idm:/mnt/share
expect_error 'inconsistent gid map: host gid 4343'
expect_rc 2
vmctl info idm
expect_rc 0
expect_no_out "$share"

vmctl mount --type native -u 4242:1000 -g 4343:1000 "$share" idm:/mnt/share
expect_rc 0
vmctl info idm --format json
expect_rc 0
expect_out '"uid_map": *"4242:1000"'
expect_out '"gid_map": *"4343:1000"'

vmctl start idm --timeout "$FAST_TIMEOUT"
expect_rc 0
mounts_here | grep -q idmapped || fail "no idmapped mount while the VM runs: $(mounts_here)"

vmctl exec idm -- stat -c '%u:%g' /mnt/share/theirs
expect_rc 0
[ "$OUT" = 1000:1000 ] || fail "the guest sees the host's 4242:4343 file as owned by '$OUT', not 1000:1000"
vmctl exec idm -- stat -c '%u:%g' /mnt/share/roots
expect_rc 0
[ "$OUT" = 0:0 ] || fail "the guest sees the host's 0:0 file as owned by '$OUT'"
vmctl exec idm -- stat -c '%u:%g' /mnt/share/other
expect_rc 0
[ "$OUT" = 1234:2345 ] || fail "the guest sees the host's 1234:2345 file as owned by '$OUT'"
vmctl exec idm -- cat /mnt/share/theirs
expect_rc 0
[ "$OUT" = "owned by 4242" ] || fail "the guest reads '$OUT'"

vmctl exec idm -- sh -c 'id -u; id -g; echo from the guest >/mnt/share/mine; stat -c %u:%g /mnt/share/mine'
expect_rc 0
[ "$(printf '%s\n' "$OUT" | tr '\n' ' ')" = "1000 1000 1000:1000 " ] ||
	fail "the guest user and its new file: '$OUT', expected uid and gid 1000 and 1000:1000"
[ "$(stat -c '%u:%g' "$share/mine")" = 4242:4343 ] ||
	fail "a file the guest user 1000 created belongs to $(stat -c '%u:%g' "$share/mine") on the host, not 4242:4343"
[ "$(cat "$share/mine")" = "from the guest" ] || fail "the host reads '$(cat "$share/mine")'"

vmctl stop idm
expect_rc 0
[ -z "$(mounts_here)" ] || fail "mounts of the instance remain after the stop: $(mounts_here)"
awk -v s="$share" '$5 == s' /proc/self/mountinfo | grep -q . && fail "something is mounted on the source $share"
[ "$(cd "$share" && stat -c '%n %u:%g %a' theirs roots other .)" = "$src_before" ] ||
	fail "the source changed: $(cd "$share" && stat -c '%n %u:%g %a' theirs roots other .)"

vmctl umount idm:/mnt/share
expect_rc 0
vmctl info idm
expect_rc 0
expect_no_out "$share"

e2e_log PASS
