/*
 * What the qemu driver checks in an instance map on top of the SDK's parser
 * (whose own rules tests/unit/test-proto-instance.c covers).
 */
#include <string.h>

#include <criterion/criterion.h>

#include "qhtest.h"

#define BASE_IMAGE "\"image\": {\"disk\": \"/img/base.qcow2\", \"format\": \"qcow2\"}"

static int parse(const char *json, struct vmh_instance *inst, char *err, size_t errlen)
{
	return qh_inst_parse(qhtest_obj(json), inst, err, errlen);
}

TestSuite(inst, .fini = qhtest_free);

Test(inst, a_map_with_mounts_and_networks_is_taken)
{
	struct vmh_instance in;
	char err[256] = "";

	cr_assert_eq(parse("{\"name\": \"web\", \"dir\": \"/d/web\", \"cpus\": 4, " BASE_IMAGE ","
			   " \"mounts\": [{\"source\": \"/home/u\", \"target\": \"/mnt\", \"tag\": \"m0\"}],"
			   " \"networks\": [{\"name\": \"br0\", \"mode\": \"auto\", \"mac\": \"52:54:00:0a:0b:0c\"}]}",
			   &in, err, sizeof(err)),
		     0, "%s", err);
	cr_expect_eq(in.cpus, 4);
	cr_assert_eq(in.n_mounts, 1);
	cr_expect_str_eq(in.mounts[0].tag, "m0");
	cr_assert_eq(in.n_networks, 1);
	cr_expect_str_eq(in.networks[0].name, "br0");
	vmh_instance_free(&in);
}

struct bad_case {
	const char *json;
	const char *says;
};

Test(inst, what_qemu_cannot_take_is_refused_with_a_reason)
{
	static const struct bad_case cases[] = {
		/* The SDK's rules come first. */
		{"{\"name\": \"a,b\", \"dir\": \"/d/a\", " BASE_IMAGE "}", "',' is not allowed"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"cpus\": 1025, " BASE_IMAGE "}", "out of range"},
		/* 9p tags */
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"mounts\": [{\"source\": \"/s\"}], " BASE_IMAGE "}",
		 "'tag'"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"mounts\": [{\"source\": \"/s\", \"tag\": \"a,b\"}], "
		 BASE_IMAGE "}",
		 "','"},
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"mounts\": [{\"source\": \"/s\", \"tag\": "
		 "\"a-tag-of-thirty-two-characters!!\"}], " BASE_IMAGE "}",
		 "longer than 31"},
		/* -netdev bridge,br=NAME */
		{"{\"name\": \"a\", \"dir\": \"/d/a\", \"networks\": [{\"name\": \"b=r\", \"mac\": "
		 "\"52:54:00:00:00:01\"}], " BASE_IMAGE "}",
		 "',' or '='"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vmh_instance in;
		char err[256] = "";
		int rc = parse(cases[i].json, &in, err, sizeof(err));

		cr_expect_eq(rc, PROTO_E_INVALID_ARGUMENT, "accepted: %s", cases[i].json);
		cr_expect(strstr(err, cases[i].says), "for %s: '%s' does not say '%s'", cases[i].json,
			  err, cases[i].says);
	}
}

Test(inst, id_maps_longer_than_qemu_writes_are_refused)
{
	char json[4096], err[256] = "";
	struct vmh_mount m;
	size_t n;

	n = (size_t)snprintf(json, sizeof(json), "{\"source\": \"/s\", \"tag\": \"t\", \"uid_map\": [");
	for (int i = 0; i <= QH_IDMAP_MAX; i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n, "%s[%d, %d]", i ? ", " : "", i, i + 1);
	snprintf(json + n, sizeof(json) - n, "]}");
	cr_expect_eq(qh_mount_parse(qhtest_obj(json), &m, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_expect(strstr(err, "at most 24"), "%s", err);
}

Test(inst, path_joins_the_instance_folder)
{
	struct vmh_instance in = {.dir = "/var/lib/vmctl/scopes/qemu/instances/a"};
	char buf[QH_PATH];

	qh_path(&in, QH_PIDFILE, buf, sizeof(buf));
	cr_expect_str_eq(buf, "/var/lib/vmctl/scopes/qemu/instances/a/qemu.pid");
}
