/* vmctl set: change a setting. */
#include <string.h>

#include <vmproto/proto.h>

#include "vmctl.h"

static int set_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_argument set_arguments[] = {
	{ "KEY=VALUE", "The setting and its new value." },
	{ NULL, NULL },
};

static const struct cmd_option set_options[] = {
	{ "timeout", 0, "SECONDS", 0,
	  "Give up waiting for the broker's answer after SECONDS (default " CLI_STR(CLI_WAIT_DRIVER)
	  ", " CLI_STR(CLI_WAIT_LONG) " for local.driver); vmctl then exits 5, and what the broker "
	  "was doing goes on." },
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_set_entry = {
	.name = "set",
	.usage = "[options] KEY=VALUE",
	.summary = "Change a setting.",
	.help = "'vmctl get --keys' lists the settings. The value is checked before it is "
		"stored, and refused (exit status 2) with what is allowed: docs/settings.md says "
		"what each setting takes. Setting local.driver switches the "
		"driver, to any whose helper vmctl-DRIVER-helper is installed; instances of the "
		"previous driver stay in its scope (see 'vmctl list --all-scopes'). Its running "
		"instances are suspended (or stopped, where the driver cannot suspend) and come back "
		"as they were when the driver is set back; when one cannot be, the switch is "
		"abandoned, the others run again and the driver stays.\n\n"
		"    vmctl set local.driver=libvirt",
	.arguments = set_arguments,
	.options = set_options,
	.min_args = 1,
	.max_args = 1,
	.wait = CLI_WAIT_DRIVER,
	.exec = set_exec,
};

static int set_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *eq = strchr(a->argv[0], '=');
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	char err[256];
	int rc;

	if (eq == NULL)
		return cmd_usage_error(self, "'%s' has no value: use KEY=VALUE", a->argv[0]);
	if (eq == a->argv[0])
		return cmd_usage_error(self, "the key before '=' in '%s' is empty", a->argv[0]);
	if (args_validate_key(a->argv[0], (size_t)(eq - a->argv[0]), err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_pack_str(&pk, "key");
	msgpack_pack_str(&pk, (size_t)(eq - a->argv[0]));
	msgpack_pack_str_body(&pk, a->argv[0], (size_t)(eq - a->argv[0]));
	proto_pack_kv_str(&pk, "value", eq + 1);
	/* Switching the driver parks the running instances first. */
	rc = cli_request("set", &sb,
			 strncmp(a->argv[0], "local.driver=", 13) == 0 && args_get(a, "timeout") == NULL
				 ? CLI_WAIT_LONG
				 : 0,
			 &r);
	msgpack_sbuffer_destroy(&sb);
	cli_reply_free(&r);
	return rc;
}
