#!/bin/sh
# A broken helper: it prints a banner on stdout before the protocol starts,
# the mistake tools/vmctl-helper-check exists to catch, then runs the toy
# helper ($VMCTL_TOY_HELPER), which is correct.
echo "toy helper starting"
exec "${VMCTL_TOY_HELPER:?VMCTL_TOY_HELPER must name vmctl-toy-helper}" "$@"
