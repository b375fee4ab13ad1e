/* The exact VBoxManage command line of each operation of the virtualbox
 * driver: one argument per word, never a shell string. */
#include <string.h>

#include <criterion/criterion.h>

#include "vbox.h"

static struct vbox_argv a;
static char line[4096];

static void setup(void)
{
	vbox_argv_init(&a, "/usr/local/bin/VBoxManage");
}

static void teardown(void)
{
	vbox_argv_free(&a);
}

static void expect(const char *want)
{
	cr_assert_not(a.bad);
	cr_assert_str_eq(a.v[0], "/usr/local/bin/VBoxManage");
	cr_assert_null(a.v[a.n]);
	vbox_argv_join(&a, line, sizeof(line));
	cr_assert_str_eq(line, want);
}

TestSuite(cmd, .init = setup, .fini = teardown);

Test(cmd, createvm_registers_in_the_instance_folder)
{
	vbox_cmd_createvm(&a, "web", "/d/instances/web");
	expect("createvm --name web --basefolder /d/instances/web --ostype Linux_64 --register");
}

Test(cmd, modifyvm_nat_with_the_ssh_forward_and_extra_nics)
{
	struct vbox_nic nics[] = {
		{"en0: Wi-Fi", "52:54:00:aa:bb:01", false},
		{"vboxnet0", "52:54:00:aa:bb:02", true},
	};

	vbox_cmd_modifyvm(&a, "web", 2, 2048ull << 20, "52:54:00:12:34:56", 50319, nics, 2);
	expect("modifyvm web --cpus 2 --memory 2048 --ioapic on --firmware efi --boot1 disk "
	       "--boot2 none --nic1 nat --nictype1 virtio --macaddress1 525400123456 "
	       "--natpf1 vmctl-ssh,tcp,127.0.0.1,50319,,22 "
	       "--nic2 bridged --bridgeadapter2 en0: Wi-Fi --nictype2 virtio "
	       "--macaddress2 525400aabb01 "
	       "--nic3 hostonly --hostonlyadapter3 vboxnet0 --nictype3 virtio "
	       "--macaddress3 525400aabb02");
	/* An interface name with spaces stays one argument. */
	for (size_t i = 0; i < a.n; i++)
		if (!strcmp(a.v[i], "--bridgeadapter2"))
			cr_assert_str_eq(a.v[i + 1], "en0: Wi-Fi");
}

Test(cmd, storage_controller_disk_and_seed)
{
	vbox_cmd_storagectl(&a, "web");
	expect("storagectl web --name SATA --add sata --controller IntelAhci --portcount 2 "
	       "--bootable on");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_diffdisk(&a, "/d/instances/web/disk.vdi", "/d/vdi/abc.vdi");
	expect("createmedium disk --filename /d/instances/web/disk.vdi --diffparent /d/vdi/abc.vdi "
	       "--format VDI");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_resize(&a, "/d/instances/web/disk.vdi", 5ull << 30);
	expect("modifymedium disk /d/instances/web/disk.vdi --resize 5120");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_attach(&a, "web", 0, "/d/instances/web/disk.vdi");
	expect("storageattach web --storagectl SATA --port 0 --device 0 --type hdd --medium "
	       "/d/instances/web/disk.vdi");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_attach(&a, "web", 1, "/d/instances/web/cloud-init.iso");
	expect("storageattach web --storagectl SATA --port 1 --device 0 --type dvddrive --medium "
	       "/d/instances/web/cloud-init.iso");
}

Test(cmd, lifecycle)
{
	vbox_cmd_startvm(&a, "web");
	expect("startvm web --type headless");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_controlvm(&a, "web", "acpipowerbutton");
	expect("controlvm web acpipowerbutton");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_controlvm(&a, "web", "savestate");
	expect("controlvm web savestate");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_discardstate(&a, "web");
	expect("discardstate web");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_unregister(&a, "web");
	expect("unregistervm web --delete");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_showvminfo(&a, "web");
	expect("showvminfo web --machinereadable");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_guestprops(&a, "web");
	expect("guestproperty enumerate web");
}

Test(cmd, snapshots)
{
	vbox_cmd_snapshot(&a, "web", "take", "s1", "before; rm -rf / $(x)");
	expect("snapshot web take s1 --description before; rm -rf / $(x)");
	cr_assert_str_eq(a.v[a.n - 1], "before; rm -rf / $(x)"); /* inert: one argument */
	vbox_argv_free(&a);
	setup();
	vbox_cmd_snapshot(&a, "web", "take", "s2", "");
	expect("snapshot web take s2");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_snapshot(&a, "web", "restore", "s1", NULL);
	expect("snapshot web restore s1");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_snapshot(&a, "web", "delete", "s1", NULL);
	expect("snapshot web delete s1");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_snapshot(&a, "web", "list", NULL, NULL);
	expect("snapshot web list --machinereadable");
}

Test(cmd, clone_gets_its_own_mac_and_port)
{
	vbox_cmd_clonevm(&a, "web", "web-clone1", "/d/instances/web-clone1");
	expect("clonevm web --name web-clone1 --basefolder /d/instances/web-clone1 --mode machine "
	       "--register");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_reforward(&a, "web-clone1", "52:54:00:00:00:07", 40022);
	expect("modifyvm web-clone1 --macaddress1 525400000007 --natpf1 delete vmctl-ssh "
	       "--natpf1 vmctl-ssh,tcp,127.0.0.1,40022,,22");
}

Test(cmd, set_and_list)
{
	vbox_cmd_set_cpus(&a, "web", 4);
	expect("modifyvm web --cpus 4");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_set_memory(&a, "web", 3ull << 30);
	expect("modifyvm web --memory 3072");
	vbox_argv_free(&a);
	setup();
	vbox_cmd_list(&a, "bridgedifs");
	expect("list bridgedifs");
}

Test(cmd, qemu_img_converts_to_vdi_with_progress)
{
	vbox_argv_free(&a);
	vbox_argv_init(&a, "/usr/bin/qemu-img");
	vbox_cmd_convert(&a, "/img/abc.qcow2", "qcow2", "/d/vdi/abc.vdi.part");
	vbox_argv_join(&a, line, sizeof(line));
	cr_assert_str_eq(line, "convert -p -f qcow2 -O vdi /img/abc.qcow2 /d/vdi/abc.vdi.part");
}

Test(cmd, too_many_arguments_are_refused_not_cut)
{
	for (int i = 0; i < VBOX_ARGV_MAX + 5; i++)
		vbox_argv_add(&a, "x%d", i);
	cr_assert(a.bad);
	cr_assert_eq(a.n, VBOX_ARGV_MAX);
}
