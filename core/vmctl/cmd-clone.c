/* vmctl clone: copy a stopped instance. */
#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int clone_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option clone_options[] = {
	{ "name", 'n', "NAME", 0, "Name of the copy. Default: SOURCE-clone1, SOURCE-clone2, ..." },
	CMD_OPTION_WAIT(CLI_WAIT_LONG),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument clone_arguments[] = {
	{ "SOURCE", "The instance to copy (stopped)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_clone_entry = {
	.name = "clone",
	.usage = "[options] SOURCE",
	.summary = "Create a copy of an instance.",
	.help = "The copy has its own disk, MAC address and name. Needs a driver that can "
		"clone (qemu, hyperv, virtualbox).",
	.options = clone_options,
	.arguments = clone_arguments,
	.min_args = 1,
	.max_args = 1,
	.wait = CLI_WAIT_LONG,
	.exec = clone_exec,
};

static int clone_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *dst = args_get(a, "name");
	char err[256], made[INSTANCE_NAME_MAX + 1] = "";
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (validate_instance_name(a->argv[0], err, sizeof(err)) < 0 ||
	    (dst != NULL && validate_instance_name(dst, err, sizeof(err)) < 0))
		return cmd_error(EXIT_USAGE, "%s", err);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, dst != NULL ? 2 : 1);
	proto_pack_kv_str(&pk, "source", a->argv[0]);
	if (dst != NULL)
		proto_pack_kv_str(&pk, "name", dst);
	rc = cli_request("clone", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc == EXIT_OK) {
		proto_get_str(r.result, "name", made, sizeof(made));
		printf("Cloned from %s to %s.\n", a->argv[0],
		       made[0] != '\0' ? made : (dst != NULL ? dst : "?"));
	}
	cli_reply_free(&r);
	return rc;
}
