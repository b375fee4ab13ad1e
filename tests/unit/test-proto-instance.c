/* The instance map every helper gets from the SDK: its limits, types and names. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <vmproto/vmh.h>

#include "protojson.h"

#define IMAGE "\"image\": {\"disk\": \"/img/base.qcow2\"}"
#define MAP(more) "{\"name\": \"web\", \"dir\": \"/s/instances/web\", " IMAGE more "}"

static char err[1024];

static int parse(const char *json, struct vmh_instance *in)
{
	err[0] = '\0';
	return vmh_instance_parse(pj(json), in, err, sizeof(err));
}

/* Refused with invalid-argument and a message that says what. */
static void refused(const char *json, const char *says)
{
	struct vmh_instance in;
	int rc = parse(json, &in);

	cr_expect_eq(rc, PROTO_E_INVALID_ARGUMENT, "accepted: %s", json);
	cr_expect(strstr(err, says), "for %s: '%s' does not say '%s'", json, err, says);
	if (rc == 0)
		vmh_instance_free(&in);
}

static void accepted(const char *json, struct vmh_instance *in)
{
	cr_assert_eq(parse(json, in), 0, "%s: %s", json, err);
}

TestSuite(instance, .fini = pj_free);

Test(instance, a_full_map_is_copied)
{
	struct vmh_instance in;

	accepted("{\"name\": \"web\", \"dir\": \"/s/instances/web\", \"cpus\": 4, \"memory\": 2147483648,"
		 " \"disk\": 10737418240, \"mac\": \"52:54:00:01:02:03\", \"seed\": \"/s/seed.iso\","
		 " \"image\": {\"disk\": \"/img/x.raw\", \"format\": \"raw\", \"kernel\": \"/img/k\","
		 " \"initrd\": \"/img/i\", \"cmdline\": \"console=ttyS0\"},"
		 " \"mounts\": [{\"source\": \"/home/u\", \"target\": \"/mnt\", \"tag\": \"m0\","
		 " \"uid_map\": [[1000, 1001], [0, 0]], \"gid_map\": [[50, 60]]}],"
		 " \"networks\": [{\"name\": \"br0\", \"mode\": \"manual\", \"mac\": \"52:54:00:0a:0b:0c\"}]}",
		 &in);
	cr_expect_str_eq(in.name, "web");
	cr_expect_str_eq(in.dir, "/s/instances/web");
	cr_expect_eq(in.cpus, 4);
	cr_expect_eq(in.memory, 2147483648ull);
	cr_expect_eq(in.disk, 10737418240ull);
	cr_expect_str_eq(in.mac, "52:54:00:01:02:03");
	cr_expect_str_eq(in.seed, "/s/seed.iso");
	cr_expect_str_eq(in.image.disk, "/img/x.raw");
	cr_expect_str_eq(in.image.format, "raw");
	cr_expect_str_eq(in.image.kernel, "/img/k");
	cr_expect_str_eq(in.image.initrd, "/img/i");
	cr_expect_str_eq(in.image.cmdline, "console=ttyS0");
	cr_assert_eq(in.n_mounts, 1);
	cr_expect_str_eq(in.mounts[0].source, "/home/u");
	cr_expect_str_eq(in.mounts[0].target, "/mnt");
	cr_expect_str_eq(in.mounts[0].tag, "m0");
	cr_assert_eq(in.mounts[0].n_uid_map, 2);
	cr_expect_eq(in.mounts[0].uid_map[0].host, 1000);
	cr_expect_eq(in.mounts[0].uid_map[0].guest, 1001);
	cr_assert_eq(in.mounts[0].n_gid_map, 1);
	cr_expect_eq(in.mounts[0].gid_map[0].guest, 60);
	cr_assert_eq(in.n_networks, 1);
	cr_expect_str_eq(in.networks[0].name, "br0");
	cr_expect_str_eq(in.networks[0].mode, "manual");
	cr_expect_str_eq(in.networks[0].mac, "52:54:00:0a:0b:0c");
	vmh_instance_free(&in);
	cr_expect_null(in.name, "free leaves the struct empty");
}

