/* vmctl find: images that can be launched. */
#include <string.h>

#include <vmproto/proto.h>

#include "vmctl.h"

static int find_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option find_options[] = {
	{ "format", 0, "FORMAT", 0, "Output format: table (default), json, yaml or csv." },
	{ "force-update", 0, NULL, 0,
	  "Fetch the remotes' image lists now instead of using the cached ones (see the setting "
	  "local.image.refresh); fail if they cannot be fetched." },
	{ "show-unsupported", 0, NULL, 0,
	  "Also show images their remote marks unsupported (releases past their end of life), "
	  "with a Supported column." },
	CMD_OPTION_WAIT(CLI_WAIT_LONG),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument find_arguments[] = {
	{ "[REMOTE:]STRING", "Show only images whose name or alias contains STRING, from one "
			     "remote if given (\"release:\" alone lists that remote)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_find_entry = {
	.name = "find",
	.usage = "[options] [[REMOTE:]STRING]",
	.summary = "Show images that can be launched.",
	.help = "Lists the images of the configured simplestreams remotes (see the setting "
		"local.image.mirror) with their aliases, any of which 'vmctl launch' accepts.",
	.options = find_options,
	.arguments = find_arguments,
	.min_args = 0,
	.max_args = 1,
	.wait = CLI_WAIT_LONG,
	.exec = find_exec,
};

static const struct render_column find_columns[] = {
	{ "Image", "name", RENDER_TEXT },
	{ "Remote", "remote", RENDER_TEXT },
	{ "Aliases", "aliases", RENDER_TEXT },
	{ "Version", "version", RENDER_TEXT },
	{ "Description", "description", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

static const struct render_column find_columns_unsupported[] = {
	{ "Image", "name", RENDER_TEXT },
	{ "Remote", "remote", RENDER_TEXT },
	{ "Aliases", "aliases", RENDER_TEXT },
	{ "Version", "version", RENDER_TEXT },
	{ "Supported", "supported", RENDER_TEXT },
	{ "Description", "description", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

static int find_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *spec = a->argc > 0 ? a->argv[0] : "", *colon = strchr(spec, ':');
	const char *query = colon != NULL ? colon + 1 : spec;
	enum render_format fmt;
	const msgpack_object *images;
	char err[256];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (args_format(a, &fmt, err, sizeof(err)) < 0)
		return cmd_usage_error(self, "%s", err);
	if (colon == spec)
		return cmd_usage_error(self, "the remote name before ':' in '%s' is empty", spec);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, (colon != NULL ? 2 : 1) + args_has(a, "force-update") +
				      args_has(a, "show-unsupported"));
	proto_pack_kv_str(&pk, "query", query);
	if (args_has(a, "force-update"))
		proto_pack_kv_bool(&pk, "force_update", true);
	if (args_has(a, "show-unsupported"))
		proto_pack_kv_bool(&pk, "show_unsupported", true);
	if (colon != NULL) {
		proto_pack_str(&pk, "remote");
		msgpack_pack_str(&pk, (size_t)(colon - spec));
		msgpack_pack_str_body(&pk, spec, (size_t)(colon - spec));
	}
	rc = cli_request("find", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc != EXIT_OK)
		goto out_reply;
	images = proto_map_get(r.result, "images");
	if (fmt == FORMAT_TABLE && (images == NULL || images->type != MSGPACK_OBJECT_ARRAY ||
				    images->via.array.size == 0)) {
		printf("No images found.\n");
		goto out_reply;
	}
	if (render_result(stdout, fmt,
			  args_has(a, "show-unsupported") ? find_columns_unsupported : find_columns,
			  false, r.result, "images") < 0)
		rc = cmd_error(EXIT_FAILED, "cannot show the result");
out_reply:
	cli_reply_free(&r);
	return rc;
}
