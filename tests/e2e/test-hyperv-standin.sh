#!/usr/bin/env bash
# The hyperv driver end to end through vmctl, against the stand-in
# PowerShell of tests/fixtures/hyperv (no Hyper-V on this host): hello is
# honest before a PowerShell is configured; then launch (up to SSH
# readiness, which no stand-in VM gives: a short --timeout, the instance
# kept), list, networks, an extra network, stop (and -TurnOff when the
# guest ignores the shutdown), start, suspend, snapshot, restore, clone,
# delete, a refused mount and a refused injection name. Every PowerShell
# call is checked to be the helper's argv shape, and the scripts of each
# step are looked for in the stand-in's record.
. "$(dirname "$0")/lib.sh"

SRC=${VMCTL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
STANDIN=$SRC/tests/fixtures/hyperv/powershell
export HV_STANDIN_LOG=$E2E_TMP/powershell.log HV_STANDIN_STATE=$E2E_TMP/hyperv.json
IMAGE=$E2E_TMP/blank.qcow2
qemu-img create -q -f qcow2 "$IMAGE" 64M || fail "cannot make $IMAGE"

# A call of the stand-in whose script matches (grep -F) $1.
logged() { grep -qF -- "$1" "$HV_STANDIN_LOG" || fail "no PowerShell call with: $1"; }
vm_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vms"][sys.argv[2]][sys.argv[3]])' "$HV_STANDIN_STATE" "$@"; }

# Before a PowerShell is set: not usable, and why.
vmctl drivers --format csv
expect_rc 0
printf '%s\n' "$OUT" | grep -E '^hyperv,' | grep -qF 'Hyper-V needs Windows (10/11 Pro, Enterprise or Server)' ||
	fail "vmctl drivers does not say why hyperv cannot run here"
vmctl set local.driver=hyperv
expect_error "Hyper-V needs Windows"

vmctl set local.hyperv.powershell="$STANDIN"
expect_rc 0
vmctl set local.driver=hyperv
expect_rc 0
logged '$p=[Security.Principal.WindowsPrincipal]'

vmctl networks
expect_rc 0
expect_out 'External'
expect_out 'Default Switch'

# Launch: converted once to VHDX, New-VM Generation 2, the seed as a DVD;
# the stand-in's VM never answers SSH, so the launch times out (5), kept.
vmctl launch "$IMAGE" --name web --cpus 2 --memory 1G --network External --timeout 15
expect_rc 5
ls "$VMCTL_DATA"/scopes/hyperv/vhdx/*.vhdx >/dev/null 2>&1 || fail "no converted VHDX"
logged "New-VM -Name 'web' -Generation 2 -VHDPath '$VMCTL_DATA/scopes/hyperv/instances/web/disk.vhdx'"
logged "Set-VMProcessor -VMName 'web' -Count 2"
logged "Set-VMFirmware -VMName 'web' -EnableSecureBoot Off"
logged "Add-VMDvdDrive -VMName 'web' -Path '$VMCTL_DATA/scopes/hyperv/instances/web/cloud-init.iso'"
logged "-SwitchName 'External'"
logged "Start-VM -Name 'web'"
expect_state web Running
vmctl list
expect_out 'web +Running +192\.0\.2\.10'

# Stop: graceful, then -TurnOff when the guest ignores it.
touch "$HV_STANDIN_STATE.stop-hangs"
vmctl stop web --timeout 3
expect_rc 0
rm -f "$HV_STANDIN_STATE.stop-hangs"
logged "Stop-VM -Name 'web' -Force;"
logged "Stop-VM -Name 'web' -TurnOff -Force;"
expect_state web Stopped

# Start (again no SSH), then suspend: Save-VM.
vmctl start web --timeout 5
expect_rc 5
expect_state web Running
vmctl suspend web
expect_rc 0
logged "Save-VM -Name 'web'"
expect_state web Suspended
vmctl stop web --force
expect_rc 0
expect_state web Stopped

# Snapshots: Checkpoint-VM with the comment in Notes, listed, restored, deleted.
vmctl snapshot web --name s1 --comment "it's \$HOME; \`date\`"
expect_rc 0
logged "Set-VM -Name 'web' -Notes 'it''s \$HOME; \`date\`';Checkpoint-VM -Name 'web' -SnapshotName 's1'"
vmctl list --snapshots
expect_rc 0
expect_out 's1'
vmctl restore web.s1 --destructive
expect_rc 0
logged "Restore-VMSnapshot -VMSnapshot \$s -Confirm:\$false"
vmctl delete --purge web.s1
expect_rc 0
logged "Remove-VMSnapshot -VMName 'web' -Name 's1' -Confirm:\$false"
[ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["vms"]["web"]["snapshots"]))' "$HV_STANDIN_STATE")" = 0 ] ||
	fail "the checkpoint is still in Hyper-V"

# Clone: Export-VM, Import-VM -Copy -GenerateNewId, renamed.
vmctl clone web --name web2
expect_rc 0
logged "Export-VM -Name 'web' -Path '$VMCTL_DATA/scopes/hyperv/instances/web2/export'"
logged "Import-VM -Path \$x.FullName -Copy -GenerateNewId"
logged "Rename-VM -VM \$vm -NewName 'web2'"
expect_state web2 Stopped
[ "$(vm_field web2 ProcessorCount)" = 2 ] || fail "the clone lost its CPUs"

# Refusals: ids cannot be mapped over SMB; a name that would be PowerShell.
vmctl mount "$E2E_TMP" web:/mnt --type native --uid-map 1000:1000
expect_error "SMB"
vmctl launch "$IMAGE" --name "a';Remove-Item C:\\ -Recurse;'" --timeout 5
expect_error
! grep -qF 'Remove-Item C:' "$HV_STANDIN_LOG" || fail "the injection name reached PowerShell"

# Delete: Remove-VM; Hyper-V no longer has it.
vmctl delete --purge web2
expect_rc 0
logged "Remove-VM -VM \$vm -Force"
python3 -c 'import json,sys; sys.exit("web2" in json.load(open(sys.argv[1]))["vms"])' "$HV_STANDIN_STATE" ||
	fail "web2 is still in Hyper-V"
expect_not_listed web2
expect_state web Stopped

# Every call was an argv of the helper's shape.
python3 - "$HV_STANDIN_LOG" <<'PYEOF' || fail "a PowerShell call of another shape"
import json, sys
n = 0
for line in open(sys.argv[1]):
    argv = json.loads(line)
    assert argv[:3] == ["-NoProfile", "-NonInteractive", "-Command"] and len(argv) == 4, argv
    n += 1
print("%d PowerShell calls, each -NoProfile -NonInteractive -Command SCRIPT" % n)
PYEOF
e2e_log "PASS"
