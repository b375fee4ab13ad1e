/* The instance registry of a scope: what survives a broker restart. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vmproto/proto.h>

#include "vmcommon.h"

static char tmpdir[] = "/tmp/vmctl-test-registry-XXXXXX";
static char path[256];
static char err[768];

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(path, sizeof(path), "%s/instances.yaml", tmpdir);
}

static void teardown(void)
{
	remove_tree(tmpdir);
}

/* The fields a record cannot do without, as a flow mapping's insides. */
#define REQUIRED "state: stopped, image_disk: /i.qcow2, image_format: qcow2, mac: '52:54:00:00:00:01', " \
		 "cpus: 1, memory: 1073741824, disk: 5368709120, deleted: false"
/* The same, as the lines of a block mapping indented for a record. */
#define REQUIRED_LINES "    state: stopped\n    image_disk: /i.qcow2\n    image_format: qcow2\n" \
		       "    mac: '52:54:00:00:00:01'\n    cpus: 1\n    memory: 1073741824\n" \
		       "    disk: 5368709120\n    deleted: false\n"

static void write_text(const char *text)
{
	cr_assert_eq(atomic_write_file(path, text, strlen(text), 0600), 0);
}

/* What a record needs to load: the same values as REQUIRED. */
static void fill_required(struct instance_record *rec)
{
	rec->state = PROTO_STATE_STOPPED;
	cr_assert_eq(record_set(&rec->image_disk, "/i.qcow2"), 0);
	cr_assert_eq(record_set(&rec->image_format, "qcow2"), 0);
	cr_assert_eq(record_set(&rec->mac, "52:54:00:00:00:01"), 0);
	rec->cpus = 1;
	rec->memory = 1ull << 30;
	rec->disk = 5ull << 30;
}

static void fill_record(struct instance_record *rec, unsigned i)
{
	char text[128];

	rec->state = i % 2 ? PROTO_STATE_RUNNING : PROTO_STATE_STOPPED;
	rec->switch_state = PROTO_STATE_SUSPENDED;
	rec->has_switch_state = true;
	cr_assert_eq(record_set(&rec->image, "24.04"), 0);
	snprintf(text, sizeof(text), "/var/lib/vmctl/images/%064u.qcow2", i);
	cr_assert_eq(record_set(&rec->image_disk, text), 0);
	cr_assert_eq(record_set(&rec->image_format, "qcow2"), 0);
	cr_assert_eq(record_set(&rec->image_kernel, "/boot/vmlinuz"), 0);
	cr_assert_eq(record_set(&rec->image_initrd, "/boot/initrd.img"), 0);
	cr_assert_eq(record_set(&rec->image_cmdline, "console=ttyS0 root=/dev/vda1 quiet: yes # not a comment"), 0);
	snprintf(text, sizeof(text), "%064x", i);
	cr_assert_eq(record_set(&rec->image_sha256, text), 0);
	snprintf(text, sizeof(text), "52:54:00:00:%02x:%02x", (i >> 8) & 0xff, i & 0xff);
	cr_assert_eq(record_set(&rec->mac, text), 0);
	cr_assert_eq(record_set(&rec->created, "2026-11-27T10:00:00Z"), 0);
	rec->cpus = 1 + i % 8;
	rec->memory = (1ull << 30) + i;
	rec->disk = UINT64_MAX - i;
	rec->deleted = i % 3 == 0;
}

static void assert_same_string(const char *a, const char *b, const char *what)
{
	if (!a || !b)
		cr_assert_eq(a, b, "%s: one is unset", what);
	else
		cr_assert_str_eq(a, b, "%s", what);
}

