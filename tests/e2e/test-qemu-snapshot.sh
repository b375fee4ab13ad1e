#!/usr/bin/env bash
# Snapshots on a real guest: data written before a snapshot is back after
# restoring it, and gone after restoring an older one; a restore without
# --destructive keeps the current state as a new snapshot; a snapshot
# carries the instance's specs.
. "$(dirname "$0")/lib.sh"

start_snap() {
	vmctl start snap --timeout "$FAST_TIMEOUT"
	expect_rc 0
}
guest() {
	vmctl exec snap -- sh -c "$1"
	expect_rc 0
}
# The files of /home/ubuntu/notes, one line.
notes() {
	vmctl exec snap -- sh -c 'cd /home/ubuntu/notes && ls | tr "\n" " "'
	expect_rc 0
	NOTES=$OUT
}

launch_fast snap
expect_rc 0
guest 'mkdir -p /home/ubuntu/notes && echo one >/home/ubuntu/notes/one && sync'

vmctl snapshot snap --name first
expect_error 'stop'

vmctl stop snap
expect_rc 0
vmctl snapshot snap --name first --comment "only one"
expect_rc 0
expect_out 'snap\.first'
vmctl snapshot snap --name first
expect_error 'already has a snapshot named first'

# Specs changed after the first snapshot come back with it.
vmctl set local.snap.cpus=2
expect_rc 0

start_snap
guest 'echo two >/home/ubuntu/notes/two && sync'
vmctl stop snap
expect_rc 0
vmctl snapshot snap
expect_rc 0
expect_out 'snap\.snapshot2'

vmctl list --snapshots
expect_rc 0
expect_out '^snap +first +-- +only one'
expect_out '^snap +snapshot2 +first'
vmctl info snap --snapshots --format json
expect_rc 0
expect_out '"comment": *"only one"'
expect_out '"created": *"20[0-9-]+T'

# Diverge: two goes away, three appears.
start_snap
guest 'rm /home/ubuntu/notes/two && echo three >/home/ubuntu/notes/three && sync'
vmctl stop snap
expect_rc 0

vmctl restore snap.nosuch
expect_error 'has no snapshot named nosuch'

vmctl restore snap.snapshot2
expect_rc 0
expect_err 'kept as snapshot snap\.snapshot3'
start_snap
notes
[ "$NOTES" = "one two " ] || fail "after restoring snapshot2 the notes are '$NOTES', expected 'one two '"
vmctl stop snap
expect_rc 0

vmctl restore --destructive snap.first
expect_rc 0
vmctl list --snapshots
expect_rc 0
expect_no_out 'snapshot4'
vmctl get local.snap.cpus
expect_rc 0
[ "$OUT" = 1 ] || fail "restoring 'first' left cpus at '$OUT', expected 1"
start_snap
notes
[ "$NOTES" = "one " ] || fail "after restoring first the notes are '$NOTES', expected 'one '"
vmctl stop snap
expect_rc 0

# The state saved before the non-destructive restore is whole.
vmctl restore --destructive snap.snapshot3
expect_rc 0
start_snap
notes
[ "$NOTES" = "one three " ] || fail "after restoring snapshot3 the notes are '$NOTES', expected 'one three '"
vmctl stop snap
expect_rc 0

# Deleting a snapshot: it cannot be recovered, so it takes --purge.
vmctl delete snap.snapshot3
expect_rc 2
expect_err 'use .vmctl delete --purge snap\.snapshot3'
vmctl list --snapshots
expect_out 'snapshot3'
vmctl delete --purge snap.snapshot3
expect_rc 0
vmctl list --snapshots
expect_rc 0
expect_no_out 'snapshot3'
expect_out 'first'
vmctl delete --purge snap.nosuch
expect_error 'no snapshot named nosuch'
expect_listed snap

e2e_log PASS
