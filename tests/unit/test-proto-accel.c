/*
 * The SDK's accelerator probe (vmh_accel_*), with its answer injected: a
 * stand-in qemu that behaves like a working KVM, like this host's broken
 * one ("failed to set MSR"), or a KVM device that is absent.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmproto/vmh.h>

static char dir[64];
static char qemu[128];
static char device[128];

/* A stand-in qemu: records its arguments, then runs BODY. */
static void fake_qemu(const char *body)
{
	FILE *f;

	snprintf(qemu, sizeof(qemu), "%s/qemu-system-x86_64", dir);
	f = fopen(qemu, "w");
	cr_assert_not_null(f);
	fprintf(f, "#!/bin/sh\necho \"$@\" >>%s/args\n%s\n", dir, body);
	fclose(f);
	cr_assert_eq(chmod(qemu, 0755), 0);
}

static void setup(void)
{
	FILE *f;

	snprintf(dir, sizeof(dir), "/tmp/test-proto-accel.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(device, sizeof(device), "%s/kvm", dir);
	f = fopen(device, "w"); /* opens O_RDWR, as /dev/kvm does when present */
	cr_assert_not_null(f);
	fclose(f);
	mkdir(strcat(strcpy(qemu, dir), "/tmp"), 0700);
	setenv("TMPDIR", qemu, 1);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

static enum vmh_accel decided(const char **why)
{
	enum vmh_accel a;

	vmh_accel_prepare();
	while (!vmh_accel_chosen(&a, why))
		ev_run(vmh_loop(), EVRUN_ONCE);
	return a;
}

static bool exists(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

TestSuite(proto_accel, .init = setup, .fini = teardown, .timeout = 60);

/* The firmware is handed over as fd 3; a guest that runs it exits 0x55. */
#define WORKING_KVM                                                                         \
	"[ \"$(od -An -tx1 -j65520 -N4 /dev/fd/3 | tr -d ' ')\" = b02ae6f4 ] || exit 9\n" \
	"[ \"$(wc -c </dev/fd/3)\" -eq 65536 ] || exit 8\nexit 85"

Test(proto_accel, kvm_that_runs_a_guest_is_chosen)
{
	const char *why;
	char err[128];

	fake_qemu(WORKING_KVM);
	vmh_accel_use(device, qemu);
	cr_assert_eq(vmh_accel_configure("local.libvirt.accel", "auto", err, sizeof(err)), 0);
	cr_assert_eq(decided(&why), VMH_ACCEL_KVM, "why: %s", why);
	cr_assert(strstr(why, "ran under KVM"), "why: %s", why);
	cr_assert_str_eq(vmh_accel_setting(), "local.libvirt.accel=auto");
}

Test(proto_accel, kvm_device_that_cannot_run_guests_means_tcg)
{
	const char *why;
	char err[128];

	fake_qemu("echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2\nexit 1");
	vmh_accel_use(device, qemu);
	cr_assert_eq(vmh_accel_configure("local.qemu.accel", NULL, err, sizeof(err)), 0);
	cr_assert_eq(decided(&why), VMH_ACCEL_TCG);
	cr_assert(strstr(why, "failed to set MSR 0x10a"), "why: %s", why);
	cr_assert(strstr(why, "status 1"), "why: %s", why);
	cr_assert(exists("args"), "the probe did not run qemu");
}

Test(proto_accel, absent_kvm_device_means_tcg_without_running_qemu)
{
	const char *why;
	char err[128], missing[160];

	fake_qemu(WORKING_KVM);
	snprintf(missing, sizeof(missing), "%s/no-such-kvm", dir);
	vmh_accel_use(missing, qemu);
	cr_assert_eq(vmh_accel_configure("local.qemu.accel", "auto", err, sizeof(err)), 0);
	cr_assert_eq(decided(&why), VMH_ACCEL_TCG);
	cr_assert(strstr(why, "does not exist"), "why: %s", why);
	cr_assert_not(exists("args"), "qemu ran although the device is absent");
}

Test(proto_accel, forced_values_skip_the_probe)
{
	enum vmh_accel a;
	char err[128];

	fake_qemu("exit 1");
	vmh_accel_use(device, qemu);
	cr_assert_eq(vmh_accel_configure("local.libvirt.accel", "KVM", err, sizeof(err)), 0);
	cr_assert(vmh_accel_chosen(&a, NULL));
	cr_assert_eq(a, VMH_ACCEL_KVM);
	cr_assert_eq(vmh_accel_configure("local.libvirt.accel", "tcg", err, sizeof(err)), 0);
	cr_assert(vmh_accel_chosen(&a, NULL));
	cr_assert_eq(a, VMH_ACCEL_TCG);
	cr_assert_not(exists("args"));
}

Test(proto_accel, bad_value_names_the_setting)
{
	char err[128];

	cr_assert_eq(vmh_accel_configure("local.libvirt.accel", "qemu", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "local.libvirt.accel is 'qemu'; use auto, kvm or tcg");
}

Test(proto_accel, answer_is_cached_for_the_next_helper_of_the_scope)
{
	const char *why;
	char err[128], args[160];

	fake_qemu(WORKING_KVM);
	vmh_accel_use(device, qemu);
	vmh_accel_cache_in(dir);
	cr_assert_eq(vmh_accel_configure("local.qemu.accel", "auto", err, sizeof(err)), 0);
	cr_assert_eq(decided(&why), VMH_ACCEL_KVM);
	cr_assert(exists("accel-probe"));
	snprintf(args, sizeof(args), "%s/args", dir);
	cr_assert_eq(unlink(args), 0);

	/* A second helper (the other driver of the scope) reads the answer. */
	vmh_accel_use(device, qemu);
	cr_assert_eq(vmh_accel_configure("local.libvirt.accel", "auto", err, sizeof(err)), 0);
	cr_assert_eq(decided(&why), VMH_ACCEL_KVM);
	cr_assert_not(exists("args"), "the cached answer was not used");
}

Test(proto_accel, probe_leaves_no_file_behind)
{
	char tmp[128];
	struct dirent *e;
	DIR *d;
	int n = 0;

	fake_qemu(WORKING_KVM);
	vmh_accel_use(device, qemu);
	cr_assert_eq(vmh_accel_configure("local.qemu.accel", "auto", tmp, sizeof(tmp)), 0);
	decided(NULL);
	snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
	d = opendir(tmp);
	cr_assert_not_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	cr_assert_eq(n, 0, "the probe left %d file(s) in TMPDIR", n);
}

Test(proto_accel, sync_probe_reports_a_broken_kvm)
{
	char why[256];

	fake_qemu("echo 'KVM internal error' >&2\nexit 1");
	vmh_accel_use(device, qemu);
	cr_assert_eq(vmh_accel_probe_sync("kvm", why, sizeof(why)), PROTO_E_UNAVAILABLE);
	cr_assert(strstr(why, "KVM internal error"), "why: %s", why);
	fake_qemu(WORKING_KVM);
	cr_assert_eq(vmh_accel_probe_sync("kvm", why, sizeof(why)), 0, "why: %s", why);
}
