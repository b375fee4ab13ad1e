/*
 * One script per operation: fixed cmdlet text, every value through
 * hv_buf_q(), the answer through ConvertTo-Json (HV_JSON). Kept apart from
 * the handlers so that tests can compare each script as a whole.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv.h"

/* The columns every VM answer has: State is VMState's number. */
#define VM_COLUMNS                                                                        \
	"Select-Object Name,State,@{Name='IPAddresses';Expression={@(Get-VMNetworkAdapter " \
	"-VM $_|ForEach-Object {$_.IPAddresses})}}"

static char *wrapped(struct hv_buf *b)
{
	char *body = hv_buf_take(b), *s;

	if (!body)
		return NULL;
	s = hv_ps_wrap(body);
	free(body);
	return s;
}

static void vm_row(struct hv_buf *b, const char *name)
{
	hv_buf_raw(b, "Get-VM -Name ");
	hv_buf_q(b, name);
	hv_buf_raw(b, "|" VM_COLUMNS HV_JSON);
}

char *hv_script_vms(void)
{
	return hv_ps_wrap("Get-VM|" VM_COLUMNS HV_JSON);
}

char *hv_script_vm(const char *name)
{
	struct hv_buf b = {0};

	vm_row(&b, name);
	return wrapped(&b);
}

char *hv_script_switches(void)
{
	return hv_ps_wrap("Get-VMSwitch|Select-Object Name,SwitchType,NetAdapterInterfaceDescription"
			  HV_JSON);
}

static void nic_add(struct hv_buf *b, const char *name, size_t index, const struct vmh_network *n)
{
	char nic[32], mac[13];

	snprintf(nic, sizeof(nic), "vmctl-net%zu", index);
	hv_buf_raw(b, "Add-VMNetworkAdapter -VMName ");
	hv_buf_q(b, name);
	hv_buf_raw(b, " -Name ");
	hv_buf_q(b, nic);
	if (n->mac) {
		hv_mac_plain(n->mac, mac);
		hv_buf_raw(b, " -StaticMacAddress ");
		hv_buf_q(b, mac);
	}
	hv_buf_raw(b, ";Connect-VMNetworkAdapter -VMName ");
	hv_buf_q(b, name);
	hv_buf_raw(b, " -Name ");
	hv_buf_q(b, nic);
	hv_buf_raw(b, " -SwitchName ");
	hv_buf_q(b, n->name);
	hv_buf_raw(b, ";");
}

char *hv_script_create(const struct hv_create *c)
{
	const struct vmh_instance *inst = c->inst;
	struct hv_buf b = {0};
	char mac[13];

	hv_buf_raw(&b, "New-VHD -Path ");
	hv_buf_q(&b, c->disk);
	hv_buf_raw(&b, " -ParentPath ");
	hv_buf_q(&b, c->base_vhdx);
	hv_buf_raw(&b, " -Differencing|Out-Null;");
	if (inst->disk) {
		hv_buf_raw(&b, "Resize-VHD -Path ");
		hv_buf_q(&b, c->disk);
		hv_buf_fmt(&b, " -SizeBytes %" PRIu64 ";", inst->disk);
	}
	hv_buf_raw(&b, "New-VM -Name ");
	hv_buf_q(&b, inst->name);
	hv_buf_raw(&b, " -Generation 2 -VHDPath ");
	hv_buf_q(&b, c->disk);
	hv_buf_fmt(&b, " -MemoryStartupBytes %" PRIu64 " -SwitchName ", inst->memory);
	hv_buf_q(&b, c->sw);
	hv_buf_raw(&b, " -Path ");
	hv_buf_q(&b, inst->dir);
	hv_buf_raw(&b, "|Out-Null;Set-VMProcessor -VMName ");
	hv_buf_q(&b, inst->name);
	hv_buf_fmt(&b, " -Count %u;Set-VMMemory -VMName ", inst->cpus);
	hv_buf_q(&b, inst->name);
	hv_buf_fmt(&b, " -DynamicMemoryEnabled $false -StartupBytes %" PRIu64 ";", inst->memory);
	hv_buf_raw(&b, "Set-VMFirmware -VMName ");
	hv_buf_q(&b, inst->name);
	hv_buf_raw(&b, " -EnableSecureBoot Off;");
	if (inst->seed) {
		hv_buf_raw(&b, "Add-VMDvdDrive -VMName ");
		hv_buf_q(&b, inst->name);
		hv_buf_raw(&b, " -Path ");
		hv_buf_q(&b, inst->seed);
		hv_buf_raw(&b, ";");
	}
	if (inst->mac) {
		hv_mac_plain(inst->mac, mac);
		hv_buf_raw(&b, "Set-VMNetworkAdapter -VMName ");
		hv_buf_q(&b, inst->name);
		hv_buf_raw(&b, " -StaticMacAddress ");
		hv_buf_q(&b, mac);
		hv_buf_raw(&b, ";");
	}
	for (size_t i = 0; i < inst->n_networks; i++)
		nic_add(&b, inst->name, i + 1, &inst->networks[i]);
	vm_row(&b, inst->name);
	return wrapped(&b);
}

