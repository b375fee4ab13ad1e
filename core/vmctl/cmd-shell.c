/* vmctl shell: an interactive shell in an instance. */
#include <string.h>

#include "vmcommon.h"
#include "vmctl.h"

static int shell_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_argument shell_arguments[] = {
	{ "NAME", "The instance. Default: the primary instance (the setting "
		  "client.primary-name, \"primary\" unless changed), launched first if it does "
		  "not exist." },
	{ NULL, NULL },
};

static const struct cmd_option shell_options[] = {
	CMD_OPTION_WAIT(CLI_WAIT_DRIVER),
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_shell_entry = {
	.name = "shell",
	.usage = "[options] [NAME]",
	.summary = "Open a shell in an instance.",
	.help = "Logs in over SSH as the instance's default user, with a terminal. A stopped or "
		"suspended instance is started first. Without NAME, the shell is in the primary "
		"instance, which is launched as 'vmctl launch --name primary' would (the image of "
		"the setting local.image.default) when it does not exist yet. An instance "
		"without SSH (its SSH port refuses connections) is refused with a message; where "
		"the driver can, 'vmctl exec' still runs single commands in it.",
	.arguments = shell_arguments,
	.options = shell_options,
	.min_args = 0,
	.max_args = 1,
	.wait = CLI_WAIT_DRIVER,
	.exec = shell_exec,
};

static int shell_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *name;
	struct ssh_target t;
	struct strvec argv;
	char err[256], state[32];
	bool primary;
	int rc;

	if (a->argc > 0 && validate_instance_name(a->argv[0], err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	rc = primary_default(a, &primary);
	if (rc != EXIT_OK)
		return rc;
	name = a->argv[0];
	rc = primary_state(name, state, sizeof(state));
	if (rc != EXIT_OK)
		return rc;
	if (state[0] == '\0' && primary)
		rc = primary_launch(name);
	else if (strcmp(state, "stopped") == 0 || strcmp(state, "suspended") == 0)
		rc = primary_start(name);
	if (rc != EXIT_OK)
		return rc;
	rc = ssh_target_probe(name, &t);
	if (rc != EXIT_OK)
		return rc;
	if (t.no_ssh) {
		rc = cmd_error(EXIT_FAILED,
			       "%s has no SSH (%s); vmctl shell needs it. Run single commands "
			       "with: vmctl exec %s -- COMMAND", name, t.why ? t.why : "it does not answer",
			       name);
		ssh_target_free(&t);
		return rc;
	}
	strvec_init(&argv);
	rc = ssh_push_options(&argv, "ssh", &t);
	if (rc == 0)
		rc = strvec_push(&argv, "-t");
	if (rc == 0)
		rc = ssh_push_destination(&argv, &t, "", false);
	ssh_target_free(&t);
	rc = rc == 0 ? ssh_exec(&argv) : cmd_error(EXIT_FAILED, "out of memory");
	strvec_free(&argv);
	return rc;
}
