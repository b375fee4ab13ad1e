/* vmctl delete: delete instances (recoverable unless purged). */
#include <vmproto/proto.h>

#include "vmctl.h"

static int delete_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option delete_options[] = {
	{ "all", 0, NULL, 0, "Delete every instance." },
	{ "purge", 'p', NULL, 0, "Remove the instances for good at once (no recover)." },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument delete_arguments[] = {
	{ "NAME...", "The instances to delete." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_delete_entry = {
	.name = "delete",
	.usage = "[options] NAME...|--all",
	.summary = "Delete instances.",
	.help = "Stops the instances and marks them deleted: 'vmctl recover' brings them back "
		"until 'vmctl purge' (or --purge) removes them and their disks.",
	.options = delete_options,
	.arguments = delete_arguments,
	.min_args = 0,
	.max_args = -1,
	.exec = delete_exec,
};

static int delete_exec(const struct cmd_entry *self, struct cmd_args *a)
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
	msgpack_pack_map(&pk, 3);
	cmd_pack_names(&pk, a, all);
	proto_pack_kv_bool(&pk, "purge", args_has(a, "purge"));
	rc = cli_request("delete", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	cli_reply_free(&r);
	return rc;
}
