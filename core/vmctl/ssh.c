/*
 * exec, shell and transfer run the OpenSSH client (ssh, scp) against what
 * the broker's ssh_info says: one implementation for every driver, and the
 * user's own ssh does the terminal handling.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

void ssh_target_free(struct ssh_target *t)
{
	free(t->host);
	free(t->user);
	free(t->key);
	free(t->why);
	memset(t, 0, sizeof(*t));
}

static int ssh_target_ask(const char *name, bool probe, struct ssh_target *t)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	bool ssh = true;
	int rc;

	memset(t, 0, sizeof(*t));
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, probe ? 2 : 1);
	proto_pack_kv_str(&pk, "name", name);
	if (probe)
		proto_pack_kv_bool(&pk, "probe", true);
	rc = cli_request("ssh_info", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc != EXIT_OK)
		goto out_reply;
	t->host = proto_dup_str(r.result, "host");
	t->user = proto_dup_str(r.result, "user");
	t->key = proto_dup_str(r.result, "key");
	/* Absent (a broker or driver that cannot tell) means SSH. */
	if (proto_get_bool(r.result, "ssh", &ssh) == 0 && !ssh) {
		t->no_ssh = true;
		t->why = proto_dup_str(r.result, "why");
	}
	if (proto_get_uint(r.result, "port", &t->port) < 0)
		t->port = 22;
	if (t->host == NULL || t->user == NULL || t->key == NULL || t->port == 0 ||
	    t->port > 65535) {
		ssh_target_free(t);
		rc = cmd_error(EXIT_FAILED, "the broker's SSH details for '%s' are incomplete",
			       name);
	}
out_reply:
	cli_reply_free(&r);
	return rc;
}

int ssh_target_get(const char *name, struct ssh_target *t)
{
	return ssh_target_ask(name, false, t);
}

int ssh_target_probe(const char *name, struct ssh_target *t)
{
	return ssh_target_ask(name, true, t);
}

int ssh_push_options(struct strvec *argv, const char *program, const struct ssh_target *t)
{
	static const char *const options[] = {
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR",		  "-o", "BatchMode=yes",
	};
	int rc = strvec_push(argv, program);

	if (rc == 0)
		rc = strvec_push(argv, "-i");
	if (rc == 0)
		rc = strvec_push(argv, t->key);
	if (rc == 0)
		rc = strvec_push(argv, strcmp(program, "scp") == 0 ? "-P" : "-p");
	if (rc == 0)
		rc = strvec_pushf(argv, "%u", (unsigned)t->port);
	for (size_t i = 0; rc == 0 && i < sizeof(options) / sizeof(options[0]); i++)
		rc = strvec_push(argv, options[i]);
	return rc;
}

int ssh_push_destination(struct strvec *argv, const struct ssh_target *t, const char *suffix,
			 bool bracket)
{
	bool v6 = strchr(t->host, ':') != NULL;

	if (bracket && v6)
		return strvec_pushf(argv, "%s@[%s]%s", t->user, t->host, suffix);
	return strvec_pushf(argv, "%s@%s%s", t->user, t->host, suffix);
}

int ssh_exec(struct strvec *argv)
{
	cli_disconnect();
	fflush(stdout);
	fflush(stderr);
	/* ignored signals survive exec: give ssh the default back */
	signal(SIGPIPE, SIG_DFL);
	execvp(argv->v[0], argv->v);
	return cmd_error(EXIT_FAILED, "cannot run %s: %s (is the OpenSSH client installed?)",
			 argv->v[0], strerror(errno));
}

int ssh_run(struct strvec *argv)
{
	pid_t pid;
	int status;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return cmd_error(EXIT_FAILED, "cannot start %s: %s", argv->v[0], strerror(errno));
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		execvp(argv->v[0], argv->v);
		fprintf(stderr, "vmctl: cannot run %s: %s (is the OpenSSH client installed?)\n",
			argv->v[0], strerror(errno));
		_exit(EXIT_FAILED);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return cmd_error(EXIT_FAILED, "lost track of %s: %s", argv->v[0],
					 strerror(errno));
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}
