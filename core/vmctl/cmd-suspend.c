/* vmctl suspend: suspend instances. */
#include "vmctl.h"

static int suspend_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option suspend_options[] = {
	{ "all", 0, NULL, 0, "Suspend every instance." },
	{ "timeout", 0, "SECONDS", 0,
	  "Give up waiting after this many seconds (default 300); vmctl then exits with "
	  "status 5." },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument suspend_arguments[] = {
	{ "NAME...", "The instances to suspend. Default: the primary instance (the setting "
		     "client.primary-name)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_suspend_entry = {
	.name = "suspend",
	.usage = "[options] [NAME...|--all]",
	.summary = "Suspend instances.",
	.help = "Saves the state of running instances to disk and stops them; 'vmctl "
		"start' resumes them where they were.",
	.options = suspend_options,
	.arguments = suspend_arguments,
	.min_args = 0,
	.max_args = -1,
	.exec = suspend_exec,
};

static int suspend_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	bool primary;
	int rc = primary_default(a, &primary);

	if (rc != EXIT_OK)
		return rc;
	return cmd_names_request(a, "suspend", "timeout", 300);
}
