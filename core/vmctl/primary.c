/*
 * The primary instance, as in Multipass: the instance named by the setting
 * client.primary-name (default "primary") is what shell, start, stop,
 * restart and suspend act on when given no name; shell and start launch it
 * first when it does not exist. A primary instance just launched gets the
 * user's home folder mounted (client.primary-home-mount).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

#define PRIMARY_LAUNCH_TIMEOUT 300
/* Where Multipass mounts the home folder: "Home" in the default user's. */
#define PRIMARY_HOME_TARGET "/home/ubuntu/Home"

/* The value of a setting into buf. Exit code. */
static int primary_get(const char *key, char *buf, size_t len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	buf[0] = '\0';
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "key", key);
	rc = cli_request("get", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc == EXIT_OK && proto_get_str(r.result, "value", buf, len) < 0)
		buf[0] = '\0';
	cli_reply_free(&r);
	return rc;
}

int primary_name(char *buf, size_t len)
{
	return primary_get("client.primary-name", buf, len);
}

int primary_mount_home(const char *name)
{
	char value[16], home[PATH_MAX];
	const char *env = getenv("HOME");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (primary_get("client.primary-home-mount", value, sizeof(value)) != EXIT_OK ||
	    strcmp(value, "false") == 0)
		return EXIT_OK;
	if (primary_get("local.privileged-mounts", value, sizeof(value)) != EXIT_OK ||
	    strcmp(value, "false") == 0) {
		printf("Not mounting the home folder into %s: local.privileged-mounts is false\n",
		       name);
		return EXIT_OK;
	}
	if (env == NULL || env[0] != '/' || realpath(env, home) == NULL)
		return EXIT_OK; /* no home folder to share */
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 4);
	proto_pack_kv_str(&pk, "source", home);
	proto_pack_kv_str(&pk, "name", name);
	proto_pack_kv_str(&pk, "path", PRIMARY_HOME_TARGET);
	proto_pack_kv_str(&pk, "type", "classic");
	rc = cli_request("mount", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	cli_reply_free(&r);
	if (rc == EXIT_OK)
		printf("Mounted '%s' into '%s:" PRIMARY_HOME_TARGET "'\n", home, name);
	else
		fprintf(stderr,
			"vmctl: warning: the home folder was not mounted into %s; 'vmctl mount %s "
			"%s:" PRIMARY_HOME_TARGET "' tries again, 'vmctl set "
			"client.primary-home-mount=false' stops vmctl from trying\n",
			name, home, name);
	fflush(stdout);
	return EXIT_OK;
}

int primary_after_launch(const char *launched)
{
	char name[INSTANCE_NAME_MAX + 1];

	if (primary_name(name, sizeof(name)) != EXIT_OK || name[0] == '\0' ||
	    strcmp(name, launched) != 0)
		return EXIT_OK;
	return primary_mount_home(launched);
}

int primary_default(struct cmd_args *a, bool *used)
{
	/* a->argv points at it until the command ends. */
	static char name[INSTANCE_NAME_MAX + 1];
	char **argv;
	bool has_all = false;
	int rc;

	for (size_t i = 0; a->entry->options != NULL && a->entry->options[i].name != NULL; i++)
		has_all = has_all || strcmp(a->entry->options[i].name, "all") == 0;
	*used = false;
	if (a->argc > 0 || args_has(a, "all"))
		return EXIT_OK;
	rc = primary_name(name, sizeof(name));
	if (rc != EXIT_OK)
		return rc;
	if (name[0] == '\0')
		return cmd_usage_error(a->entry,
				       "'%s' needs an instance name%s: there is no primary instance "
				       "(the setting client.primary-name is empty)",
				       a->entry->name, has_all ? " (or --all)" : "");
	argv = malloc(2 * sizeof(*argv));
	if (argv == NULL)
		return cmd_error(EXIT_FAILED, "out of memory");
	argv[0] = name;
	argv[1] = NULL;
	free(a->argv);
	a->argv = argv;
	a->argc = 1;
	*used = true;
	return EXIT_OK;
}

int primary_state(const char *name, char *state, size_t len)
{
	const msgpack_object *list;
	struct cli_reply r;
	int rc;

	state[0] = '\0';
	rc = cli_request("list", NULL, 0, &r);
	if (rc != EXIT_OK)
		goto out_reply;
	list = proto_map_get(r.result, "instances");
	for (uint32_t i = 0; list != NULL && list->type == MSGPACK_OBJECT_ARRAY &&
			     i < list->via.array.size;
	     i++) {
		const msgpack_object *row = &list->via.array.ptr[i];

		if (proto_obj_streq(proto_map_get(row, "name"), name)) {
			if (proto_get_str(row, "state", state, len) < 0 || state[0] == '\0')
				snprintf(state, len, "unknown");
			break;
		}
	}
out_reply:
	cli_reply_free(&r);
	return rc;
}

int primary_launch(const char *name)
{
	char launched[INSTANCE_NAME_MAX + 1] = "";
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_str(&pk, "name", name);
	proto_pack_kv_uint(&pk, "timeout", PRIMARY_LAUNCH_TIMEOUT);
	rc = cli_request("launch", &sb, PRIMARY_LAUNCH_TIMEOUT + CLI_BACKSTOP, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc == EXIT_OK) {
		proto_get_str(r.result, "name", launched, sizeof(launched));
		printf("Launched: %s\n", launched[0] != '\0' ? launched : name);
		fflush(stdout);
	}
	cli_reply_free(&r);
	if (rc == EXIT_OK)
		rc = primary_mount_home(name);
	return rc;
}

int primary_start(const char *name)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	proto_pack_str(&pk, "names");
	msgpack_pack_array(&pk, 1);
	proto_pack_str(&pk, name);
	proto_pack_kv_bool(&pk, "all", false);
	proto_pack_kv_uint(&pk, "timeout", PRIMARY_LAUNCH_TIMEOUT);
	rc = cli_request("start", &sb, PRIMARY_LAUNCH_TIMEOUT + CLI_BACKSTOP, &r);
	msgpack_sbuffer_destroy(&sb);
	cli_reply_free(&r);
	return rc;
}
