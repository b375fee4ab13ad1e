/* vmctl aliases: list the aliases. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <vmproto/proto.h>

#include "vmctl.h"

static int aliases_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option aliases_options[] = {
	{ "format", 0, "FORMAT", 0, "Output format: table (default), json, yaml or csv." },
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_aliases_entry = {
	.name = "aliases",
	.usage = "[options]",
	.summary = "List the aliases.",
	.help = "Shows every alias of every context: its instance and command, its context "
		"(the active one marked with '*') and where it runs: \"map\" (in the instance's "
		"view of the host folder it is run from, when that is mounted) or \"default\" "
		"(the instance's default folder).",
	.options = aliases_options,
	.min_args = 0,
	.max_args = 0,
	.flags = CMD_F_LOCAL,
	.exec = aliases_exec,
};

static const struct render_column aliases_columns[] = {
	{ "Alias", "alias", RENDER_TEXT },
	{ "Instance", "instance", RENDER_TEXT },
	{ "Command", "command", RENDER_TEXT },
	{ "Context", "context", RENDER_TEXT },
	{ "Working directory", "working_directory", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

static const char *aliases_str(json_t *def, const char *key)
{
	const char *v = json_string_value(json_object_get(def, key));

	return v != NULL ? v : "";
}

static int aliases_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	enum render_format fmt;
	struct alias_store s;
	const char *context, *name;
	json_t *aliases, *def;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked up;
	size_t n = 0;
	char err[512];
	int rc;

	if (args_format(a, &fmt, err, sizeof(err)) < 0)
		return cmd_usage_error(self, "%s", err);
	if (alias_store_load(&s, err, sizeof(err)) < 0)
		return cmd_error(EXIT_FAILED, "%s", err);
	json_object_foreach(json_object_get(s.root, "contexts"), context, aliases)
		n += json_object_size(aliases);
	if (n == 0 && fmt == FORMAT_TABLE) {
		printf("No aliases defined.\n");
		alias_store_free(&s);
		return EXIT_OK;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_str(&pk, "active_context", alias_active_context(&s));
	proto_pack_str(&pk, "aliases");
	msgpack_pack_array(&pk, n);
	json_object_foreach(json_object_get(s.root, "contexts"), context, aliases) {
		json_object_foreach(aliases, name, def) {
			char shown[ALIAS_NAME_MAX + 2];

			/* the table marks the active context; json and yaml have a key */
			snprintf(shown, sizeof(shown), "%s%s", context,
				 fmt == FORMAT_TABLE && strcmp(context, alias_active_context(&s)) == 0
					 ? "*"
					 : "");
			msgpack_pack_map(&pk, 5);
			proto_pack_kv_str(&pk, "alias", name);
			proto_pack_kv_str(&pk, "instance", aliases_str(def, "instance"));
			proto_pack_kv_str(&pk, "command", aliases_str(def, "command"));
			proto_pack_kv_str(&pk, "context", shown);
			proto_pack_kv_str(&pk, "working_directory", aliases_str(def, "working-directory"));
		}
	}
	alias_store_free(&s);
	msgpack_unpacked_init(&up);
	rc = msgpack_unpack_next(&up, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS &&
			     render_result(stdout, fmt, aliases_columns, false, &up.data, "aliases") == 0
		     ? EXIT_OK
		     : cmd_error(EXIT_FAILED, "cannot show the aliases");
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}
