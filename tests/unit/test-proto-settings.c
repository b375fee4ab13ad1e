/* The broker's settings as a helper looks them up, with defaults. */
#include <string.h>

#include <criterion/criterion.h>

#include <vmproto/vmh.h>

#include "protojson.h"

static char err[256];
static const char *const accels[] = {"auto", "kvm", "tcg", NULL};

static void load(const char *json)
{
	cr_assert_eq(vmh_settings_load(pj(json)), 0);
}

static void teardown(void)
{
	vmh_settings_load(NULL);
	pj_free();
}

TestSuite(settings, .fini = teardown);

Test(settings, a_string_or_its_default)
{
	load("{\"local.libvirt.uri\": \"qemu:///system\", \"local.libvirt.network\": \"\"}");
	cr_expect_str_eq(vmh_setting("local.libvirt.uri", "qemu:///session"), "qemu:///system");
	cr_expect_str_eq(vmh_setting("local.libvirt.network", "vmctl"), "vmctl", "\"\" is unset");
	cr_expect_str_eq(vmh_setting("local.absent", "dflt"), "dflt");
	cr_expect_null(vmh_setting("local.absent", NULL));
}

Test(settings, they_outlive_the_map_they_came_from)
{
	load("{\"local.qemu.accel\": \"tcg\"}");
	pj_free();
	cr_expect_str_eq(vmh_setting("local.qemu.accel", "auto"), "tcg");
}

Test(settings, an_enum_in_any_case_or_its_default)
{
	int v = -1;

	load("{\"a\": \"KVM\", \"b\": \"\", \"c\": \"hvf\", \"d\": 5}");
	cr_expect_eq(vmh_setting_enum("a", accels, 0, &v, err, sizeof(err)), 0);
	cr_expect_eq(v, 1);
	cr_expect_eq(vmh_setting_enum("b", accels, 2, &v, err, sizeof(err)), 0);
	cr_expect_eq(v, 2, "unset gives the default");
	cr_expect_eq(vmh_setting_enum("absent", accels, 0, &v, err, sizeof(err)), 0);
	cr_expect_eq(v, 0);
	cr_expect_eq(vmh_setting_enum("c", accels, 0, &v, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_expect_str_eq(err, "c is 'hvf'; use auto, kvm or tcg");
	cr_expect_eq(vmh_setting_enum("d", accels, 0, &v, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_expect_str_eq(err, "d is not a string");
	cr_expect_str_eq(vmh_setting("d", "x"), "x", "a value that is no string gives the default");
}

Test(settings, a_bool_is_true_or_false)
{
	bool b = false;

	load("{\"yes\": \"TRUE\", \"no\": \"false\", \"odd\": \"1\"}");
	cr_expect_eq(vmh_setting_bool("yes", false, &b, err, sizeof(err)), 0);
	cr_expect(b);
	cr_expect_eq(vmh_setting_bool("no", true, &b, err, sizeof(err)), 0);
	cr_expect_not(b);
	cr_expect_eq(vmh_setting_bool("absent", true, &b, err, sizeof(err)), 0);
	cr_expect(b);
	cr_expect_eq(vmh_setting_bool("odd", true, &b, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_expect_str_eq(err, "odd is '1'; use true or false");
}

Test(settings, loading_again_replaces_and_null_forgets)
{
	load("{\"a\": \"1\"}");
	load("{\"b\": \"2\"}");
	cr_expect_null(vmh_setting("a", NULL));
	cr_expect_str_eq(vmh_setting("b", NULL), "2");
	cr_expect_eq(vmh_settings_load(NULL), 0);
	cr_expect_null(vmh_setting("b", NULL));
	cr_expect_eq(vmh_settings_load(pj("[1]")), 0, "not a map: no settings");
}

Test(settings, the_accelerator_is_configured_from_its_setting)
{
	enum vmh_accel a;
	const char *why;

	load("{\"local.qemu.accel\": \"Tcg\", \"local.libvirt.accel\": \"fast\"}");
	cr_assert_eq(vmh_accel_configure_setting("local.qemu.accel", err, sizeof(err)), 0, "%s", err);
	cr_assert(vmh_accel_chosen(&a, &why));
	cr_expect_eq(a, VMH_ACCEL_TCG);
	cr_expect_str_eq(vmh_accel_setting(), "local.qemu.accel=tcg");
	cr_expect_eq(vmh_accel_configure_setting("local.libvirt.accel", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_expect_str_eq(err, "local.libvirt.accel is 'fast'; use auto, kvm or tcg");
}
