/* vmctl help: the command list, or one command's help. */
#include "vmctl.h"

static int help_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option help_options[] = {
	{ "markdown", 0, NULL, 0,
	  "Print the reference of every command in Markdown (the body of docs/cli.md)." },
	{ "man", 0, NULL, 0, "Print the manual page vmctl(1) in roff (man -l - shows it)." },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument help_arguments[] = {
	{ "COMMAND", "The command to explain (its name or alias)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_help_entry = {
	.name = "help",
	.usage = "[options] [COMMAND]",
	.summary = "Show help about a command.",
	.help = "Without a command, lists every command. 'vmctl COMMAND --help' shows the "
		"same as 'vmctl help COMMAND'.",
	.options = help_options,
	.arguments = help_arguments,
	.min_args = 0,
	.max_args = 1,
	.exec = help_exec,
};

static int help_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const struct cmd_entry *e;

	if (args_has(a, "markdown") && args_has(a, "man"))
		return cmd_usage_error(self, "give --markdown or --man, not both");
	if (args_has(a, "markdown")) {
		if (a->argc > 0)
			return cmd_usage_error(self, "--markdown covers every command: give no "
						     "COMMAND");
		cmd_print_markdown(stdout);
		return EXIT_OK;
	}
	if (args_has(a, "man")) {
		if (a->argc > 0)
			return cmd_usage_error(self, "--man covers every command: give no COMMAND");
		cmd_print_man(stdout);
		return EXIT_OK;
	}
	if (a->argc == 0) {
		cmd_print_overview(stdout);
		return EXIT_OK;
	}
	e = cmd_find(a->argv[0]);
	if (e == NULL) {
		fprintf(stderr, "vmctl: unknown command '%s'\n", a->argv[0]);
		fprintf(stderr, "Run 'vmctl help' for the list of commands.\n");
		return EXIT_USAGE;
	}
	cmd_print_help(stdout, e);
	return EXIT_OK;
}
