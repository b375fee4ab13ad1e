/* The qemu command line built from an instance map. */
#include <string.h>

#include <criterion/criterion.h>

#include "qhtest.h"

TestSuite(argv, .fini = qhtest_free);

static char **build(const char *json, enum vmh_accel accel, int port, bool resume)
{
	struct vmh_instance in;
	char err[256] = "";
	char **argv;

	cr_assert_eq(qh_inst_parse(qhtest_obj(json), &in, err, sizeof(err)), 0, "%s", err);
	argv = qh_vm_argv(&in, accel, port, resume, NULL, err, sizeof(err));
	cr_assert_not_null(argv, "%s", err);
	vmh_instance_free(&in);
	return argv;
}

#define SIMPLE                                                                                    \
	"{\"name\": \"web\", \"dir\": \"/d/web\", \"cpus\": 3, \"memory\": 1610612736,"           \
	" \"mac\": \"52:54:00:01:02:03\", \"seed\": \"/d/web/seed.iso\","                          \
	" \"image\": {\"disk\": \"/img/b.qcow2\"}}"

Test(argv, tcg_runs_detached_with_monitor_console_and_ssh_forward)
{
	char **argv = build(SIMPLE, VMH_ACCEL_TCG, 40022, false);

	cr_expect_str_eq(argv[0], "qemu-system-x86_64");
	cr_expect(qhtest_has_pair(argv, "-name", "web"));
	cr_expect(qhtest_has_pair(argv, "-accel", "tcg,thread=multi"));
	cr_expect(qhtest_has_pair(argv, "-cpu", "max"));
	cr_expect(qhtest_has_pair(argv, "-smp", "3"));
	cr_expect(qhtest_has_pair(argv, "-m", "1536M"));
	cr_expect(qhtest_has(argv, "-daemonize"));
	cr_expect(qhtest_has(argv, "-nodefaults"));
	cr_expect(qhtest_has_pair(argv, "-display", "none"));
	cr_expect(qhtest_has_pair(argv, "-pidfile", "/d/web/qemu.pid"));
	cr_expect(qhtest_has_pair(argv, "-chardev", "socket,id=qmp,server=on,wait=off,path=/d/web/qmp.sock"));
	cr_expect(qhtest_has_pair(argv, "-chardev", "file,id=console,path=/d/web/console.log"));
	cr_expect(qhtest_has_pair(argv, "-drive", "if=none,id=disk0,format=qcow2,discard=unmap,file=/d/web/disk.qcow2"));
	cr_expect(qhtest_has_pair(argv, "-drive", "if=none,id=seed,format=raw,readonly=on,file=/d/web/seed.iso"));
	cr_expect(qhtest_has_pair(argv, "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:40022-:22"));
	cr_expect(qhtest_has_pair(argv, "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:01:02:03"));
	cr_expect(!qhtest_has(argv, "-kernel"), "no kernel in the image, no -kernel");
	cr_expect(!qhtest_has(argv, "-loadvm"));
	qh_argv_free(argv);
}

Test(argv, kvm_uses_the_host_cpu)
{
	char **argv = build(SIMPLE, VMH_ACCEL_KVM, 40022, false);

	cr_expect(qhtest_has_pair(argv, "-accel", "kvm"));
	cr_expect(qhtest_has_pair(argv, "-cpu", "host"));
	cr_expect(!qhtest_has_pair(argv, "-cpu", "max"));
	qh_argv_free(argv);
}

#define KERNEL_BOOT                                                                               \
	"{\"name\": \"k\", \"dir\": \"/d/k\", \"image\": {\"disk\": \"/img/b\","                 \
	" \"kernel\": \"/img/vmlinuz\", \"initrd\": \"/img/initrd\","                             \
	" \"cmdline\": \"root=/dev/vda console=ttyS0\"}}"

Test(argv, direct_kernel_boot)
{
	char **argv = build(KERNEL_BOOT, VMH_ACCEL_KVM, 1, false);

	cr_expect(qhtest_has_pair(argv, "-kernel", "/img/vmlinuz"));
	cr_expect(qhtest_has_pair(argv, "-initrd", "/img/initrd"));
	cr_expect(qhtest_has_pair(argv, "-append", "root=/dev/vda console=ttyS0"));
	cr_expect(!qhtest_has(argv, "if=none,id=seed,format=raw,readonly=on,file="), "no seed given");
	qh_argv_free(argv);
}

Test(argv, an_image_without_a_kernel_boots_through_uefi_firmware)
{
	char **argv = build(SIMPLE, VMH_ACCEL_TCG, 40022, false);

	cr_expect(qhtest_has_pair(argv, "-drive",
				  "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"));
	cr_expect(qhtest_has_pair(argv, "-drive", "if=pflash,format=raw,file=/d/web/efivars.fd"),
		  "the variable store is the instance's own, writable copy");
	cr_expect(!qhtest_has(argv, "-append"));
	cr_expect(qhtest_has_pair(argv, "-drive", "if=none,id=disk0,format=qcow2,discard=unmap,file=/d/web/disk.qcow2"),
		  "the disk is attached the same way as for a kernel boot");
	cr_expect(qhtest_has_pair(argv, "-device", "virtio-blk-pci,drive=disk0,bootindex=1"));
	qh_argv_free(argv);
}

