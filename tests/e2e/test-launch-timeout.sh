#!/usr/bin/env bash
# A launch whose --timeout passes exits 5 and keeps the instance: the VM goes
# on booting and becomes usable.
. "$(dirname "$0")/lib.sh"

vmctl launch "$FAST_IMAGE" --name patient --timeout 1
expect_rc 5
expect_err 'tim'
expect_listed patient

# The instance was kept, not torn down: it finishes booting.
wait_until "$FAST_TIMEOUT" run "$VMCTL" exec patient -- true ||
	fail "the instance never became reachable after the timed-out launch"
expect_state patient Running

e2e_log PASS
