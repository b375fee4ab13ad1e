/*
 * Finding a VM again from its folder: the pid file check against the
 * process's own command line, the state from QMP, and the QMP client against
 * a small fake monitor.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "qhtest.h"

static char *dir;
static pid_t child;

static void setup(void)
{
	dir = qhtest_tmpdir();
}

static void teardown(void)
{
	if (child > 0) {
		/* The whole group: a fake qemu's sleep must not outlive the test. */
		kill(-child, SIGKILL);
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		child = 0;
	}
	qhtest_rmdir(dir);
}

TestSuite(vm, .init = setup, .fini = teardown);

static void write_file(const char *name, const char *text)
{
	char path[QH_PATH];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* A process whose command line holds "-pidfile PIDFILE", as qemu's does. */
static pid_t spawn_fake_qemu(const char *pidfile)
{
	pid_t pid = fork();

	if (pid == 0) {
		setpgid(0, 0);
		/* "; exit" keeps sh from exec'ing sleep and dropping its argv. */
		execl("/bin/sh", "sh", "-c", "sleep 30; exit 0", "-pidfile", pidfile, (char *)NULL);
		_exit(127);
	}
	/* Let exec happen before /proc/PID/cmdline is read. */
	usleep(200 * 1000);
	return pid;
}

Test(vm, no_pid_file_is_stopped)
{
	struct vmh_instance in = {.name = "a", .dir = dir};

	cr_expect_eq(qh_vm_pid(&in), 0);
	cr_expect_str_eq(proto_state_name(qh_vm_state(&in)), "stopped");
}

Test(vm, pid_of_a_process_that_is_not_this_vm_is_stopped)
{
	struct vmh_instance in = {.name = "a", .dir = dir};
	char text[32];

	/* Our own pid: alive, but not a qemu with this instance's pid file. */
	snprintf(text, sizeof(text), "%d\n", (int)getpid());
	write_file(QH_PIDFILE, text);
	cr_expect_eq(qh_vm_pid(&in), 0);
	write_file(QH_PIDFILE, "not a number\n");
	cr_expect_eq(qh_vm_pid(&in), 0);
}

Test(vm, live_process_with_this_pid_file_is_running)
{
	struct vmh_instance in = {.name = "a", .dir = dir};
	char pidfile[QH_PATH], text[32];

	qh_path(&in, QH_PIDFILE, pidfile, sizeof(pidfile));
	child = spawn_fake_qemu(pidfile);
	snprintf(text, sizeof(text), "%d\n", (int)child);
	write_file(QH_PIDFILE, text);
	cr_expect_eq(qh_vm_pid(&in), child);
	/* No monitor socket: alive is still running. */
	cr_expect_str_eq(proto_state_name(qh_vm_state(&in)), "running");

	kill(-child, SIGKILL);
	waitpid(child, NULL, 0);
	child = 0;
	cr_expect_eq(qh_vm_pid(&in), 0, "a dead VM's stale pid file means stopped");
	cr_expect_str_eq(proto_state_name(qh_vm_state(&in)), "stopped");
}

Test(vm, suspend_marker_without_process_is_suspended)
{
	struct vmh_instance in = {.name = "a", .dir = dir};

	write_file(PROTO_FILE_SUSPENDED, "2026-01-01T00:00:00Z\n");
	cr_expect_str_eq(proto_state_name(qh_vm_state(&in)), "suspended");
}

Test(vm, operation_in_progress_shows_its_state)
{
	struct vmh_instance in = {.name = "a", .dir = dir};

	char err[128];

	cr_assert_eq(vmh_busy_claim("a", PROTO_STATE_STARTING, err, sizeof(err)), 0);
	cr_expect_eq(vmh_busy_claim("a", PROTO_STATE_STOPPING, err, sizeof(err)), PROTO_E_BUSY);
	cr_expect_str_eq(proto_state_name(qh_vm_state(&in)), "starting");
	vmh_busy_release("a");
	cr_expect_str_eq(proto_state_name(qh_vm_state(&in)), "stopped");
}

Test(vm, ssh_port_file)
{
	struct vmh_instance in = {.name = "a", .dir = dir};

	cr_expect_eq(qh_vm_ssh_port(&in), 0);
	write_file(QH_SSH_PORT, "40022\n");
	cr_expect_eq(qh_vm_ssh_port(&in), 40022);
	write_file(QH_SSH_PORT, "99999\n");
	cr_expect_eq(qh_vm_ssh_port(&in), 0);
}

/* ---- QMP against a fake monitor ---- */

enum fake_mode { FAKE_STATUS, FAKE_ERROR, FAKE_SILENT };

/* Serve one client: greeting, then answer every command per mode. */
static pid_t spawn_fake_monitor(const char *sock, enum fake_mode mode, const char *status)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	pid_t pid;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	cr_assert(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(listen(lfd, 1) == 0);
	pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		int fd = accept(lfd, NULL, NULL);
		FILE *in = fdopen(fd, "r"), *out = fdopen(dup(fd), "w");
		char line[4096];

		if (mode == FAKE_SILENT) {
			sleep(30);
			_exit(0);
		}
		fprintf(out, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
		fflush(out);
		while (fgets(line, sizeof(line), in)) {
			if (strstr(line, "qmp_capabilities"))
				fprintf(out, "{\"return\": {}}\r\n");
			else if (mode == FAKE_ERROR)
				fprintf(out, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no way\"}}\r\n");
			else
				fprintf(out,
					"{\"event\": \"RESUME\", \"timestamp\": {}}\r\n"
					"{\"return\": {\"status\": \"%s\", \"running\": true}}\r\n",
					status);
			fflush(out);
		}
		_exit(0);
	}
	close(lfd);
	return pid;
}

Test(vm, qmp_answer_skips_events)
{
	char sock[QH_PATH], err[256] = "";
	json_t *ret = NULL;

	snprintf(sock, sizeof(sock), "%s/%s", dir, QH_QMP);
	child = spawn_fake_monitor(sock, FAKE_STATUS, "running");
	cr_assert_eq(qh_qmp(sock, "query-status", NULL, 2.0, &ret, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(json_string_value(json_object_get(ret, "status")), "running");
	json_decref(ret);
}

Test(vm, qmp_error_is_a_driver_error_with_qemus_words)
{
	char sock[QH_PATH], err[256] = "";

	snprintf(sock, sizeof(sock), "%s/%s", dir, QH_QMP);
	child = spawn_fake_monitor(sock, FAKE_ERROR, NULL);
	cr_expect_eq(qh_qmp(sock, "quit", NULL, 2.0, NULL, err, sizeof(err)), PROTO_E_DRIVER);
	cr_expect_str_eq(err, "no way");
}

Test(vm, silent_monitor_times_out)
{
	char sock[QH_PATH], err[256] = "";

	snprintf(sock, sizeof(sock), "%s/%s", dir, QH_QMP);
	child = spawn_fake_monitor(sock, FAKE_SILENT, NULL);
	cr_expect_eq(qh_qmp(sock, "query-status", NULL, 0.3, NULL, err, sizeof(err)), PROTO_E_TIMEOUT);
	cr_expect(strstr(err, "did not answer"), "%s", err);
}

Test(vm, no_monitor_is_unavailable)
{
	char sock[QH_PATH], err[256] = "";

	snprintf(sock, sizeof(sock), "%s/%s", dir, QH_QMP);
	cr_expect_eq(qh_qmp(sock, "query-status", NULL, 0.5, NULL, err, sizeof(err)),
		     PROTO_E_UNAVAILABLE);
}

Test(vm, paused_vm_reads_as_suspended)
{
	struct vmh_instance in = {.name = "a", .dir = dir};
	char pidfile[QH_PATH], sock[QH_PATH], text[32];
	pid_t monitor;

	qh_path(&in, QH_PIDFILE, pidfile, sizeof(pidfile));
	qh_path(&in, QH_QMP, sock, sizeof(sock));
	child = spawn_fake_qemu(pidfile);
	snprintf(text, sizeof(text), "%d\n", (int)child);
	write_file(QH_PIDFILE, text);
	monitor = spawn_fake_monitor(sock, FAKE_STATUS, "paused");
	cr_expect_str_eq(proto_state_name(qh_vm_state(&in)), "suspended");
	kill(monitor, SIGKILL);
	waitpid(monitor, NULL, 0);
}
