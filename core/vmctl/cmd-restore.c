/* vmctl restore: return an instance to a snapshot. */
#include <string.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int restore_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option restore_options[] = {
	{ "destructive", 'd', NULL, 0,
	  "Discard the instance's current state instead of saving it as a snapshot first." },
	CMD_OPTION_WAIT(CLI_WAIT_LONG),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument restore_arguments[] = {
	{ "NAME.SNAPSHOT", "The instance and the snapshot to return to." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_restore_entry = {
	.name = "restore",
	.usage = "[options] NAME.SNAPSHOT",
	.summary = "Restore an instance from a snapshot.",
	.help = "The instance must be stopped. Unless --destructive is given, its current "
		"state is first saved as a new snapshot, so nothing is lost.",
	.options = restore_options,
	.arguments = restore_arguments,
	.min_args = 1,
	.max_args = 1,
	.wait = CLI_WAIT_LONG,
	.exec = restore_exec,
};

static int restore_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *spec = a->argv[0], *dot = strchr(spec, '.');
	char name[INSTANCE_NAME_MAX + 2], err[256];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (dot == NULL)
		return cmd_usage_error(self, "'%.80s' names no snapshot: use NAME.SNAPSHOT", spec);
	if (validate_instance_name_n(spec, (size_t)(dot - spec), err, sizeof(err)) < 0 ||
	    args_validate_snapshot_name(dot + 1, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	snprintf(name, sizeof(name), "%.*s", (int)(dot - spec), spec);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	proto_pack_kv_str(&pk, "name", name);
	proto_pack_kv_str(&pk, "snapshot", dot + 1);
	proto_pack_kv_bool(&pk, "destructive", args_has(a, "destructive"));
	rc = cli_request("restore", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc == EXIT_OK)
		printf("Snapshot restored: %s\n", spec);
	cli_reply_free(&r);
	return rc;
}
