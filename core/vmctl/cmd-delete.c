/* vmctl delete: delete instances (recoverable unless purged). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmproto/proto.h>

#include "vmcommon.h"

#include "vmctl.h"

static int delete_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option delete_options[] = {
	{ "all", 0, NULL, 0, "Delete every instance." },
	{ "purge", 'p', NULL, 0, "Remove the instances for good at once (no recover)." },
	CMD_OPTION_WAIT(CLI_WAIT_LONG),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument delete_arguments[] = {
	{ "NAME...", "The instances to delete, or NAME.SNAPSHOT for a snapshot (with --purge)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_delete_entry = {
	.name = "delete",
	.usage = "[options] NAME...|--all",
	.summary = "Delete instances.",
	.help = "Stops the instances and marks them deleted: 'vmctl recover' brings them back "
		"until 'vmctl purge' (or --purge) removes them and their disks, and their "
		"aliases (each removal is said). A launch in "
		"progress is cancelled first. "
		"NAME.SNAPSHOT deletes a snapshot of a stopped instance; snapshots cannot be "
		"recovered, so that needs --purge.",
	.options = delete_options,
	.arguments = delete_arguments,
	.min_args = 0,
	.max_args = -1,
	.wait = CLI_WAIT_LONG,
	.exec = delete_exec,
};

/* Delete one snapshot, given as NAME.SNAPSHOT. */
static int delete_snapshot(const char *spec)
{
	const char *dot = strchr(spec, '.');
	char name[INSTANCE_NAME_MAX + 1], err[256];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (dot[1] == '\0')
		return cmd_error(EXIT_USAGE, "'%.80s' is not NAME.SNAPSHOT", spec);
	if (validate_instance_name_n(spec, (size_t)(dot - spec), err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	snprintf(name, sizeof(name), "%.*s", (int)(dot - spec), spec);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_str(&pk, "name", name);
	proto_pack_kv_str(&pk, "snapshot", dot + 1);
	rc = cli_request("snapshot_delete", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	cli_reply_free(&r);
	return rc;
}

static int delete_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	char err[256];
	bool all;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	char **snaps;
	int n_snaps = 0, n_names = 0, rc = EXIT_OK;

	/* NAME.SNAPSHOT arguments are snapshots; the rest stay instance names. */
	snaps = calloc((size_t)a->argc + 1, sizeof(*snaps));
	if (!snaps)
		return cmd_error(EXIT_FAILED, "out of memory");
	for (int i = 0; i < a->argc; i++) {
		if (strchr(a->argv[i], '.'))
			snaps[n_snaps++] = a->argv[i];
		else
			a->argv[n_names++] = a->argv[i];
	}
	a->argc = n_names;
	if (n_snaps > 0 && !args_has(a, "purge")) {
		rc = cmd_error(EXIT_USAGE, "snapshots cannot be recovered once deleted: "
			       "use 'vmctl delete --purge %s'", snaps[0]);
		free(snaps);
		return rc;
	}
	for (int i = 0; i < n_snaps && rc == EXIT_OK; i++)
		rc = delete_snapshot(snaps[i]);
	free(snaps);
	if (rc != EXIT_OK || (n_snaps > 0 && n_names == 0 && !args_has(a, "all")))
		return rc;
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
	/* Aliases go with the instances purged for good. */
	if (rc == EXIT_OK && args_has(a, "purge"))
		rc = alias_forget_gone();
	return rc;
}
