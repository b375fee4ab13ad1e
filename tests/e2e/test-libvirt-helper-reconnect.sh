#!/usr/bin/env bash
# libvirtd killed and restarted under a running instance: the helper reports
# it unknown meanwhile, reconnects by itself, and the VM survives.
. "$(dirname "$0")/libvirt/lvns.sh"
. "$(dirname "$0")/libvirt/lvlib.sh"

"$LV_PY" "$LV_DIR/helper_reconnect.py" || lv_fail "see above"
lv_log PASS
