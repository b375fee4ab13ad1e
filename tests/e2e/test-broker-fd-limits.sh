#!/usr/bin/env bash
# Many connections held open do not make the broker spin or fill its log,
# whatever the open-file limit, and `vmctl list` answers once they are gone
# (or once the broker has dropped them as idle). One user's connections are
# capped. Needs no VM.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
CLIENTS="$PY $(dirname "$0")/broker-clients.py"
SOCK=$VMCTL_DATA/vmctld.sock
LOG=$VMCTL_DATA/vmctld.log
BROKER=

# start_broker [COMMAND-PREFIX...]: vmctld --detach, as vmctl starts it.
start_broker() {
	run "$@" "$VMCTL_BIN_DIR/vmctld" --detach
	expect_rc 0
	BROKER=$(broker_pids)
	[ -n "$BROKER" ] || fail "no vmctld running after vmctld --detach"
	list_answers || fail "the new broker does not answer"
}
stop_broker() {
	kill -TERM "$BROKER"
	wait_until 20 eval '! alive "$BROKER"' || fail "vmctld $BROKER did not stop"
}
# Only this broker, never one started by vmctl behind our back.
list_answers() {
	run env VMCTL_NO_AUTOSTART=1 timeout 60 "$VMCTL" list
	[ "$RC" -eq 0 ]
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
log_size() { stat -c %s "$LOG"; }

# hold NAME COUNT MODE: keep COUNT connections open in the background.
HOLDER=
hold() {
	rm -f "$E2E_TMP/$1" "$E2E_TMP/$1.release"
	$CLIENTS "$SOCK" "$2" "$3" "$E2E_TMP/$1" &
	HOLDER=$!
	wait_until 60 grep -q '"ready": true' "$E2E_TMP/$1" 2>/dev/null ||
		fail "the $2 connections were not all tried"
	e2e_log "holding: $(cat "$E2E_TMP/$1")"
}
release() {
	touch "$E2E_TMP/$1.release"
	wait "$HOLDER"
}
# field NAME KEY: a number from the holder's status.
field() { $PY -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$E2E_TMP/$1" "$2"; }

# Holding 80 connections must cost no CPU and no log to speak of.
expect_quiet_while_held() {
	local t0 t1 s0 s1
	sleep 1
	t0=$(cpu_ticks "$BROKER") s0=$(log_size)
	sleep 5
	t1=$(cpu_ticks "$BROKER") s1=$(log_size)
	e2e_log "$1: vmctld used $((t1 - t0)) ticks of CPU in 5 s; its log grew $((s1 - s0)) bytes"
	[ $((t1 - t0)) -lt 100 ] || fail "$1: vmctld spins ($((t1 - t0)) ticks of CPU in 5 s)"
	[ $((s1 - s0)) -lt 8192 ] || fail "$1: vmctld's log grew $((s1 - s0)) bytes in 5 s"
}

# 1. An open-file limit of 64 and 80 connections: the broker takes what its
#    descriptors allow and lets the rest wait.
start_broker prlimit --nofile=64:64
hold idle80 80 idle
expect_quiet_while_held "nofile 64"
release idle80
list_answers || fail "vmctl list does not answer after the connections were released"
[ "$(log_size)" -lt 65536 ] || fail "vmctld's log is $(log_size) bytes"

# 2. No descriptor left at all (the limit lowered under the running broker):
#    accept fails; the broker turns clients away with its reserve
#    descriptor and pauses instead of retrying in a loop.
nfds=$(find "/proc/$BROKER/fd" -mindepth 1 | wc -l)
prlimit --pid "$BROKER" --nofile=$((nfds + 3)):64 || fail "prlimit --pid failed"
hold emfile 80 idle
expect_quiet_while_held "no descriptor left"
[ "$(field emfile warned)" -gt 0 ] || fail "no client was told that vmctld has no descriptor left"
grep -q 'accept: Too many open files' "$LOG" || fail "the log does not say that accept failed"
release emfile
list_answers || fail "vmctl list does not answer after the connections were released"
prlimit --pid "$BROKER" --nofile=64:64
[ "$(log_size)" -lt 65536 ] || fail "vmctld's log is $(log_size) bytes"
stop_broker

# 3. Idle connections are dropped after the deadline (3 s here), so
#    vmctl list gets in while 80 of them are still held.
start_broker env VMCTL_CLIENT_DEADLINE=3 prlimit --nofile=64:64
hold idle 80 idle
list_answers || fail "vmctl list does not answer while idle connections are held"
wait_until 30 eval '[ "$(field idle closed)" -ge 32 ]' ||
	fail "the broker did not drop idle connections ($(field idle closed) closed)"
grep -q 'client dropped: idle for 3 s' "$LOG" || fail "the log does not say why clients were dropped"
release idle
stop_broker

# 4. One user may hold 256 connections; the next ones are turned away (a
#    request gets an error saying why), and so is vmctl until some are gone.
start_broker
hold peruid 300 idle
wait_until 30 eval '[ "$(field peruid closed)" -ge 44 ]' ||
	fail "connections past 256 were not turned away ($(field peruid closed) closed)"
sleep 1
[ "$(field peruid closed)" -eq 44 ] || fail "$(field peruid closed) connections closed, not 44"
run env VMCTL_NO_AUTOSTART=1 timeout 60 "$VMCTL" list
expect_error 'too many connections'
release peruid
list_answers || fail "vmctl list does not answer after the connections were released"
stop_broker

e2e_log PASS
