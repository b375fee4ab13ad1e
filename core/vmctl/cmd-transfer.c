/* vmctl transfer: copy files between the host and an instance. */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int transfer_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option transfer_options[] = {
	{ "recursive", 'r', NULL, 0, "Copy folders and everything in them." },
	{ "parents", 'p', NULL, 0, "Create the target's missing parent folders." },
	CMD_OPTION_WAIT(CLI_WAIT_DRIVER),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument transfer_arguments[] = {
	{ "SOURCE...", "Files to copy: host paths, or NAME:PATH in an instance. \"-\" reads "
		       "standard input (the only source then)." },
	{ "TARGET", "Where to copy to: NAME:PATH in an instance or a host path. \"-\" writes "
		    "to standard output. A PATH in an instance is relative to the default "
		    "user's home folder." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_transfer_entry = {
	.name = "transfer",
	.usage = "[options] SOURCE... TARGET",
	.summary = "Copy files between the host and an instance.",
	.help = "Copies in one direction per call: from the host into one instance, or from "
		"one instance to the host, over SSH (scp).\n\n"
		"    vmctl transfer notes.txt web:docs/\n"
		"    vmctl transfer -r web:/var/log/app ./logs\n"
		"    tar c src | vmctl transfer - web:src.tar",
	.options = transfer_options,
	.arguments = transfer_arguments,
	.min_args = 2,
	.max_args = -1,
	.wait = CLI_WAIT_DRIVER,
	.exec = transfer_exec,
};

/* The instance named by spec ("NAME:PATH"), copied into name. */
static bool transfer_instance(const char *spec, char *name, size_t len, const char **path)
{
	size_t name_len;

	if (strcmp(spec, "-") == 0 || !args_split_instance_path(spec, &name_len, path))
		return false;
	snprintf(name, len, "%.*s", (int)name_len, spec);
	return true;
}

/* ssh ... -- SHELL_COMMAND, run or exec'd. */
static int transfer_ssh(const struct ssh_target *t, const char *remote, bool replace)
{
	struct strvec argv;
	int rc;

	strvec_init(&argv);
	rc = ssh_push_options(&argv, "ssh", t);
	if (rc == 0)
		rc = ssh_push_destination(&argv, t, "", false);
	if (rc == 0)
		rc = strvec_push(&argv, "--");
	if (rc == 0)
		rc = strvec_push(&argv, remote);
	if (rc < 0)
		rc = cmd_error(EXIT_FAILED, "out of memory");
	else
		rc = replace ? ssh_exec(&argv) : ssh_run(&argv);
	strvec_free(&argv);
	return rc;
}

/* "mkdir -p DIR" for the guest side of --parents ("" when nothing is needed). */
static char *transfer_mkdir_command(const char *path)
{
	char *copy = strdup(path), *dir, *quoted, *cmd = NULL;
	size_t len = strlen(path);

	if (copy == NULL)
		return NULL;
	/* "docs/" names the folder itself; "docs/a.txt" its parent */
	dir = len > 0 && path[len - 1] == '/' ? copy : dirname(copy);
	if (dir[0] == '\0' || strcmp(dir, ".") == 0 || strcmp(dir, "/") == 0) {
		free(copy);
		return strdup("");
	}
	quoted = shell_quote(dir);
	if (quoted != NULL && asprintf(&cmd, "mkdir -p -- %s", quoted) < 0)
		cmd = NULL;
	free(quoted);
	free(copy);
	return cmd;
}

/* Every host source exists, and is a folder only with -r: said before
 * anything is copied or created in the instance. */
static int transfer_check_sources(const struct cmd_args *a, int nsrc)
{
	for (int i = 0; i < nsrc; i++) {
		struct stat st;

		if (strcmp(a->argv[i], "-") == 0)
			continue;
		if (stat(a->argv[i], &st) < 0)
			return cmd_error(EXIT_FAILED, "cannot copy %s: %s", a->argv[i], strerror(errno));
		if (S_ISDIR(st.st_mode) && !args_has(a, "recursive"))
			return cmd_error(EXIT_FAILED, "%s is a folder; copy folders with -r", a->argv[i]);
	}
	return EXIT_OK;
}

static int transfer_upload(const struct cmd_args *a, const struct ssh_target *t, int nsrc,
			   const char *path)
{
	bool parents = args_has(a, "parents");
	char *mkdir_cmd = NULL;
	struct strvec argv;
	int rc;

	rc = transfer_check_sources(a, nsrc);
	if (rc != EXIT_OK)
		return rc;
	if (parents) {
		mkdir_cmd = transfer_mkdir_command(path);
		if (mkdir_cmd == NULL)
			return cmd_error(EXIT_FAILED, "out of memory");
	}
	if (strcmp(a->argv[0], "-") == 0) {
		char *quoted = shell_quote(path), *remote = NULL;

		if (quoted != NULL &&
		    asprintf(&remote, "%s%scat > %s", mkdir_cmd != NULL ? mkdir_cmd : "",
			     mkdir_cmd != NULL && mkdir_cmd[0] != '\0' ? " && " : "", quoted) < 0)
			remote = NULL;
		free(quoted);
		free(mkdir_cmd);
		if (remote == NULL)
			return cmd_error(EXIT_FAILED, "out of memory");
		rc = transfer_ssh(t, remote, true);
		free(remote);
		return rc;
	}
	if (mkdir_cmd != NULL && mkdir_cmd[0] != '\0') {
		rc = transfer_ssh(t, mkdir_cmd, false);
		if (rc != EXIT_OK) {
			free(mkdir_cmd);
			return rc;
		}
	}
	free(mkdir_cmd);

	strvec_init(&argv);
	rc = ssh_push_options(&argv, "scp", t);
	if (rc == 0 && args_has(a, "recursive"))
		rc = strvec_push(&argv, "-r");
	if (rc == 0)
		rc = strvec_push(&argv, "--");
	for (int i = 0; rc == 0 && i < nsrc; i++)
		rc = strvec_push(&argv, a->argv[i]);
	if (rc == 0) {
		char *suffix = NULL;

		rc = asprintf(&suffix, ":%s", path) < 0 ? PROTO_E_NOMEM : 0;
		if (rc == 0)
			rc = ssh_push_destination(&argv, t, suffix, true);
		free(suffix);
	}
	rc = rc < 0 ? cmd_error(EXIT_FAILED, "out of memory") : ssh_exec(&argv);
	strvec_free(&argv);
	return rc;
}

static int transfer_download(const struct cmd_args *a, const struct ssh_target *t, int nsrc,
			     const char *target)
{
	struct strvec argv;
	int rc;

	if (strcmp(target, "-") == 0) {
		/* cat every source to our standard output, in order */
		struct strvec words;
		char *remote;

		strvec_init(&words);
		rc = strvec_push(&words, "cat");
		if (rc == 0)
			rc = strvec_push(&words, "--");
		for (int i = 0; rc == 0 && i < nsrc; i++) {
			const char *path = strchr(a->argv[i], ':') + 1;

			rc = strvec_push(&words, path[0] != '\0' ? path : ".");
		}
		remote = rc == 0 ? shell_join(words.v, (int)words.n) : NULL;
		strvec_free(&words);
		if (remote == NULL)
			return cmd_error(EXIT_FAILED, "out of memory");
		rc = transfer_ssh(t, remote, true);
		free(remote);
		return rc;
	}
	if (args_has(a, "parents")) {
		char *copy = strdup(target);
		size_t len = strlen(target);
		const char *dir;

		if (copy == NULL)
			return cmd_error(EXIT_FAILED, "out of memory");
		dir = len > 0 && target[len - 1] == '/' ? copy : dirname(copy);
		rc = mkdir_p(dir, 0755);
		if (rc < 0) {
			rc = cmd_error(EXIT_FAILED, "cannot create folder '%s': %s", dir,
				       proto_strerror(rc));
			free(copy);
			return rc;
		}
		free(copy);
	}

	strvec_init(&argv);
	rc = ssh_push_options(&argv, "scp", t);
	if (rc == 0 && args_has(a, "recursive"))
		rc = strvec_push(&argv, "-r");
	if (rc == 0)
		rc = strvec_push(&argv, "--");
	for (int i = 0; rc == 0 && i < nsrc; i++)
		rc = ssh_push_destination(&argv, t, strchr(a->argv[i], ':'), true);
	if (rc == 0)
		rc = strvec_push(&argv, target);
	rc = rc < 0 ? cmd_error(EXIT_FAILED, "out of memory") : ssh_exec(&argv);
	strvec_free(&argv);
	return rc;
}

static int transfer_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	int nsrc = a->argc - 1;
	const char *target = a->argv[nsrc], *target_path = NULL, *path;
	char instance[INSTANCE_NAME_MAX + 2] = "", name[INSTANCE_NAME_MAX + 2], err[256];
	bool to_guest = transfer_instance(target, instance, sizeof(instance), &target_path);
	struct ssh_target t;
	int rc;

	/* every NAME: first, whole (the copies below are cut to fit) */
	for (int i = 0; i <= nsrc; i++) {
		size_t len;

		if (strcmp(a->argv[i], "-") != 0 && args_split_instance_path(a->argv[i], &len, &path) &&
		    validate_instance_name_n(a->argv[i], len, err, sizeof(err)) < 0)
			return cmd_error(EXIT_USAGE, "%s", err);
	}
	for (int i = 0; i < nsrc; i++) {
		bool guest = transfer_instance(a->argv[i], name, sizeof(name), &path);

		if (strcmp(a->argv[i], "-") == 0 && (nsrc > 1 || !to_guest))
			return cmd_usage_error(self, "\"-\" (standard input) must be the only source, "
						     "copied into an instance");
		if (guest && to_guest)
			return cmd_usage_error(self, "copy between the host and an instance: both "
						     "'%s' and '%s' are in an instance",
					       a->argv[i], target);
		if (!guest && !to_guest && strcmp(a->argv[i], "-") != 0)
			return cmd_usage_error(self, "one side must be in an instance (NAME:PATH); "
						     "'%s' and '%s' are both host paths",
					       a->argv[i], target);
		if (guest && instance[0] != '\0' && strcmp(instance, name) != 0)
			return cmd_usage_error(self, "all sources must be in the same instance "
						     "('%s' and '%s' differ)",
					       instance, name);
		if (guest)
			snprintf(instance, sizeof(instance), "%s", name);
	}
	if (strcmp(a->argv[0], "-") == 0 && target_path[0] == '\0')
		return cmd_usage_error(self, "give the file to write standard input to: '%s:PATH'",
				       instance);
	if (strcmp(target, "-") == 0 && to_guest)
		return cmd_usage_error(self, "\"-\" cannot be a target here");
	if (validate_instance_name(instance, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);

	rc = ssh_target_get(instance, &t);
	if (rc != EXIT_OK)
		return rc;
	if (to_guest)
		rc = transfer_upload(a, &t, nsrc, target_path);
	else
		rc = transfer_download(a, &t, nsrc, target);
	ssh_target_free(&t);
	return rc;
}
