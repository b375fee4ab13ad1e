/* vmctl start: start instances. */
#include "vmctl.h"

static int start_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option start_options[] = {
	{ "all", 0, NULL, 0, "Start every instance." },
	{ "timeout", 0, "SECONDS", 0,
	  "Give up waiting after this many seconds (default 300); vmctl then exits with "
	  "status 5." },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument start_arguments[] = {
	{ "NAME...", "The instances to start. Default: the primary instance (the setting "
		     "client.primary-name), launched first if it does not exist." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_start_entry = {
	.name = "start",
	.usage = "[options] [NAME...|--all]",
	.summary = "Start instances.",
	.help = "Starts stopped instances and resumes suspended ones, and waits until "
		"each can be reached over SSH.",
	.options = start_options,
	.arguments = start_arguments,
	.min_args = 0,
	.max_args = -1,
	.exec = start_exec,
};

static int start_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	char state[32];
	bool primary;
	int rc = primary_default(a, &primary);

	if (rc != EXIT_OK)
		return rc;
	if (primary) {
		rc = primary_state(a->argv[0], state, sizeof(state));
		if (rc != EXIT_OK)
			return rc;
		if (state[0] == '\0')
			return primary_launch(a->argv[0]);
	}
	return cmd_names_request(a, "start", "timeout", 300);
}
