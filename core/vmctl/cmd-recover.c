/* vmctl recover: recover deleted instances. */
#include "vmctl.h"

static int recover_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option recover_options[] = {
	{ "all", 0, NULL, 0, "Recover every instance." },
	CMD_OPTION_WAIT(CLI_WAIT_DRIVER),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument recover_arguments[] = {
	{ "NAME...", "The instances to recover." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_recover_entry = {
	.name = "recover",
	.usage = "[options] NAME...|--all",
	.summary = "Recover deleted instances.",
	.help = "Brings back instances deleted without --purge, in the state they had "
		"before. An instance folder the registry has no record of (vmctl list warns "
		"about those) gets its record rebuilt: the image and disk size from the "
		"folder's disk; cpus (1), memory (1.0GiB) and the MAC address are new, and "
		"mounts and extra networks have to be added again.",
	.options = recover_options,
	.arguments = recover_arguments,
	.min_args = 0,
	.max_args = -1,
	.wait = CLI_WAIT_DRIVER,
	.exec = recover_exec,
};

static int recover_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	return cmd_names_request(a, "recover", NULL, 0);
}
