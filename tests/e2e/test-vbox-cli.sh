#!/usr/bin/env bash
# The virtualbox driver through vmctl, against the stand-in VBoxManage of
# tests/fixtures/vbox (VirtualBox cannot run here). The stand-in boots no
# guest, so a launch runs up to the wait for SSH (a short --timeout: exit
# status 5, the instance kept) and the rest of the lifecycle works on that
# instance; every VBoxManage command line the helper ran is asserted from
# the stand-in's record. test-vbox-boot.sh boots a real guest behind it.
# Without VBoxManage the driver says why it cannot run.
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
STANDIN=$SRC/tests/fixtures/vbox/VBoxManage
[ -x "$STANDIN" ] || fail "$STANDIN is missing"
export VBOX_STANDIN_LOG=$E2E_TMP/vboxmanage.log
export VBOX_STANDIN_STATE=$E2E_TMP/vbox-state.json
: >"$VBOX_STANDIN_LOG"

# Did the stand-in receive this argument vector (JSON, exactly)?
expect_argv() {
	grep -qxF -- "$1" "$VBOX_STANDIN_LOG" || {
		e2e_log "VBoxManage received:"
		sed 's/^/  | /' "$VBOX_STANDIN_LOG" >&2
		fail "VBoxManage never received $1"
	}
}
# The row of the virtualbox driver in `vmctl drivers --format csv`.
vbox_row() {
	vmctl drivers --format csv
	expect_rc 0
	ROW=$(printf '%s\n' "$OUT" | grep '^virtualbox,')
}

# No VBoxManage anywhere (this host has no VirtualBox): honest, and refused.
command -v VBoxManage >/dev/null && fail "this host has a VBoxManage; the test needs none"
vbox_row
case $ROW in
virtualbox,no,no,*"VBoxManage not found"*"set local.virtualbox.manage"*) ;;
*) fail "the virtualbox row does not say VBoxManage is missing: $ROW" ;;
esac
vmctl set local.driver=virtualbox
expect_error 'cannot run on this host: VBoxManage not found'

# Too old a VirtualBox is named, with the minimum.
mkdir -p "$E2E_TMP/old"
printf '#!/bin/sh\nVBOX_STANDIN_VERSION=6.0.24r139119 exec "%s" "$@"\n' "$STANDIN" \
	>"$E2E_TMP/old/VBoxManage"
chmod +x "$E2E_TMP/old/VBoxManage"
vmctl set local.virtualbox.manage="$E2E_TMP/old/VBoxManage"
expect_rc 0
vbox_row
case $ROW in
*"is VirtualBox 6.0; the virtualbox driver needs 6.1 or later"*) ;;
*) fail "the virtualbox row does not name the minimum version: $ROW" ;;
esac
vmctl set local.virtualbox.manage=VBoxManage
expect_error 'absolute path of VBoxManage'

# The stand-in: usable, with the features of the drivers table.
vmctl set local.virtualbox.manage="$STANDIN"
expect_rc 0
vbox_row
[ "$ROW" = "virtualbox,no,yes,,virtualbox,0.1.0,no,yes,yes,yes,yes,$VMCTL_BIN_DIR/../libexec/vmctl/vmctl-vbox-helper" ] ||
	case $ROW in virtualbox,no,yes,,virtualbox,0.1.0,no,yes,yes,yes,yes,*vmctl-vbox-helper) ;;
	*) fail "unexpected virtualbox row: $ROW" ;; esac
vmctl set local.driver=virtualbox
expect_rc 0

