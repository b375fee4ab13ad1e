/* vmctl mount: share a host folder with instances. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int mount_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option mount_options[] = {
	{ "type", 't', "TYPE", 0,
	  "classic (the default, on every driver: the guest mounts the folder with sshfs over "
	  "the broker's SSH connection, served on the host by OpenSSH's sftp-server; the "
	  "instance may be running) or native (the driver shares the folder itself, e.g. 9p "
	  "with qemu; the instance must be stopped)." },
	{ "uid-map", 'u', "HOST:GUEST", OPT_MULTI,
	  "Map a host user id to a guest user id; may be repeated. Classic mounts map the host "
	  "user to 1000 (ubuntu) by default; what the guest writes is the host user's." },
	{ "gid-map", 'g', "HOST:GUEST", OPT_MULTI,
	  "Map a host group id to a guest group id; may be repeated." },
	CMD_OPTION_WAIT(CLI_WAIT_LONG),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument mount_arguments[] = {
	{ "SOURCE", "The host folder to share." },
	{ "TARGET...", "NAME or NAME:PATH: the instance and where the folder appears in it "
		       "(default: the same path as SOURCE on the host)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_mount_entry = {
	.name = "mount",
	.usage = "[options] SOURCE TARGET...",
	.summary = "Share a host folder with instances.",
	.help = "A classic mount needs sshfs in the guest (sudo apt install sshfs); it is "
		"established at once on a running instance, else at its next start, and again "
		"after every start, resume and broker restart; vmctl info shows its status.\n\n"
		"    vmctl mount ~/src web:/home/ubuntu/src\n"
		"    vmctl mount --type native -u 1000:1000 /srv/data web db",
	.options = mount_options,
	.arguments = mount_arguments,
	.min_args = 2,
	.max_args = -1,
	.wait = CLI_WAIT_LONG,
	.exec = mount_exec,
};

static int mount_pack_maps(msgpack_packer *pk, const struct cmd_args *a, const char *option,
			   const char *key)
{
	size_t n;
	char **values = args_values(a, option, &n);
	char err[256];

	proto_pack_str(pk, key);
	msgpack_pack_array(pk, n);
	for (size_t i = 0; i < n; i++) {
		uint32_t host, guest;

		if (args_parse_id_map(values[i], &host, &guest, err, sizeof(err)) < 0)
			return cmd_error(EXIT_USAGE, "%s", err);
		msgpack_pack_array(pk, 2);
		msgpack_pack_uint32(pk, host);
		msgpack_pack_uint32(pk, guest);
	}
	return EXIT_OK;
}

static int mount_one(const struct cmd_args *a, const char *source, const char *type,
		     const char *name, const char *path)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 6);
	proto_pack_kv_str(&pk, "source", source);
	proto_pack_kv_str(&pk, "name", name);
	proto_pack_kv_str(&pk, "path", path);
	proto_pack_kv_str(&pk, "type", type);
	rc = mount_pack_maps(&pk, a, "uid-map", "uid_map");
	if (rc == EXIT_OK)
		rc = mount_pack_maps(&pk, a, "gid-map", "gid_map");
	if (rc == EXIT_OK) {
		rc = cli_request("mount", &sb, 0, &r);
		cli_reply_free(&r);
	}
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static int mount_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *type = args_get(a, "type") != NULL ? args_get(a, "type") : "classic";
	char source[PATH_MAX], name[INSTANCE_NAME_MAX + 2], err[256];
	struct stat st;
	size_t n;
	char **maps;
	int rc = EXIT_OK;

	if (strcmp(type, "native") != 0 && strcmp(type, "classic") != 0)
		return cmd_usage_error(self, "unknown mount type '%s' (use native or classic)", type);
	if (realpath(a->argv[0], source) == NULL)
		return cmd_error(EXIT_USAGE, "cannot mount '%s': %s", a->argv[0], strerror(errno));
	if (stat(source, &st) < 0 || !S_ISDIR(st.st_mode))
		return cmd_error(EXIT_USAGE, "cannot mount '%s': not a folder", a->argv[0]);
	for (const char *opt = "uid-map"; opt != NULL;
	     opt = strcmp(opt, "uid-map") == 0 ? "gid-map" : NULL) {
		maps = args_values(a, opt, &n);
		for (size_t i = 0; i < n; i++) {
			uint32_t host, guest;

			if (args_parse_id_map(maps[i], &host, &guest, err, sizeof(err)) < 0)
				return cmd_error(EXIT_USAGE, "%s", err);
		}
	}
	/* check every target before mounting any */
	for (int i = 1; i < a->argc; i++) {
		size_t len;
		const char *path;

		if (!args_split_instance_path(a->argv[i], &len, &path)) {
			len = strlen(a->argv[i]);
			path = NULL;
		}
		if (validate_instance_name_n(a->argv[i], len, err, sizeof(err)) < 0)
			return cmd_error(EXIT_USAGE, "%s", err);
		snprintf(name, sizeof(name), "%.*s", (int)len, a->argv[i]);
		if (path != NULL && path[0] == '\0')
			return cmd_error(EXIT_USAGE, "the mount path in '%s' is empty", a->argv[i]);
	}
	for (int i = 1; i < a->argc && rc == EXIT_OK; i++) {
		size_t len;
		const char *path;

		if (!args_split_instance_path(a->argv[i], &len, &path)) {
			len = strlen(a->argv[i]);
			path = source;
		}
		snprintf(name, sizeof(name), "%.*s", (int)len, a->argv[i]);
		rc = mount_one(a, source, type, name, path);
	}
	return rc;
}
