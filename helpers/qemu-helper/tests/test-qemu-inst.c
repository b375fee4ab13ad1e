/* Reading the instance map of a request. */
#include <string.h>

#include <criterion/criterion.h>

#include "qhtest.h"

#define BASE_IMAGE "\"image\": {\"disk\": \"/img/base.qcow2\", \"format\": \"qcow2\"}"

static int parse(const char *json, struct qh_inst *inst, char *err, size_t errlen)
{
	return qh_inst_parse(qhtest_obj(json), inst, err, errlen);
}

TestSuite(inst, .fini = qhtest_free);

Test(inst, full_map_is_copied)
{
	struct qh_inst in;
	char err[256] = "";

	cr_assert_eq(parse("{\"name\": \"web\", \"dir\": \"/d/web\", \"cpus\": 4, \"memory\": 2147483648,"
			   " \"disk\": 10737418240, \"mac\": \"52:54:00:01:02:03\", \"seed\": \"/d/web/seed.iso\","
			   " \"image\": {\"disk\": \"/img/x.raw\", \"format\": \"raw\", \"kernel\": \"/img/k\","
			   " \"initrd\": \"/img/i\", \"cmdline\": \"console=ttyS0\"},"
			   " \"mounts\": [{\"source\": \"/home/u\", \"target\": \"/mnt\", \"tag\": \"m0\"}],"
			   " \"networks\": [{\"name\": \"br0\", \"mode\": \"auto\", \"mac\": \"52:54:00:0a:0b:0c\"}]}",
			   &in, err, sizeof(err)),
		     0, "%s", err);
	cr_expect_str_eq(in.name, "web");
	cr_expect_str_eq(in.dir, "/d/web");
	cr_expect_eq(in.cpus, 4);
	cr_expect_eq(in.memory, 2147483648ull);
	cr_expect_eq(in.disk, 10737418240ull);
	cr_expect_str_eq(in.image_format, "raw");
	cr_expect_str_eq(in.image_kernel, "/img/k");
	cr_expect_str_eq(in.image_cmdline, "console=ttyS0");
	cr_assert_eq(in.n_mounts, 1);
	cr_expect_str_eq(in.mounts[0].tag, "m0");
	cr_assert_eq(in.n_nets, 1);
	cr_expect_str_eq(in.nets[0].name, "br0");
	qh_inst_free(&in);
}

Test(inst, missing_optional_keys_get_defaults)
{
	struct qh_inst in;
	char err[256] = "";

	cr_assert_eq(parse("{\"name\": \"a\", \"dir\": \"/d/a\", \"image\": {\"disk\": \"/img/b\"},"
			   " \"seed\": \"\", \"image\": {\"disk\": \"/img/b\", \"kernel\": \"\"}}",
			   &in, err, sizeof(err)),
		     0, "%s", err);
	cr_expect_eq(in.cpus, 1);
	cr_expect_eq(in.memory, 1ull << 30);
	cr_expect_str_eq(in.image_format, "qcow2");
	cr_expect_null(in.image_kernel, "an empty kernel means none");
	cr_expect_null(in.seed, "an empty seed means none");
	cr_expect_eq(in.n_mounts, 0);
	qh_inst_free(&in);
}

struct bad_case {
	const char *json;
	const char *says;
};

Test(inst, bad_maps_are_refused_with_a_reason)
{
	static const struct bad_case cases[] = {
		{"[1, 2]", "no 'instance' map"},
		{"{\"dir\": \"/d/a\", " BASE_IMAGE "}", "needs a 'name'"},
		{"{\"name\": \"a,b\", \"dir\": \"/d/a\", " BASE_IMAGE "}", "needs a 'name'"},
		{"{\"name\": \"a\", \"dir\": \"rel/a\", " BASE_IMAGE "}", "absolute 'dir'"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\"}", "no 'image' map"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"image\": {\"disk\": \"x\"}}", "absolute 'disk'"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"image\": {\"disk\": \"/x\", \"format\": \"vmdk\"}}",
		 "neither qcow2 nor raw"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"image\": {\"disk\": \"/x\", \"initrd\": \"/i\"}}",
		 "initrd but no kernel"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"mac\": \"52:54:00\", " BASE_IMAGE "}", "mac"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"cpus\": \"two\", " BASE_IMAGE "}", "integers"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"cpus\": -1, " BASE_IMAGE "}", "out of range"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"mounts\": [{\"source\": \"/s\"}], " BASE_IMAGE "}",
		 "'tag'"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"mounts\": [{\"source\": \"/s\", \"tag\": \"a,b\"}], "
		 BASE_IMAGE "}",
		 "','"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"networks\": [{\"name\": \"br0\"}], " BASE_IMAGE "}",
		 "'mac'"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"networks\": {}, " BASE_IMAGE "}", "array"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct qh_inst in;
		char err[256] = "";
		int rc = parse(cases[i].json, &in, err, sizeof(err));

		cr_expect_eq(rc, PROTO_E_INVALID_ARGUMENT, "accepted: %s", cases[i].json);
		cr_expect(strstr(err, cases[i].says), "for %s: '%s' does not say '%s'", cases[i].json,
			  err, cases[i].says);
	}
}

Test(inst, path_joins_the_instance_folder)
{
	struct qh_inst in = {.dir = "/var/lib/vmctl/scopes/qemu/instances/a"};
	char buf[QH_PATH];

	qh_path(&in, QH_PIDFILE, buf, sizeof(buf));
	cr_expect_str_eq(buf, "/var/lib/vmctl/scopes/qemu/instances/a/qemu.pid");
}
