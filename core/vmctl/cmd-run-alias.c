/* vmctl run-alias: what an alias's script runs (hidden). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int run_alias_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option run_alias_options[] = {
	CMD_OPTION_WAIT(CLI_WAIT_DRIVER),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument run_alias_arguments[] = {
	{ "NAME", "The alias." },
	{ "ARGUMENT...", "Passed on to the alias's command." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_run_alias_entry = {
	.name = "run-alias",
	.usage = "NAME [--] [ARGUMENT...]",
	.summary = "Run an alias (what an alias's script does).",
	.help = "Runs the command of the alias NAME of the current context in its instance, "
		"as 'vmctl exec' does, with the arguments given. When the alias maps the "
		"working directory and the current folder is (under) the source of one of the "
		"instance's mounts, the command runs in the matching folder of the instance.",
	.options = run_alias_options,
	.arguments = run_alias_arguments,
	.min_args = 1,
	.max_args = 1,
	.flags = CMD_F_REST | CMD_F_HIDDEN,
	.wait = CLI_WAIT_DRIVER,
	.exec = run_alias_exec,
};

/* The instance's folder for the host folder cwd, from info's mounts; NULL
 * when no mount holds it. */
static char *run_alias_map(const char *instance, const char *cwd)
{
	const msgpack_object *list, *mounts;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	char *mapped = NULL;
	size_t best = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_pack_str(&pk, "names");
	msgpack_pack_array(&pk, 1);
	proto_pack_str(&pk, instance);
	proto_pack_kv_bool(&pk, "all", false);
	if (cli_request("info", &sb, 0, &r) != EXIT_OK)
		goto out_free;
	list = proto_map_get(r.result, "instances");
	if (list == NULL || list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size == 0)
		goto out_free;
	mounts = proto_map_get(&list->via.array.ptr[0], "mounts");
	for (uint32_t i = 0; mounts != NULL && mounts->type == MSGPACK_OBJECT_ARRAY &&
			     i < mounts->via.array.size;
	     i++) {
		char source[PATH_MAX], target[PATH_MAX];
		size_t n;

		if (proto_get_str(&mounts->via.array.ptr[i], "source", source, sizeof(source)) < 0 ||
		    proto_get_str(&mounts->via.array.ptr[i], "target", target, sizeof(target)) < 0)
			continue;
		n = strlen(source);
		while (n > 1 && source[n - 1] == '/')
			source[--n] = '\0';
		/* the deepest mount holding cwd wins */
		if (n <= best || strncmp(cwd, source, n) != 0 || (cwd[n] != '\0' && cwd[n] != '/'))
			continue;
		free(mapped);
		if (asprintf(&mapped, "%s%s", target, cwd + (n == 1 ? 0 : n)) < 0)
			mapped = NULL;
		best = n;
	}
out_free:
	msgpack_sbuffer_destroy(&sb);
	cli_reply_free(&r);
	return mapped;
}

static int run_alias_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *name = a->argv[0];
	struct alias_store s;
	json_t *def;
	const char *instance, *command, *wd;
	char err[512], cwd[PATH_MAX];
	char *mapped = NULL;
	struct strvec argv;
	int rc;

	if (alias_store_load(&s, err, sizeof(err)) < 0)
		return cmd_error(EXIT_FAILED, "%s", err);
	def = json_object_get(alias_context(&s, alias_active_context(&s)), name);
	instance = json_string_value(json_object_get(def, "instance"));
	command = json_string_value(json_object_get(def, "command"));
	wd = json_string_value(json_object_get(def, "working-directory"));
	if (instance == NULL || command == NULL) {
		rc = cmd_error(EXIT_USAGE, "there is no alias %s in the context %s%s", name,
			       alias_active_context(&s),
			       alias_name_used(&s, name) ? " (another context has it: see 'vmctl "
							   "aliases' and 'vmctl prefer')"
							 : "");
		alias_store_free(&s);
		return rc;
	}
	if (wd == NULL || strcmp(wd, "default") != 0) {
		if (getcwd(cwd, sizeof(cwd)) != NULL)
			mapped = run_alias_map(instance, cwd);
	}
	strvec_init(&argv);
	rc = strvec_push(&argv, "vmctl");
	if (rc == 0)
		rc = strvec_push(&argv, "exec");
	if (rc == 0 && mapped != NULL)
		rc = strvec_pushf(&argv, "--working-directory=%s", mapped);
	if (rc == 0)
		rc = strvec_push(&argv, instance);
	if (rc == 0)
		rc = strvec_push(&argv, "--");
	if (rc == 0)
		rc = strvec_push(&argv, command);
	for (int i = 0; rc == 0 && i < a->nrest; i++)
		rc = strvec_push(&argv, a->rest[i]);
	free(mapped);
	alias_store_free(&s);
	/* The same path as 'vmctl exec': its checks, its exit status. */
	rc = rc == 0 ? cmd_main((int)argv.n, argv.v) : cmd_error(EXIT_FAILED, "out of memory");
	strvec_free(&argv);
	return rc;
}
