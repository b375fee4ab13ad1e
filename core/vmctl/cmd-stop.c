/* vmctl stop: stop instances, now or later, gracefully or by force. */
#include <string.h>

#include <vmproto/proto.h>

#include "vmctl.h"

#define STOP_DEFAULT_TIMEOUT 60
#define STOP_MAX_MINUTES (7 * 24 * 60)

static int stop_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option stop_options[] = {
	{ "all", 0, NULL, 0, "Stop every instance." },
	{ "force", 0, NULL, 0,
	  "Power off at once, without asking the guest to shut down (for an instance that does "
	  "not respond). Also stops a suspended instance, discarding its saved state, and "
	  "cancels a launch in progress." },
	{ "time", 't', "MINUTES", 0,
	  "Stop after this many minutes (\"+5\" or \"5\"); 0 stops now. The guest's users are "
	  "warned." },
	{ "cancel", 'c', NULL, 0, "Cancel a delayed stop asked for with --time." },
	{ "timeout", 0, "SECONDS", 0,
	  "How long to wait for a graceful shutdown before powering off (default 60)." },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument stop_arguments[] = {
	{ "NAME...", "The instances to stop. Default: the primary instance (the setting "
		     "client.primary-name)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_stop_entry = {
	.name = "stop",
	.usage = "[options] [NAME...|--all]",
	.summary = "Stop instances.",
	.help = "Asks each guest to shut down (ACPI) and, if it has not stopped after --timeout "
		"seconds, powers it off, so an instance stuck in \"unknown\" can always be "
		"stopped.",
	.options = stop_options,
	.arguments = stop_arguments,
	.min_args = 0,
	.max_args = -1,
	.exec = stop_exec,
};

static int stop_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *time_text = args_get(a, "time"), *timeout_text = args_get(a, "timeout");
	bool force = args_has(a, "force"), cancel = args_has(a, "cancel"), all;
	uint64_t minutes = 0, timeout = STOP_DEFAULT_TIMEOUT;
	char err[256];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	bool primary;
	int rc;

	if (force && (time_text != NULL || cancel))
		return cmd_usage_error(self, "--force cannot be combined with --time or --cancel");
	if (cancel && time_text != NULL)
		return cmd_usage_error(self, "--cancel cannot be combined with --time");
	if (time_text != NULL &&
	    args_parse_uint("--time", time_text[0] == '+' ? time_text + 1 : time_text, 0,
			    STOP_MAX_MINUTES, &minutes, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	if (timeout_text != NULL &&
	    args_parse_uint("--timeout", timeout_text, 1, 86400, &timeout, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	rc = primary_default(a, &primary);
	if (rc != EXIT_OK)
		return rc;
	if (args_names_or_all(a, &all, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 4 + (time_text != NULL) + cancel);
	cmd_pack_names(&pk, a, all);
	proto_pack_kv_bool(&pk, "force", force);
	proto_pack_kv_uint(&pk, "timeout", timeout);
	if (time_text != NULL)
		proto_pack_kv_uint(&pk, "time", minutes);
	if (cancel)
		proto_pack_kv_bool(&pk, "cancel", true);
	rc = cli_request("stop", &sb, (double)timeout + CLI_BACKSTOP, &r);
	msgpack_sbuffer_destroy(&sb);
	cli_reply_free(&r);
	return rc;
}