Test(instance, absent_zero_and_empty_values_get_their_defaults)
{
	struct vmh_instance in;

	accepted("{\"name\": \"a\", \"dir\": \"/d/a\", \"cpus\": 0, \"memory\": 0, \"mac\": \"\","
		 " \"seed\": \"\", \"networks\": [], \"mounts\": null,"
		 " \"image\": {\"disk\": \"\", \"kernel\": \"\", \"format\": null}}",
		 &in);
	cr_expect_eq(in.cpus, 1);
	cr_expect_eq(in.memory, PROTO_MEMORY_DEFAULT);
	cr_expect_eq(in.disk, 0);
	cr_expect_null(in.mac, "an empty mac means none");
	cr_expect_null(in.seed, "an empty seed means none");
	cr_expect_null(in.image.disk);
	cr_expect_null(in.image.kernel, "an empty kernel means none");
	cr_expect_str_eq(in.image.format, "qcow2");
	cr_expect_eq(in.n_mounts, 0);
	cr_expect_eq(in.n_networks, 0);
	vmh_instance_free(&in);
}

Test(instance, a_network_without_a_mode_is_auto)
{
	struct vmh_instance in;

	accepted(MAP(", \"networks\": [{\"name\": \"br0\", \"mac\": \"52:54:00:00:00:01\"}]"), &in);
	cr_expect_str_eq(in.networks[0].mode, "auto");
	vmh_instance_free(&in);
}

Test(instance, cpus_go_from_1_to_the_protocol_maximum)
{
	struct vmh_instance in;
	char json[256];

	snprintf(json, sizeof(json), MAP(", \"cpus\": %d"), PROTO_CPUS_MAX);
	accepted(json, &in);
	cr_expect_eq(in.cpus, PROTO_CPUS_MAX);
	vmh_instance_free(&in);
	snprintf(json, sizeof(json), MAP(", \"cpus\": %d"), PROTO_CPUS_MAX + 1);
	refused(json, "out of range (1 to 1024)");
	refused(MAP(", \"cpus\": -1"), "whole numbers");
	refused(MAP(", \"cpus\": \"two\""), "whole numbers");
}

Test(instance, memory_has_the_protocol_floor)
{
	struct vmh_instance in;
	char json[256];

	snprintf(json, sizeof(json), MAP(", \"memory\": %llu"), PROTO_MEMORY_MIN);
	accepted(json, &in);
	cr_expect_eq(in.memory, PROTO_MEMORY_MIN);
	vmh_instance_free(&in);
	snprintf(json, sizeof(json), MAP(", \"memory\": %llu"), PROTO_MEMORY_MIN - 1);
	refused(json, "below the minimum of 512 MiB");
	refused(MAP(", \"memory\": \"1G\""), "in bytes");
	refused(MAP(", \"disk\": -5"), "in bytes");
}

Test(instance, the_name_follows_the_protocol_rule)
{
	char json[256], name[PROTO_NAME_MAX + 2];
	struct vmh_instance in;

	memset(name, 'a', PROTO_NAME_MAX);
	name[PROTO_NAME_MAX] = '\0';
	snprintf(json, sizeof(json), "{\"name\": \"%s\", \"dir\": \"/d\", " IMAGE "}", name);
	accepted(json, &in);
	vmh_instance_free(&in);
	strcat(name, "a");
	snprintf(json, sizeof(json), "{\"name\": \"%s\", \"dir\": \"/d\", " IMAGE "}", name);
	refused(json, "at most 63 characters");
	refused("{\"dir\": \"/d\", " IMAGE "}", "needs a 'name'");
	refused("{\"name\": 7, \"dir\": \"/d\", " IMAGE "}", "needs a 'name'");
	refused("{\"name\": \"Web\", \"dir\": \"/d\", " IMAGE "}", "try \"web\"");
	refused("{\"name\": \"a,b\", \"dir\": \"/d\", " IMAGE "}", "',' is not allowed");
	refused("{\"name\": \"a/b\", \"dir\": \"/d\", " IMAGE "}", "'/' is not allowed");
	refused("{\"name\": \"1a\", \"dir\": \"/d\", " IMAGE "}", "start with a letter");
	refused("{\"name\": \"a-\", \"dir\": \"/d\", " IMAGE "}", "end with a hyphen");
}

