#!/usr/bin/env bash
# Aliases run from the host: `vmctl alias` writes a script in DATA/bin;
# run by name from PATH in a host folder mounted in the instance, the
# command runs in the instance's view of that folder (and in the home
# folder elsewhere), with the alias's arguments and the command's exit
# status; `delete --purge` removes the instance's aliases, saying so.
. "$(dirname "$0")/lib.sh"

launch_fast web
expect_rc 0
mkdir -p "$E2E_TMP/proj/sub"
echo "from the host" >"$E2E_TMP/proj/hello.txt"
# A native (9p) mount is made on a stopped instance.
vmctl stop web
expect_rc 0
vmctl mount --type native "$E2E_TMP/proj" web:/home/ubuntu/proj
expect_rc 0
vmctl start web
expect_rc 0

vmctl alias web:pwd wpwd
expect_rc 0
expect_out "add that folder to PATH"
expect_out "export PATH=\"$VMCTL_DATA/bin:\\\$PATH\""
vmctl alias web:cat wcat
expect_rc 0
expect_no_out "PATH" # said once
vmctl alias --no-map-working-directory web:pwd wpwd-home
expect_rc 0
vmctl aliases
expect_rc 0
expect_out "^wcat +web +cat +default\\* +map"
expect_out "^wpwd-home +web +pwd +default\\* +default"

export PATH="$VMCTL_DATA/bin:$PATH"
cd "$E2E_TMP/proj/sub" || fail "no $E2E_TMP/proj/sub"
run wpwd
expect_rc 0
[ "$OUT" = /home/ubuntu/proj/sub ] || fail "wpwd in a mounted folder gave '$OUT'"
run wpwd-home
expect_rc 0
[ "$OUT" = /home/ubuntu ] || fail "wpwd-home gave '$OUT'"
cd "$E2E_TMP/proj" || fail "no $E2E_TMP/proj"
run wcat hello.txt
expect_rc 0
[ "$OUT" = "from the host" ] || fail "wcat hello.txt gave '$OUT'"
run wcat "no such file"
expect_rc 1
expect_err "no such file"
cd "$E2E_TMP" || fail "no $E2E_TMP"
run wpwd
expect_rc 0
[ "$OUT" = /home/ubuntu ] || fail "wpwd outside the mount gave '$OUT'"

# A soft delete keeps the aliases (recover brings the instance back);
# purging removes them and their scripts.
vmctl delete web
expect_rc 0
[ -x "$VMCTL_DATA/bin/wpwd" ] || fail "a soft delete removed the alias"
vmctl delete --purge web
expect_rc 0
expect_out "Removed alias wpwd .*web is gone"
expect_out "Removed alias wcat "
[ ! -e "$VMCTL_DATA/bin/wpwd" ] && [ ! -e "$VMCTL_DATA/bin/wcat" ] ||
	fail "the scripts of the removed aliases are left"
vmctl aliases
expect_rc 0
expect_out "No aliases defined."

e2e_log PASS