static void assert_same_record(const struct instance_record *a, const struct instance_record *b)
{
	cr_assert_str_eq(a->name, b->name);
	cr_assert_eq(a->state, b->state, "state");
	cr_assert_eq(a->has_switch_state, b->has_switch_state, "switch_state set");
	if (a->has_switch_state)
		cr_assert_eq(a->switch_state, b->switch_state, "switch_state");
	assert_same_string(a->image, b->image, "image");
	assert_same_string(a->image_disk, b->image_disk, "image_disk");
	assert_same_string(a->image_format, b->image_format, "image_format");
	assert_same_string(a->image_kernel, b->image_kernel, "image_kernel");
	assert_same_string(a->image_initrd, b->image_initrd, "image_initrd");
	assert_same_string(a->image_cmdline, b->image_cmdline, "image_cmdline");
	assert_same_string(a->image_sha256, b->image_sha256, "image_sha256");
	assert_same_string(a->mac, b->mac, "mac");
	assert_same_string(a->created, b->created, "created");
	cr_assert_eq(a->cpus, b->cpus);
	cr_assert_eq(a->memory, b->memory);
	cr_assert_eq(a->disk, b->disk);
	cr_assert_eq(a->deleted, b->deleted);
	cr_assert_eq(a->n_mounts, b->n_mounts);
	for (size_t i = 0; i < a->n_mounts; i++) {
		assert_same_string(a->mounts[i].source, b->mounts[i].source, "source");
		assert_same_string(a->mounts[i].target, b->mounts[i].target, "target");
		assert_same_string(a->mounts[i].uid_map, b->mounts[i].uid_map, "uid_map");
		assert_same_string(a->mounts[i].gid_map, b->mounts[i].gid_map, "gid_map");
	}
	cr_assert_eq(a->n_classic_mounts, b->n_classic_mounts);
	for (size_t i = 0; i < a->n_classic_mounts; i++) {
		assert_same_string(a->classic_mounts[i].source, b->classic_mounts[i].source, "source");
		assert_same_string(a->classic_mounts[i].target, b->classic_mounts[i].target, "target");
		assert_same_string(a->classic_mounts[i].uid_map, b->classic_mounts[i].uid_map, "uid_map");
		assert_same_string(a->classic_mounts[i].gid_map, b->classic_mounts[i].gid_map, "gid_map");
	}
	cr_assert_eq(a->n_networks, b->n_networks);
	for (size_t i = 0; i < a->n_networks; i++) {
		assert_same_string(a->networks[i].name, b->networks[i].name, "network name");
		assert_same_string(a->networks[i].mode, b->networks[i].mode, "network mode");
		assert_same_string(a->networks[i].mac, b->networks[i].mac, "network mac");
	}
}

static void add_network(struct instance_record *rec, const char *name, const char *mode, const char *mac)
{
	struct network_record *n;

	rec->networks = realloc(rec->networks, (rec->n_networks + 1) * sizeof(*rec->networks));
	cr_assert_not_null(rec->networks);
	n = &rec->networks[rec->n_networks++];
	memset(n, 0, sizeof(*n));
	cr_assert_eq(record_set(&n->name, name), 0);
	cr_assert_eq(record_set(&n->mode, mode), 0);
	cr_assert_eq(record_set(&n->mac, mac), 0);
}

static void add_mount(struct instance_record *rec, const char *source, const char *target, const char *uid_map,
		      const char *gid_map)
{
	struct mount_record *m;

	rec->mounts = realloc(rec->mounts, (rec->n_mounts + 1) * sizeof(*rec->mounts));
	cr_assert_not_null(rec->mounts);
	m = &rec->mounts[rec->n_mounts++];
	memset(m, 0, sizeof(*m));
	cr_assert_eq(record_set(&m->source, source), 0);
	cr_assert_eq(record_set(&m->target, target), 0);
	cr_assert_eq(record_set(&m->uid_map, uid_map), 0);
	cr_assert_eq(record_set(&m->gid_map, gid_map), 0);
}

static void add_classic_mount(struct instance_record *rec, const char *source, const char *target,
			      const char *uid_map)
{
	struct mount_record *m;

	rec->classic_mounts = realloc(rec->classic_mounts,
				      (rec->n_classic_mounts + 1) * sizeof(*rec->classic_mounts));
	cr_assert_not_null(rec->classic_mounts);
	m = &rec->classic_mounts[rec->n_classic_mounts++];
	memset(m, 0, sizeof(*m));
	cr_assert_eq(record_set(&m->source, source), 0);
	cr_assert_eq(record_set(&m->target, target), 0);
	cr_assert_eq(record_set(&m->uid_map, uid_map), 0);
}

TestSuite(registry, .init = setup, .fini = teardown);

