/* vmctl list: every instance of the active scope (or of every scope). */
#include <string.h>

#include <vmproto/proto.h>

#include "vmctl.h"

static int list_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option list_options[] = {
	{ "all-scopes", 0, NULL, 0,
	  "Also list the instances of drivers that are not active (the Scope column tells them "
	  "apart, the Driver column says which driver last had each scope). Instances seem "
	  "lost after switching drivers only because they live in another scope." },
	{ "snapshots", 0, NULL, 0, "List the snapshots of every instance instead." },
	{ "format", 0, "FORMAT", 0, "Output format: table (default), json, yaml or csv." },
	{ "timeout", 0, "SECONDS", 0,
	  "Give up waiting for the broker's answer after SECONDS (default " CLI_STR(CLI_WAIT_QUICK)
	  ", " CLI_STR(CLI_WAIT_DRIVER) " with --snapshots); vmctl then exits 5." },
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_list_entry = {
	.name = "list",
	.alias = "ls",
	.usage = "[options]",
	.summary = "List instances.",
	.help = "Shows each instance's name, state, IPv4 addresses and image. Under the table, "
		"one line \"NAME: REASON\" for each instance whose driver says why it is in its "
		"state (an instance deleted or changed behind vmctl's back, a hypervisor that "
		"cannot be reached); json, yaml and csv have a reason field. Prints \"No "
		"instances found.\" when there are none, or, when other scopes have some, where "
		"they are: \"No instances in the lxd scope; 3 in the qemu scope, see "
		"--all-scopes.\"",
	.options = list_options,
	.min_args = 0,
	.max_args = 0,
	.wait = CLI_WAIT_QUICK,
	.exec = list_exec,
};

static const struct render_column list_columns[] = {
	{ "Name", "name", RENDER_TEXT },
	{ "State", "state", RENDER_STATE },
	{ "IPv4", "ipv4", RENDER_TEXT },
	{ "Image", "image", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

static const struct render_column list_scope_columns[] = {
	{ "Name", "name", RENDER_TEXT },
	{ "State", "state", RENDER_STATE },
	{ "IPv4", "ipv4", RENDER_TEXT },
	{ "Image", "image", RENDER_TEXT },
	{ "Scope", "scope", RENDER_TEXT },
	{ "Driver", "driver", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

/* csv: the reason as a column; a table has it as a line under it. */
static const struct render_column list_csv_columns[] = {
	{ "Name", "name", RENDER_TEXT },
	{ "State", "state", RENDER_STATE },
	{ "IPv4", "ipv4", RENDER_TEXT },
	{ "Image", "image", RENDER_TEXT },
	{ "Reason", "reason", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

static const struct render_column list_scope_csv_columns[] = {
	{ "Name", "name", RENDER_TEXT },
	{ "State", "state", RENDER_STATE },
	{ "IPv4", "ipv4", RENDER_TEXT },
	{ "Image", "image", RENDER_TEXT },
	{ "Scope", "scope", RENDER_TEXT },
	{ "Driver", "driver", RENDER_TEXT },
	{ "Reason", "reason", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

static const struct render_column list_snapshot_columns[] = {
	{ "Instance", "instance", RENDER_TEXT },
	{ "Snapshot", "name", RENDER_TEXT },
	{ "Parent", "parent", RENDER_TEXT },
	{ "Comment", "comment", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

static bool list_empty(const msgpack_object *result, const char *key)
{
	const msgpack_object *rows = proto_map_get(result, key);

	return rows == NULL || rows->type != MSGPACK_OBJECT_ARRAY || rows->via.array.size == 0;
}

/* Under the table, one line per instance whose state has a reason:
 * "NAME: REASON". */
static void list_print_reasons(const msgpack_object *result)
{
	const msgpack_object *rows = proto_map_get(result, "instances");
	bool first = true;

	if (!rows || rows->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t i = 0; i < rows->via.array.size; i++) {
		const msgpack_object *row = &rows->via.array.ptr[i];
		char name[PROTO_NAME_MAX + 1], reason[PROTO_REASON_MAX + 1];

		if (proto_get_str(row, "name", name, sizeof(name)) < 0 ||
		    proto_get_str(row, "reason", reason, sizeof(reason)) < 0 || !reason[0])
			continue;
		if (first)
			putchar('\n');
		first = false;
		printf("%s: %s\n", name, reason);
	}
}

/* "No instances in the lxd scope; 3 in the qemu scope, see --all-scopes." when
 * the broker says where the instances are; false when it says nothing. */
static bool list_print_elsewhere(const msgpack_object *result)
{
	const msgpack_object *others = proto_map_get(result, "other_scopes");
	char scope[64] = "", there[64];
	int64_t n;

	if (!others || others->type != MSGPACK_OBJECT_ARRAY || others->via.array.size == 0)
		return false;
	proto_get_str(result, "scope", scope, sizeof(scope));
	printf("No instances in the %s scope; ", scope);
	for (uint32_t i = 0; i < others->via.array.size; i++) {
		const msgpack_object *o = &others->via.array.ptr[i];

		there[0] = '\0';
		n = 0;
		proto_get_str(o, "scope", there, sizeof(there));
		proto_get_int(o, "instances", &n);
		printf("%s%lld in the %s scope", i == 0 ? "" : i + 1 == others->via.array.size ? " and " : ", ",
		       (long long)n, there);
	}
	printf(", see --all-scopes.\n");
	return true;
}

static int list_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	bool snapshots = args_has(a, "snapshots"), all_scopes = args_has(a, "all-scopes");
	enum render_format fmt;
	const struct render_column *columns;
	const char *key = snapshots ? "snapshots" : "instances";
	char err[256];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (args_format(a, &fmt, err, sizeof(err)) < 0)
		return cmd_usage_error(self, "%s", err);
	if (snapshots && all_scopes)
		return cmd_usage_error(self, "--snapshots and --all-scopes cannot be combined");

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (snapshots) {
		msgpack_pack_map(&pk, 2);
		cmd_pack_names(&pk, a, true);
	} else {
		msgpack_pack_map(&pk, 1);
		proto_pack_kv_bool(&pk, "all_scopes", all_scopes);
	}
	/* Every instance's snapshots come from the driver. */
	rc = cli_request(snapshots ? "snapshots" : "list", &sb,
			 snapshots && args_get(a, "timeout") == NULL ? CLI_WAIT_DRIVER : 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc != EXIT_OK)
		goto out_reply;

	if (fmt == FORMAT_TABLE && list_empty(r.result, key)) {
		if (snapshots || all_scopes || !list_print_elsewhere(r.result))
			printf(snapshots ? "No snapshots found.\n" : "No instances found.\n");
		goto out_reply;
	}
	if (snapshots)
		columns = list_snapshot_columns;
	else if (fmt == FORMAT_CSV)
		columns = all_scopes ? list_scope_csv_columns : list_csv_columns;
	else
		columns = all_scopes ? list_scope_columns : list_columns;
	if (render_result(stdout, fmt, columns, false, r.result, key) < 0)
		rc = cmd_error(EXIT_FAILED, "cannot show the result");
	else if (fmt == FORMAT_TABLE && !snapshots)
		list_print_reasons(r.result);
out_reply:
	cli_reply_free(&r);
	return rc;
}
