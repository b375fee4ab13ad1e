/* vmctl exec: run a command in an instance over SSH, or through the
 * driver where the instance has no SSH. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

/* The longest a command without SSH may run (the broker's bound), and a margin. */
#define EXEC_WAIT (3600 + 120)

static int exec_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option exec_options[] = {
	{ "working-directory", 'd', "DIR", 0,
	  "Change to this folder in the instance before running the command." },
	CMD_OPTION_WAIT(CLI_WAIT_DRIVER),
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument exec_arguments[] = {
	{ "NAME", "The instance." },
	{ "COMMAND...", "The command and its arguments. Each argument reaches the guest as it "
			"was given (quoted for the guest's shell), spaces included." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_exec_entry = {
	.name = "exec",
	.usage = "[options] NAME [--] COMMAND [ARGUMENT...]",
	.summary = "Run a command in an instance.",
	.help = "Runs the command over SSH as the instance's default user. vmctl exits with "
		"the command's exit status (255 when SSH itself fails). Put \"--\" before a "
		"command that has options of its own.\n\n"
		"An instance whose SSH port refuses connections (an image without sshd) runs the "
		"command through the driver instead, where the driver can (lxd: LXD's exec API), "
		"as root: not interactive, its standard input read whole first when it is a file "
		"or a pipe (at most 1 MiB; none from a terminal), its output shown when it has "
		"ended (at most 1 MiB of each stream).\n\n"
		"    vmctl exec web -- ls -l /etc\n"
		"    vmctl exec web -- sh -c 'echo $HOME'",
	.options = exec_options,
	.arguments = exec_arguments,
	.min_args = 1,
	.max_args = 1,
	.flags = CMD_F_REST,
	.wait = CLI_WAIT_DRIVER,
	.exec = exec_exec,
};

static int exec_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	struct ssh_target t;
	struct strvec argv;
	char err[256];
	char *command;
	int rc;

	if (validate_instance_name(a->argv[0], err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	if (a->nrest == 0)
		return cmd_usage_error(self, "'exec' needs a command to run");
	rc = ssh_target_probe(a->argv[0], &t);
	if (rc != EXIT_OK)
		return rc;
	if (t.no_ssh) {
		ssh_target_free(&t);
		return exec_without_ssh(a->argv[0], a->rest, a->nrest,
					args_get(a, "working-directory"));
	}
	command = shell_join(a->rest, a->nrest);
	if (command != NULL && args_get(a, "working-directory") != NULL) {
		char *dir = shell_quote(args_get(a, "working-directory")), *in_dir = NULL;

		/* cd first, so the command never runs in the wrong folder */
		if (dir == NULL || asprintf(&in_dir, "cd %s && %s", dir, command) < 0)
			in_dir = NULL;
		free(dir);
		free(command);
		command = in_dir;
	}
	strvec_init(&argv);
	rc = command != NULL ? ssh_push_options(&argv, "ssh", &t) : PROTO_E_NOMEM;
	if (rc == 0)
		rc = ssh_push_destination(&argv, &t, "", false);
	if (rc == 0)
		rc = strvec_push(&argv, "--");
	if (rc == 0)
		rc = strvec_push(&argv, command);
	free(command);
	ssh_target_free(&t);
	rc = rc == 0 ? ssh_exec(&argv) : cmd_error(EXIT_FAILED, "out of memory");
	strvec_free(&argv);
	return rc;
}

/* The standard input to send: a file's or a pipe's, read whole; none from
 * a terminal or a device (/dev/null). *len 0 and *buf NULL for none. */
static int exec_read_stdin(char **buf, size_t *len, bool *given)
{
	struct stat st;
	size_t cap = 0;
	char *grown;
	ssize_t n;

	*buf = NULL;
	*len = 0;
	*given = false;
	if (isatty(STDIN_FILENO) || fstat(STDIN_FILENO, &st) < 0 ||
	    !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
		return EXIT_OK;
	*given = true;
	for (;;) {
		if (*len == cap) {
			cap = cap ? cap * 2 : 65536;
			if (cap > PROTO_EXEC_INPUT_MAX + 1)
				cap = PROTO_EXEC_INPUT_MAX + 1;
			grown = realloc(*buf, cap);
			if (!grown)
				return cmd_error(EXIT_FAILED, "out of memory");
			*buf = grown;
		}
		n = read(STDIN_FILENO, *buf + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cmd_error(EXIT_FAILED, "cannot read the standard input: %s",
					 strerror(errno));
		if (n == 0)
			return EXIT_OK;
		*len += (size_t)n;
		if (*len > PROTO_EXEC_INPUT_MAX)
			return cmd_error(EXIT_FAILED, "the standard input is larger than %u bytes, "
					 "which is what a command without SSH can be given",
					 PROTO_EXEC_INPUT_MAX);
	}
}

static void exec_write_all(int fd, const msgpack_object *o)
{
	const char *p;
	size_t left;

	if (!o || (o->type != MSGPACK_OBJECT_BIN && o->type != MSGPACK_OBJECT_STR))
		return;
	p = o->via.bin.ptr;
	left = o->via.bin.size;
	while (left > 0) {
		ssize_t n = write(fd, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		left -= (size_t)n;
	}
}

int exec_without_ssh(const char *name, char **argv, int argc, const char *cwd)
{
	static const char *const streams[2] = { "stdout", "stderr" };
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	char *input = NULL;
	size_t input_len = 0;
	bool has_input, cut;
	int64_t status = 255;
	int rc;

	rc = exec_read_stdin(&input, &input_len, &has_input);
	if (rc != EXIT_OK) {
		free(input);
		return rc;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2 + (cwd != NULL) + has_input);
	proto_pack_kv_str(&pk, "name", name);
	proto_pack_str(&pk, "argv");
	msgpack_pack_array(&pk, (uint32_t)argc);
	for (int i = 0; i < argc; i++)
		proto_pack_str(&pk, argv[i]);
	if (cwd)
		proto_pack_kv_str(&pk, "cwd", cwd);
	if (has_input) {
		proto_pack_str(&pk, "stdin");
		msgpack_pack_bin(&pk, input_len);
		msgpack_pack_bin_body(&pk, input ? input : "", input_len);
	}
	free(input);
	rc = cli_request("exec", &sb, EXEC_WAIT, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc != EXIT_OK)
		goto out_reply;
	proto_get_int(r.result, "status", &status);
	for (int i = 0; i < 2; i++) {
		char key[32];

		fflush(i == 0 ? stdout : stderr);
		exec_write_all(i == 0 ? STDOUT_FILENO : STDERR_FILENO, proto_map_get(r.result, streams[i]));
		snprintf(key, sizeof(key), "%s_truncated", streams[i]);
		if (proto_get_bool(r.result, key, &cut) == 0 && cut)
			fprintf(stderr, "vmctl: the command's %s was cut at %u bytes\n", streams[i],
				PROTO_EXEC_OUTPUT_MAX);
	}
	rc = status < 0 || status > 255 ? 255 : (int)status;
out_reply:
	cli_reply_free(&r);
	return rc;
}
