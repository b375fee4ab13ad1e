#!/usr/bin/env bash
# The virtualbox helper's long operations report progress: converting an
# image to VDI (qemu-img -p) and cloning (VBoxManage's "0%...10%..."), as
# `progress` notifications of the request, read from the command's output
# while it runs. The helper is driven over its pipes as the broker drives
# it (tools/helper-client.py), with the stand-in VBoxManage printing its
# progress slowly.
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
HELPER=$VMCTL_BIN_DIR/../libexec/vmctl/vmctl-vbox-helper
[ -x "$HELPER" ] || fail "$HELPER is not built"
scope=$E2E_TMP/scope
mkdir -p "$scope/instances/p1" "$scope/instances/p2"
qemu-img create -q -f qcow2 "$E2E_TMP/img.qcow2" 64M || fail "qemu-img create failed"
inst() {
	printf '{"name": "%s", "dir": "%s/instances/%s", "mac": "%s", "image": {"disk": "%s", "format": "qcow2"}, "networks": []}' \
		"$1" "$scope" "$1" "$2" "$E2E_TMP/img.qcow2"
}
inst p1 52:54:00:00:00:01 >"$E2E_TMP/p1.json"
export VBOX_STANDIN_LOG=$E2E_TMP/vboxmanage.log
export VBOX_STANDIN_STATE=$E2E_TMP/vbox-state.json
export VBOX_STANDIN_PROGRESS_DELAY=0.3
run /usr/bin/python3 "$SRC/tools/helper-client.py" --helper "$HELPER" --scope-dir "$scope" \
	--set local.virtualbox.manage="$SRC/tests/fixtures/vbox/VBoxManage" --instance "$E2E_TMP/p1.json" \
	'instance.create={}' "instance.clone={\"clone\": $(inst p2 52:54:00:00:00:02)}"
expect_rc 0
expect_out '^!! progress \{"msgid": 2, "fraction": 0\.0, "text": "Converting the image of p1 to VDI"\}'
expect_out '^!! progress \{"msgid": 2, "fraction": 1\.0, "text": "Converting the image of p1 to VDI"\}'
expect_out '^!! progress \{"msgid": 3, "fraction": 0\.0, "text": "Cloning p1 into p2"\}'
# Values in between, as VBoxManage printed them.
expect_out '^!! progress \{"msgid": 3, "fraction": 0\.[1-9][0-9]*, "text": "Cloning p1 into p2"\}'
expect_out '^!! progress \{"msgid": 3, "fraction": 1\.0, "text": "Cloning p1 into p2"\}'
expect_out '^<= instance\.clone \{\}'
# No progress file is left behind.
[ -z "$(ls "$scope" | grep progress)" ] || fail "a progress file was left in $scope"
e2e_log PASS
