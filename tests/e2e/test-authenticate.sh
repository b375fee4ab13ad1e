#!/usr/bin/env bash
# local.passphrase and `vmctl authenticate`: a user outside the broker's
# user, root and the group vmctl cannot use it (the socket is 0600); once a
# passphrase is set (kept only as a yescrypt hash), that user may connect
# but only authenticate; a wrong passphrase is refused, the right one lets
# the user in, now and in later connections and after a broker restart; a
# new passphrase shuts the user out again. The user is made by the test and
# removed afterwards.
. "$(dirname "$0")/lib.sh"

broker_gone() { [ -z "$(broker_pids)" ]; }

[ "$(id -u)" -eq 0 ] || fail "this test makes a user: run it as root"
TEST_USER=vmctlauth$$
auth_cleanup() {
	local rc=$?
	pkill -KILL -u "$TEST_USER" 2>/dev/null
	userdel "$TEST_USER" 2>/dev/null
	(exit "$rc")
	e2e_cleanup
}
trap auth_cleanup EXIT
useradd --no-create-home --user-group --shell /bin/sh "$TEST_USER" || fail "cannot make $TEST_USER"
getent group vmctl | grep -qw "$TEST_USER" && fail "$TEST_USER is in the group vmctl"

# The test user runs its own copy of vmctl against our broker, whose
# folder it may traverse (as a system-wide broker's).
mkdir -p "$E2E_TMP/bin"
cp "$VMCTL" "$E2E_TMP/bin/vmctl" && chmod 755 "$E2E_TMP/bin" "$E2E_TMP/bin/vmctl" ||
	fail "cannot copy vmctl"
chmod 711 "$VMCTL_DATA"
as_user() {
	run runuser -u "$TEST_USER" -- env VMCTL_DATA="$VMCTL_DATA" VMCTL_NO_AUTOSTART=1 \
		"$E2E_TMP/bin/vmctl" "$@"
}
# as_user_stdin TEXT ARGS...: with TEXT as standard input
as_user_stdin() {
	local text=$1
	shift
	printf '%s\n' "$text" >"$E2E_TMP/stdin"
	chmod 644 "$E2E_TMP/stdin"
	e2e_log "\$ (as $TEST_USER) vmctl $* < [passphrase]"
	runuser -u "$TEST_USER" -- env VMCTL_DATA="$VMCTL_DATA" VMCTL_NO_AUTOSTART=1 \
		"$E2E_TMP/bin/vmctl" "$@" <"$E2E_TMP/stdin" >"$E2E_TMP/out" 2>"$E2E_TMP/err"
	RC=$?
	OUT=$(cat "$E2E_TMP/out")
	ERR=$(cat "$E2E_TMP/err")
	[ -z "$ERR" ] || printf '%s\n' "$ERR" | sed 's/^/  err| /' >&2
}

vmctl version
expect_rc 0

# No passphrase: the socket is the broker's user's only.
as_user list
expect_rc 3
expect_error "Permission denied"
as_user authenticate anything
expect_rc 3

vmctl set local.passphrase=correct-horse
expect_rc 0
vmctl get local.passphrase
expect_rc 0
expect_out '^set$'
grep -qE '^local\.passphrase: .?\$y\$' "$VMCTL_DATA/settings.yaml" ||
	fail "settings.yaml does not hold a yescrypt hash"
! grep -rq correct-horse "$VMCTL_DATA" || fail "the passphrase is stored in clear"

# Connected, but not let in.
as_user list
expect_fail
expect_error "serves root, its own user and the group vmctl only; give its passphrase with 'vmctl authenticate'"
as_user_stdin wrong-horse authenticate
expect_fail
expect_error "wrong passphrase"
as_user list
expect_fail
expect_error "vmctl authenticate"

as_user_stdin correct-horse authenticate
expect_rc 0
as_user list
expect_rc 0
expect_out "No instances found"
as_user version
expect_rc 0

# Recorded: a restarted broker still lets the user in.
kill -TERM $(broker_pids)
wait_until 30 broker_gone || fail "the broker did not stop"
vmctl version
expect_rc 0
as_user list
expect_rc 0

# A new passphrase: who gave the old one must authenticate again.
vmctl set local.passphrase=battery-staple
expect_rc 0
as_user list
expect_fail
expect_error "vmctl authenticate"
as_user_stdin correct-horse authenticate
expect_error "wrong passphrase"
as_user_stdin battery-staple authenticate
expect_rc 0
as_user list
expect_rc 0

# No passphrase again: the socket is closed to the user.
vmctl set local.passphrase=
expect_rc 0
as_user list
expect_rc 3
expect_error "Permission denied"

e2e_log PASS
