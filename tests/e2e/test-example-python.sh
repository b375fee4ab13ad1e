#!/usr/bin/env bash
# The Python example helper (examples/py-helper, python3-msgpack, no
# libvmproto), whose instances are folders, driven through vmctl as the C
# toy is: launch, list, exec, stop, delete. The protocol is the contract,
# not the SDK.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/examples.sh"

example_drive pytoy "${VMCTL_SOURCE_DIR:-$(dirname "$0")/../..}/examples/py-helper"
e2e_log "PASS"