/* CMDLET -Name 'NAME' TAIL; then the VM's row. */
static char *vm_cmd(const char *cmdlet, const char *name, const char *tail)
{
	struct hv_buf b = {0};

	hv_buf_raw(&b, cmdlet);
	hv_buf_raw(&b, " -Name ");
	hv_buf_q(&b, name);
	hv_buf_raw(&b, tail);
	hv_buf_raw(&b, ";");
	vm_row(&b, name);
	return wrapped(&b);
}

char *hv_script_start(const char *name)
{
	return vm_cmd("Start-VM", name, "");
}

char *hv_script_stop(const char *name, bool turn_off)
{
	return vm_cmd("Stop-VM", name, turn_off ? " -TurnOff -Force" : " -Force");
}

char *hv_script_save(const char *name)
{
	return vm_cmd("Save-VM", name, "");
}

char *hv_script_delete(const char *name, const char *const *shares, size_t n_shares)
{
	struct hv_buf b = {0};

	for (size_t i = 0; i < n_shares; i++) {
		hv_buf_raw(&b, "Get-SmbShare -Name ");
		hv_buf_q(&b, shares[i]);
		hv_buf_raw(&b, " -ErrorAction SilentlyContinue|Remove-SmbShare -Force;");
	}
	hv_buf_raw(&b, "$vm=Get-VM -Name ");
	hv_buf_q(&b, name);
	hv_buf_raw(&b, " -ErrorAction SilentlyContinue;if($vm){if($vm.State -ne 'Off'){"
		       "Stop-VM -VM $vm -TurnOff -Force};Remove-VM -VM $vm -Force};"
		       "[pscustomobject]@{Removed=[bool]$vm}" HV_JSON);
	return wrapped(&b);
}

char *hv_script_set(const char *name, const char *key, uint64_t value, const char *disk)
{
	struct hv_buf b = {0};

	if (!strcmp(key, "cpus")) {
		hv_buf_raw(&b, "Set-VMProcessor -VMName ");
		hv_buf_q(&b, name);
		hv_buf_fmt(&b, " -Count %" PRIu64 ";", value);
	} else if (!strcmp(key, "memory")) {
		hv_buf_raw(&b, "Set-VMMemory -VMName ");
		hv_buf_q(&b, name);
		hv_buf_fmt(&b, " -StartupBytes %" PRIu64 ";", value);
	} else {
		hv_buf_raw(&b, "Resize-VHD -Path ");
		hv_buf_q(&b, disk);
		hv_buf_fmt(&b, " -SizeBytes %" PRIu64 ";", value);
	}
	vm_row(&b, name);
	return wrapped(&b);
}

char *hv_script_network_add(const char *name, size_t index, const struct vmh_network *net)
{
	struct hv_buf b = {0};

	nic_add(&b, name, index, net);
	hv_buf_raw(&b, "Get-VMNetworkAdapter -VMName ");
	hv_buf_q(&b, name);
	hv_buf_raw(&b, "|Select-Object Name,SwitchName,MacAddress,IPAddresses" HV_JSON);
	return wrapped(&b);
}

void hv_share_name(const char *instance, const char *source, char *buf, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a: the same source, the same share */

	for (const unsigned char *p = (const unsigned char *)source; *p; p++)
		h = (h ^ *p) * 16777619u;
	snprintf(buf, len, "vmctl-%s-%08x", instance, h);
}

char *hv_script_share_add(const char *share, const char *path)
{
	struct hv_buf b = {0};

	hv_buf_raw(&b, "if(-not (Get-SmbShare -Name ");
	hv_buf_q(&b, share);
	hv_buf_raw(&b, " -ErrorAction SilentlyContinue)){New-SmbShare -Name ");
	hv_buf_q(&b, share);
	hv_buf_raw(&b, " -Path ");
	hv_buf_q(&b, path);
	hv_buf_raw(&b, " -FullAccess ([Security.Principal.WindowsIdentity]::GetCurrent().Name)"
		       "|Out-Null};Get-SmbShare -Name ");
	hv_buf_q(&b, share);
	hv_buf_raw(&b, "|Select-Object Name,Path" HV_JSON);
	return wrapped(&b);
}

