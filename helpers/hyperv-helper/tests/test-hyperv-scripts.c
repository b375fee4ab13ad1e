/* The exact PowerShell of each operation of the hyperv driver, and the
 * argument vectors it runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "hv.h"

#define ROW "|Select-Object Name,State,@{Name='IPAddresses';Expression={@(Get-VMNetworkAdapter " \
	    "-VM $_|ForEach-Object {$_.IPAddresses})}}|ConvertTo-Json -Depth 4 -Compress"

static void assert_script(char *got, const char *body)
{
	char *want = hv_ps_wrap(body);

	cr_assert(got);
	cr_assert_str_eq(got, want);
	free(want);
	free(got);
}

Test(scripts, wrap_catches_into_an_error_record)
{
	char *s = hv_ps_wrap("Get-VM");

	cr_assert_str_eq(s,
		"$ErrorActionPreference='Stop';$ProgressPreference='SilentlyContinue';"
		"[Console]::OutputEncoding=[Text.Encoding]::UTF8;try{Get-VM}catch{$e=$_;"
		"[pscustomobject]@{Error=[pscustomobject]@{Message=$e.Exception.Message;"
		"FullyQualifiedErrorId=$e.FullyQualifiedErrorId;CategoryInfo=$e.CategoryInfo.ToString();"
		"Category=$e.CategoryInfo.Category.ToString()}}|ConvertTo-Json -Depth 4 -Compress;exit 1}");
	free(s);
}

Test(scripts, argv_is_a_vector)
{
	char *argv[6];

	hv_ps_argv("/opt/ps/powershell", "Get-VM", argv);
	cr_assert_str_eq(argv[0], "/opt/ps/powershell");
	cr_assert_str_eq(argv[1], "-NoProfile");
	cr_assert_str_eq(argv[2], "-NonInteractive");
	cr_assert_str_eq(argv[3], "-Command");
	cr_assert_str_eq(argv[4], "Get-VM");
	cr_assert_null(argv[5]);
}

Test(scripts, inventory)
{
	assert_script(hv_script_vms(), "Get-VM" ROW);
	assert_script(hv_script_vm("web"), "Get-VM -Name 'web'" ROW);
	assert_script(hv_script_switches(),
		      "Get-VMSwitch|Select-Object Name,SwitchType,NetAdapterInterfaceDescription"
		      "|ConvertTo-Json -Depth 4 -Compress");
}

Test(scripts, lifecycle)
{
	assert_script(hv_script_start("web"), "Start-VM -Name 'web';Get-VM -Name 'web'" ROW);
	assert_script(hv_script_stop("web", false),
		      "Stop-VM -Name 'web' -Force;Get-VM -Name 'web'" ROW);
	assert_script(hv_script_stop("web", true),
		      "Stop-VM -Name 'web' -TurnOff -Force;Get-VM -Name 'web'" ROW);
	assert_script(hv_script_save("web"), "Save-VM -Name 'web';Get-VM -Name 'web'" ROW);
}

Test(scripts, delete_removes_shares_and_the_vm)
{
	const char *shares[] = {"vmctl-web-0011aabb"};

	assert_script(hv_script_delete("web", shares, 1),
		      "Get-SmbShare -Name 'vmctl-web-0011aabb' -ErrorAction SilentlyContinue|"
		      "Remove-SmbShare -Force;$vm=Get-VM -Name 'web' -ErrorAction SilentlyContinue;"
		      "if($vm){if($vm.State -ne 'Off'){Stop-VM -VM $vm -TurnOff -Force};"
		      "Remove-VM -VM $vm -Force};[pscustomobject]@{Removed=[bool]$vm}"
		      "|ConvertTo-Json -Depth 4 -Compress");
}

Test(scripts, create)
{
	struct vmh_network nets[] = {{.name = "External", .mode = "auto", .mac = "52:54:00:00:00:02"}};
	struct vmh_instance inst = {
		.name = "web", .dir = "C:\\vmctl\\instances\\web", .mac = "52:54:00:00:00:01",
		.seed = "C:\\vmctl\\instances\\web\\cloud-init.iso", .cpus = 2,
		.memory = 2147483648ull, .disk = 10737418240ull, .networks = nets, .n_networks = 1,
	};
	struct hv_create c = {.inst = &inst, .base_vhdx = "C:\\vmctl\\vhdx\\ab.vhdx",
			      .disk = "C:\\vmctl\\instances\\web\\disk.vhdx", .sw = "Default Switch"};

	assert_script(hv_script_create(&c),
		"New-VHD -Path 'C:\\vmctl\\instances\\web\\disk.vhdx' -ParentPath "
		"'C:\\vmctl\\vhdx\\ab.vhdx' -Differencing|Out-Null;"
		"Resize-VHD -Path 'C:\\vmctl\\instances\\web\\disk.vhdx' -SizeBytes 10737418240;"
		"New-VM -Name 'web' -Generation 2 -VHDPath 'C:\\vmctl\\instances\\web\\disk.vhdx' "
		"-MemoryStartupBytes 2147483648 -SwitchName 'Default Switch' -Path "
		"'C:\\vmctl\\instances\\web'|Out-Null;"
		"Set-VMProcessor -VMName 'web' -Count 2;"
		"Set-VMMemory -VMName 'web' -DynamicMemoryEnabled $false -StartupBytes 2147483648;"
		"Set-VMFirmware -VMName 'web' -EnableSecureBoot Off;"
		"Add-VMDvdDrive -VMName 'web' -Path 'C:\\vmctl\\instances\\web\\cloud-init.iso';"
		"Set-VMNetworkAdapter -VMName 'web' -StaticMacAddress '525400000001';"
		"Add-VMNetworkAdapter -VMName 'web' -Name 'vmctl-net1' -StaticMacAddress "
		"'525400000002';Connect-VMNetworkAdapter -VMName 'web' -Name 'vmctl-net1' "
		"-SwitchName 'External';"
		"Get-VM -Name 'web'" ROW);
}

Test(scripts, create_quotes_paths_from_users)
{
	struct vmh_instance inst = {.name = "web", .dir = "/home/o'neil/$x;`y", .cpus = 1,
				    .memory = 1073741824ull};
	struct hv_create c = {.inst = &inst, .base_vhdx = "/b.vhdx", .disk = "/home/o'neil/d.vhdx",
			      .sw = "Switch \u2019x"};
	char *s = hv_script_create(&c);

	cr_assert(strstr(s, "-Path '/home/o''neil/$x;`y'|Out-Null;"));
	cr_assert(strstr(s, "-SwitchName 'Switch \u2019\u2019x'"));
	free(s);
}

Test(scripts, set)
{
	assert_script(hv_script_set("web", "cpus", 4, "/d/disk.vhdx"),
		      "Set-VMProcessor -VMName 'web' -Count 4;Get-VM -Name 'web'" ROW);
	assert_script(hv_script_set("web", "memory", 4294967296ull, "/d/disk.vhdx"),
		      "Set-VMMemory -VMName 'web' -StartupBytes 4294967296;Get-VM -Name 'web'" ROW);
	assert_script(hv_script_set("web", "disk", 21474836480ull, "/d/disk.vhdx"),
		      "Resize-VHD -Path '/d/disk.vhdx' -SizeBytes 21474836480;Get-VM -Name 'web'" ROW);
}

Test(scripts, networks)
{
	struct vmh_network n = {.name = "External", .mac = "52:54:00:aa:bb:cc"};

	assert_script(hv_script_network_add("web", 2, &n),
		      "Add-VMNetworkAdapter -VMName 'web' -Name 'vmctl-net2' -StaticMacAddress "
		      "'525400AABBCC';Connect-VMNetworkAdapter -VMName 'web' -Name 'vmctl-net2' "
		      "-SwitchName 'External';Get-VMNetworkAdapter -VMName 'web'|Select-Object "
		      "Name,SwitchName,MacAddress,IPAddresses|ConvertTo-Json -Depth 4 -Compress");
}

Test(scripts, shares)
{
	char share[128], want[1024];
	char *s;

	hv_share_name("web", "C:\\src", share, sizeof(share));
	cr_assert_eq(strncmp(share, "vmctl-web-", 10), 0);
	cr_assert_eq(strlen(share), 18);
	snprintf(want, sizeof(want),
		 "if(-not (Get-SmbShare -Name '%s' -ErrorAction SilentlyContinue)){New-SmbShare "
		 "-Name '%s' -Path 'C:\\src' -FullAccess "
		 "([Security.Principal.WindowsIdentity]::GetCurrent().Name)|Out-Null};"
		 "Get-SmbShare -Name '%s'|Select-Object Name,Path|ConvertTo-Json -Depth 4 -Compress",
		 share, share, share);
	assert_script(hv_script_share_add(share, "C:\\src"), want);
	snprintf(want, sizeof(want),
		 "Get-SmbShare -Name '%s' -ErrorAction SilentlyContinue|Remove-SmbShare -Force", share);
	assert_script(hv_script_share_remove(share), want);
	s = hv_script_share_add("x", "C:\\it's");
	cr_assert(strstr(s, "-Path 'C:\\it''s'"));
	free(s);
}

Test(scripts, snapshots)
{
	assert_script(hv_script_snapshot_create("web", "s1", "it's $fine"),
		      "Set-VM -Name 'web' -Notes 'it''s $fine';Checkpoint-VM -Name 'web' "
		      "-SnapshotName 's1';Get-VMSnapshot -VMName 'web' -Name 's1'|Select-Object "
		      "Name,Notes,CreationTime,ParentSnapshotName,ProcessorCount,MemoryStartup"
		      "|ConvertTo-Json -Depth 4 -Compress");
	assert_script(hv_script_snapshots("web"),
		      "Get-VMSnapshot -VMName 'web'|Select-Object Name,Notes,@{Name='Created';"
		      "Expression={$_.CreationTime.ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')}},"
		      "ParentSnapshotName,ProcessorCount,MemoryStartup|ConvertTo-Json -Depth 4 -Compress");
	assert_script(hv_script_snapshot_restore("web", "s1"),
		      "$s=Get-VMSnapshot -VMName 'web' -Name 's1';Restore-VMSnapshot -VMSnapshot $s "
		      "-Confirm:$false;$s|Select-Object Name,ProcessorCount,MemoryStartup"
		      "|ConvertTo-Json -Depth 4 -Compress");
	assert_script(hv_script_snapshot_delete("web", "s1"),
		      "Remove-VMSnapshot -VMName 'web' -Name 's1' -Confirm:$false");
}

Test(scripts, clone)
{
	assert_script(hv_script_export("web", "/i/web2/export"),
		      "Export-VM -Name 'web' -Path '/i/web2/export'");
	assert_script(hv_script_import("web", "/i/web2/export", "web2", "/i/web2"),
		      "$x=Get-ChildItem -Path (Join-Path (Join-Path '/i/web2/export' 'web') "
		      "'Virtual Machines') -Filter '*.vmcx'|Select-Object -First 1;"
		      "$vm=Import-VM -Path $x.FullName -Copy -GenerateNewId -VirtualMachinePath "
		      "'/i/web2' -VhdDestinationPath '/i/web2';Rename-VM -VM $vm -NewName 'web2';"
		      "Remove-Item -LiteralPath '/i/web2/export' -Recurse -Force;"
		      "Get-VM -Name 'web2'" ROW);
}

Test(image, convert_argv_and_progress)
{
	char *argv[12];
	const char *want[] = {"qemu-img", "convert", "-p", "-f", "qcow2", "-O", "vhdx", "-o",
			      "subformat=dynamic", "/img/a.qcow2", "/s/vhdx/x.vhdx.part"};

	hv_image_convert_argv("/img/a.qcow2", "qcow2", "/s/vhdx/x.vhdx.part", argv);
	for (size_t i = 0; i < 11; i++)
		cr_assert_str_eq(argv[i], want[i]);
	cr_assert_null(argv[11]);
	cr_assert_float_eq(hv_image_progress("    (0.00/100%)\r    (12.50/100%)\r"), 0.125, 1e-9);
	cr_assert_float_eq(hv_image_progress("    (100.00/100%)\n"), 1.0, 1e-9);
	cr_assert_lt(hv_image_progress(""), 0);
}

Test(os, path_join)
{
	char buf[64];

	cr_assert_eq(hv_os_path_join("/a/b/", "disk.vhdx", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/a/b/disk.vhdx");
	cr_assert_eq(hv_os_path_join("/a", "0123456789012345678901234567890123456789012345678901234567890",
				     buf, sizeof(buf)), PROTO_E_INVALID_ARGUMENT);
}
