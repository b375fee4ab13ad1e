#!/usr/bin/env bash
# The libvirt helper driven over its pipes on a real libvirtd: create, start,
# exec, suspend/resume keeping a process, stop, start, forced stop, delete.
. "$(dirname "$0")/libvirt/lvns.sh"
. "$(dirname "$0")/libvirt/lvlib.sh"

"$LV_PY" "$LV_DIR/helper_lifecycle.py" || lv_fail "see above"
lv_log PASS
