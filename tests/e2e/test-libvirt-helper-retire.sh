#!/usr/bin/env bash
# The libvirt helper's domains: orphans removed on connection, idle ones
# undefined when the helper leaves, the instances' files kept.
. "$(dirname "$0")/libvirt/lvns.sh"
. "$(dirname "$0")/libvirt/lvlib.sh"

"$LV_PY" "$LV_DIR/helper_retire.py" || lv_fail "see above"
lv_log PASS
