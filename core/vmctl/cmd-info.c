/* vmctl info: the details of instances (or of their snapshots). */
#include <stdlib.h>
#include <string.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int info_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option info_options[] = {
	{ "all", 0, NULL, 0, "Show every instance." },
	{ "snapshots", 0, NULL, 0,
	  "Show snapshots instead: all of an instance (NAME) or one (NAME.SNAPSHOT)." },
	{ "format", 0, "FORMAT", 0, "Output format: table (default), json, yaml or csv." },
	CMD_OPTION_WAIT(CLI_WAIT_DRIVER),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument info_arguments[] = {
	{ "NAME...", "Instances to show (or NAME.SNAPSHOT with --snapshots)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_info_entry = {
	.name = "info",
	.usage = "[options] NAME...|--all",
	.summary = "Show details about instances.",
	.help = "Shows name, state (and, when the driver says why an instance is in it, the "
		"reason), the driver's instance type where it has several (lxd: container or "
		"virtual-machine), image, CPUs, memory, disk, IPv4 addresses, scope, creation "
		"time, mounts and extra networks of each instance.",
	.options = info_options,
	.arguments = info_arguments,
	.min_args = 0,
	.max_args = -1,
	.wait = CLI_WAIT_DRIVER,
	.exec = info_exec,
};

static const struct render_column info_columns[] = {
	{ "Name", "name", RENDER_TEXT },
	{ "State", "state", RENDER_STATE },
	{ "Reason", "reason", RENDER_OPTIONAL },
	{ "Type", "instance_type", RENDER_OPTIONAL },
	{ "Image", "image", RENDER_TEXT },
	{ "CPUs", "cpus", RENDER_TEXT },
	{ "Memory", "memory", RENDER_SIZE },
	{ "Disk", "disk", RENDER_SIZE },
	{ "IPv4", "ipv4", RENDER_TEXT },
	{ "Scope", "scope", RENDER_TEXT },
	{ "Created", "created", RENDER_TEXT },
	{ "Mounts", "mounts", RENDER_MOUNTS },
	{ "Networks", "networks", RENDER_NETWORKS },
	{ NULL, NULL, RENDER_TEXT },
};

static const struct render_column info_snapshot_columns[] = {
	{ "Snapshot", "name", RENDER_TEXT },
	{ "Instance", "instance", RENDER_TEXT },
	{ "Created", "created", RENDER_TEXT },
	{ "Parent", "parent", RENDER_TEXT },
	{ "Comment", "comment", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

static int info_instances(const struct cmd_entry *self, struct cmd_args *a,
			  enum render_format fmt)
{
	char err[256];
	bool all;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (args_names_or_all(a, &all, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	cmd_pack_names(&pk, a, all);
	rc = cli_request("info", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc == EXIT_OK &&
	    render_result(stdout, fmt, info_columns, true, r.result, "instances") < 0)
		rc = cmd_error(EXIT_FAILED, "cannot show the result");
	cli_reply_free(&r);
	return rc;
}

/* Is this snapshot one the user asked for? (names[i] is NAME or NAME.SNAPSHOT) */
static bool info_snapshot_wanted(const msgpack_object *snap, struct cmd_args *a)
{
	char instance[INSTANCE_NAME_MAX + 1], name[128];

	if (a->argc == 0)
		return true;
	if (proto_get_str(snap, "instance", instance, sizeof(instance)) < 0 ||
	    proto_get_str(snap, "name", name, sizeof(name)) < 0)
		return false;
	for (int i = 0; i < a->argc; i++) {
		const char *dot = strchr(a->argv[i], '.');
		size_t len = dot != NULL ? (size_t)(dot - a->argv[i]) : strlen(a->argv[i]);

		if (strlen(instance) != len || strncmp(instance, a->argv[i], len) != 0)
			continue;
		if (dot == NULL || strcmp(dot + 1, name) == 0)
			return true;
	}
	return false;
}

static int info_snapshots(const struct cmd_entry *self, struct cmd_args *a,
			  enum render_format fmt)
{
	char err[256];
	bool all = args_has(a, "all");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	const msgpack_object *snaps;
	msgpack_object filtered = { .type = MSGPACK_OBJECT_ARRAY };
	msgpack_object_kv kv;
	msgpack_object wrapper = { .type = MSGPACK_OBJECT_MAP };
	int rc;

	if (all && a->argc > 0)
		return cmd_error(EXIT_USAGE, "give instance names or --all, not both");
	if (!all && a->argc == 0)
		return cmd_error(EXIT_USAGE, "'info' needs an instance name (or --all)");
	for (int i = 0; i < a->argc; i++) {
		const char *dot = strchr(a->argv[i], '.');
		size_t len = dot != NULL ? (size_t)(dot - a->argv[i]) : strlen(a->argv[i]);

		if (validate_instance_name_n(a->argv[i], len, err, sizeof(err)) < 0 ||
		    (dot != NULL && args_validate_snapshot_name(dot + 1, err, sizeof(err)) < 0))
			return cmd_error(EXIT_USAGE, "%s", err);
	}

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_pack_str(&pk, "names");
	msgpack_pack_array(&pk, (size_t)a->argc);
	for (int i = 0; i < a->argc; i++) {
		const char *dot = strchr(a->argv[i], '.');
		size_t len = dot != NULL ? (size_t)(dot - a->argv[i]) : strlen(a->argv[i]);

		msgpack_pack_str(&pk, len);
		msgpack_pack_str_body(&pk, a->argv[i], len);
	}
	proto_pack_kv_bool(&pk, "all", all);
	rc = cli_request("snapshots", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc != EXIT_OK)
		goto out_reply;

	/* keep only the snapshots asked for, pointing into the reply */
	snaps = proto_map_get(r.result, "snapshots");
	if (snaps != NULL && snaps->type == MSGPACK_OBJECT_ARRAY && snaps->via.array.size > 0) {
		filtered.via.array.ptr = calloc(snaps->via.array.size, sizeof(msgpack_object));
		if (filtered.via.array.ptr == NULL) {
			rc = cmd_error(EXIT_FAILED, "out of memory");
			goto out_reply;
		}
		for (uint32_t i = 0; i < snaps->via.array.size; i++)
			if (info_snapshot_wanted(&snaps->via.array.ptr[i], a))
				filtered.via.array.ptr[filtered.via.array.size++] =
					snaps->via.array.ptr[i];
	}
	for (int i = 0; i < a->argc; i++) {
		if (strchr(a->argv[i], '.') == NULL)
			continue;
		bool found = false;

		for (uint32_t k = 0; k < filtered.via.array.size && !found; k++) {
			struct cmd_args one = *a;

			one.argv = &a->argv[i];
			one.argc = 1;
			found = info_snapshot_wanted(&filtered.via.array.ptr[k], &one);
		}
		if (!found) {
			rc = cmd_error(EXIT_FAILED, "snapshot '%s' does not exist", a->argv[i]);
			goto out_filtered;
		}
	}
	if (fmt == FORMAT_TABLE && filtered.via.array.size == 0) {
		printf("No snapshots found.\n");
		goto out_filtered;
	}
	kv.key.type = MSGPACK_OBJECT_STR;
	kv.key.via.str.ptr = "snapshots";
	kv.key.via.str.size = (uint32_t)strlen("snapshots");
	kv.val = filtered;
	wrapper.via.map.size = 1;
	wrapper.via.map.ptr = &kv;
	if (render_result(stdout, fmt, info_snapshot_columns, true, &wrapper, "snapshots") < 0)
		rc = cmd_error(EXIT_FAILED, "cannot show the result");
out_filtered:
	free(filtered.via.array.ptr);
out_reply:
	cli_reply_free(&r);
	return rc;
}

static int info_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	enum render_format fmt;
	char err[256];

	if (args_format(a, &fmt, err, sizeof(err)) < 0)
		return cmd_usage_error(self, "%s", err);
	if (args_has(a, "snapshots"))
		return info_snapshots(self, a, fmt);
	return info_instances(self, a, fmt);
}
