/* vmctl purge: remove every deleted instance for good. */
#include "vmctl.h"

static int purge_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option purge_options[] = {
	CMD_OPTION_WAIT(CLI_WAIT_LONG),
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_purge_entry = {
	.name = "purge",
	.usage = "[options]",
	.summary = "Remove deleted instances for good.",
	.help = "Removes every instance deleted without --purge, with its disk and snapshots. "
		"They cannot be recovered afterwards. Their aliases are removed too.",
	.options = purge_options,
	.min_args = 0,
	.max_args = 0,
	.wait = CLI_WAIT_LONG,
	.exec = purge_exec,
};

static int purge_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	struct cli_reply r;
	int rc = cli_request("purge", NULL, 0, &r);

	cli_reply_free(&r);
	/* Aliases go with the instances purged for good. */
	if (rc == EXIT_OK)
		rc = alias_forget_gone();
	return rc;
}
