#!/usr/bin/env bash
# Clone on a real guest: a clone of a stopped instance gets the source's
# disk but its own name, hostname and MAC address; default names are
# SRC-clone1, SRC-clone2, ...
. "$(dirname "$0")/lib.sh"

launch_fast orig
expect_rc 0
vmctl exec orig -- sh -c 'echo kept >/home/ubuntu/kept && sync; cat /sys/class/net/eth0/address'
expect_rc 0
orig_mac=$OUT

vmctl clone orig
expect_error 'needs it stopped'
vmctl stop orig
expect_rc 0
vmctl clone orig --name orig
expect_error 'already exists'
vmctl clone orig
expect_rc 0
expect_out 'orig-clone1'
vmctl clone orig --name twin
expect_rc 0
vmctl list
expect_rc 0
expect_out '^orig-clone1 +Stopped'
expect_out '^twin +Stopped'
vmctl delete --purge twin
expect_rc 0

vmctl start orig-clone1 --timeout "$FAST_TIMEOUT"
expect_rc 0
vmctl exec orig-clone1 -- sh -c 'hostname; cat /sys/class/net/eth0/address; cat /home/ubuntu/kept'
expect_rc 0
set -- $OUT
[ "${1:-}" = orig-clone1 ] || fail "the clone's hostname is '${1:-}', expected orig-clone1"
[ -n "${2:-}" ] && [ "$2" != "$orig_mac" ] || fail "the clone's MAC '${2:-}' is the source's ($orig_mac)"
[ "${3:-}" = kept ] || fail "the clone does not have the source's data"
vmctl info orig-clone1 --format json
expect_rc 0
expect_out "\"mac\": *\"$2\""

# The next default name skips the one taken.
vmctl stop orig-clone1
expect_rc 0
vmctl clone orig
expect_rc 0
expect_out 'orig-clone2'

e2e_log PASS
