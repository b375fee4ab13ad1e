#!/usr/bin/env bash
# Clients that send most of a 4 MiB request and stall do not take the
# broker's memory: what all clients may leave unfinished is budgeted (16 MiB),
# clients past the budget are dropped at once, the others when their request
# is still unfinished after the deadline; `vmctl list` answers throughout.
# Needs no VM. (The memory bound is for a normal build: AddressSanitizer
# keeps freed memory in quarantine.)
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
CLIENTS="$PY $(dirname "$0")/broker-clients.py"
SOCK=$VMCTL_DATA/vmctld.sock
LOG=$VMCTL_DATA/vmctld.log
STATUS=$E2E_TMP/stalled

list_answers() {
	run env VMCTL_NO_AUTOSTART=1 timeout 60 "$VMCTL" list
	[ "$RC" -eq 0 ]
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$BROKER/status"; }
field() { $PY -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$STATUS" "$1"; }

# A short deadline (the default is 15 s) keeps the test quick.
run env VMCTL_CLIENT_DEADLINE=8 "$VMCTL_BIN_DIR/vmctld" --detach
expect_rc 0
BROKER=$(broker_pids)
[ -n "$BROKER" ] || fail "no vmctld running after vmctld --detach"
list_answers || fail "the broker does not answer"
rss0=$(rss_kib)

$CLIENTS "$SOCK" 25 partial "$STATUS" &
holder=$!
peak=$rss0
sample() {
	local r
	r=$(rss_kib)
	[ "$r" -le "$peak" ] || peak=$r
}
# Until every client has sent its 4 MiB or been dropped for it.
for _ in $(seq 1 600); do
	sample
	grep -q '"ready": true' "$STATUS" 2>/dev/null && break
	sleep 0.1
done
grep -q '"ready": true' "$STATUS" || fail "the clients did not finish sending"
e2e_log "sent: $(cat "$STATUS")"
for _ in $(seq 1 10); do
	sample
	sleep 0.1
done
e2e_log "vmctld RSS: $rss0 KiB before, $peak KiB at most while the clients stalled"
[ "$peak" -lt $((rss0 + 40 * 1024)) ] ||
	fail "vmctld grew from $rss0 KiB to $peak KiB for 25 stalled clients"
[ "$(field closed)" -ge 20 ] ||
	fail "only $(field closed) of the 25 clients were dropped past the input budget"
grep -q 'client dropped: incomplete messages would hold more than the 16777216 bytes' "$LOG" ||
	fail "the log does not say why clients past the budget were dropped"
list_answers || fail "vmctl list does not answer while clients stall"

# The ones within the budget are dropped at the deadline.
wait_until 60 eval '[ "$(field closed)" -eq 25 ]' ||
	fail "$((25 - $(field closed))) stalled clients are still connected"
grep -q 'client dropped: a message was not complete 8 s after its first byte' "$LOG" ||
	fail "the log does not say why stalled clients were dropped"
touch "$STATUS.release"
wait "$holder"
list_answers || fail "vmctl list does not answer after the stalled clients were dropped"
e2e_log "vmctld RSS at the end: $(rss_kib) KiB"

e2e_log PASS
