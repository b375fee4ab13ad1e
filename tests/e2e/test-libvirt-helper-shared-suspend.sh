#!/usr/bin/env bash
# Suspended instances in the scope the qemu and libvirt drivers share: a
# stale libvirt save is discarded, a qemu suspend is refused with a way out.
. "$(dirname "$0")/libvirt/lvns.sh"
. "$(dirname "$0")/libvirt/lvlib.sh"

[ -x "$LV_QEMU_HELPER" ] || lv_fail "$LV_QEMU_HELPER is not built"
"$LV_PY" "$LV_DIR/helper_shared_suspend.py" || lv_fail "see above"
lv_log PASS
