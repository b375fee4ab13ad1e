/* vmctl prefer: switch the alias context. */
#include <jansson.h>

#include "vmctl.h"

static int prefer_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_argument prefer_arguments[] = {
	{ "CONTEXT", "The alias context to switch to (made if it does not exist)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_prefer_entry = {
	.name = "prefer",
	.usage = "CONTEXT",
	.summary = "Switch the alias context.",
	.help = "Aliases belong to a context; one context is active (\"default\" at first). "
		"'vmctl alias', 'vmctl unalias' and running an alias use the active context, so "
		"the same alias name can run a command in one instance in one context and in "
		"another instance in another.",
	.arguments = prefer_arguments,
	.min_args = 1,
	.max_args = 1,
	.flags = CMD_F_LOCAL,
	.exec = prefer_exec,
};

static int prefer_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *context = a->argv[0];
	struct alias_store s;
	json_t *contexts;
	char err[512];
	int rc = EXIT_OK;

	if (alias_validate_name("context", context, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	if (alias_store_load(&s, err, sizeof(err)) < 0)
		return cmd_error(EXIT_FAILED, "%s", err);
	contexts = json_object_get(s.root, "contexts");
	if ((json_object_get(contexts, context) == NULL &&
	     json_object_set_new(contexts, context, json_object()) < 0) ||
	    json_object_set_new(s.root, "active-context", json_string(context)) < 0)
		rc = cmd_error(EXIT_FAILED, "out of memory");
	else if (alias_store_save(&s, err, sizeof(err)) < 0)
		rc = cmd_error(EXIT_FAILED, "%s", err);
	alias_store_free(&s);
	return rc;
}