Test(argv, a_kernel_boot_uses_no_firmware_drives)
{
	char **argv = build(KERNEL_BOOT, VMH_ACCEL_TCG, 1, false);

	for (size_t i = 0; argv[i]; i++)
		cr_expect(!strstr(argv[i], "if=pflash"), "unexpected firmware drive: %s", argv[i]);
	qh_argv_free(argv);
}

Test(argv, emulated_guests_skip_the_timer_check)
{
	char **argv = build(KERNEL_BOOT, VMH_ACCEL_TCG, 1, false);

	cr_expect(qhtest_has_pair(argv, "-append", "root=/dev/vda console=ttyS0 no_timer_check"));
	qh_argv_free(argv);
	argv = build("{\"name\": \"k\", \"dir\": \"/d/k\", \"image\": {\"disk\": \"/img/b\","
		     " \"kernel\": \"/img/vmlinuz\", \"cmdline\": \"no_timer_check quiet\"}}",
		     VMH_ACCEL_TCG, 1, false);
	cr_expect(qhtest_has_pair(argv, "-append", "no_timer_check quiet"), "not added twice");
	qh_argv_free(argv);
}

Test(argv, commas_in_paths_are_doubled)
{
	char **argv = build("{\"name\": \"c\", \"dir\": \"/d/a,b\", \"image\": {\"disk\": \"/img/b\"},"
			    " \"mounts\": [{\"source\": \"/home/x,y\", \"target\": \"/m\", \"tag\": \"t\"}]}",
			    VMH_ACCEL_TCG, 1, false);

	cr_expect(qhtest_has_pair(argv, "-drive", "if=none,id=disk0,format=qcow2,discard=unmap,file=/d/a,,b/disk.qcow2"));
	cr_expect(qhtest_has_pair(argv, "-virtfs", "local,id=fs0,path=/home/x,,y,mount_tag=t,security_model=none"));
	cr_expect(qhtest_has_pair(argv, "-pidfile", "/d/a,b/qemu.pid"), "-pidfile is a plain path");
	qh_argv_free(argv);
}

Test(argv, mounts_and_extra_networks_become_devices)
{
	char **argv = build("{\"name\": \"n\", \"dir\": \"/d/n\", \"image\": {\"disk\": \"/img/b\"},"
			    " \"mounts\": [{\"source\": \"/a\", \"tag\": \"ta\"}, {\"source\": \"/b\", \"tag\": \"tb\"}],"
			    " \"networks\": [{\"name\": \"br0\", \"mac\": \"52:54:00:00:00:0a\"}]}",
			    VMH_ACCEL_TCG, 1, false);

	cr_expect(qhtest_has_pair(argv, "-virtfs", "local,id=fs0,path=/a,mount_tag=ta,security_model=none"));
	cr_expect(qhtest_has_pair(argv, "-virtfs", "local,id=fs1,path=/b,mount_tag=tb,security_model=none"));
	cr_expect(qhtest_has_pair(argv, "-netdev", "bridge,id=n1,br=br0"));
	cr_expect(qhtest_has_pair(argv, "-device", "virtio-net-pci,netdev=n1,mac=52:54:00:00:00:0a"));
	qh_argv_free(argv);
}

Test(argv, tap_fds_replace_the_bridge_helper)
{
	struct vmh_instance in;
	char err[256];
	int fds[] = {3};
	char **argv;

	cr_assert_eq(qh_inst_parse(qhtest_obj("{\"name\": \"n\", \"dir\": \"/d/n\", \"image\": {\"disk\": \"/i\"},"
					     " \"networks\": [{\"name\": \"br0\", \"mac\": \"52:54:00:00:00:0a\"}]}"),
				   &in, err, sizeof(err)),
		     0, "%s", err);
	argv = qh_vm_argv(&in, VMH_ACCEL_TCG, 1, false, fds, err, sizeof(err));
	cr_expect(qhtest_has_pair(argv, "-netdev", "tap,id=n1,fd=3"));
	qh_argv_free(argv);
	vmh_instance_free(&in);
}

Test(argv, resume_loads_the_suspend_snapshot_with_the_same_devices)
{
	char **cold = build(SIMPLE, VMH_ACCEL_TCG, 40022, false);
	char **warm = build(SIMPLE, VMH_ACCEL_TCG, 40022, true);
	size_t n = 0;

	cr_expect(qhtest_has_pair(warm, "-loadvm", "vmctl-suspend"));
	/* Same command line otherwise: the device set must match on resume. */
	while (cold[n])
		n++;
	for (size_t i = 0; i < n; i++)
		cr_expect_str_eq(warm[i], cold[i]);
	cr_expect_str_eq(warm[n], "-loadvm");
	qh_argv_free(cold);
	qh_argv_free(warm);
}
