/*
 * The readiness login: what its remote command prints (run here by sh, as
 * a guest's login shell would) and how the broker reads that output.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "readiness.h"

/* A fake cloud-init in its own folder: it notes that it ran in DIR/ran and
 * exits with $FAKE_CI_STATUS, as `cloud-init status --wait` would. */
static void make_fake_cloud_init(const char *dir)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/cloud-init", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "#!/bin/sh\ntouch '%s/ran'\nexit \"$FAKE_CI_STATUS\"\n", dir);
	fclose(f);
	cr_assert_eq(chmod(path, 0755), 0);
}

static void write_text(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* Run the readiness command with shell, as a guest's login shell would,
 * with PATH=path and cloud-init's run folder run_dir; its output in buf. */
static int run_in(const char *shell, const char *path, const char *run_dir, int fake_status,
		  char *buf, size_t len)
{
	char env_path[600], env_run[600], env_status[64];
	char *envp[] = {env_path, env_run, env_status, NULL};
	int pipefd[2], status;
	size_t used = 0;
	ssize_t n;
	pid_t pid;

	snprintf(env_path, sizeof(env_path), "PATH=%s", path);
	snprintf(env_run, sizeof(env_run), "VMCTL_CLOUD_INIT_RUN=%s", run_dir);
	snprintf(env_status, sizeof(env_status), "FAKE_CI_STATUS=%d", fake_status);
	cr_assert_eq(pipe(pipefd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		close(pipefd[1]);
		execle(shell, shell, "-c", ready_cloud_init_cmd, (char *)NULL, envp);
		_exit(127);
	}
	close(pipefd[1]);
	while (used < len - 1 && (n = read(pipefd[0], buf + used, len - 1 - used)) > 0)
		used += (size_t)n;
	buf[used] = '\0';
	close(pipefd[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Guests' login shells: dash as /bin/sh, and bash. */
static const char *const shells[] = {"/bin/sh", "/bin/bash"};

static int run_cmd(const char *path, const char *run_dir, int fake_status, char *buf, size_t len)
{
	return run_in("/bin/sh", path, run_dir, fake_status, buf, len);
}

static char tmp[256];

static void make_tmp(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/vmctl-readiness.XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
}

static void remove_tmp(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	cr_assert_eq(system(cmd), 0);
}

static bool fake_ran(void)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/ran", tmp);
	return access(path, F_OK) == 0;
}

Test(broker_readiness, without_cloud_init_the_command_says_so)
{
	char out[512];
	int status = -1;

	/* No cloud-init to be found: only builtins work. */
	cr_assert_eq(run_cmd("/nonexistent", "/nonexistent", 0, out, sizeof(out)), 0, "output: %s", out);
	cr_assert(ready_output_up(out), "output: %s", out);
	cr_assert_eq(ready_output_cloud_init(out, &status), READY_CI_ABSENT, "output: %s", out);
}

Test(broker_readiness, cloud_init_installed_but_not_run_is_absent, .init = make_tmp,
     .fini = remove_tmp)
{
	char out[512], path[512], run[300];
	int status = -1;

	make_fake_cloud_init(tmp);
	snprintf(path, sizeof(path), "%s:/usr/bin:/bin", tmp);
	snprintf(run, sizeof(run), "%s/run", tmp); /* never made */
	cr_assert_eq(run_cmd(path, run, 0, out, sizeof(out)), 0, "output: %s", out);
	cr_assert_eq(ready_output_cloud_init(out, &status), READY_CI_ABSENT, "output: %s", out);
	cr_assert_not(fake_ran(), "status --wait would wait forever here");
}

Test(broker_readiness, finished_without_errors_needs_no_status_wait, .init = make_tmp,
     .fini = remove_tmp)
{
	char out[512], path[512], run[300];
	int status = -1;

	make_fake_cloud_init(tmp);
	snprintf(path, sizeof(path), "%s:/usr/bin:/bin", tmp);
	snprintf(run, sizeof(run), "%s/run", tmp);
	cr_assert_eq(mkdir(run, 0755), 0);
	/* As cloud-init writes them (indented), with every stage clean. */
	write_text(run, "status.json",
		   "{\n \"v1\": {\n  \"datasource\": \"DataSourceNoCloud\",\n  \"init\": {\n"
		   "   \"errors\": [],\n   \"finished\": 1.5,\n   \"start\": 1.0\n  },\n"
		   "  \"stage\": null\n }\n}\n");
	write_text(run, "result.json",
		   "{\n \"v1\": {\n  \"datasource\": \"DataSourceNoCloud\",\n  \"errors\": []\n }\n}\n");
	for (size_t i = 0; i < sizeof(shells) / sizeof(shells[0]); i++) {
		cr_assert_eq(run_in(shells[i], path, run, 1, out, sizeof(out)), 0, "%s: %s", shells[i],
			     out);
		cr_assert_eq(ready_output_cloud_init(out, &status), READY_CI_DONE, "%s: %s", shells[i],
			     out);
		cr_assert_eq(status, 0);
		cr_assert_not(fake_ran(), "%s asked cloud-init", shells[i]);
	}
}

Test(broker_readiness, errors_are_left_to_cloud_init_status, .init = make_tmp, .fini = remove_tmp)
{
	char out[512], path[512], run[300];
	int status = -1;

	make_fake_cloud_init(tmp);
	snprintf(path, sizeof(path), "%s:/usr/bin:/bin", tmp);
	snprintf(run, sizeof(run), "%s/run", tmp);
	cr_assert_eq(mkdir(run, 0755), 0);
	/* One line, as a minimal writer would: a clean stage beside a failed one. */
	write_text(run, "status.json",
		   "{\"v1\": {\"init\": {\"errors\": []}, \"modules-final\": {\"errors\": "
		   "[\"runcmd failed\"]}, \"stage\": null}}\n");
	write_text(run, "result.json", "{\"v1\": {\"errors\": [\"runcmd failed\"]}}\n");
	for (size_t i = 0; i < sizeof(shells) / sizeof(shells[0]); i++) {
		char ran[512];

		cr_assert_eq(run_in(shells[i], path, run, 1, out, sizeof(out)), 1, "%s: %s", shells[i],
			     out);
		cr_assert(fake_ran(), "%s did not ask cloud-init", shells[i]);
		cr_assert_eq(ready_output_cloud_init(out, &status), READY_CI_DONE, "%s: %s", shells[i],
			     out);
		cr_assert_eq(status, 1);
		snprintf(ran, sizeof(ran), "%s/ran", tmp);
		unlink(ran);
	}
}

Test(broker_readiness, a_running_cloud_init_is_waited_for, .init = make_tmp, .fini = remove_tmp)
{
	char out[512], path[512], run[300];
	int status = -1;

	make_fake_cloud_init(tmp);
	snprintf(path, sizeof(path), "%s:/usr/bin:/bin", tmp);
	snprintf(run, sizeof(run), "%s/run", tmp);
	cr_assert_eq(mkdir(run, 0755), 0);
	write_text(run, "status.json",
		   "{\n \"v1\": {\n  \"init\": {\n   \"errors\": []\n  },\n"
		   "  \"stage\": \"modules-final\"\n }\n}\n");
	cr_assert_eq(run_cmd(path, run, 0, out, sizeof(out)), 0, "output: %s", out);
	cr_assert(fake_ran());
	cr_assert_eq(ready_output_cloud_init(out, &status), READY_CI_DONE, "output: %s", out);
	cr_assert_eq(status, 0);
}

Test(broker_readiness, up_needs_the_whole_mark_line)
{
	cr_assert_not(ready_output_up(""));
	cr_assert_not(ready_output_up(NULL));
	cr_assert_not(ready_output_up("vmctl-ssh"));
	cr_assert_not(ready_output_up(READY_UP_MARK));
	cr_assert_not(ready_output_up("not-" READY_UP_MARK "\n"));
	cr_assert_not(ready_output_up(READY_UP_MARK "-more\n"));
	cr_assert(ready_output_up(READY_UP_MARK "\n"));
	cr_assert(ready_output_up(READY_UP_MARK "\r\n"));
	cr_assert(ready_output_up("Welcome to the guest\n" READY_UP_MARK "\nmore"));
}

Test(broker_readiness, cloud_init_status_is_read_from_its_line)
{
	int status = -1;

	cr_assert_eq(ready_output_cloud_init(READY_UP_MARK "\nvmctl-cloud-init: 0\n", &status),
		     READY_CI_DONE);
	cr_assert_eq(status, 0);
	cr_assert_eq(ready_output_cloud_init(READY_UP_MARK "\nstatus: error\nvmctl-cloud-init: 1\n",
					     &status),
		     READY_CI_DONE);
	cr_assert_eq(status, 1);
	cr_assert_eq(ready_output_cloud_init("vmctl-cloud-init: 2\r\n", &status), READY_CI_DONE);
	cr_assert_eq(status, 2);
	cr_assert_eq(ready_output_cloud_init("vmctl-cloud-init: none\n", &status), READY_CI_ABSENT);
}

Test(broker_readiness, a_missing_or_cut_verdict_is_unknown)
{
	int status = -1;

	cr_assert_eq(ready_output_cloud_init("", &status), READY_CI_UNKNOWN);
	cr_assert_eq(ready_output_cloud_init(READY_UP_MARK "\n", &status), READY_CI_UNKNOWN);
	/* The login was cut in the middle of the line. */
	cr_assert_eq(ready_output_cloud_init(READY_UP_MARK "\nvmctl-cloud-init: 1", &status),
		     READY_CI_UNKNOWN);
	cr_assert_eq(ready_output_cloud_init("vmctl-cloud-init: x\n", &status), READY_CI_UNKNOWN);
	cr_assert_eq(ready_output_cloud_init("vmctl-cloud-init: 999\n", &status), READY_CI_UNKNOWN);
	cr_assert_eq(ready_output_cloud_init("vmctl-cloud-init:\n", &status), READY_CI_UNKNOWN);
}
