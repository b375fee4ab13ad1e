/* vmctl umount: stop sharing host folders with an instance. */
#include <string.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int umount_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_argument umount_arguments[] = {
	{ "MOUNT...", "NAME:PATH for one mount, or NAME for every mount of the instance." },
	{ NULL, NULL },
};

static const struct cmd_option umount_options[] = {
	CMD_OPTION_WAIT(CLI_WAIT_DRIVER),
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_umount_entry = {
	.name = "umount",
	.alias = "unmount",
	.usage = "[options] MOUNT...",
	.summary = "Remove mounts.",
	.help = "",
	.arguments = umount_arguments,
	.options = umount_options,
	.min_args = 1,
	.max_args = -1,
	.wait = CLI_WAIT_DRIVER,
	.exec = umount_exec,
};

static int umount_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	char name[INSTANCE_NAME_MAX + 2], err[256];
	int rc = EXIT_OK;

	for (int pass = 0; pass < 2 && rc == EXIT_OK; pass++) {
		/* pass 0 checks every argument, pass 1 sends them */
		for (int i = 0; i < a->argc && rc == EXIT_OK; i++) {
			size_t len;
			const char *path = NULL;
			msgpack_sbuffer sb;
			msgpack_packer pk;
			struct cli_reply r;

			if (!args_split_instance_path(a->argv[i], &len, &path))
				len = strlen(a->argv[i]);
			if (validate_instance_name_n(a->argv[i], len, err, sizeof(err)) < 0)
				return cmd_error(EXIT_USAGE, "%s", err);
			snprintf(name, sizeof(name), "%.*s", (int)len, a->argv[i]);
			if (pass == 0) {
				if (validate_instance_name(name, err, sizeof(err)) < 0)
					return cmd_error(EXIT_USAGE, "%s", err);
				continue;
			}
			msgpack_sbuffer_init(&sb);
			msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
			msgpack_pack_map(&pk, path != NULL && path[0] != '\0' ? 2 : 1);
			proto_pack_kv_str(&pk, "name", name);
			if (path != NULL && path[0] != '\0')
				proto_pack_kv_str(&pk, "path", path);
			rc = cli_request("umount", &sb, 0, &r);
			msgpack_sbuffer_destroy(&sb);
			cli_reply_free(&r);
		}
	}
	return rc;
}
