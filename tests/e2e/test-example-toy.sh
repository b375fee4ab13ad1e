#!/usr/bin/env bash
# The C example helper (examples/toy-helper), whose instances are folders,
# driven through vmctl as a user would: launch, list, exec, stop, delete.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/examples.sh"

example_drive toy "$VMCTL_BIN_DIR/../examples"
e2e_log "PASS"
