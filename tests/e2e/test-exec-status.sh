#!/usr/bin/env bash
# `vmctl exec` passes the command's output through and exits with the
# command's own status.
. "$(dirname "$0")/lib.sh"

launch_fast runner
expect_rc 0

vmctl exec runner -- sh -c 'exit 7'
expect_rc 7

vmctl exec runner -- false
expect_rc 1

vmctl exec runner -- sh -c 'echo "to stdout"; echo "to stderr" >&2; exit 0'
expect_rc 0
[ "$OUT" = "to stdout" ] || fail "stdout was '$OUT'"
expect_err '^to stderr$'

# Arguments reach the guest as separate words, spaces and quotes intact.
vmctl exec runner -- printf '%s|' 'two words' "it's" '$HOME'
expect_rc 0
[ "$OUT" = "two words|it's|\$HOME|" ] || fail "arguments arrived as '$OUT'"

vmctl exec runner -- sudo id -u
expect_rc 0
[ "$OUT" = 0 ] || fail "passwordless sudo gave '$OUT'"

e2e_log PASS