char *hv_script_share_remove(const char *share)
{
	struct hv_buf b = {0};

	hv_buf_raw(&b, "Get-SmbShare -Name ");
	hv_buf_q(&b, share);
	hv_buf_raw(&b, " -ErrorAction SilentlyContinue|Remove-SmbShare -Force");
	return wrapped(&b);
}

/* The comment goes into the VM's Notes, which the checkpoint keeps. */
char *hv_script_snapshot_create(const char *name, const char *snap, const char *comment)
{
	struct hv_buf b = {0};

	hv_buf_raw(&b, "Set-VM -Name ");
	hv_buf_q(&b, name);
	hv_buf_raw(&b, " -Notes ");
	hv_buf_q(&b, comment ? comment : "");
	hv_buf_raw(&b, ";Checkpoint-VM -Name ");
	hv_buf_q(&b, name);
	hv_buf_raw(&b, " -SnapshotName ");
	hv_buf_q(&b, snap);
	hv_buf_raw(&b, ";Get-VMSnapshot -VMName ");
	hv_buf_q(&b, name);
	hv_buf_raw(&b, " -Name ");
	hv_buf_q(&b, snap);
	hv_buf_raw(&b, "|Select-Object Name,Notes,CreationTime,ParentSnapshotName,ProcessorCount,"
		       "MemoryStartup" HV_JSON);
	return wrapped(&b);
}

char *hv_script_snapshots(const char *name)
{
	struct hv_buf b = {0};

	hv_buf_raw(&b, "Get-VMSnapshot -VMName ");
	hv_buf_q(&b, name);
	hv_buf_raw(&b, "|Select-Object Name,Notes,@{Name='Created';Expression={$_.CreationTime."
		       "ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')}},ParentSnapshotName,"
		       "ProcessorCount,MemoryStartup" HV_JSON);
	return wrapped(&b);
}

char *hv_script_snapshot_restore(const char *name, const char *snap)
{
	struct hv_buf b = {0};

	hv_buf_raw(&b, "$s=Get-VMSnapshot -VMName ");
	hv_buf_q(&b, name);
	hv_buf_raw(&b, " -Name ");
	hv_buf_q(&b, snap);
	hv_buf_raw(&b, ";Restore-VMSnapshot -VMSnapshot $s -Confirm:$false;"
		       "$s|Select-Object Name,ProcessorCount,MemoryStartup" HV_JSON);
	return wrapped(&b);
}

char *hv_script_snapshot_delete(const char *name, const char *snap)
{
	struct hv_buf b = {0};

	hv_buf_raw(&b, "Remove-VMSnapshot -VMName ");
	hv_buf_q(&b, name);
	hv_buf_raw(&b, " -Name ");
	hv_buf_q(&b, snap);
	hv_buf_raw(&b, " -Confirm:$false");
	return wrapped(&b);
}

char *hv_script_export(const char *name, const char *path)
{
	struct hv_buf b = {0};

	hv_buf_raw(&b, "Export-VM -Name ");
	hv_buf_q(&b, name);
	hv_buf_raw(&b, " -Path ");
	hv_buf_q(&b, path);
	return wrapped(&b);
}

/* Import-VM takes the exported .vmcx; -Copy -GenerateNewId makes a new VM
 * of it (the source keeps its own), renamed to the clone's name. */
char *hv_script_import(const char *src, const char *export_dir, const char *clone,
		       const char *clone_dir)
{
	struct hv_buf b = {0};

	hv_buf_raw(&b, "$x=Get-ChildItem -Path (Join-Path (Join-Path ");
	hv_buf_q(&b, export_dir);
	hv_buf_raw(&b, " ");
	hv_buf_q(&b, src);
	hv_buf_raw(&b, ") 'Virtual Machines') -Filter '*.vmcx'|Select-Object -First 1;"
		       "$vm=Import-VM -Path $x.FullName -Copy -GenerateNewId -VirtualMachinePath ");
	hv_buf_q(&b, clone_dir);
	hv_buf_raw(&b, " -VhdDestinationPath ");
	hv_buf_q(&b, clone_dir);
	hv_buf_raw(&b, ";Rename-VM -VM $vm -NewName ");
	hv_buf_q(&b, clone);
	hv_buf_raw(&b, ";Remove-Item -LiteralPath ");
	hv_buf_q(&b, export_dir);
	hv_buf_raw(&b, " -Recurse -Force;");
	vm_row(&b, clone);
	return wrapped(&b);
}
