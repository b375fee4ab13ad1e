/* The virtualbox driver's parsing of VBoxManage's outputs, against the
 * transcripts in tests/fixtures/vbox (README.md there says where each
 * format comes from). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "vbox.h"

static char *fixture(const char *name)
{
	char path[1024];
	FILE *f;
	char *buf = calloc(1, 1 << 16);
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", VBOX_FIXTURES, name);
	f = fopen(path, "r");
	cr_assert(f && buf, "cannot read %s", path);
	n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

Test(showvminfo, machinereadable_keys_and_quoting)
{
	char *text = fixture("showvminfo-running.txt");
	struct vbox_kvs kvs;

	cr_assert_eq(vbox_kvs_parse(text, &kvs), 0);
	cr_assert_str_eq(vbox_kvs_get(&kvs, "name"), "web");
	cr_assert_str_eq(vbox_kvs_get(&kvs, "VMState"), "running");
	cr_assert_str_eq(vbox_kvs_get(&kvs, "memory"), "1024"); /* unquoted */
	cr_assert_str_eq(vbox_kvs_get(&kvs, "SATA-1-0"),        /* quoted key */
			 "/home/u/.local/share/vmctl/scopes/virtualbox/instances/web/cloud-init.iso");
	cr_assert_str_eq(vbox_kvs_get(&kvs, "bridgeadapter2"), "en0: Wi-Fi");
	cr_assert_str_eq(vbox_kvs_get(&kvs, "description"), "a \"quoted\" text");
	/* 7.0's "Encryption:     disabled" has no '=': skipped, not a key. */
	cr_assert_null(vbox_kvs_get(&kvs, "Encryption:     disabled"));
	cr_assert_null(vbox_kvs_get(&kvs, "nope"));
	cr_assert_eq(vbox_state_of(vbox_kvs_get(&kvs, "VMState")), PROTO_STATE_RUNNING);
	vbox_kvs_free(&kvs);
	free(text);
}

Test(showvminfo, ssh_port_is_the_forward_named_vmctl_ssh)
{
	char *text = fixture("showvminfo-running.txt");
	struct vbox_kvs kvs;

	cr_assert_eq(vbox_kvs_parse(text, &kvs), 0);
	cr_assert_eq(vbox_forward_port(&kvs, VBOX_SSH_RULE), 50319);
	cr_assert_eq(vbox_forward_port(&kvs, "web"), 8080);
	cr_assert_eq(vbox_forward_port(&kvs, "vmctl"), 0); /* a prefix is not a name */
	vbox_kvs_free(&kvs);
	free(text);
}

Test(showvminfo, vmstates_map_onto_protocol_states)
{
	cr_assert_eq(vbox_state_of("running"), PROTO_STATE_RUNNING);
	cr_assert_eq(vbox_state_of("poweroff"), PROTO_STATE_STOPPED);
	cr_assert_eq(vbox_state_of("aborted"), PROTO_STATE_STOPPED);
	cr_assert_eq(vbox_state_of("saved"), PROTO_STATE_SUSPENDED);
	cr_assert_eq(vbox_state_of("paused"), PROTO_STATE_SUSPENDED);
	cr_assert_eq(vbox_state_of("starting"), PROTO_STATE_STARTING);
	cr_assert_eq(vbox_state_of("restoring"), PROTO_STATE_STARTING);
	cr_assert_eq(vbox_state_of("stopping"), PROTO_STATE_STOPPING);
	cr_assert_eq(vbox_state_of("saving"), PROTO_STATE_SUSPENDING);
	cr_assert_eq(vbox_state_of("gurumeditation"), PROTO_STATE_UNKNOWN);
	cr_assert_eq(vbox_state_of("stuck"), PROTO_STATE_UNKNOWN);
	cr_assert_eq(vbox_state_of(NULL), PROTO_STATE_UNKNOWN);
}

Test(guestproperty, ipv4_of_the_7x_format_by_nic)
{
	char *text = fixture("guestproperty-7.txt");
	char ip[4][64];

	cr_assert_eq(vbox_guest_ipv4(text, ip, 4), 2);
	cr_assert_str_eq(ip[0], "10.0.2.15");
	cr_assert_str_eq(ip[1], "192.168.1.40");
	cr_assert_eq(vbox_guest_ipv4(text, ip, 1), 1);
	free(text);
}

Test(guestproperty, ipv4_of_the_6x_format_sorted_by_nic)
{
	char *text = fixture("guestproperty-6.txt");
	char ip[4][64];

	cr_assert_eq(vbox_guest_ipv4(text, ip, 4), 2);
	cr_assert_str_eq(ip[0], "10.0.2.15");
	cr_assert_str_eq(ip[1], "192.168.56.101");
	free(text);
}

Test(guestproperty, none_before_the_guest_reports)
{
	char ip[4][64];

	cr_assert_eq(vbox_guest_ipv4("/VirtualBox/HostInfo/VBoxVer = '7.0.14' @ 2024-05-02T10:28:55Z\n",
				     ip, 4), 0);
	cr_assert_eq(vbox_guest_ipv4("", ip, 4), 0);
}