Test(registry, round_trip_keeps_classic_mounts_apart_from_native_ones)
{
	struct registry r = { 0 }, back = { 0 };
	struct instance_record *rec;

	rec = registry_add(&r, "web");
	cr_assert_not_null(rec);
	fill_record(rec, 2);
	add_mount(rec, "/srv/native", "/native", NULL, NULL);
	add_classic_mount(rec, "/home/dev/src", "/home/ubuntu/src", "1000:1000");
	add_classic_mount(rec, "/tmp/x", "/mnt/x", NULL);

	cr_assert_eq(registry_save(path, &r), 0);
	cr_assert_eq(registry_load_err(path, &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(back.n, 1);
	cr_assert_eq(back.v[0].n_mounts, 1);
	cr_assert_eq(back.v[0].n_classic_mounts, 2);
	assert_same_record(&r.v[0], &back.v[0]);
	registry_free(&r);
	registry_free(&back);
}

static void assert_refused(const char *text, const char *message_part);

Test(registry, refuses_a_classic_mount_with_a_relative_path)
{
	assert_refused("instances:\n  a:\n    classic_mounts: [{source: src, target: /mnt}]\n",
		       "mount paths of instance \"a\" must be absolute");
}

Test(registry, round_trip_keeps_every_field_and_mount)
{
	struct registry r = { 0 }, back = { 0 };
	struct instance_record *rec;
	struct stat st;

	rec = registry_add(&r, "primary");
	cr_assert_not_null(rec);
	fill_record(rec, 3);
	add_mount(rec, "/home/dev/src", "/home/ubuntu/src", "1000:1000", "1000:1000,0:0");
	add_mount(rec, "/srv/data with space", "/data", NULL, NULL);
	rec = registry_add(&r, "yes");
	cr_assert_not_null(rec);
	fill_required(rec);
	/* Text that plain YAML would read as a bool, a number or null. */
	cr_assert_eq(record_set(&rec->image, ""), 0);
	cr_assert_eq(record_set(&rec->image_cmdline, "true"), 0);
	cr_assert_eq(record_set(&rec->created, "1234"), 0);

	cr_assert_eq(registry_save(path, &r), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(registry_load_err(path, &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(back.n, 2);
	assert_same_record(&r.v[0], &back.v[0]);
	assert_same_record(&r.v[1], &back.v[1]);
	registry_free(&r);
	registry_free(&back);
}

Test(registry, round_trip_keeps_extra_networks_in_order)
{
	struct registry r = { 0 }, back = { 0 };
	struct instance_record *rec;

	rec = registry_add(&r, "bridged");
	cr_assert_not_null(rec);
	fill_record(rec, 5);
	add_mount(rec, "/src", "/mnt", NULL, NULL);
	add_network(rec, "br0", "auto", "52:54:00:aa:bb:01");
	add_network(rec, "lab-net", "manual", "52:54:00:aa:bb:02");
	add_network(rec, "br0", "auto", "52:54:00:aa:bb:03");
	rec = registry_add(&r, "plain");
	cr_assert_not_null(rec);
	fill_required(rec);

	cr_assert_eq(registry_save(path, &r), 0);
	cr_assert_eq(registry_load_err(path, &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(back.n, 2);
	assert_same_record(&r.v[0], &back.v[0]);
	assert_same_record(&r.v[1], &back.v[1]);
	cr_assert_str_eq(back.v[0].networks[1].name, "lab-net");
	cr_assert_eq(back.v[1].n_networks, 0);
	cr_assert_null(back.v[1].networks);
	registry_free(&r);
	registry_free(&back);
}

/* Every state a helper may report is stored by its wire name and read back
 * as the same state, in state and in switch_state; the broker's own two
 * ("deleted", "delayed shutdown") are kept elsewhere and refused in the file. */
Test(registry, every_state_round_trips_by_name)
{
	for (unsigned i = 0; i < PROTO_STATE_COUNT; i++) {
		enum proto_state st = (enum proto_state)i;
		struct registry r = { 0 }, back = { 0 };
		struct instance_record *rec = registry_add(&r, "vm");
		char line[64], *text;
		size_t len;

		cr_assert_not_null(rec);
		fill_required(rec);
		rec->state = st;
		rec->switch_state = st;
		rec->has_switch_state = true;
		cr_assert_eq(registry_save(path, &r), 0);
		cr_assert_eq(read_file(path, 1 << 20, &text, &len), 0);
		snprintf(line, sizeof(line), "\n    state: %s\n", proto_state_name(st));
		cr_assert_not_null(strstr(text, line), "%s not in:\n%s", line, text);
		snprintf(line, sizeof(line), "\n    switch_state: %s\n", proto_state_name(st));
		cr_assert_not_null(strstr(text, line), "%s not in:\n%s", line, text);
		free(text);
		if (proto_state_from_helper(st)) {
			cr_assert_eq(registry_load_err(path, &back, err, sizeof(err)), 0, "%s: %s",
				     proto_state_name(st), err);
			cr_assert_eq(back.n, 1);
			assert_same_record(&r.v[0], &back.v[0]);
		} else {
			cr_assert_lt(registry_load_err(path, &back, err, sizeof(err)), 0, "%s",
				     proto_state_name(st));
			cr_assert_not_null(strstr(err, "must be one of"), "%s", err);
		}
		registry_free(&back);
		registry_free(&r);
	}
}

Test(registry, switch_state_unset_is_not_written)
{
	struct registry r = { 0 }, back = { 0 };
	struct instance_record *rec = registry_add(&r, "vm");
	char *text;
	size_t len;

	cr_assert_not_null(rec);
	fill_required(rec);
	rec->switch_state = PROTO_STATE_RUNNING; /* ignored: not set */
	cr_assert_eq(registry_save(path, &r), 0);
	cr_assert_eq(read_file(path, 1 << 20, &text, &len), 0);
	cr_assert_null(strstr(text, "switch_state"), "%s", text);
	free(text);
	cr_assert_eq(registry_load_err(path, &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_not(back.v[0].has_switch_state);
	cr_assert_eq(back.v[0].state, PROTO_STATE_STOPPED);
	registry_free(&back);
	registry_free(&r);
}

Test(registry, hand_written_networks_load)
{
	struct registry r = { 0 };

	write_text("instances:\n"
		   "  a:\n"
		   REQUIRED_LINES
		   "    networks:\n"
		   "      - {name: br0, mac: '52:54:00:01:02:03'}\n"
		   "      - mac: 52:54:00:01:02:04\n"
		   "        mode: manual\n"
		   "        name: eth1\n");
	cr_assert_eq(registry_load_err(path, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.v[0].n_networks, 2);
	cr_assert_str_eq(r.v[0].networks[0].name, "br0");
	cr_assert_null(r.v[0].networks[0].mode);
	cr_assert_str_eq(r.v[0].networks[1].mac, "52:54:00:01:02:04");
	cr_assert_str_eq(r.v[0].networks[1].mode, "manual");
	registry_free(&r);
}

static void assert_refused(const char *text, const char *message_part);

Test(registry, bad_networks_are_refused)
{
	assert_refused("instances:\n  a:\n    networks: br0\n", "networks of instance \"a\" must be a list");
	assert_refused("instances:\n  a:\n    networks: [br0]\n",
		       "each network of instance \"a\" must be a mapping (name, mode, mac)");
	assert_refused("instances:\n  a:\n    networks: [{name: br0, mac: x, vlan: 3}]\n",
		       "unknown network field \"vlan\" (allowed: name, mode, mac)");
	assert_refused("instances:\n  a:\n    networks: [{name: br0, name: br1, mac: x}]\n",
		       "network field name is given twice");
	assert_refused("instances:\n  a:\n    networks: [{name: br0}]\n",
		       "a network of instance \"a\" needs a name and a mac");
	assert_refused("instances:\n  a:\n    networks: [{name: br0, mac: x, mode: dhcp}]\n",
		       "network mode of instance \"a\" must be auto or manual, not \"dhcp\"");
	assert_refused("instances:\n  a:\n    networks: [{name: [br0], mac: x}]\n",
		       "network field name must be a single value");
	assert_refused("instances:\n  a:\n    networks: []\n    networks: []\n",
		       "networks of instance \"a\" are given twice");
}

Test(registry, missing_file_loads_empty)
{
	struct registry r = { 0 };

	cr_assert_eq(registry_load(path, &r), 0);
	cr_assert_eq(r.n, 0);
	registry_free(&r);
}

Test(registry, empty_registry_round_trips)
{
	struct registry r = { 0 }, back = { 0 };

	cr_assert_eq(registry_save(path, &r), 0);
	cr_assert_eq(registry_load_err(path, &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(back.n, 0);
	registry_free(&back);
}

Test(registry, add_find_remove)
{
	struct registry r = { 0 };

	cr_assert_not_null(registry_add(&r, "a"));
	cr_assert_not_null(registry_add(&r, "b"));
	cr_assert_not_null(registry_add(&r, "c"));
	cr_assert_str_eq(registry_find(&r, "b")->name, "b");
	cr_assert_eq(registry_remove(&r, "b"), 0);
	cr_assert_null(registry_find(&r, "b"));
	cr_assert_eq(registry_remove(&r, "b"), PROTO_E_NOT_FOUND);
	cr_assert_eq(r.n, 2);
	cr_assert_str_eq(r.v[0].name, "a");
	cr_assert_str_eq(r.v[1].name, "c");
	registry_free(&r);
}

Test(registry, record_set_null_clears)
{
	char *field = NULL;

	cr_assert_eq(record_set(&field, "x"), 0);
	cr_assert_str_eq(field, "x");
	cr_assert_eq(record_set(&field, NULL), 0);
	cr_assert_null(field);
}

Test(registry, hand_written_file_loads)
{
	struct registry r = { 0 };
	struct instance_record *rec;

	write_text("# edited by hand\n"
		   "instances:\n"
		   "  dev: {state: running, image_disk: /images/a.qcow2, image_format: raw,\n"
		   "        mac: 52:54:00:ab:cd:ef, cpus: 2, memory: 1073741824, disk: 1073741824,\n"
		   "        deleted: false, mounts: [{source: /src, target: /mnt}]}\n"
		   "  old: {" REQUIRED "}\n");
	cr_assert_eq(registry_load_err(path, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.n, 2);
	rec = registry_find(&r, "dev");
	cr_assert_not_null(rec);
	cr_assert_eq(rec->state, PROTO_STATE_RUNNING);
	cr_assert_str_eq(rec->image_format, "raw");
	cr_assert_eq(rec->cpus, 2);
	cr_assert_eq(rec->memory, 1ull << 30);
	cr_assert_eq(rec->n_mounts, 1);
	cr_assert_str_eq(rec->mounts[0].target, "/mnt");
	cr_assert_null(rec->mounts[0].uid_map);
	cr_assert_null(rec->image);
	cr_assert_not(registry_find(&r, "old")->deleted);
	registry_free(&r);
}

static void assert_refused(const char *text, const char *message_part)
{
	struct registry r = { 0 };

	write_text(text);
	err[0] = '\0';
	cr_assert_eq(registry_load_err(path, &r, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT, "accepted: %s", text);
	cr_assert(strstr(err, path) == err, "message: %s", err);
	cr_assert(strstr(err, message_part), "message for\n%s\nis: %s", text, err);
	cr_assert_eq(r.n, 0);
	cr_assert_null(r.v);
}

Test(registry, yaml_syntax_error_is_refused_with_its_line)
{
	assert_refused("instances:\n  a:\n    state: running\n   cpus: 1\n", ": line 4, column 4: ");
}

Test(registry, wrong_types_are_refused)
{
	assert_refused("instances:\n  a:\n    cpus: two\n",
		       ": line 3, column 11: cpus must be a whole number from 1 to 1024, not \"two\"");
	assert_refused("instances:\n  a:\n    cpus: -1\n", "cpus must be a whole number");
	assert_refused("instances:\n  a:\n    memory: 1.5\n", "memory must be a whole number");
	assert_refused("instances:\n  a:\n    deleted: maybe\n", "deleted must be true or false, not \"maybe\"");
	assert_refused("instances:\n  a:\n    state: [running]\n", "state of instance \"a\" must be a single value");
	assert_refused("instances:\n  a:\n    mounts: /src\n", "mounts of instance \"a\" must be a list");
	assert_refused("instances:\n  a:\n    mounts: [/src]\n", "each mount of instance \"a\" must be a mapping");
	assert_refused("instances:\n  a: [1, 2]\n", "instance \"a\" must be a mapping of fields");
	assert_refused("instances: [a, b]\n", "\"instances\" must be a mapping of instance names");
	assert_refused("- a\n", "the registry must be a mapping");
}

Test(registry, huge_values_are_refused)
{
	assert_refused("instances:\n  a:\n    cpus: 4294967296\n", "cpus must be a whole number from 1 to 1024");
	assert_refused("instances:\n  a:\n    disk: 18446744073709551616\n",
		       "disk must be a whole number from 1073741824 to 18446744073709551615");
}

Test(registry, huge_string_is_refused)
{
	size_t n = 100000;
	char *text = malloc(n + 64);

	cr_assert_not_null(text);
	strcpy(text, "instances:\n  a:\n    image: ");
	memset(text + strlen(text), 'x', n);
	strcpy(text + strlen("instances:\n  a:\n    image: ") + n, "\n");
	assert_refused(text, "image is longer than 65536 bytes");
	free(text);
}

Test(registry, duplicate_names_are_refused)
{
	struct registry r = { 0 };

	write_text("instances:\n  a: {" REQUIRED "}\n  b: {" REQUIRED "}\n  a: {" REQUIRED "}\n");
	cr_assert_eq(registry_load_err(path, &r, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "instance \"a\" is listed twice"), "message: %s", err);
	cr_assert_eq(r.n, 0);
}

Test(registry, duplicate_fields_are_refused)
{
	assert_refused("instances:\n  a:\n    cpus: 1\n    cpus: 2\n", "field cpus of instance \"a\" is given twice");
	assert_refused("instances: {}\ninstances: {}\n", "\"instances\" is given twice");
}

Test(registry, invalid_instance_names_are_refused)
{
	assert_refused("instances:\n  ../../etc: {}\n", ": line 2, column 3: invalid instance name \"../../etc\"");
	assert_refused("instances:\n  Web: {}\n", "upper case letters are not allowed");
	assert_refused("instances:\n  ? [a]\n  : {}\n", "instance names must be plain text");
}

Test(registry, unknown_fields_and_aliases_are_refused)
{
	assert_refused("instances:\n  a:\n    colour: red\n", "unknown field \"colour\" in instance \"a\"");
	assert_refused("instances:\n  a:\n    mounts: [{source: /a, mode: rw}]\n", "unknown mount field \"mode\"");
	assert_refused("version: 2\ninstances: {}\n", "unknown key \"version\"");
	assert_refused("instances:\n  a: &r {" REQUIRED "}\n  b: *r\n", "aliases (*name) are not allowed");
	assert_refused("instances: {}\n---\ninstances: {}\n", "only one YAML document is allowed");
}

/* Corrupt a valid file byte by byte: every outcome must be a clean load or a clean error. */
Test(registry, mutated_files_never_crash)
{
	struct registry r = { 0 }, back;
	char *text;
	size_t len;
	unsigned seed = 12345;

	for (unsigned i = 0; i < 3; i++) {
		struct instance_record *rec = registry_add(&r, i == 0 ? "a" : i == 1 ? "b" : "c");
		fill_record(rec, i);
		add_mount(rec, "/x", "/y", "1:1", "2:2");
	}
	cr_assert_eq(registry_save(path, &r), 0);
	cr_assert_eq(read_file(path, 1 << 20, &text, &len), 0);
	registry_free(&r);

	for (int round = 0; round < 2000; round++) {
		char *copy = malloc(len + 1);

		memcpy(copy, text, len + 1);
		for (int k = 0; k < 1 + round % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			copy[(seed >> 8) % len] = "\":{}[]-,&*!|>'\n\t #x0"[(seed >> 20) % 20];
		}
		cr_assert_eq(atomic_write_file(path, copy, len, 0600), 0);
		if (registry_load_err(path, &back, err, sizeof(err)) == 0)
			registry_free(&back);
		else
			cr_assert_neq(err[0], '\0');
		free(copy);
	}
	free(text);
}

/* How fast is a figure of the benchmarks (vmctl-bench registry-io,
 * docs/performance.md), not of a test. */
Test(registry, thousand_instances_round_trip)
{
	struct registry r = { 0 }, back = { 0 };

	for (unsigned i = 0; i < 1000; i++) {
		char name[32];
		struct instance_record *rec;

		snprintf(name, sizeof(name), "vm-%u", i);
		rec = registry_add(&r, name);
		cr_assert_not_null(rec);
		fill_record(rec, i);
		if (i % 10 == 0)
			add_mount(rec, "/home/dev/src", "/src", "1000:1000", "1000:1000");
	}
	cr_assert_eq(registry_save(path, &r), 0);
	cr_assert_eq(registry_load_err(path, &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(back.n, 1000);
	for (unsigned i = 0; i < 1000; i++)
		assert_same_record(&r.v[i], &back.v[i]);
	registry_free(&r);
	registry_free(&back);
}

Test(registry, many_mounts_load)
{
	struct registry r = { 0 };
	size_t n = 5000, used;
	char *text = malloc(n * 40 + 512);

	cr_assert_not_null(text);
	used = (size_t)sprintf(text, "instances:\n  a:\n" REQUIRED_LINES "    mounts:\n");
	for (size_t i = 0; i < n; i++)
		used += (size_t)sprintf(text + used, "    - {source: /s%zu, target: /t}\n", i);
	write_text(text);
	free(text);
	cr_assert_eq(registry_load_err(path, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.v[0].n_mounts, n);
	cr_assert_str_eq(r.v[0].mounts[n - 1].source, "/s4999");
	registry_free(&r);
}

Test(registry, text_that_is_not_utf8_is_not_saved)
{
	struct registry r = { 0 }, back = { 0 };
	struct instance_record *rec;

	rec = registry_add(&r, "a");
	fill_required(rec);
	cr_assert_eq(registry_save(path, &r), 0);
	cr_assert_eq(record_set(&rec->image_disk, "/images/\xff\xfe.qcow2"), 0);
	cr_assert_eq(registry_save(path, &r), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(registry_load_err(path, &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(back.n, 1);
	cr_assert_str_eq(back.v[0].image_disk, "/i.qcow2", "the failed save changed the file");
	registry_free(&r);
	registry_free(&back);
}

/* ---- the strict loader: a file it cannot load whole is refused, and kept ---- */

/* web and db as launch leaves them, web with mounts and a network. */
static void save_web_and_db(char **text, size_t *len)
{
	struct registry r = { 0 };
	struct instance_record *rec;

	rec = registry_add(&r, "web");
	fill_record(rec, 1);
	add_mount(rec, "/home/dev/src", "/home/ubuntu/src", "1000:1000", "1000:1000,0:0");
	add_mount(rec, "/srv", "/srv", NULL, NULL);
	add_network(rec, "br0", "auto", "52:54:00:aa:bb:01");
	rec = registry_add(&r, "db");
	fill_record(rec, 2);
	cr_assert_eq(registry_save(path, &r), 0);
	registry_free(&r);
	cr_assert_eq(read_file(path, 1 << 20, text, len), 0);
}

static void assert_file_is(const char *text, size_t len)
{
	char *now;
	size_t now_len;

	cr_assert_eq(read_file(path, 1 << 20, &now, &now_len), 0);
	cr_assert(now_len == len && memcmp(now, text, len) == 0, "the file changed:\n%s", now);
	free(now);
}

Test(registry, a_file_cut_at_200_bytes_is_refused_naming_line_and_column)
{
	struct registry r = { 0 };
	char *text;
	size_t len;

	const char *memory;

	save_web_and_db(&text, &len);
	cr_assert_gt(len, 200);
	cr_assert_eq(atomic_write_file(path, text, 200, 0600), 0);
	cr_assert_eq(registry_load_err(path, &r, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT, "loaded %zu", r.n);
	cr_assert(strstr(err, path) == err, "message: %s", err);
	cr_assert(strstr(err, ": line ") && strstr(err, ", column "), "message: %s", err);
	cr_assert_eq(r.n, 0);
	/* Cut at a line's start: valid YAML, but web lost its last fields. */
	memory = strstr(text, "    memory: ");
	cr_assert_not_null(memory);
	cr_assert_eq(atomic_write_file(path, text, (size_t)(memory - text), 0600), 0);
	cr_assert_eq(registry_load_err(path, &r, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT, "loaded %zu", r.n);
	cr_assert(strstr(err, path) == err && strstr(err, ", column 1: instance \"web\" has no memory, disk, "
							   "deleted (the file may have been cut short"),
		  "message: %s", err);
	cr_assert_eq(r.n, 0);
	free(text);
}

/* Cut anywhere, the file loads only whole records, exactly as saved, or not at all. */
Test(registry, a_cut_file_never_loads_part_of_a_record)
{
	struct registry whole = { 0 }, r;
	char *text;
	size_t len, refused = 0;

	save_web_and_db(&text, &len);
	cr_assert_eq(registry_load_err(path, &whole, err, sizeof(err)), 0, "%s", err);
	for (size_t cut = 0; cut < len; cut++) {
		cr_assert_eq(atomic_write_file(path, text, cut, 0600), 0);
		if (registry_load_err(path, &r, err, sizeof(err)) < 0) {
			cr_assert(strstr(err, ": line "), "cut at %zu: %s", cut, err);
			refused++;
			continue;
		}
		cr_assert_leq(r.n, whole.n);
		for (size_t i = 0; i < r.n; i++)
			assert_same_record(&whole.v[i], &r.v[i]);
		registry_free(&r);
	}
	cr_assert_gt(refused, len / 2, "only %zu of %zu cuts were refused", refused, len);
	registry_free(&whole);
	free(text);
}

Test(registry, a_failed_load_is_never_saved_over)
{
	struct registry r = { 0 };
	char *text;
	size_t len;

	save_web_and_db(&text, &len);
	cr_assert_eq(atomic_write_file(path, text, 200, 0600), 0);
	cr_assert_eq(registry_load_err(path, &r, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	/* What a careless caller would do next: change what it got, and save. */
	fill_required(registry_add(&r, "web"));
	cr_assert_eq(registry_save(path, &r), PROTO_E_INVALID_STATE);
	assert_file_is(text, 200);
	registry_free(&r);
	/* Freed, it is an empty registry of its own again. */
	cr_assert_eq(registry_save(path, &r), 0);
	free(text);
}

Test(registry, records_missing_required_fields_are_refused)
{
	assert_refused("instances:\n  web:\n    state: running\n    image: file:///x.qcow2\n",
		       "line 5, column 1: instance \"web\" has no image_disk, image_format, mac, cpus, memory, "
		       "disk, deleted (the file may have been cut short or edited by hand)");
	assert_refused("instances:\n  bare:\n  other: {" REQUIRED "}\n", "line 2, column 8: instance \"bare\" has no state");
	assert_refused("instances:\n  a: {}\n", "line 2, column 7: instance \"a\" has no state, image_disk");
	assert_refused("instances:\n  a: {" REQUIRED ", state: }\n", "field state of instance \"a\" is given twice");
	assert_refused("instances:\n  a: {state: , image_disk: /i, image_format: raw}\n",
		       "state of instance \"a\" must not be empty");
	assert_refused("instances:\n  a: {" REQUIRED ", mounts: [{source: /a}]}\n",
		       "a mount of instance \"a\" needs a source and a target");
}

Test(registry, invalid_values_are_refused_naming_line_and_column)
{
	assert_refused("instances:\n  a:\n    cpus: 0\n", ": line 3, column 11: cpus must be a whole number from 1 to 1024, not \"0\"");
	assert_refused("instances:\n  a:\n    cpus: 1025\n", "cpus must be a whole number from 1 to 1024, not \"1025\"");
	assert_refused("instances:\n  a:\n    memory: 0\n",
		       ": line 3, column 13: memory must be a whole number from 536870912 to");
	assert_refused("instances:\n  a:\n    disk: 0\n", ": line 3, column 11: disk must be a whole number from 1073741824 to");
	assert_refused("instances:\n  a:\n    mac: zz;rm -rf /\n",
		       ": line 3, column 10: mac of instance \"a\" must be a unicast MAC address like 52:54:00:12:34:56, "
		       "not \"zz;rm -rf /\"");
	assert_refused("instances:\n  a:\n    mac: 53:54:00:00:00:01\n", "mac of instance \"a\" must be a unicast MAC");
	assert_refused("instances:\n  a:\n    state: exploded\n",
		       ": line 3, column 12: state of instance \"a\" must be one of running, stopped, suspended, starting, "
		       "restarting, suspending, stopping, unknown, not \"exploded\"");
	assert_refused("instances:\n  a:\n    state: \"running\\n; rm\"\n", "not \"running\\n; rm\"");
	assert_refused("instances:\n  a:\n    switch_state: Running\n", "switch_state of instance \"a\" must be one of");
	assert_refused("instances:\n  a:\n    image_format: vmdk\n", "image_format of instance \"a\" must be qcow2, raw or lxd");
	assert_refused("instances:\n  a:\n    image_disk: images/a.qcow2\n",
		       "image_disk of instance \"a\" must be an absolute path, not \"images/a.qcow2\"");
	assert_refused("instances:\n  a:\n    image_kernel: vmlinuz\n", "image_kernel of instance \"a\" must be an absolute path");
	assert_refused("instances:\n  a:\n    image_sha256: 12ab\n", "image_sha256 of instance \"a\" must be 64 lower-case hex");
	assert_refused("instances:\n  a: {" REQUIRED ", networks: [{name: br0, mac: 'zz;rm -rf /'}]}\n",
		       "network mac of instance \"a\" must be a unicast MAC address");
	assert_refused("instances:\n  a: {" REQUIRED ", mounts: [{source: src, target: /mnt}]}\n",
		       "mount paths of instance \"a\" must be absolute, not \"src\"");
	assert_refused("instances:\n  a: {" REQUIRED ", mounts: [{source: /src, target: /mnt, uid_map: 'x;y'}]}\n",
		       "id maps of instance \"a\" must be HOST:GUEST pairs like 1000:1000,0:0, not \"x;y\"");
}
