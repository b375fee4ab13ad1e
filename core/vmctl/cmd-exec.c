/* vmctl exec: run a command in an instance over SSH. */
#include <stdio.h>
#include <stdlib.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int exec_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option exec_options[] = {
	{ "working-directory", 'd', "DIR", 0,
	  "Change to this folder in the instance before running the command." },
	CMD_OPTION_WAIT(CLI_WAIT_DRIVER),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument exec_arguments[] = {
	{ "NAME", "The instance." },
	{ "COMMAND...", "The command and its arguments. Each argument reaches the guest as it "
			"was given (quoted for the guest's shell), spaces included." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_exec_entry = {
	.name = "exec",
	.usage = "[options] NAME [--] COMMAND [ARGUMENT...]",
	.summary = "Run a command in an instance.",
	.help = "Runs the command over SSH as the instance's default user. vmctl exits with "
		"the command's exit status (255 when SSH itself fails). Put \"--\" before a "
		"command that has options of its own.\n\n"
		"    vmctl exec web -- ls -l /etc\n"
		"    vmctl exec web -- sh -c 'echo $HOME'",
	.options = exec_options,
	.arguments = exec_arguments,
	.min_args = 1,
	.max_args = 1,
	.flags = CMD_F_REST,
	.wait = CLI_WAIT_DRIVER,
	.exec = exec_exec,
};

static int exec_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	struct ssh_target t;
	struct strvec argv;
	char err[256];
	char *command;
	int rc;

	if (validate_instance_name(a->argv[0], err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	if (a->nrest == 0)
		return cmd_usage_error(self, "'exec' needs a command to run");
	rc = ssh_target_get(a->argv[0], &t);
	if (rc != EXIT_OK)
		return rc;
	command = shell_join(a->rest, a->nrest);
	if (command != NULL && args_get(a, "working-directory") != NULL) {
		char *dir = shell_quote(args_get(a, "working-directory")), *in_dir = NULL;

		/* cd first, so the command never runs in the wrong folder */
		if (dir == NULL || asprintf(&in_dir, "cd %s && %s", dir, command) < 0)
			in_dir = NULL;
		free(dir);
		free(command);
		command = in_dir;
	}
	strvec_init(&argv);
	rc = command != NULL ? ssh_push_options(&argv, "ssh", &t) : PROTO_E_NOMEM;
	if (rc == 0)
		rc = ssh_push_destination(&argv, &t, "", false);
	if (rc == 0)
		rc = strvec_push(&argv, "--");
	if (rc == 0)
		rc = strvec_push(&argv, command);
	free(command);
	ssh_target_free(&t);
	rc = rc == 0 ? ssh_exec(&argv) : cmd_error(EXIT_FAILED, "out of memory");
	strvec_free(&argv);
	return rc;
}
