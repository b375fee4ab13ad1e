#!/usr/bin/env bash
# A broker that does not answer (stopped with SIGSTOP) makes every command
# give up with exit status 5 and a message naming the broker's pid and its
# log: at --timeout, at a command's default wait, and, for a command whose
# own wait is long, as soon as the broker leaves a check unanswered.
. "$(dirname "$0")/lib.sh"

vmctl version
expect_rc 0
bpid=$(broker_pids | head -n 1)
[ -n "$bpid" ] || fail "no broker is running after vmctl version"
# Whatever happens, the broker gets to run again, so cleanup can stop it.
trap 'rc=$?; kill -CONT "$bpid" 2>/dev/null; (exit "$rc"); e2e_cleanup' EXIT
kill -STOP "$bpid"

# expect_gave_up WHAT: vmctl returned (not killed by timeout 60), exit 5,
# with the pid and the log in the message.
expect_gave_up() {
	[ "$RC" -ne 124 ] || fail "$1 did not return within 60 seconds"
	expect_rc 5
	expect_err "pid $bpid"
	expect_err "$VMCTL_DATA/vmctld\\.log"
}

run timeout 60 "$VMCTL" list --timeout 2
expect_gave_up "vmctl list --timeout 2"
expect_err "did not answer 'list' within 2 seconds"

# list's default wait (30 s), or the check, whichever comes first.
run timeout 60 "$VMCTL" list
expect_gave_up "vmctl list"

# start waits --timeout (default 300 s) plus a margin for the broker's
# answer; a broker that answers no check is given up on long before.
run timeout 60 "$VMCTL" start --all
expect_gave_up "vmctl start --all"
expect_err "stopped answering"

kill -CONT "$bpid"
vmctl list
expect_rc 0
expect_out "No instances found"

e2e_log PASS
