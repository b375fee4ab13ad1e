/* vmctl alias: define an alias that runs a command in an instance. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vmcommon.h"
#include "vmctl.h"

#define ALIAS_COMMAND_MAX 255

static int alias_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option alias_options[] = {
	{ "no-map-working-directory", 'n', NULL, 0,
	  "Always run the command in the instance's default folder, even from a host folder "
	  "that is mounted in the instance." },
	CMD_OPTION_WAIT(CLI_WAIT_QUICK),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument alias_arguments[] = {
	{ "INSTANCE:COMMAND", "The instance and the command the alias runs there." },
	{ "NAME", "The alias (default: the command's last path component): letters, digits, "
		  "'-', '_' and '.', at most 64 characters." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_alias_entry = {
	.name = "alias",
	.usage = "[options] INSTANCE:COMMAND [NAME]",
	.summary = "Make an alias that runs a command in an instance.",
	.help = "Records the alias in the current alias context (see 'vmctl prefer') and writes "
		"a script of that name in the data folder's bin/, which runs 'vmctl run-alias "
		"NAME' with its arguments: add that folder to PATH (vmctl says which when it "
		"makes it) and NAME runs COMMAND in INSTANCE, passing on its arguments, its "
		"exit status and its output. Run from a host folder that is mounted in the "
		"instance (or below one), the command runs in the instance's view of that "
		"folder. Purging the instance removes its aliases.\n\n"
		"    vmctl alias web:ls\n"
		"    vmctl alias web:/usr/bin/python3 webpy",
	.options = alias_options,
	.arguments = alias_arguments,
	.min_args = 1,
	.max_args = 2,
	.wait = CLI_WAIT_QUICK,
	.exec = alias_exec,
};

static int alias_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *def = a->argv[0], *colon = strchr(def, ':'), *command, *name;
	char instance[INSTANCE_NAME_MAX + 1], state[32], err[512], bin[PATH_MAX];
	struct alias_store s;
	const char *context;
	json_t *entry, *aliases;
	bool first = true;
	int rc;

	if (colon == NULL || colon == def || colon[1] == '\0')
		return cmd_usage_error(self, "'%s' is not INSTANCE:COMMAND", def);
	if ((size_t)(colon - def) > INSTANCE_NAME_MAX)
		return cmd_error(EXIT_USAGE, "instance name '%.*s...' is longer than %d characters",
				 40, def, INSTANCE_NAME_MAX);
	snprintf(instance, sizeof(instance), "%.*s", (int)(colon - def), def);
	if (validate_instance_name(instance, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	command = colon + 1;
	if (strlen(command) > ALIAS_COMMAND_MAX)
		return cmd_error(EXIT_USAGE, "the command is longer than %d characters",
				 ALIAS_COMMAND_MAX);
	for (const char *p = command; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return cmd_error(EXIT_USAGE, "the command '%s' has a space or a control "
					 "character; an alias runs one program (its arguments come "
					 "when it is run)", command);
	name = a->argc > 1 ? a->argv[1] : (strrchr(command, '/') ? strrchr(command, '/') + 1 : command);
	if (alias_validate_name("alias", name, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s%s", err,
				 a->argc > 1 ? "" : " (give the alias a NAME)");
	rc = alias_store_load(&s, err, sizeof(err));
	if (rc < 0)
		return cmd_error(EXIT_FAILED, "%s", err);
	if (json_object_get(alias_context(&s, alias_active_context(&s)), name) != NULL) {
		rc = cmd_error(EXIT_FAILED, "the alias %s already exists in the context %s; remove "
			       "it first with 'vmctl unalias %s'", name, alias_active_context(&s),
			       name);
		goto out_free;
	}
	json_object_foreach(json_object_get(s.root, "contexts"), context, aliases)
		first = first && json_object_size(aliases) == 0;
	rc = primary_state(instance, state, sizeof(state));
	if (rc != EXIT_OK)
		goto out_free;
	if (state[0] == '\0') {
		rc = cmd_error(EXIT_FAILED, "instance \"%s\" does not exist", instance);
		goto out_free;
	}
	entry = json_pack("{s:s, s:s, s:s}", "instance", instance, "command", command,
			  "working-directory", args_has(a, "no-map-working-directory") ? "default" : "map");
	if (entry == NULL ||
	    json_object_set_new(alias_context(&s, alias_active_context(&s)), name, entry) < 0) {
		rc = cmd_error(EXIT_FAILED, "out of memory");
		goto out_free;
	}
	if (alias_script_write(name, err, sizeof(err)) < 0 ||
	    alias_store_save(&s, err, sizeof(err)) < 0) {
		rc = cmd_error(EXIT_FAILED, "%s", err);
		goto out_free;
	}
	/* Said with the first alias only. */
	if (first && alias_bin_dir(bin, sizeof(bin)) == 0)
		printf("Aliases are scripts in %s; to run them by name, add that folder to PATH "
		       "(in ~/.profile or your shell's start-up file):\n"
		       "    export PATH=\"%s:$PATH\"\n", bin, bin);
	rc = EXIT_OK;
out_free:
	alias_store_free(&s);
	return rc;
}
