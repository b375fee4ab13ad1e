/* vmctl networks: host networks instances can join. */
#include <vmproto/proto.h>

#include "vmctl.h"

static int networks_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option networks_options[] = {
	{ "format", 0, "FORMAT", 0, "Output format: table (default), json, yaml or csv." },
	CMD_OPTION_WAIT(CLI_WAIT_DRIVER),
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_networks_entry = {
	.name = "networks",
	.usage = "[options]",
	.summary = "List host networks for extra instance interfaces.",
	.help = "Needs a driver with extra networks (qemu, lxd, hyperv, virtualbox).",
	.options = networks_options,
	.min_args = 0,
	.max_args = 0,
	.wait = CLI_WAIT_DRIVER,
	.exec = networks_exec,
};

static const struct render_column networks_columns[] = {
	{ "Name", "name", RENDER_TEXT },
	{ "Type", "type", RENDER_TEXT },
	{ "Description", "description", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

static int networks_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	enum render_format fmt;
	const msgpack_object *nets;
	char err[256];
	struct cli_reply r;
	int rc;

	if (args_format(a, &fmt, err, sizeof(err)) < 0)
		return cmd_usage_error(self, "%s", err);
	rc = cli_request("networks", NULL, 0, &r);
	if (rc != EXIT_OK)
		goto out_reply;
	nets = proto_map_get(r.result, "networks");
	if (fmt == FORMAT_TABLE && (nets == NULL || nets->type != MSGPACK_OBJECT_ARRAY ||
				    nets->via.array.size == 0)) {
		printf("No networks found.\n");
		goto out_reply;
	}
	if (render_result(stdout, fmt, networks_columns, false, r.result, "networks") < 0)
		rc = cmd_error(EXIT_FAILED, "cannot show the result");
out_reply:
	cli_reply_free(&r);
	return rc;
}