# A small qcow2 with no kernel beside it: VirtualBox boots images itself.
mkdir -p "$E2E_TMP/img"
qemu-img create -q -f qcow2 "$E2E_TMP/img/plain.qcow2" 64M || fail "qemu-img create failed"
vmctl launch "$E2E_TMP/img/plain.qcow2" --name web --timeout 5
expect_rc 5
expect_err 'timed out waiting for web to answer SSH'
expect_state web Running
dir=$VMCTL_DATA/scopes/virtualbox/instances/web
vdi=$(ls "$VMCTL_DATA"/scopes/virtualbox/vdi/*.vdi) || fail "no VDI in the scope's cache"
[ "$(basename "$vdi")" = "$(sha256sum "$E2E_TMP/img/plain.qcow2" | cut -c1-64).vdi" ] ||
	fail "the VDI is not named for the image's sha256: $vdi"
[ "$(head -c 4 "$vdi" | od -An -c | tr -d ' ')" = "<<<" ] ||
	qemu-img info "$vdi" | grep -q 'file format: vdi' || fail "$vdi is not a VDI"
expect_argv "[\"createvm\", \"--name\", \"web\", \"--basefolder\", \"$dir\", \"--ostype\", \"Linux_64\", \"--register\"]"
port=$(grep -o 'vmctl-ssh,tcp,127.0.0.1,[0-9]*,,22' "$VBOX_STANDIN_LOG" | head -1 | cut -d, -f4)
[ -n "$port" ] || fail "no SSH port forward on 127.0.0.1 was asked for"
mac=$(awk '/^ *mac:/ { print $2; exit }' "$VMCTL_DATA/scopes/virtualbox/instances.yaml" | tr -d '":')
expect_argv "[\"modifyvm\", \"web\", \"--cpus\", \"1\", \"--memory\", \"1024\", \"--ioapic\", \"on\", \"--firmware\", \"efi\", \"--boot1\", \"disk\", \"--boot2\", \"none\", \"--nic1\", \"nat\", \"--nictype1\", \"virtio\", \"--macaddress1\", \"$mac\", \"--natpf1\", \"vmctl-ssh,tcp,127.0.0.1,$port,,22\"]"
expect_argv "[\"storagectl\", \"web\", \"--name\", \"SATA\", \"--add\", \"sata\", \"--controller\", \"IntelAhci\", \"--portcount\", \"2\", \"--bootable\", \"on\"]"
expect_argv "[\"createmedium\", \"disk\", \"--filename\", \"$dir/disk.vdi\", \"--diffparent\", \"$vdi\", \"--format\", \"VDI\"]"
expect_argv "[\"storageattach\", \"web\", \"--storagectl\", \"SATA\", \"--port\", \"0\", \"--device\", \"0\", \"--type\", \"hdd\", \"--medium\", \"$dir/disk.vdi\"]"
expect_argv "[\"storageattach\", \"web\", \"--storagectl\", \"SATA\", \"--port\", \"1\", \"--device\", \"0\", \"--type\", \"dvddrive\", \"--medium\", \"$dir/cloud-init.iso\"]"
expect_argv '["startvm", "web", "--type", "headless"]'

vmctl info web --format json
expect_rc 0
expect_out '^ *"10\.0\.2\.15"$'
expect_out "\"ssh_port\": $port,"
expect_out '"ssh_host": "127\.0\.0\.1"'

# A second instance of the same image reuses the VDI; its extra NICs are
# bridged or host-only as VBoxManage lists them.
vmctl networks
expect_rc 0
expect_out '^eth0 +bridge +VirtualBox bridged adapter \(Up\)'
expect_out '^vboxnet0 +host-only +VirtualBox host-only adapter'
expect_argv '["list", "bridgedifs"]'
vmctl launch "$E2E_TMP/img/plain.qcow2" --name net --timeout 3 --network name=eth0,mac=52:54:00:aa:00:01 --network name=vboxnet0,mac=52:54:00:aa:00:02
expect_rc 5
grep -q '"modifyvm", "net", .*"--nic2", "bridged", "--bridgeadapter2", "eth0", "--nictype2", "virtio", "--macaddress2", "525400aa0001", "--nic3", "hostonly", "--hostonlyadapter3", "vboxnet0", "--nictype3", "virtio", "--macaddress3", "525400aa0002"\]' "$VBOX_STANDIN_LOG" ||
	fail "the extra NICs were not attached as bridged and host-only"
[ "$(grep -c '"convert"' "$VBOX_STANDIN_LOG")" = 0 ] || fail "VBoxManage was asked to convert"
[ "$(ls "$VMCTL_DATA"/scopes/virtualbox/vdi/ | wc -l)" = 1 ] || fail "the image was converted twice"

# Stop: the ACPI button, then powered off.
vmctl stop web
expect_rc 0
expect_state web Stopped
expect_argv '["controlvm", "web", "acpipowerbutton"]'

# A guest that ignores the button is powered off after --timeout.
vmctl start web --timeout 3
expect_rc 5
touch "$VBOX_STANDIN_STATE.ignore-acpi"
vmctl stop web --timeout 2
expect_rc 0
rm -f "$VBOX_STANDIN_STATE.ignore-acpi"
expect_state web Stopped
expect_argv '["controlvm", "web", "poweroff"]'

# Suspend saves the state; stopping a suspended instance discards it.
vmctl start web --timeout 3
expect_rc 5
vmctl suspend web
expect_rc 0
expect_state web Suspended
expect_argv '["controlvm", "web", "savestate"]'
vmctl stop web --force
expect_rc 0
expect_state web Stopped
expect_argv '["discardstate", "web"]'

# Snapshots.
vmctl snapshot web --name first --comment "before; rm -rf /"
expect_rc 0
expect_argv '["snapshot", "web", "take", "first", "--description", "before; rm -rf /"]'
vmctl snapshot web --name second
expect_rc 0
vmctl list --snapshots
expect_rc 0
expect_out '^web +first +-- +before; rm -rf /'
expect_out '^web +second +first'
vmctl restore web.first --destructive
expect_rc 0
expect_argv '["snapshot", "web", "restore", "first"]'
vmctl delete web.second --purge
expect_rc 0
expect_argv '["snapshot", "web", "delete", "second"]'
vmctl list --snapshots
expect_rc 0
expect_no_out 'second'

# Clone: its own VM with its own MAC and SSH port.
vmctl clone web --name copy
expect_rc 0
expect_state copy Stopped
expect_argv "[\"clonevm\", \"web\", \"--name\", \"copy\", \"--basefolder\", \"$VMCTL_DATA/scopes/virtualbox/instances/copy\", \"--mode\", \"machine\", \"--register\"]"
grep -q '^\["modifyvm", "copy", "--macaddress1", "[0-9a-f]\{12\}", "--natpf1", "delete", "vmctl-ssh", "--natpf1", "vmctl-ssh,tcp,127.0.0.1,[0-9]*,,22"\]$' "$VBOX_STANDIN_LOG" ||
	fail "the clone did not get its own MAC and SSH forward"

# Features the driver lacks are refused before anything is done.
mkdir -p "$E2E_TMP/share"
vmctl mount --type native "$E2E_TMP/share" web
expect_error 'native mounts are not supported by the virtualbox driver; drivers that have them: qemu, lxd, hyperv'

# A VM removed behind vmctl's back does not break list.
"$STANDIN" controlvm net poweroff >/dev/null && "$STANDIN" unregistervm net --delete >/dev/null ||
	fail "the stand-in could not remove net"
vmctl list
expect_rc 0
expect_out '^net +Unknown'
vmctl info net
expect_rc 0
expect_out 'VirtualBox has no VM net'

# A VM that stops by itself ends a launch waiting for its SSH at once
# (the helper notices it and tells the broker), instead of at the timeout.
"$VMCTL" launch "$E2E_TMP/img/plain.qcow2" --name halt --timeout 900 \
	>"$E2E_TMP/halt.out" 2>"$E2E_TMP/halt.err" </dev/null &
halt_pid=$!
wait_until 120 grep -qF '["startvm", "halt", "--type", "headless"]' "$VBOX_STANDIN_LOG" ||
	fail "the launch of halt never started its VM"
"$STANDIN" controlvm halt poweroff >/dev/null || fail "the stand-in could not power off halt"
wait "$halt_pid"
RC=$?
ERR=$(cat "$E2E_TMP/halt.err")
expect_fail
expect_err 'its VM is no longer running; the instance is kept'
expect_state halt Stopped

# Delete removes the VM; the list has only what is left.
vmctl delete --purge web copy net halt
expect_rc 0
expect_argv '["unregistervm", "web", "--delete"]'
expect_argv '["unregistervm", "copy", "--delete"]'
expect_not_listed web
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(1 if s["vms"] else 0)' \
	"$VBOX_STANDIN_STATE" || fail "VirtualBox still has VMs after delete --purge"

e2e_log PASS