Test(list, vms_by_exact_name)
{
	char *text = fixture("list-vms.txt");

	cr_assert(vbox_list_vms_has(text, "web"));
	cr_assert(vbox_list_vms_has(text, "web-clone1"));
	cr_assert(vbox_list_vms_has(text, "Windows 11 (my own)"));
	cr_assert_not(vbox_list_vms_has(text, "we"));
	cr_assert_not(vbox_list_vms_has(text, "ghost"));
	free(text);
}

Test(list, bridgedifs_names_and_status)
{
	char *text = fixture("list-bridgedifs.txt");
	struct vbox_iface ifs[8];

	cr_assert_eq(vbox_ifaces_parse(text, ifs, 8), 2);
	cr_assert_str_eq(ifs[0].name, "eth0");
	cr_assert_str_eq(ifs[0].status, "Up");
	cr_assert_str_eq(ifs[0].medium, "Ethernet");
	cr_assert_str_eq(ifs[1].name, "en1: Wi-Fi (AirPort)"); /* macOS names have colons */
	cr_assert_str_eq(ifs[1].status, "Down");
	cr_assert_eq(vbox_ifaces_parse(text, ifs, 1), 1);
	free(text);
}

Test(list, hostonlyifs)
{
	char *text = fixture("list-hostonlyifs.txt");
	struct vbox_iface ifs[8];

	cr_assert_eq(vbox_ifaces_parse(text, ifs, 8), 1);
	cr_assert_str_eq(ifs[0].name, "vboxnet0");
	cr_assert_eq(vbox_ifaces_parse("", ifs, 8), 0);
	free(text);
}

Test(snapshots, machinereadable_tree_with_parents)
{
	char *text = fixture("snapshot-list.txt");
	struct vbox_snap s[8];

	cr_assert_eq(vbox_snaps_parse(text, s, 8), 4);
	cr_assert_str_eq(s[0].name, "first");
	cr_assert_str_eq(s[0].description, "only one");
	cr_assert_str_eq(s[0].parent, "");
	cr_assert_str_eq(s[1].name, "second");
	cr_assert_str_eq(s[1].parent, "first");
	cr_assert_str_eq(s[1].description, "");
	cr_assert_str_eq(s[2].name, "third");
	cr_assert_str_eq(s[2].parent, "second");
	cr_assert_str_eq(s[3].name, "other");
	cr_assert_str_eq(s[3].parent, "first");
	free(text);
}

Test(snapshots, none)
{
	struct vbox_snap s[2];

	cr_assert_eq(vbox_snaps_parse("This machine does not have any snapshots\n", s, 2), 0);
}

Test(errors, object_not_found_is_not_found)
{
	char *text = fixture("error-not-found.txt");
	char msg[256];

	cr_assert_eq(vbox_error_of(text, msg, sizeof(msg)), PROTO_E_NOT_FOUND);
	cr_assert_str_eq(msg, "Could not find a registered machine named 'ghost'");
	free(text);
}

Test(errors, invalid_vm_state)
{
	char *text = fixture("error-not-running.txt");
	char msg[256];

	cr_assert_eq(vbox_error_of(text, msg, sizeof(msg)), PROTO_E_INVALID_STATE);
	cr_assert_str_eq(msg, "Machine 'web' is not currently running");
	free(text);
}

Test(errors, file_error_and_unknown_codes)
{
	char msg[256];

	cr_assert_eq(vbox_error_of("VBoxManage: error: Machine settings file '/x/web.vbox' already "
				   "exists\nVBoxManage: error: Details: code VBOX_E_FILE_ERROR "
				   "(0x80bb0004), component MachineWrap, interface IMachine\n",
				   msg, sizeof(msg)),
		     PROTO_E_IO);
	cr_assert_str_eq(msg, "Machine settings file '/x/web.vbox' already exists");
	cr_assert_eq(vbox_error_of("Syntax error: Invalid command 'frob'\n", msg, sizeof(msg)),
		     PROTO_E_DRIVER);
	cr_assert_str_eq(msg, "Syntax error: Invalid command 'frob'");
	cr_assert_eq(vbox_error_of(NULL, msg, sizeof(msg)), PROTO_E_DRIVER);
}

Test(version, after_the_linux_module_warning)
{
	char *text = fixture("version-linux-warning.txt");
	int major = 0, minor = 0;

	cr_assert_eq(vbox_version_parse(text, &major, &minor), 0);
	cr_assert_eq(major, 7);
	cr_assert_eq(minor, 0);
	cr_assert_eq(vbox_version_parse("6.1.50r161033\n", &major, &minor), 0);
	cr_assert_eq(major * 10 + minor, 61);
	cr_assert_eq(vbox_version_parse("Oracle VM VirtualBox\n", &major, &minor),
		     PROTO_E_INVALID_ARGUMENT);
	free(text);
}

Test(progress, of_vboxmanage_and_qemu_img)
{
	cr_assert_float_eq(vbox_progress_of("0%...10%...20%...30%..."), 0.3, 1e-9);
	cr_assert_float_eq(vbox_progress_of("    (12.50/100%)\r    (56.00/100%)\r"), 0.56, 1e-9);
	cr_assert_float_eq(vbox_progress_of(
		"0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%\n"), 1.0, 1e-9);
	cr_assert_eq(vbox_progress_of("Medium created."), -1);
}
