#!/usr/bin/env bash
# An image without sshd on the lxd driver, against a private LXD
# (tests/e2e/lxd/lxdlib.sh): a copy of the test image with /usr/sbin/sshd
# removed, made in the test's own folder. Launch takes it as ready through
# LXD's exec API once its SSH port has refused connections for 30 s (and
# waits for cloud-init there); `vmctl exec` runs commands through that API
# with their exit status, stdout and stderr kept apart, stdin and -d; the
# broker's log says so; `vmctl shell` is refused with a clear message; the
# exec's recorded output and pushed stdin are not left in LXD or the guest.
. "$(dirname "$0")/lxd/lxdlib.sh"
. "$(dirname "$0")/lib.sh"
lxd_start

n=lxe$$
LXD_TIMEOUT=${E2E_LXD_TIMEOUT:-300}
LOG=$VMCTL_DATA/vmctld.log

# The shared image is never changed: a copy, without sshd (ssh.service then
# fails to start, so nothing listens on port 22).
nossh=$LXD_RUN/nossh.tar
cp "$LXD_IMAGE" "$nossh" || fail "cannot copy $LXD_IMAGE"
tar --delete -f "$nossh" rootfs/usr/sbin/sshd || fail "cannot remove sshd from the copy"
[ "$(tar -tf "$nossh" | head -n 1)" = metadata.yaml ] || fail "the copy does not start with metadata.yaml"
! tar -tf "$nossh" | grep -qx 'rootfs/usr/sbin/sshd' || fail "the copy still has sshd"

vmctl set local.lxd.socket="$LXD_SOCKET"
expect_rc 0
vmctl set local.driver=lxd
expect_rc 0
vmctl launch "$nossh" --name "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
grep -q "$n: no SSH (its SSH port has refused connections for 30 s); checking readiness and cloud-init through LXD's exec API" "$LOG" ||
	fail "the broker's log does not say the launch went through LXD's exec API"
grep -q "$n is ready through the driver's exec (no SSH)" "$LOG" || fail "the log does not say $n is ready through exec"

vmctl exec "$n" -- hostname
expect_rc 0
[ "$OUT" = "$n" ] || fail "hostname through exec is '$OUT', not $n"
grep -q "$n: no SSH (its SSH port refuses connections); running through LXD's exec API" "$LOG" ||
	fail "the broker's log does not say exec went through LXD's exec API"
vmctl exec "$n" -- cloud-init status
expect_rc 0
expect_out 'status: done'

# Exit status, and stdout and stderr kept apart.
vmctl exec "$n" -- false
[ "$RC" = 1 ] || fail "false through exec exits $RC, not 1"
vmctl exec "$n" -- sh -c 'echo to-out; echo to-err >&2; exit 3'
[ "$RC" = 3 ] || fail "exit 3 through exec exits $RC"
[ "$OUT" = to-out ] || fail "stdout is '$OUT'"
[ "$ERR" = to-err ] || fail "stderr is '$ERR'"
vmctl exec "$n" -- no-such-command
[ "$RC" = 127 ] || fail "a command not found exits $RC, not 127"
expect_err 'no-such-command: Command not found'
vmctl exec -d /etc "$n" -- pwd
expect_rc 0
[ "$OUT" = /etc ] || fail "-d /etc runs in '$OUT'"
vmctl exec "$n" -- sh -c 'echo "$1"' sh 'two words'
expect_rc 0
[ "$OUT" = 'two words' ] || fail "an argument with a space reached the guest as '$OUT'"

# Standard input from a file and from a pipe; none from /dev/null.
printf 'line one\nline two\n' >"$E2E_TMP/input"
"$VMCTL" exec "$n" -- wc -l <"$E2E_TMP/input" >"$E2E_TMP/out" 2>"$E2E_TMP/err"
RC=$?
[ "$RC" = 0 ] && [ "$(tr -d ' ' <"$E2E_TMP/out")" = 2 ] ||
	fail "stdin from a file: exit $RC, out '$(cat "$E2E_TMP/out")', err '$(cat "$E2E_TMP/err")'"
out=$(printf 'piped' | "$VMCTL" exec "$n" -- cat)
[ "$out" = piped ] || fail "stdin from a pipe reached the command as '$out'"
vmctl exec "$n" -- cat
expect_rc 0
[ -z "$OUT" ] || fail "cat without input printed '$OUT'"
vmctl exec "$n" -- sh -c 'ls /tmp/.vmctl-exec-stdin-* 2>/dev/null | wc -l'
[ "$OUT" = 0 ] || fail "the pushed stdin files are left in the guest"
logs=$(curl -s --unix-socket "$LXD_SOCKET" "http://lxd/1.0/instances/$n/logs")
! printf '%s' "$logs" | grep -q 'exec_' || fail "LXD keeps the exec's recorded output: $logs"

! grep -E "could not (read|delete)" "$LOG" || fail "the helper could not clean up after an exec"

# No interactive shell without SSH.
vmctl shell "$n"
expect_error "$n has no SSH .*vmctl shell needs it"

# A restart is ready through exec too.
vmctl restart "$n" --timeout "$LXD_TIMEOUT"
expect_rc 0
[ "$(grep -c "$n is ready through the driver's exec (no SSH" "$LOG")" -ge 2 ] ||
	fail "the restart was not taken as ready through exec"

vmctl delete --purge "$n"
expect_rc 0
[ -z "$(lxc list --format csv -c n)" ] || fail "LXD has instances left: $(lxc list --format csv -c n)"
e2e_log "PASS (LXD $LXD_VERSION)"
