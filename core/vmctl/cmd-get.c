/* vmctl get: read a setting. */
#include <stdlib.h>
#include <string.h>

#include <vmproto/proto.h>

#include "vmctl.h"

static int get_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option get_options[] = {
	{ "keys", 0, NULL, 0, "List the settings' keys instead." },
	{ "raw", 0, NULL, 0, "Print an empty value as nothing, not as <empty>." },
	CMD_OPTION_WAIT(CLI_WAIT_QUICK),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument get_arguments[] = {
	{ "KEY", "The setting, e.g. local.driver." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_get_entry = {
	.name = "get",
	.usage = "[options] KEY | --keys",
	.summary = "Show a setting.",
	.help = "Prints the setting's value (its default when it was never set).\n\n"
		"    vmctl get local.driver",
	.options = get_options,
	.arguments = get_arguments,
	.min_args = 0,
	.max_args = 1,
	.wait = CLI_WAIT_QUICK,
	.exec = get_exec,
};

static int get_keys(void)
{
	const msgpack_object *keys;
	struct cli_reply r;
	int rc = cli_request("keys", NULL, 0, &r);

	if (rc != EXIT_OK)
		goto out_reply;
	keys = proto_map_get(r.result, "keys");
	for (uint32_t i = 0; keys != NULL && keys->type == MSGPACK_OBJECT_ARRAY &&
			     i < keys->via.array.size;
	     i++) {
		const msgpack_object *k = &keys->via.array.ptr[i];

		if (k->type == MSGPACK_OBJECT_STR)
			printf("%.*s\n", (int)k->via.str.size, k->via.str.ptr);
	}
out_reply:
	cli_reply_free(&r);
	return rc;
}

static int get_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	char *value, err[256];
	int rc;

	if (args_has(a, "keys")) {
		if (a->argc > 0)
			return cmd_usage_error(self, "give a KEY or --keys, not both");
		return get_keys();
	}
	if (a->argc == 0)
		return cmd_usage_error(self, "'get' needs a KEY (or --keys)");
	if (args_validate_key(a->argv[0], strlen(a->argv[0]), err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "key", a->argv[0]);
	rc = cli_request("get", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc == EXIT_OK) {
		value = proto_dup_str(r.result, "value");
		if (value == NULL || value[0] == '\0')
			printf("%s\n", args_has(a, "raw") ? "" : "<empty>");
		else
			printf("%s\n", value);
		free(value);
	}
	cli_reply_free(&r);
	return rc;
}
