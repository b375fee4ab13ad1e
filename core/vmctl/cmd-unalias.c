/* vmctl unalias: remove aliases. */
#include <string.h>

#include <jansson.h>

#include "vmctl.h"

static int unalias_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option unalias_options[] = {
	{ "all", 0, NULL, 0, "Remove every alias of the current context." },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument unalias_arguments[] = {
	{ "NAME...", "The aliases to remove." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_unalias_entry = {
	.name = "unalias",
	.usage = "[options] NAME...|--all",
	.summary = "Remove aliases.",
	.help = "Removes aliases of the current context (see 'vmctl prefer'), and their scripts "
		"unless another context has an alias of the same name. A name that is not an "
		"alias of the context is an error, and then nothing is removed.",
	.options = unalias_options,
	.arguments = unalias_arguments,
	.min_args = 0,
	.max_args = -1,
	.flags = CMD_F_LOCAL,
	.exec = unalias_exec,
};

static int unalias_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	bool all = args_has(a, "all");
	struct alias_store s;
	struct strvec names;
	json_t *aliases;
	const char *name;
	json_t *def;
	char err[512];
	int rc = EXIT_OK;

	if (all && a->argc > 0)
		return cmd_usage_error(self, "give alias names or --all, not both");
	if (!all && a->argc == 0)
		return cmd_usage_error(self, "'unalias' needs an alias name (or --all)");
	if (alias_store_load(&s, err, sizeof(err)) < 0)
		return cmd_error(EXIT_FAILED, "%s", err);
	aliases = alias_context(&s, alias_active_context(&s));
	strvec_init(&names);
	if (all) {
		json_object_foreach(aliases, name, def)
			if (strvec_push(&names, name) < 0)
				rc = cmd_error(EXIT_FAILED, "out of memory");
	}
	for (int i = 0; rc == EXIT_OK && i < a->argc; i++) {
		if (json_object_get(aliases, a->argv[i]) == NULL)
			rc = cmd_error(EXIT_FAILED, "there is no alias %s in the context %s; "
				       "'vmctl aliases' lists them", a->argv[i],
				       alias_active_context(&s));
		else if (strvec_push(&names, a->argv[i]) < 0)
			rc = cmd_error(EXIT_FAILED, "out of memory");
	}
	for (size_t i = 0; rc == EXIT_OK && i < names.n; i++)
		json_object_del(aliases, names.v[i]);
	if (rc == EXIT_OK && alias_store_save(&s, err, sizeof(err)) < 0)
		rc = cmd_error(EXIT_FAILED, "%s", err);
	for (size_t i = 0; rc == EXIT_OK && i < names.n; i++)
		if (!alias_name_used(&s, names.v[i]))
			alias_script_remove(names.v[i]);
	strvec_free(&names);
	alias_store_free(&s);
	return rc;
}