Test(instance, the_name_check_is_the_one_the_broker_uses)
{
	cr_expect_eq(proto_check_name("web-01", err, sizeof(err)), 0);
	cr_expect_eq(proto_check_name("", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_expect_str_eq(err, "instance name must not be empty");
	cr_expect_eq(proto_check_name(NULL, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_expect_eq(proto_check_name("a\x01", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_expect(strstr(err, "byte 0x01"), "%s", err);
}

Test(instance, paths_must_be_absolute_clean_and_short_enough)
{
	static char json[2 * PROTO_PATH_MAX];
	char dir[PROTO_DIR_MAX + 2];
	struct vmh_instance in;

	refused("{\"name\": \"a\", " IMAGE "}", "absolute 'dir'");
	refused("{\"name\": \"a\", \"dir\": \"rel/a\", " IMAGE "}", "absolute 'dir'");
	refused("{\"name\": \"a\", \"dir\": \"/d/\x01\", " IMAGE "}", "absolute 'dir'");
	refused("{\"name\": \"a\", \"dir\": 5, " IMAGE "}", "must be strings");
	refused(MAP(", \"seed\": \"seed.iso\""), "'seed' must be an absolute path");
	dir[0] = '/';
	memset(dir + 1, 'd', PROTO_DIR_MAX - 1);
	dir[PROTO_DIR_MAX] = '\0';
	snprintf(json, sizeof(json), "{\"name\": \"a\", \"dir\": \"%s\", " IMAGE "}", dir);
	accepted(json, &in);
	vmh_instance_free(&in);
	strcat(dir, "d");
	snprintf(json, sizeof(json), "{\"name\": \"a\", \"dir\": \"%s\", " IMAGE "}", dir);
	refused(json, "at most 4031 bytes");
}

Test(instance, a_string_with_a_nul_is_refused)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked up;
	struct vmh_instance in;
	size_t off = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	proto_pack_kv_str(&pk, "name", "a");
	proto_pack_str(&pk, "dir");
	msgpack_pack_str(&pk, 7);
	msgpack_pack_str_body(&pk, "/d\0/etc", 7);
	proto_pack_str(&pk, "image");
	msgpack_pack_map(&pk, 0);
	msgpack_unpacked_init(&up);
	cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
	cr_expect_eq(vmh_instance_parse(&up.data, &in, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
}

Test(instance, the_image_is_checked)
{
	refused("[1, 2]", "no instance map");
	refused("{\"name\": \"a\", \"dir\": \"/d/a\"}", "no 'image' map");
	refused("{\"name\": \"a\", \"dir\": \"/d/a\", \"image\": \"/img\"}", "no 'image' map");
	refused("{\"name\": \"a\", \"dir\": \"/d/a\", \"image\": {\"disk\": \"x\"}}", "absolute path");
	refused("{\"name\": \"a\", \"dir\": \"/d/a\", \"image\": {\"disk\": 1}}", "must be strings");
	refused("{\"name\": \"a\", \"dir\": \"/d/a\", \"image\": {\"disk\": \"/x\", \"format\": \"vmdk\"}}",
		"is not qcow2, raw or lxd");
	refused("{\"name\": \"a\", \"dir\": \"/d/a\", \"image\": {\"disk\": \"/x\", \"initrd\": \"/i\"}}",
		"initrd but no kernel");
	refused("{\"name\": \"a\", \"dir\": \"/d/a\", \"image\": {\"kernel\": \"vmlinuz\"}}",
		"kernel and initrd must be absolute");
}

Test(instance, macs_are_six_hex_pairs_and_unicast)
{
	struct vmh_instance in;

	accepted(MAP(", \"mac\": \"52:54:00:AB:cd:0f\""), &in);
	vmh_instance_free(&in);
	refused(MAP(", \"mac\": \"52:54:00\""), "mac '52:54:00'");
	refused(MAP(", \"mac\": \"52:54:00: 1:02:03\""), "not a unicast MAC");
	refused(MAP(", \"mac\": \"52-54-00-01-02-03\""), "not a unicast MAC");
	refused(MAP(", \"mac\": \"01:00:5e:00:00:01\""), "not a unicast MAC");
}

Test(instance, mounts_are_checked)
{
	refused(MAP(", \"mounts\": {}"), "'mounts' must be an array");
	refused(MAP(", \"mounts\": [\"/s\"]"), "a mount must be a map");
	refused(MAP(", \"mounts\": [{\"target\": \"/m\"}]"), "absolute 'source'");
	refused(MAP(", \"mounts\": [{\"source\": \"s\"}]"), "absolute 'source'");
	refused(MAP(", \"mounts\": [{\"source\": \"/s\", \"tag\": 3}]"), "must be strings");
	refused(MAP(", \"mounts\": [{\"source\": \"/s\", \"uid_map\": [[1, 2, 3]]}]"),
		"'uid_map' must be a list of [HOST, GUEST]");
	refused(MAP(", \"mounts\": [{\"source\": \"/s\", \"gid_map\": [[-1, 2]]}]"),
		"'gid_map' must be a list of [HOST, GUEST]");
	refused(MAP(", \"mounts\": [{\"source\": \"/s\", \"uid_map\": [[4294967295, 0]]}]"),
		"ids go from 0 to 4294967294");
	refused(MAP(", \"mounts\": [{\"source\": \"/s\", \"uid_map\": 5}]"), "'uid_map' must be a list");
}

Test(instance, one_mount_map_parses_alone)
{
	struct vmh_mount m;

	cr_assert_eq(vmh_mount_parse(pj("{\"source\": \"/s\", \"target\": \"/t\"}"), &m, err, sizeof(err)),
		     0, "%s", err);
	cr_expect_str_eq(m.source, "/s");
	cr_expect_null(m.tag);
	cr_expect_null(m.uid_map);
	vmh_mount_free(&m);
	cr_expect_eq(vmh_mount_parse(NULL, &m, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
}

Test(instance, networks_are_checked)
{
	char json[4096] = "{\"name\": \"web\", \"dir\": \"/d\", " IMAGE ", \"networks\": [";

	refused(MAP(", \"networks\": {}"), "'networks' must be an array");
	refused(MAP(", \"networks\": [{\"name\": \"br0\"}]"), "'mac'");
	refused(MAP(", \"networks\": [{\"mac\": \"52:54:00:00:00:01\"}]"), "interface 'name'");
	refused(MAP(", \"networks\": [{\"name\": \"br/0\", \"mac\": \"52:54:00:00:00:01\"}]"),
		"interface 'name'");
	refused(MAP(", \"networks\": [{\"name\": \"a-name-of-16-chr\", \"mac\": \"52:54:00:00:00:01\"}]"),
		"interface 'name'");
	refused(MAP(", \"networks\": [{\"name\": \"br0\", \"mode\": \"dhcp\", \"mac\": \"52:54:00:00:00:01\"}]"),
		"neither auto nor manual");
	refused(MAP(", \"networks\": [7]"), "interface 'name'");
	/* One more than the protocol allows. */
	for (int i = 0; i <= PROTO_NETWORKS_MAX; i++) {
		char one[96];

		snprintf(one, sizeof(one), "%s{\"name\": \"br%d\", \"mac\": \"52:54:00:00:00:%02x\"}",
			 i ? ", " : "", i, i);
		strcat(json, one);
	}
	strcat(json, "]}");
	refused(json, "at most 16");
}

Test(instance, file_joins_the_instance_folder)
{
	struct vmh_instance in = {.dir = "/var/lib/vmctl/scopes/qemu/instances/a"};
	char buf[64];

	cr_expect_eq(vmh_instance_file(&in, "qemu.pid", buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "/var/lib/vmctl/scopes/qemu/instances/a/qemu.pid");
	cr_expect_eq(vmh_instance_file(&in, "a-file-name-that-does-not-fit", buf, sizeof(buf)),
		     PROTO_E_INVALID_ARGUMENT);
}
