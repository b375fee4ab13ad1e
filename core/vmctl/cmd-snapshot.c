/* vmctl snapshot: take a snapshot of an instance. */
#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int snapshot_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option snapshot_options[] = {
	{ "name", 'n', "SNAPSHOT", 0,
	  "Name of the snapshot: a letter, then letters, digits and hyphens. Default: "
	  "snapshot1, snapshot2, ..." },
	{ "comment", 'c', "TEXT", 0, "A note kept with the snapshot." },
	CMD_OPTION_WAIT(CLI_WAIT_LONG),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument snapshot_arguments[] = {
	{ "NAME", "The instance (stopped)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_snapshot_entry = {
	.name = "snapshot",
	.usage = "[options] NAME",
	.summary = "Take a snapshot of an instance.",
	.help = "Saves the instance's disk so 'vmctl restore NAME.SNAPSHOT' can return to it. "
		"Needs a driver with snapshots (qemu, hyperv, virtualbox).",
	.options = snapshot_options,
	.arguments = snapshot_arguments,
	.min_args = 1,
	.max_args = 1,
	.wait = CLI_WAIT_LONG,
	.exec = snapshot_exec,
};

static int snapshot_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *snap = args_get(a, "name"), *comment = args_get(a, "comment");
	char err[256], taken[128] = "";
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (validate_instance_name(a->argv[0], err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	if (snap != NULL && args_validate_snapshot_name(snap, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1 + (snap != NULL) + (comment != NULL));
	proto_pack_kv_str(&pk, "name", a->argv[0]);
	if (snap != NULL)
		proto_pack_kv_str(&pk, "snapshot", snap);
	if (comment != NULL)
		proto_pack_kv_str(&pk, "comment", comment);
	rc = cli_request("snapshot", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc == EXIT_OK) {
		proto_get_str(r.result, "snapshot", taken, sizeof(taken));
		printf("Snapshot taken: %s.%s\n", a->argv[0],
		       taken[0] != '\0' ? taken : (snap != NULL ? snap : "?"));
	}
	cli_reply_free(&r);
	return rc;
}
