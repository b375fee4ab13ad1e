/* Native mounts of the lxd driver: disk devices and raw.idmap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "lxd.h"

static char err[512];

TestSuite(lxd_mounts, .timeout = 10);

Test(lxd_mounts, a_device_is_named_for_its_guest_path_alone)
{
	char a[64], b[64], c[64];

	lxd_mount_device_name("/mnt/x", a, sizeof(a));
	lxd_mount_device_name("/mnt/x", b, sizeof(b));
	lxd_mount_device_name("/mnt/y", c, sizeof(c));
	cr_expect_str_eq(a, b);
	cr_expect_str_neq(a, c);
	cr_expect_eq(strncmp(a, LXD_MOUNT_DEVICE_PREFIX, strlen(LXD_MOUNT_DEVICE_PREFIX)), 0, "%s", a);
}

Test(lxd_mounts, the_maps_of_every_mount_make_one_raw_idmap_each_pair_once)
{
	struct vmh_idpair u1[] = { { 1000, 1000 }, { 1001, 2000 } }, g1[] = { { 1000, 1000 } };
	struct vmh_idpair u2[] = { { 1000, 1000 } };
	struct vmh_mount m1 = { .source = "/a", .target = "/x", .uid_map = u1, .n_uid_map = 2,
				.gid_map = g1, .n_gid_map = 1 };
	struct vmh_mount m2 = { .source = "/b", .target = "/y", .uid_map = u2, .n_uid_map = 1 };
	struct vmh_mount m3 = { .source = "/c", .target = "/z" };
	const struct vmh_mount *ms[] = { &m1, &m2, &m3 };
	char idmap[256];

	cr_assert_eq(lxd_mounts_idmap(ms, 3, idmap, sizeof(idmap), err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(idmap, "uid 1000 1000\nuid 1001 2000\ngid 1000 1000");
	cr_assert_eq(lxd_mounts_idmap(&ms[2], 1, idmap, sizeof(idmap), err, sizeof(err)), 0);
	cr_expect_str_eq(idmap, "");
}

Test(lxd_mounts, maps_that_contradict_each_other_are_refused_naming_both)
{
	struct vmh_idpair u1[] = { { 1000, 1000 } }, u2[] = { { 1000, 1005 } };
	struct vmh_mount m1 = { .source = "/a", .target = "/x", .uid_map = u1, .n_uid_map = 1 };
	struct vmh_mount m2 = { .source = "/b", .target = "/y", .uid_map = u2, .n_uid_map = 1 };
	const struct vmh_mount *ms[] = { &m1, &m2 };
	char idmap[256];

	cr_assert_eq(lxd_mounts_idmap(ms, 2, idmap, sizeof(idmap), err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_expect(strstr(err, "1000:1000") && strstr(err, "1000:1005"), "%s", err);
}

Test(lxd_mounts, a_current_idmap_covers_the_lines_it_has)
{
	cr_expect(lxd_idmap_covers("uid 1000 1000\ngid 1000 1000", "gid 1000 1000"));
	cr_expect(lxd_idmap_covers("uid 1000 1000", ""));
	cr_expect_not(lxd_idmap_covers("uid 1000 1000", "uid 1000 100"));
	cr_expect_not(lxd_idmap_covers("", "uid 1 1"));
}

static void subid_file(char *path, size_t len, const char *text)
{
	FILE *f;
	int fd;

	snprintf(path, len, "/tmp/test-lxd-subid.XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
}

Test(lxd_mounts, root_may_map_the_host_ids_its_subid_lines_cover)
{
	char path[64];

	subid_file(path, sizeof(path), "_lxd:100000:65536\nroot:100000:10000001\nroot:1000:1\n");
	cr_expect_eq(lxd_subid_allows(path, "root", 1000), 1);
	cr_expect_eq(lxd_subid_allows(path, "root", 1001), 0);
	cr_expect_eq(lxd_subid_allows(path, "root", 100000), 1);
	cr_expect_eq(lxd_subid_allows(path, "_lxd", 1000), 0);
	cr_expect_eq(lxd_subid_allows("/nonexistent/subuid", "root", 1000), 0);
	unlink(path);
}

Test(lxd_mounts, a_host_id_root_may_not_map_is_refused_saying_which_line_to_add)
{
	struct vmh_idpair u[] = { { 1000, 1000 } }, g[] = { { 4242, 1000 } };
	struct vmh_mount m = { .source = "/srv/data", .target = "/x", .uid_map = u, .n_uid_map = 1,
			       .gid_map = g, .n_gid_map = 1 };
	const struct vmh_mount *ms[] = { &m };
	char path[64];

	subid_file(path, sizeof(path), "root:100000:65536\nroot:1000:1\n");
	cr_assert_eq(lxd_mounts_check_ids(ms, 1, path, path, err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_expect(strstr(err, "gid 4242") && strstr(err, "root:4242:1"), "%s", err);
	g[0].host = 1000;
	cr_expect_eq(lxd_mounts_check_ids(ms, 1, path, path, err, sizeof(err)), 0, "%s", err);
	unlink(path);
}

Test(lxd_mounts, the_devices_become_the_mounts_leaving_the_others_alone)
{
	struct vmh_mount m1 = { .source = "/srv/a", .target = "/mnt/a" };
	struct vmh_mount m2 = { .source = "/srv/b", .target = "/mnt/b" };
	const struct vmh_mount *ms[] = { &m1, &m2 };
	char stale[64], a[64], b[64];
	json_t *devices;

	lxd_mount_device_name("/mnt/old", stale, sizeof(stale));
	lxd_mount_device_name("/mnt/a", a, sizeof(a));
	lxd_mount_device_name("/mnt/b", b, sizeof(b));
	devices = json_pack("{s:{s:s, s:s}, s:{s:s}, s:{s:s, s:s, s:s}}", "root", "type", "disk",
			    "path", "/", "eth0", "type", "nic", stale, "type", "disk", "source",
			    "/srv/old", "path", "/mnt/old");
	cr_assert(devices);
	cr_expect(lxd_mounts_apply(devices, ms, 2));
	cr_expect_null(json_object_get(devices, stale));
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(devices, a), "source")),
			 "/srv/a");
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(devices, b), "path")),
			 "/mnt/b");
	cr_expect_not_null(json_object_get(devices, "root"));
	cr_expect_not_null(json_object_get(devices, "eth0"));
	cr_expect_not(lxd_mounts_apply(devices, ms, 2), "nothing left to change");
	/* A mount whose source changed is replaced; no mounts leave none of ours. */
	m1.source = "/srv/other";
	cr_expect(lxd_mounts_apply(devices, ms, 2));
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(devices, a), "source")),
			 "/srv/other");
	cr_expect(lxd_mounts_apply(devices, ms, 0));
	cr_expect_eq(json_object_size(devices), 2);
	json_decref(devices);
}
