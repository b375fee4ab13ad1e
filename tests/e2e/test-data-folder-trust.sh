#!/usr/bin/env bash
# The data folder is trusted only when it is the user's own: a folder
# someone else owns or can write to, or a log that is a symbolic link, is
# refused with a clear message by vmctl and by vmctld, and the file the link
# points to is never written. A relative VMCTL_DATA works from anywhere,
# and the broker keeps no working folder busy.
. "$(dirname "$0")/lib.sh"

VMCTLD=$VMCTL_BIN_DIR/vmctld
secret=$E2E_TMP/secret
printf 'root only\n' >"$secret"
chmod 600 "$secret"
cp "$secret" "$E2E_TMP/secret.before"

secret_untouched() {
	cmp -s "$secret" "$E2E_TMP/secret.before" || fail "the log's link target was written: $(cat "$secret")"
}
no_broker() {
	[ -z "$(broker_pids)" ] || fail "a broker runs: $(broker_pids)"
}
# refused PATTERN [--foreground]: vmctl and vmctld --detach (and, for the
# folder, vmctld --foreground, which logs on stderr) refuse, saying so.
refused() {
	vmctl version
	expect_rc 3
	expect_err "$1"
	secret_untouched
	run "$VMCTLD" --detach
	expect_rc 1
	expect_err "$1"
	secret_untouched
	if [ "${2:-}" = --foreground ]; then
		run timeout 30 "$VMCTLD" --foreground
		expect_rc 1
		expect_err "$1"
	fi
	no_broker
}

# The log is a symbolic link to a file only root may read.
ln -s "$secret" "$VMCTL_DATA/vmctld.log"
refused "refusing the (broker's )?log $VMCTL_DATA/vmctld.log: it is a symbolic link"

# The folder is writable by others.
chmod 0777 "$VMCTL_DATA"
refused "refusing the data folder $VMCTL_DATA: it is writable by others \(mode 0777\); set VMCTL_DATA" --foreground
chmod 0700 "$VMCTL_DATA"

# The folder belongs to another user (as in the report: root ran vmctl on it).
if [ "$(id -u)" = 0 ]; then
	chown 65534 "$VMCTL_DATA"
	refused "refusing the data folder $VMCTL_DATA: it is owned by uid 65534, not by you \(uid 0\)" --foreground
	chown 0 "$VMCTL_DATA"
else
	e2e_log "not root: the folder of another user is left to the unit tests"
fi
rm "$VMCTL_DATA/vmctld.log"

# A relative VMCTL_DATA: the broker resolves it once, then works in "/".
relative_broker=
stop_relative_broker() {
	[ -n "$relative_broker" ] || return 0
	kill -TERM "$relative_broker" 2>/dev/null
	for _ in $(seq 1 50); do
		alive "$relative_broker" || return 0
		sleep 0.1
	done
	kill -KILL "$relative_broker" 2>/dev/null
}
# lib.sh finds our processes by the absolute VMCTL_DATA of their environment.
trap 'rc=$?; stop_relative_broker; (exit $rc); e2e_cleanup' EXIT
cd "$(dirname "$VMCTL_DATA")" || fail "cannot cd"
run env VMCTL_DATA="./$(basename "$VMCTL_DATA")" "$VMCTL" version
expect_rc 0
expect_out '^vmctld +0\.'
relative_broker=$(sed -n 's/.* vmctld INFO: vmctld .* starting (pid \([0-9]*\), data \(.*\))$/\1/p' \
	"$VMCTL_DATA/vmctld.log" | tail -n 1)
[ -n "$relative_broker" ] || fail "no broker start in the log"
grep -qF "starting (pid $relative_broker, data $VMCTL_DATA)" "$VMCTL_DATA/vmctld.log" ||
	fail "the broker did not make the data folder absolute"
[ "$(readlink "/proc/$relative_broker/cwd")" = / ] ||
	fail "the broker works in $(readlink "/proc/$relative_broker/cwd"), not in /"
cd / || fail "cannot cd"
# The same broker answers the absolute path.
vmctl version
expect_rc 0
[ "$(sed -n 's/.*starting (pid \([0-9]*\),.*/\1/p' "$VMCTL_DATA/vmctld.log" | wc -l)" = 1 ] ||
	fail "a second broker was started"
secret_untouched
e2e_log "PASS"
