/* vmctl restart: restart instances. */
#include "vmctl.h"

static int restart_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option restart_options[] = {
	{ "all", 0, NULL, 0, "Restart every instance." },
	{ "timeout", 0, "SECONDS", 0,
	  "Give up waiting after this many seconds (default 300); vmctl then exits with "
	  "status 5." },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument restart_arguments[] = {
	{ "NAME...", "The instances to restart. Default: the primary instance (the setting "
		     "client.primary-name)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_restart_entry = {
	.name = "restart",
	.usage = "[options] [NAME...|--all]",
	.summary = "Restart instances.",
	.help = "Restarts running instances (a graceful reboot) and waits until each can "
		"be reached over SSH again.",
	.options = restart_options,
	.arguments = restart_arguments,
	.min_args = 0,
	.max_args = -1,
	.exec = restart_exec,
};

static int restart_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	bool primary;
	int rc = primary_default(a, &primary);

	if (rc != EXIT_OK)
		return rc;
	return cmd_names_request(a, "restart", "timeout", 300);
}
