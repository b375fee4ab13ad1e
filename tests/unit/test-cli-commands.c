/*
 * The vmctl binary as a user runs it: local argument checks (with no broker
 * at all, so a check that wrongly lets a bad argument through shows up as
 * exit status 3 instead of 2), and whole commands against a small fake
 * broker speaking the real protocol on $VMCTL_DATA/vmctld.sock.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pwd.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <ev.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static char data[] = "/tmp/vmctl-cli-test-XXXXXX";
static char bin[sizeof(data) + 8];
static pid_t broker_pid = -1;
static pid_t sshd_pid = -1;
static bool fake_ssh = true; /* put the fake ssh and scp first on PATH */
static const char *vmctl_bin = VMCTL_BIN;
static bool autostart = false;

/* What the fake broker's ssh_info answers. */
static struct {
	unsigned port;
	char user[64];
	char key[256];
} ssh_info = { 2222, "ubuntu", "/keys/id" };

/* What the fake broker's get answers for client.primary-name. */
static const char *primary_setting = "primary";
/* ...and for client.primary-home-mount */
static const char *home_mount_setting = "true";

struct run {
	int status;
	char out[16384];
	char err[16384];
};

static void read_all(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;

	buf[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
	unlink(path);
}

/* Run vmctl with the given words; stdin from stdin_text (or /dev/null). */
static void run_stdin(struct run *r, const char *stdin_text, const char *const *words)
{
	char out_path[128], err_path[128], in_path[128];
	char *argv[64];
	pid_t pid;
	int n = 0, status;

	snprintf(out_path, sizeof(out_path), "%s/out.txt", data);
	snprintf(err_path, sizeof(err_path), "%s/err.txt", data);
	snprintf(in_path, sizeof(in_path), "%s/in.txt", data);
	if (stdin_text != NULL) {
		FILE *f = fopen(in_path, "w");

		cr_assert_not_null(f);
		fputs(stdin_text, f);
		fclose(f);
	}
	argv[n++] = (char *)vmctl_bin;
	for (; words[n - 1] != NULL; n++)
		argv[n] = (char *)words[n - 1];
	argv[n] = NULL;
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int in = open(stdin_text != NULL ? in_path : "/dev/null", O_RDONLY);
		int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		char path[4096];

		dup2(in, 0);
		dup2(out, 1);
		dup2(err, 2);
		if (chdir(data) < 0)
			_exit(125);
		setenv("VMCTL_DATA", data, 1);
		if (autostart)
			unsetenv("VMCTL_NO_AUTOSTART");
		else
			setenv("VMCTL_NO_AUTOSTART", "1", 1);
		/* the fake ssh and scp come first */
		if (fake_ssh) {
			snprintf(path, sizeof(path), "%s:%s", bin, getenv("PATH"));
			setenv("PATH", path, 1);
		}
		execv(vmctl_bin, argv);
		_exit(126);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "vmctl died by signal %d", WTERMSIG(status));
	r->status = WEXITSTATUS(status);
	read_all(out_path, r->out, sizeof(r->out));
	read_all(err_path, r->err, sizeof(r->err));
	if (stdin_text != NULL)
		unlink(in_path);
}

#define RUN(r, ...) run_stdin(r, NULL, (const char *const[]){ __VA_ARGS__, NULL })
#define RUN_STDIN(r, in, ...) run_stdin(r, in, (const char *const[]){ __VA_ARGS__, NULL })

#define assert_contains(hay, needle) \
	cr_assert(strstr(hay, needle) != NULL, "expected '%s' in:\n%s", needle, hay)

static void write_file(const char *name, const char *text, mode_t mode)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", data, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

/* ---- the fake broker ---- */

static void broker_reply_map(struct proto_conn *c, uint64_t msgid, msgpack_sbuffer *sb)
{
	proto_reply_sb(c, msgid, 0, NULL, sb);
	msgpack_sbuffer_destroy(sb);
}

/* Unknown methods fail with the params as the message, so a test sees
 * exactly what the CLI sent. */
static void broker_echo(struct proto_conn *c, uint64_t msgid, const char *method,
			const msgpack_object *params, int err)
{
	char text[2048];

	msgpack_object_print_buffer(text, sizeof(text), *params);
	{
		char msg[2200];

		snprintf(msg, sizeof(msg), "%s %s", method, text);
		proto_reply(c, msgid, err, msg, NULL, 0);
	}
}

/* The fake broker answers list as for an empty scope (set before broker_start). */
static bool fake_scope_empty;

static void broker_request(struct proto_conn *c, void *ud, uint64_t msgid, const char *method,
			   const msgpack_object *params)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char name[64] = "";

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	proto_get_str(params, "name", name, sizeof(name));
	if (strcmp(method, "list") == 0 && fake_scope_empty) {
		/* The active scope lxd is empty; two other scopes are not. */
		msgpack_pack_map(&pk, 4);
		proto_pack_kv_str(&pk, "scope", "lxd");
		proto_pack_kv_str(&pk, "driver", "lxd");
		proto_pack_str(&pk, "other_scopes");
		msgpack_pack_array(&pk, 2);
		msgpack_pack_map(&pk, 3);
		proto_pack_kv_str(&pk, "scope", "qemu");
		proto_pack_kv_str(&pk, "driver", "libvirt");
		proto_pack_kv_uint(&pk, "instances", 3);
		msgpack_pack_map(&pk, 3);
		proto_pack_kv_str(&pk, "scope", "stub");
		proto_pack_kv_str(&pk, "driver", "stub");
		proto_pack_kv_uint(&pk, "instances", 1);
		proto_pack_str(&pk, "instances");
		msgpack_pack_array(&pk, 0);
		broker_reply_map(c, msgid, &sb);
	} else if (strcmp(method, "list") == 0) {
		bool all_scopes = false;

		proto_get_bool(params, "all_scopes", &all_scopes);
		msgpack_pack_map(&pk, 1);
		proto_pack_str(&pk, "instances");
		msgpack_pack_array(&pk, all_scopes ? 2 : 1);
		msgpack_pack_map(&pk, all_scopes ? 7 : 6);
		proto_pack_kv_str(&pk, "name", "web");
		proto_pack_kv_str(&pk, "state", "running");
		proto_pack_kv_str(&pk, "reason", "");
		proto_pack_str(&pk, "ipv4");
		msgpack_pack_array(&pk, 1);
		proto_pack_str(&pk, "10.1.2.3");
		proto_pack_kv_str(&pk, "image", "Debian 12");
		proto_pack_kv_str(&pk, "scope", "qemu");
		if (all_scopes) {
			proto_pack_kv_str(&pk, "driver", "libvirt");
			msgpack_pack_map(&pk, 7);
			proto_pack_kv_str(&pk, "name", "box");
			proto_pack_kv_str(&pk, "state", "unknown");
			proto_pack_kv_str(&pk, "reason", "LXD has no instance box (deleted outside vmctl?)");
			proto_pack_str(&pk, "ipv4");
			msgpack_pack_nil(&pk);
			proto_pack_kv_str(&pk, "image", "busybox");
			proto_pack_kv_str(&pk, "scope", "lxd");
			proto_pack_kv_str(&pk, "driver", "lxd");
		}
		broker_reply_map(c, msgid, &sb);
	} else if (strcmp(method, "launch") == 0 && strcmp(name, "download") == 0) {
		for (int i = 0; i <= 20; i++) {
			msgpack_sbuffer nb;
			msgpack_packer np;
			char text[64];

			snprintf(text, sizeof(text), "Downloading %d.0MiB/s", i);
			msgpack_sbuffer_init(&nb);
			msgpack_packer_init(&np, &nb, msgpack_sbuffer_write);
			msgpack_pack_map(&np, 2);
			proto_pack_kv_str(&np, "text", text);
			proto_pack_kv_double(&np, "fraction", i / 20.0);
			proto_notify_sb(c, "progress", &nb);
			msgpack_sbuffer_destroy(&nb);
		}
		msgpack_pack_map(&pk, 1);
		proto_pack_kv_str(&pk, "name", name);
		broker_reply_map(c, msgid, &sb);
	} else if (strcmp(method, "launch") == 0) {
		for (int i = 0; i <= 4; i++) {
			msgpack_sbuffer nb;
			msgpack_packer np;

			msgpack_sbuffer_init(&nb);
			msgpack_packer_init(&np, &nb, msgpack_sbuffer_write);
			msgpack_pack_map(&np, 2);
			proto_pack_kv_str(&np, "text", i < 4 ? "Starting" : "Waiting for SSH");
			proto_pack_kv_double(&np, "fraction", i < 4 ? i / 4.0 : -1);
			proto_notify_sb(c, "progress", &nb);
			msgpack_sbuffer_destroy(&nb);
		}
		if (strcmp(name, "slow") == 0) {
			proto_reply(c, msgid, PROTO_E_TIMEOUT, "'slow' did not answer within 300 s",
				    NULL, 0);
			msgpack_sbuffer_destroy(&sb);
			return;
		}
		if (strcmp(name, "echo") == 0) {
			broker_echo(c, msgid, method, params, PROTO_E_ALREADY_EXISTS);
			msgpack_sbuffer_destroy(&sb);
			return;
		}
		msgpack_pack_map(&pk, 1);
		proto_pack_kv_str(&pk, "name", name[0] != '\0' ? name : "keen-owl");
		broker_reply_map(c, msgid, &sb);
	} else if (strcmp(method, "ssh_info") == 0 && strcmp(name, "nossh") == 0) {
		bool probe = false;

		/* Only a client that asks is told that SSH is not up. */
		proto_get_bool(params, "probe", &probe);
		msgpack_pack_map(&pk, probe ? 6 : 4);
		proto_pack_kv_str(&pk, "host", "127.0.0.1");
		proto_pack_kv_uint(&pk, "port", 1);
		proto_pack_kv_str(&pk, "user", "ubuntu");
		proto_pack_kv_str(&pk, "key", "/keys/id");
		if (probe) {
			proto_pack_kv_bool(&pk, "ssh", false);
			proto_pack_kv_str(&pk, "why", "port 1 of 127.0.0.1 refuses connections");
		}
		broker_reply_map(c, msgid, &sb);
	} else if (strcmp(method, "exec") == 0) {
		/* stdout: the words and the folder; stderr: the stdin given. */
		const msgpack_object *argv = proto_map_get(params, "argv");
		const msgpack_object *in = proto_map_get(params, "stdin");
		char out[1024] = "", cwd[256] = "";

		for (uint32_t i = 0; argv && argv->type == MSGPACK_OBJECT_ARRAY && i < argv->via.array.size; i++)
			snprintf(out + strlen(out), sizeof(out) - strlen(out), "%.*s|",
				 (int)argv->via.array.ptr[i].via.str.size, argv->via.array.ptr[i].via.str.ptr);
		proto_get_str(params, "cwd", cwd, sizeof(cwd));
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "cwd=%s\n", cwd);
		msgpack_pack_map(&pk, 5);
		proto_pack_kv_int(&pk, "status", 3);
		proto_pack_str(&pk, "stdout");
		msgpack_pack_bin(&pk, strlen(out));
		msgpack_pack_bin_body(&pk, out, strlen(out));
		proto_pack_str(&pk, "stderr");
		if (in && in->type == MSGPACK_OBJECT_BIN) {
			msgpack_pack_bin(&pk, in->via.bin.size);
			msgpack_pack_bin_body(&pk, in->via.bin.ptr, in->via.bin.size);
		} else {
			msgpack_pack_bin(&pk, 8);
			msgpack_pack_bin_body(&pk, "no stdin", 8);
		}
		proto_pack_kv_bool(&pk, "stdout_truncated", false);
		proto_pack_kv_bool(&pk, "stderr_truncated", true);
		broker_reply_map(c, msgid, &sb);
	} else if (strcmp(method, "ssh_info") == 0) {
		msgpack_pack_map(&pk, 4);
		proto_pack_kv_str(&pk, "host", "127.0.0.1");
		proto_pack_kv_uint(&pk, "port", ssh_info.port);
		proto_pack_kv_str(&pk, "user", ssh_info.user);
		proto_pack_kv_str(&pk, "key", ssh_info.key);
		broker_reply_map(c, msgid, &sb);
	} else if (strcmp(method, "get") == 0) {
		char key[64] = "";

		proto_get_str(params, "key", key, sizeof(key));
		msgpack_pack_map(&pk, 1);
		proto_pack_kv_str(&pk, "value",
				  strcmp(key, "client.primary-name") == 0	 ? primary_setting
				  : strcmp(key, "client.primary-home-mount") == 0 ? home_mount_setting
										  : "");
		broker_reply_map(c, msgid, &sb);
	} else if (strcmp(method, "info") == 0 && proto_map_get(params, "names") != NULL &&
		   proto_map_get(params, "names")->type == MSGPACK_OBJECT_ARRAY &&
		   proto_map_get(params, "names")->via.array.size == 1 &&
		   proto_obj_streq(&proto_map_get(params, "names")->via.array.ptr[0], "web")) {
		/* web has the test's folder mounted at /srv/proj */
		msgpack_pack_map(&pk, 1);
		proto_pack_str(&pk, "instances");
		msgpack_pack_array(&pk, 1);
		msgpack_pack_map(&pk, 2);
		proto_pack_kv_str(&pk, "name", "web");
		proto_pack_str(&pk, "mounts");
		msgpack_pack_array(&pk, 1);
		msgpack_pack_map(&pk, 2);
		proto_pack_kv_str(&pk, "source", data);
		proto_pack_kv_str(&pk, "target", "/srv/proj");
		broker_reply_map(c, msgid, &sb);
	} else if (strcmp(method, "snapshots") == 0) {
		static const char *const snaps[][4] = {
			{ "web", "snapshot1", "", "" },
			{ "web", "before-upgrade", "snapshot1", "pre 2.0, \"tested\"" },
			{ "db", "nightly", "", "" },
		};

		msgpack_pack_map(&pk, 1);
		proto_pack_str(&pk, "snapshots");
		msgpack_pack_array(&pk, 3);
		for (size_t i = 0; i < 3; i++) {
			msgpack_pack_map(&pk, 5);
			proto_pack_kv_str(&pk, "instance", snaps[i][0]);
			proto_pack_kv_str(&pk, "name", snaps[i][1]);
			proto_pack_kv_str(&pk, "parent", snaps[i][2]);
			proto_pack_kv_str(&pk, "comment", snaps[i][3]);
			proto_pack_kv_str(&pk, "created", "2026-11-27T10:00:00Z");
		}
		broker_reply_map(c, msgid, &sb);
	} else if (strcmp(method, "purge") == 0) {
		/* a broker that dies while working */
		msgpack_sbuffer_destroy(&sb);
		proto_conn_close(c, PROTO_E_IO, "gone");
	} else if (strcmp(method, "version") == 0) {
		msgpack_pack_map(&pk, 4);
		proto_pack_kv_str(&pk, "vmctld", "9.9.9");
		proto_pack_kv_str(&pk, "driver", "qemu");
		proto_pack_kv_str(&pk, "helper_version", "1.2.3");
		proto_pack_kv_int(&pk, "protocol", 1);
		broker_reply_map(c, msgid, &sb);
	} else {
		/* the error code chosen by the instance name, to test exit codes */
		int err = PROTO_E_NOT_FOUND;
		const msgpack_object *names = proto_map_get(params, "names");

		if (names != NULL && names->type == MSGPACK_OBJECT_ARRAY && names->via.array.size > 0)
			proto_obj_str(&names->via.array.ptr[0], name, sizeof(name));
		if (strcmp(name, "hang") == 0) {
			/* a request the broker never answers (it still answers others) */
			msgpack_sbuffer_destroy(&sb);
			return;
		}
		if (strcmp(name, "timeout") == 0)
			err = PROTO_E_TIMEOUT;
		else if (strcmp(name, "invalid") == 0)
			err = PROTO_E_INVALID_ARGUMENT;
		msgpack_sbuffer_destroy(&sb);
		broker_echo(c, msgid, method, params, err);
	}
}

static void broker_closed(struct proto_conn *c, void *ud, int err, const char *why)
{
	proto_conn_free(c);
}

static const struct proto_conn_ops broker_ops = {
	.request = broker_request,
	.closed = broker_closed,
};

static void broker_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	int fd = accept(w->fd, NULL, NULL);

	if (fd >= 0 && proto_conn_new(loop, fd, fd, &broker_ops, NULL) == NULL)
		close(fd);
}

static void broker_start_at(const char *socket_name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", data, socket_name);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 8), 0);
	broker_pid = fork();
	cr_assert_neq(broker_pid, -1);
	if (broker_pid == 0) {
		struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
		ev_io w;

		ev_io_init(&w, broker_accept, fd, EV_READ);
		ev_io_start(loop, &w);
		ev_run(loop, 0);
		_exit(0);
	}
	close(fd);
}

static void broker_start(void)
{
	broker_start_at("vmctld.sock");
}

static void setup(void)
{
	cr_assert_not_null(mkdtemp(data));
	snprintf(bin, sizeof(bin), "%s/bin", data);
	cr_assert_eq(mkdir(bin, 0700), 0);
	/* "ssh"/"scp" that show their arguments and run the remote command here */
	write_file("bin/ssh",
		   "#!/bin/sh\n"
		   "for a in \"$@\"; do printf '<%s>\\n' \"$a\" >&2; done\n"
		   "for last in \"$@\"; do :; done\n"
		   "exec sh -c \"$last\"\n",
		   0755);
	write_file("bin/scp", "#!/bin/sh\nfor a in \"$@\"; do printf '<%s>\\n' \"$a\"; done\n",
		   0755);
}

static void teardown(void)
{
	if (sshd_pid > 0) {
		kill(sshd_pid, SIGTERM);
		waitpid(sshd_pid, NULL, 0);
	}
	if (broker_pid > 0) {
		kill(broker_pid, SIGKILL);
		waitpid(broker_pid, NULL, 0);
	}
	remove_tree(data);
}

TestSuite(cli_local, .init = setup, .fini = teardown, .timeout = 30);
TestSuite(cli_ssh, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(cli_broker, .init = setup, .fini = teardown, .timeout = 30);

/* ---- local checks: no broker is running ---- */

Test(cli_local, no_command_prints_usage)
{
	struct run r;

	RUN(&r, "--help");
	cr_assert_eq(r.status, 0);
	assert_contains(r.out, "Usage: vmctl COMMAND");
	run_stdin(&r, NULL, (const char *const[]){ NULL });
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "Commands:");
}

Test(cli_local, unknown_command_is_named)
{
	struct run r;

	RUN(&r, "frobnicate", "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "vmctl: unknown command 'frobnicate'");
	assert_contains(r.err, "Usage: vmctl COMMAND");
}

Test(cli_local, mistyped_command_gets_a_suggestion)
{
	struct run r;

	RUN(&r, "lauch", "--name", "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "vmctl: unknown command 'lauch'\nDid you mean 'vmctl launch'?\n");
}

Test(cli_local, unknown_option_is_named_with_usage)
{
	struct run r;

	RUN(&r, "launch", "--colour", "blue");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "vmctl: unknown option '--colour' for 'launch'");
	assert_contains(r.err, "Usage: vmctl launch [options] [IMAGE]");
}

Test(cli_local, command_help_and_help_command_agree)
{
	struct run a, b;

	RUN(&a, "stop", "--help");
	RUN(&b, "help", "stop");
	cr_assert_eq(a.status, 0);
	cr_assert_eq(b.status, 0);
	cr_assert_str_eq(a.out, b.out);
	assert_contains(a.out, "--force");
	RUN(&a, "help", "frob");
	cr_assert_eq(a.status, 2);
	assert_contains(a.err, "unknown command 'frob'");
}

Test(cli_local, launch_refuses_bad_name)
{
	struct run r;

	RUN(&r, "launch", "--name", "Web_1");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "Web_1");
}

Test(cli_local, launch_refuses_small_memory_and_disk)
{
	struct run r;

	RUN(&r, "launch", "-m", "256M");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "vmctl: memory size '256M' is below the minimum of 512.0MiB");
	RUN(&r, "launch", "--disk=512M");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "vmctl: disk size '512M' is below the minimum of 1.0GiB");
	RUN(&r, "launch", "--memory", "lots");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "--memory");
	assert_contains(r.err, "lots");
}

Test(cli_local, launch_refuses_bad_cpus_and_timeout)
{
	struct run r;

	RUN(&r, "launch", "--cpus", "two");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "--cpus must be a whole number, not 'two'");
	RUN(&r, "launch", "--timeout", "0");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "--timeout must be between 1");
}

Test(cli_local, launch_refuses_unreadable_cloud_init)
{
	struct run r;

	RUN(&r, "launch", "--cloud-init", "/nonexistent/user-data");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err,
			"cannot read cloud-init file '/nonexistent/user-data': No such file or directory");
}

Test(cli_local, launch_refuses_invalid_cloud_init)
{
	char path[256];
	struct run r;

	write_file("bad.yaml", "#cloud-config\npackages: [vim\n", 0644);
	snprintf(path, sizeof(path), "%s/bad.yaml", data);
	RUN(&r, "launch", "--cloud-init", path);
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "cloud-init file '");
	assert_contains(r.err, "line");
}

Test(cli_local, launch_refuses_missing_image_file)
{
	struct run r;

	RUN(&r, "launch", "/nonexistent/disk.qcow2");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "vmctl: cannot use image '/nonexistent/disk.qcow2': No such file or "
			       "directory\n");
	RUN(&r, "launch", "file:///nonexistent/disk.img");
	cr_assert_eq(r.status, 2);
	RUN(&r, "launch", "./");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "not a regular file");
}

Test(cli_local, launch_refuses_bad_network_specs)
{
	struct run r;

	RUN(&r, "launch", "--network", "name=br0,mode=dhcp");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "--network 'name=br0,mode=dhcp': mode must be auto or manual, not 'dhcp'");
	RUN(&r, "launch", "--network", "br0", "--network", "name=br0,mac=52:54:00:12:34");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "'52:54:00:12:34' is not a unicast MAC address like 52:54:00:12:34:56");
	RUN(&r, "launch", "--network", "name=br0,mac=03:00:00:00:00:01");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "is not a unicast MAC address");
	RUN(&r, "launch", "--network", "mode=auto,mac=52:54:00:12:34:56");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "name= is missing");
	RUN(&r, "launch", "--network", "name=br0,vlan=7");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "unknown key 'vlan' (keys: name, mode, mac)");
	RUN(&r, "launch", "--network", "name=br0,mode");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "'mode' is not KEY=VALUE");
	RUN(&r, "launch", "--network", "");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "--network needs a network name");
	RUN(&r, "launch", "--network", "bridge-with-a-long-name");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "a network name has at most 15 characters");
}

Test(cli_local, valid_launch_without_broker_exits_3)
{
	struct run r;

	RUN(&r, "launch", "-n", "web", "-m", "2G", "-d", "10G", "-c", "2");
	cr_assert_eq(r.status, 3);
	assert_contains(r.err, "vmctl: cannot reach the broker at ");
	assert_contains(r.err, "/vmctld.sock");
}

Test(cli_local, names_or_all)
{
	struct run r;

	RUN(&r, "delete");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "'delete' needs an instance name (or --all)");
	RUN(&r, "delete", "--all", "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "give instance names or --all, not both");
	RUN(&r, "info", "UPPER");
	cr_assert_eq(r.status, 2);
}

Test(cli_local, stop_option_conflicts)
{
	struct run r;

	RUN(&r, "stop", "--force", "--time", "5", "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "--force cannot be combined with --time or --cancel");
	RUN(&r, "stop", "--time", "soon", "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "--time must be a whole number");
}

Test(cli_local, list_refuses_unknown_format)
{
	struct run r;

	RUN(&r, "list", "--format", "xml");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "unknown format 'xml'");
	assert_contains(r.err, "Usage: vmctl list");
}

Test(cli_local, exec_needs_a_command)
{
	struct run r;

	RUN(&r, "exec", "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "'exec' needs a command to run");
}

Test(cli_local, snapshot_restore_clone_names)
{
	struct run r;

	RUN(&r, "restore", "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "use NAME.SNAPSHOT");
	RUN(&r, "restore", "web.9lives");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "must start with a letter");
	RUN(&r, "snapshot", "web", "--name", "a_b");
	cr_assert_eq(r.status, 2);
	RUN(&r, "clone", "web", "--name", "Copy");
	cr_assert_eq(r.status, 2);
}

Test(cli_local, mount_checks_source_target_and_maps)
{
	struct run r;

	RUN(&r, "mount", "/nonexistent/dir", "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "cannot mount '/nonexistent/dir'");
	RUN(&r, "mount", data, "Web:/x");
	cr_assert_eq(r.status, 2);
	RUN(&r, "mount", "-u", "1000", data, "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "expected HOST:GUEST");
	RUN(&r, "mount", "--type", "nfs", data, "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "unknown mount type 'nfs'");
}

Test(cli_local, transfer_needs_one_instance_side)
{
	struct run r;

	RUN(&r, "transfer", "a.txt", "b.txt");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "one side must be in an instance");
	RUN(&r, "transfer", "web:a", "db:b");
	cr_assert_eq(r.status, 2);
	RUN(&r, "transfer", "-", "web:");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "give the file to write standard input to");
}

Test(cli_local, timeout_must_be_a_positive_number)
{
	struct run r;

	RUN(&r, "list", "--timeout", "0");
	cr_assert_eq(r.status, 2, "stderr: %s", r.err);
	assert_contains(r.err, "--timeout must be between 1 and");
	RUN(&r, "info", "web", "--timeout", "soon");
	cr_assert_eq(r.status, 2, "stderr: %s", r.err);
	assert_contains(r.err, "--timeout must be a whole number, not 'soon'");
}

/* A 300-character instance name is refused for its length wherever it is
 * typed, with a message that does not repeat all of it. */
Test(cli_local, a_huge_instance_name_is_refused_for_its_length)
{
	static char name[301], spec[400], key[400];
	const char *const forms[][5] = {
		{ "info", name, NULL }, { "start", name, NULL }, { "exec", name, "true", NULL },
		{ "mount", "/tmp", spec, NULL }, { "umount", spec, NULL },
		{ "transfer", "/etc/hostname", spec, NULL }, { "transfer", spec, "/tmp/x", NULL },
		{ "restore", key, NULL }, { "delete", "--purge", key, NULL },
		{ "info", "--snapshots", key, NULL },
	};
	struct run r;

	memset(name, 'a', 300);
	snprintf(spec, sizeof(spec), "%s:/srv", name);
	snprintf(key, sizeof(key), "%s.snap1", name);
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		const char *const *w = forms[i];

		run_stdin(&r, NULL, (const char *const[]){ w[0], w[1], w[2], w[3], NULL });
		cr_assert_eq(r.status, 2, "vmctl %s: status %d: %s", w[0], r.status, r.err);
		assert_contains(r.err, "names are at most 63 characters long (this one has 300)");
		cr_assert_lt(strlen(r.err), 300, "vmctl %s repeats the name: %s", w[0], r.err);
	}
	snprintf(key, sizeof(key), "local.%s.cpus", name);
	RUN(&r, "get", key);
	cr_assert_eq(r.status, 2, "get: %s", r.err);
	assert_contains(r.err, "names are at most 63 characters long (this one has 300)");
	snprintf(key, sizeof(key), "local.%s.cpus=2", name);
	RUN(&r, "set", key);
	cr_assert_eq(r.status, 2, "set: %s", r.err);
	assert_contains(r.err, "names are at most 63 characters long (this one has 300)");
}

Test(cli_local, set_needs_key_and_value)
{
	struct run r;

	RUN(&r, "set", "local.driver");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "use KEY=VALUE");
	RUN(&r, "set", "=qemu");
	cr_assert_eq(r.status, 2);
}

/* ---- against the fake broker ---- */

Test(cli_broker, list_table)
{
	struct run r;

	broker_start();
	RUN(&r, "list");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "Name  State    IPv4      Image\n"
				"web   Running  10.1.2.3  Debian 12\n");
}

Test(cli_broker, list_all_scopes_adds_scope_and_driver_columns)
{
	struct run r;

	broker_start();
	RUN(&r, "ls", "--all-scopes");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "Name  State    IPv4      Image      Scope  Driver\n"
				"web   Running  10.1.2.3  Debian 12  qemu   libvirt\n"
				"box   Unknown  --        busybox    lxd    lxd\n"
				"\n"
				"box: LXD has no instance box (deleted outside vmctl?)\n");
}

Test(cli_broker, list_reasons_in_csv_and_json)
{
	struct run r;

	broker_start();
	RUN(&r, "list", "--all-scopes", "--format", "csv");
	cr_assert_eq(r.status, 0);
	cr_assert_str_eq(r.out, "Name,State,IPv4,Image,Scope,Driver,Reason\n"
				"web,Running,10.1.2.3,Debian 12,qemu,libvirt,\n"
				"box,Unknown,,busybox,lxd,lxd,LXD has no instance box (deleted outside vmctl?)\n");
	RUN(&r, "list", "--all-scopes", "--format", "json");
	cr_assert_eq(r.status, 0);
	assert_contains(r.out, "\"reason\": \"LXD has no instance box (deleted outside vmctl?)\"");
}

Test(cli_broker, list_of_an_empty_scope_says_where_the_instances_are)
{
	struct run r;

	fake_scope_empty = true;
	broker_start();
	RUN(&r, "list");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "No instances in the lxd scope; 3 in the qemu scope and 1 in the stub "
				"scope, see --all-scopes.\n");
	/* json keeps the whole answer; csv only the (empty) table */
	RUN(&r, "list", "--format", "csv");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "Name,State,IPv4,Image,Reason\n");
}

Test(cli_broker, list_csv_and_json)
{
	struct run r;

	broker_start();
	RUN(&r, "list", "--format", "csv");
	cr_assert_eq(r.status, 0);
	cr_assert_str_eq(r.out, "Name,State,IPv4,Image,Reason\nweb,Running,10.1.2.3,Debian 12,\n");
	RUN(&r, "list", "--format=json");
	cr_assert_eq(r.status, 0);
	assert_contains(r.out, "\"ipv4\": [\n                \"10.1.2.3\"\n            ]");
}

Test(cli_broker, launch_prints_launched_and_progress)
{
	struct run r;

	broker_start();
	RUN(&r, "launch", "--name", "web");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "Launched: web\n");
	/* not a terminal: plain lines */
	assert_contains(r.err, "Starting 0%\n");
	assert_contains(r.err, "Starting 50%\n");
	assert_contains(r.err, "Waiting for SSH\n");
}

Test(cli_broker, launch_sends_what_was_asked)
{
	char path[256];
	struct run r;

	char image[256], want[300];

	write_file("user-data", "#cloud-config\nhostname: hello\n", 0644);
	write_file("img.qcow2", "", 0644);
	snprintf(path, sizeof(path), "%s/user-data", data);
	snprintf(image, sizeof(image), "file://%s/img.qcow2", data);
	broker_start();
	RUN(&r, "launch", "-n", "echo", "-c", "3", "-m", "1.5G", "-d", "8G", "--timeout", "60",
	    "--cloud-init", path, image);
	cr_assert_eq(r.status, 1);
	snprintf(want, sizeof(want), "\"image\"=>\"%s\"", image);
	assert_contains(r.err, want);
	assert_contains(r.err, "\"cpus\"=>3,");
	assert_contains(r.err, "\"memory\"=>1610612736,");
	assert_contains(r.err, "\"disk\"=>8589934592,");
	assert_contains(r.err, "\"timeout\"=>60}");
	assert_contains(r.err, "\"cloud_init\"=>\"#cloud-config\nhostname: hello\n\"");
}

Test(cli_broker, launch_sends_networks_in_order)
{
	struct run r;

	broker_start();
	RUN(&r, "launch", "-n", "echo", "--network", "br0", "--network",
	    "mac=52:54:00:AA:bb:01,mode=manual,name=lab", "--bridged");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "\"networks\"=>[{\"name\"=>\"br0\", \"mode\"=>\"auto\"}, "
			       "{\"name\"=>\"lab\", \"mode\"=>\"manual\", \"mac\"=>\"52:54:00:AA:bb:01\"}], "
			       "\"bridged\"=>true, \"timeout\"=>300}");
	/* Without them the request is what it always was (and it was sent:
	 * the echo is there, or the absences below would prove nothing). */
	RUN(&r, "launch", "-n", "echo");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "\"timeout\"=>300}");
	cr_assert_null(strstr(r.err, "networks"));
	cr_assert_null(strstr(r.err, "bridged"));
}

Test(cli_broker, launch_sends_local_images_as_absolute_paths)
{
	char want[256];
	struct run r;

	write_file("disk.qcow2", "not really qcow2", 0644);
	broker_start();
	RUN(&r, "launch", "-n", "echo", "./disk.qcow2");
	snprintf(want, sizeof(want), "\"image\"=>\"%s/disk.qcow2\"", data);
	assert_contains(r.err, want);
	RUN(&r, "launch", "-n", "echo", "file://disk.qcow2");
	snprintf(want, sizeof(want), "\"image\"=>\"file://%s/disk.qcow2\"", data);
	assert_contains(r.err, want);
	RUN(&r, "launch", "-n", "echo", "release:24.04");
	assert_contains(r.err, "\"image\"=>\"release:24.04\"");
}

Test(cli_broker, launch_timeout_exits_5_and_keeps_instance)
{
	struct run r;

	broker_start();
	RUN(&r, "launch", "--name", "slow");
	cr_assert_eq(r.status, 5);
	assert_contains(r.err, "vmctl: 'slow' did not answer within 300 s\n");
	assert_contains(r.err, "the instance 'slow' was kept");
}

Test(cli_broker, broker_errors_map_to_exit_codes)
{
	struct run r;

	broker_start();
	RUN(&r, "start", "nope");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "vmctl: start {\"names\"=>[\"nope\"], \"all\"=>false, \"timeout\"=>300}\n");
	RUN(&r, "restart", "timeout");
	cr_assert_eq(r.status, 5);
	RUN(&r, "suspend", "invalid");
	cr_assert_eq(r.status, 2);
}

Test(cli_broker, stop_sends_its_options)
{
	struct run r;

	broker_start();
	RUN(&r, "stop", "--all", "--time", "+5");
	assert_contains(r.err,
			"stop {\"names\"=>[], \"all\"=>true, \"force\"=>false, \"timeout\"=>60, "
			"\"time\"=>5}");
	RUN(&r, "stop", "a", "b", "--force", "--timeout", "9");
	assert_contains(r.err, "stop {\"names\"=>[\"a\", \"b\"], \"all\"=>false, "
			       "\"force\"=>true, \"timeout\"=>9}");
}

Test(cli_broker, mount_sends_absolute_source_and_maps)
{
	struct run r;
	char want[512];

	broker_start();
	RUN(&r, "mount", "-t", "native", "-u", "1000:1001", "-u", "0:0", "-g", "5:6", data,
	    "web:/srv");
	cr_assert_eq(r.status, 1);
	snprintf(want, sizeof(want),
		 "mount {\"source\"=>\"%s\", \"name\"=>\"web\", \"path\"=>\"/srv\", "
		 "\"type\"=>\"native\", \"uid_map\"=>[[1000, 1001], [0, 0]], "
		 "\"gid_map\"=>[[5, 6]]}",
		 data);
	assert_contains(r.err, want);
}

Test(cli_broker, get_shows_empty_value)
{
	struct run r;

	broker_start();
	RUN(&r, "get", "local.image.mirror");
	cr_assert_eq(r.status, 0);
	cr_assert_str_eq(r.out, "<empty>\n");
	RUN(&r, "get", "--raw", "local.image.mirror");
	cr_assert_str_eq(r.out, "\n");
}

Test(cli_broker, version_shows_both_sides)
{
	struct run r;

	broker_start();
	RUN(&r, "version");
	cr_assert_eq(r.status, 0);
	cr_assert_str_eq(r.out, "vmctl     " VMCTL_VERSION "\n"
				"vmctld    9.9.9\n"
				"driver    qemu (helper 1.2.3)\n"
				"protocol  1\n");
}

Test(cli_broker, exec_quotes_arguments_and_returns_status)
{
	struct run r;

	broker_start();
	RUN(&r, "exec", "web", "--", "sh", "-c", "printf '%s|' \"$@\"; exit 7", "x", "a b",
	    "it's", "");
	cr_assert_eq(r.status, 7, "%s", r.err);
	cr_assert_str_eq(r.out, "a b|it's||");
	assert_contains(r.err, "<-i>\n</keys/id>\n<-p>\n<2222>\n");
	assert_contains(r.err, "<-o>\n<BatchMode=yes>\n<ubuntu@127.0.0.1>\n<-->\n");
}

Test(cli_broker, exec_without_ssh_goes_through_the_broker)
{
	struct run r;

	broker_start();
	RUN(&r, "exec", "-d", "/etc", "nossh", "--", "echo", "a b");
	cr_assert_eq(r.status, 3, "%s", r.err);
	cr_assert_str_eq(r.out, "echo|a b|cwd=/etc\n");
	/* /dev/null is no input; the fake ssh was not run */
	assert_contains(r.err, "no stdin");
	cr_assert_null(strstr(r.err, "<-i>"), "%s", r.err);
	assert_contains(r.err, "the command's stderr was cut at 1048576 bytes");
	RUN_STDIN(&r, "given\n", "exec", "nossh", "--", "cat");
	cr_assert_eq(r.status, 3, "%s", r.err);
	assert_contains(r.err, "given\n");
}

Test(cli_broker, shell_without_ssh_is_refused)
{
	struct run r;

	broker_start();
	RUN(&r, "shell", "nossh");
	cr_assert_eq(r.status, 1, "%s", r.err);
	assert_contains(r.err, "nossh has no SSH (port 1 of 127.0.0.1 refuses connections); vmctl "
			       "shell needs it");
	cr_assert_null(strstr(r.err, "<-t>"), "%s", r.err);
}

Test(cli_broker, shell_asks_for_a_terminal)
{
	struct run r;

	/* the fake ssh runs its last argument: here the destination, a harmless command */
	broker_start();
	RUN(&r, "shell", "web");
	assert_contains(r.err, "<-t>\n<ubuntu@127.0.0.1>\n");
}

Test(cli_broker, no_name_means_the_primary_instance)
{
	struct run r;

	broker_start();
	RUN(&r, "stop");
	assert_contains(r.err, "stop {\"names\"=>[\"primary\"], \"all\"=>false,");
	RUN(&r, "suspend");
	assert_contains(r.err, "suspend {\"names\"=>[\"primary\"], \"all\"=>false,");
	RUN(&r, "restart");
	assert_contains(r.err, "restart {\"names\"=>[\"primary\"], \"all\"=>false,");
	/* --all is still every instance */
	RUN(&r, "stop", "--all");
	assert_contains(r.err, "stop {\"names\"=>[], \"all\"=>true,");
}

Test(cli_broker, start_launches_a_missing_primary)
{
	struct run r;

	broker_start();
	RUN(&r, "start");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "Launched: primary\n");
}

Test(cli_broker, start_starts_an_existing_primary)
{
	struct run r;

	primary_setting = "web"; /* the fake broker lists web */
	broker_start();
	RUN(&r, "start");
	assert_contains(r.err, "start {\"names\"=>[\"web\"], \"all\"=>false, \"timeout\"=>300}");
	cr_assert_null(strstr(r.out, "Launched"));
}

Test(cli_broker, an_empty_primary_name_means_no_primary)
{
	struct run r;

	primary_setting = "";
	broker_start();
	RUN(&r, "stop");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "'stop' needs an instance name (or --all): there is no primary "
			       "instance (the setting client.primary-name is empty)");
	RUN(&r, "shell");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "'shell' needs an instance name: there is no primary instance");
}

Test(cli_broker, shell_without_a_name_launches_the_primary)
{
	struct run r;

	broker_start();
	RUN(&r, "shell");
	assert_contains(r.out, "Launched: primary\n");
	assert_contains(r.err, "<-t>\n<ubuntu@127.0.0.1>\n");
}

Test(cli_broker, alias_writes_a_script_and_lists_it)
{
	char path[256], script[1024] = "";
	struct run r;
	FILE *f;

	broker_start();
	RUN(&r, "alias", "web:/usr/bin/ls");
	cr_assert_eq(r.status, 0, "%s", r.err);
	assert_contains(r.out, "add that folder to PATH");
	assert_contains(r.out, "/bin:$PATH");
	snprintf(path, sizeof(path), "%s/bin/ls", data);
	cr_assert_eq(access(path, X_OK), 0, "no executable %s", path);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	cr_assert_gt(fread(script, 1, sizeof(script) - 1, f), 0);
	fclose(f);
	assert_contains(script, "run-alias ls -- \"$@\"");
	/* PATH is said once, when the folder is made */
	RUN(&r, "alias", "--no-map-working-directory", "web:echo", "say");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "");
	RUN(&r, "aliases", "--format", "csv");
	cr_assert_eq(r.status, 0, "%s", r.err);
	assert_contains(r.out, "ls,web,/usr/bin/ls,default,map\n");
	assert_contains(r.out, "say,web,echo,default,default\n");
	RUN(&r, "aliases");
	assert_contains(r.out, "default*");
}

Test(cli_broker, alias_refusals)
{
	struct run r;

	broker_start();
	RUN(&r, "alias", "nosuch:ls");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "instance \"nosuch\" does not exist");
	RUN(&r, "alias", "web");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "is not INSTANCE:COMMAND");
	RUN(&r, "alias", "web:ls -l");
	cr_assert_eq(r.status, 2);
	RUN(&r, "alias", "web:ls", "../x");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "invalid alias name '../x'");
	RUN(&r, "alias", "web:ls");
	cr_assert_eq(r.status, 0, "%s", r.err);
	RUN(&r, "alias", "web:ls");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "the alias ls already exists in the context default");
	RUN(&r, "unalias", "ls", "nosuch");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "there is no alias nosuch");
	RUN(&r, "aliases", "--format", "csv");
	assert_contains(r.out, "ls,web,ls,default,map\n"); /* nothing was removed */
}

Test(cli_broker, unalias_and_contexts)
{
	char path[256];
	struct run r;

	broker_start();
	snprintf(path, sizeof(path), "%s/bin/ls", data);
	RUN(&r, "alias", "web:ls");
	RUN(&r, "prefer", "other");
	cr_assert_eq(r.status, 0, "%s", r.err);
	RUN(&r, "alias", "web:ls");
	cr_assert_eq(r.status, 0, "%s", r.err);
	RUN(&r, "aliases", "--format", "csv");
	assert_contains(r.out, "ls,web,ls,default,map\n");
	assert_contains(r.out, "ls,web,ls,other,map\n");
	RUN(&r, "unalias", "--all");
	cr_assert_eq(r.status, 0, "%s", r.err);
	/* the default context still has ls: its script stays */
	cr_assert_eq(access(path, X_OK), 0);
	RUN(&r, "prefer", "default");
	RUN(&r, "unalias", "ls");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_neq(access(path, F_OK), 0, "the script of ls is left");
	RUN(&r, "aliases");
	cr_assert_str_eq(r.out, "No aliases defined.\n");
}

Test(cli_broker, run_alias_maps_the_working_directory)
{
	struct run r;

	broker_start();
	RUN(&r, "alias", "web:echo");
	RUN(&r, "alias", "-n", "web:echo", "echo-here");
	/* vmctl runs in the test's folder, which the fake web has at /srv/proj */
	RUN(&r, "run-alias", "echo", "--", "a b", "-n");
	assert_contains(r.err, "<cd /srv/proj && echo 'a b' -n>\n");
	RUN(&r, "run-alias", "echo-here", "--", "a b");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "a b\n");
	assert_contains(r.err, "<echo 'a b'>\n");
	RUN(&r, "run-alias", "nosuch");
	cr_assert_eq(r.status, 2);
	assert_contains(r.err, "there is no alias nosuch in the context default");
}

Test(cli_broker, find_sends_force_update_and_show_unsupported)
{
	struct run r;

	broker_start();
	RUN(&r, "find", "--force-update", "--show-unsupported", "release:noble");
	assert_contains(r.err, "find {\"query\"=>\"noble\", \"force_update\"=>true, "
			       "\"show_unsupported\"=>true, \"remote\"=>\"release\"}");
	RUN(&r, "find", "noble");
	assert_contains(r.err, "find {\"query\"=>\"noble\"}");
}

Test(cli_broker, a_new_primary_gets_the_home_folder_mounted)
{
	struct run r;

	broker_start();
	RUN(&r, "start");
	cr_assert_eq(r.status, 0, "%s", r.err);
	/* the fake broker refuses the mount: a warning, and the launch stands */
	assert_contains(r.err, "\"name\"=>\"primary\", \"path\"=>\"/home/ubuntu/Home\", "
			       "\"type\"=>\"classic\"}");
	assert_contains(r.err, "warning: the home folder was not mounted into primary");
	RUN(&r, "launch", "--name", "primary");
	cr_assert_eq(r.status, 0, "%s", r.err);
	assert_contains(r.err, "\"path\"=>\"/home/ubuntu/Home\"");
	RUN(&r, "launch", "--name", "web");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_null(strstr(r.err, "mount"), "%s", r.err);
}

Test(cli_broker, primary_home_mount_can_be_turned_off)
{
	struct run r;

	home_mount_setting = "false";
	broker_start();
	RUN(&r, "start");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "Launched: primary\n");
	cr_assert_null(strstr(r.err, "mount"), "%s", r.err);
}

Test(cli_broker, transfer_upload_and_download_use_scp)
{
	struct run r;

	broker_start();
	write_file("a.txt", "a", 0600);
	write_file("b.txt", "b", 0600);
	RUN(&r, "transfer", "-r", "a.txt", "b.txt", "web:docs/");
	cr_assert_eq(r.status, 0, "%s", r.err);
	assert_contains(r.out, "<-i>\n</keys/id>\n<-P>\n<2222>\n");
	assert_contains(r.out, "<-r>\n<-->\n<a.txt>\n<b.txt>\n<ubuntu@127.0.0.1:docs/>\n");
	RUN(&r, "transfer", "web:/etc/hostname", "out/");
	assert_contains(r.out, "<-->\n<ubuntu@127.0.0.1:/etc/hostname>\n<out/>\n");
}

Test(cli_broker, transfer_refuses_missing_sources_and_folders_without_r)
{
	char folder[256];
	struct run r;

	broker_start();
	RUN(&r, "transfer", "missing.txt", "web:");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "cannot copy missing.txt: No such file or directory");
	cr_assert_eq(strstr(r.out, "<-->"), NULL, "scp ran: %s", r.out);
	snprintf(folder, sizeof(folder), "%s/tree", data);
	cr_assert_eq(mkdir(folder, 0700), 0);
	RUN(&r, "transfer", "tree", "web:");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "tree is a folder; copy folders with -r");
	RUN(&r, "transfer", "-r", "tree", "web:");
	cr_assert_eq(r.status, 0, "%s", r.err);
	assert_contains(r.out, "<-r>\n<-->\n<tree>\n");
}

Test(cli_broker, transfer_stdin_into_instance)
{
	char target[256], got[64] = "";
	struct run r;
	FILE *f;

	broker_start();
	/* the fake ssh runs the remote command locally: the file lands on this host */
	snprintf(target, sizeof(target), "web:%s/sub dir/in file", data);
	RUN_STDIN(&r, "piped text\n", "transfer", "-p", "-", target);
	cr_assert_eq(r.status, 0, "%s", r.err);
	snprintf(target, sizeof(target), "%s/sub dir/in file", data);
	f = fopen(target, "r");
	cr_assert_not_null(f, "%s", r.err);
	cr_assert_not_null(fgets(got, sizeof(got), f));
	fclose(f);
	cr_assert_str_eq(got, "piped text\n");
}

Test(cli_broker, broker_gone_mid_request_is_reported)
{
	struct run r;

	broker_start();
	kill(broker_pid, SIGKILL);
	waitpid(broker_pid, NULL, 0);
	broker_pid = -1;
	RUN(&r, "list");
	cr_assert_eq(r.status, 3);
	assert_contains(r.err, "cannot reach the broker");
}

Test(cli_broker, list_snapshots)
{
	struct run r;

	broker_start();
	RUN(&r, "list", "--snapshots");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "Instance  Snapshot        Parent     Comment\n"
				"web       snapshot1       --         --\n"
				"web       before-upgrade  snapshot1  pre 2.0, \"tested\"\n"
				"db        nightly         --         --\n");
}

Test(cli_broker, info_snapshots_filters_one)
{
	struct run r;

	broker_start();
	RUN(&r, "info", "--snapshots", "web.before-upgrade", "--format", "csv");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "Snapshot,Instance,Created,Parent,Comment\n"
				"before-upgrade,web,2026-11-27T10:00:00Z,snapshot1,"
				"\"pre 2.0, \"\"tested\"\"\"\n");
	RUN(&r, "info", "--snapshots", "web.missing");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "vmctl: snapshot 'web.missing' does not exist");
}

Test(cli_broker, connection_lost_mid_request)
{
	struct run r;

	broker_start();
	RUN(&r, "purge");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "vmctl: lost the connection to the broker");
}

Test(cli_broker, transfer_from_instance_to_stdout)
{
	char source[256];
	struct run r;

	write_file("remote file.txt", "from the guest\n", 0644);
	broker_start();
	snprintf(source, sizeof(source), "web:%s/remote file.txt", data);
	RUN(&r, "transfer", source, "-");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "from the guest\n");
}

Test(cli_broker, delete_and_recover_send_names)
{
	struct run r;

	broker_start();
	RUN(&r, "delete", "--purge", "web", "db");
	cr_assert_eq(r.status, 1);
	assert_contains(r.err, "vmctl: delete {\"names\"=>[\"web\", \"db\"], \"all\"=>false, "
			       "\"purge\"=>true}\n");
	RUN(&r, "recover", "--all");
	assert_contains(r.err, "vmctl: recover {\"names\"=>[], \"all\"=>true}\n");
}

/* ---- with the real OpenSSH client and a throw-away sshd on loopback ---- */

#define SSHD "/usr/sbin/sshd"

static unsigned free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void sshd_start(void)
{
	char cmd[1024], config[4096];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct passwd *pw = getpwuid(getuid());

	if (access(SSHD, X_OK) != 0 || system("command -v ssh-keygen >/dev/null") != 0)
		cr_skip_test("needs the OpenSSH server (" SSHD ") and ssh-keygen");
	cr_assert_not_null(pw);
	snprintf(cmd, sizeof(cmd),
		 "ssh-keygen -q -t ed25519 -N '' -f %s/id && ssh-keygen -q -t ed25519 -N '' -f "
		 "%s/hostkey && cp %s/id.pub %s/authorized_keys",
		 data, data, data, data);
	cr_assert_eq(system(cmd), 0);
	if (getuid() == 0)
		mkdir("/run/sshd", 0755); /* sshd's privilege separation folder */
	ssh_info.port = free_port();
	snprintf(ssh_info.user, sizeof(ssh_info.user), "%s", pw->pw_name);
	snprintf(ssh_info.key, sizeof(ssh_info.key), "%s/id", data);
	snprintf(config, sizeof(config),
		 "Port %u\nListenAddress 127.0.0.1\nHostKey %s/hostkey\n"
		 "AuthorizedKeysFile %s/authorized_keys\nPasswordAuthentication no\n"
		 "StrictModes no\nPidFile none\nSubsystem sftp internal-sftp\n",
		 ssh_info.port, data, data);
	write_file("sshd_config", config, 0600);
	fake_ssh = false;

	sshd_pid = fork();
	cr_assert_neq(sshd_pid, -1);
	if (sshd_pid == 0) {
		char path[256];
		int null = open("/dev/null", O_RDWR);

		snprintf(path, sizeof(path), "%s/sshd_config", data);
		dup2(null, 0);
		dup2(null, 1);
		execl(SSHD, SSHD, "-D", "-f", path, "-E", "/dev/null", (char *)NULL);
		_exit(127);
	}
	sa.sin_port = htons((uint16_t)ssh_info.port);
	for (int i = 0; i < 200; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

		close(fd);
		if (ok)
			return;
		usleep(25000);
	}
	cr_assert_fail("sshd did not start listening");
}

Test(cli_ssh, exec_arguments_survive_real_ssh)
{
	struct run r;

	sshd_start();
	broker_start();
	RUN(&r, "exec", "web", "--", "printf", "[%s]\\n", "a b", "it's", "$HOME", "", "*");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "[a b]\n[it's]\n[$HOME]\n[]\n[*]\n");
	RUN(&r, "exec", "web", "--", "sh", "-c", "exit 42");
	cr_assert_eq(r.status, 42, "%s", r.err);
}

Test(cli_ssh, transfer_round_trip_real_scp)
{
	char local[256], remote[300], back[256];
	struct run r;
	FILE *f;
	char got[64] = "";

	sshd_start();
	broker_start();
	write_file("a file.txt", "over scp\n", 0644);
	snprintf(local, sizeof(local), "%s/a file.txt", data);
	snprintf(remote, sizeof(remote), "web:%s/guest/copy.txt", data);
	RUN(&r, "transfer", "--parents", local, remote);
	cr_assert_eq(r.status, 0, "%s", r.err);
	RUN(&r, "transfer", remote, "-");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "over scp\n");
	snprintf(back, sizeof(back), "%s/back/again.txt", data);
	RUN(&r, "transfer", "-p", remote, back);
	cr_assert_eq(r.status, 0, "%s", r.err);
	f = fopen(back, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(got, sizeof(got), f));
	fclose(f);
	cr_assert_str_eq(got, "over scp\n");
}

/* ---- starting the broker: a copy of vmctl with a stand-in vmctld beside it ---- */

static char *install_copy(const char *vmctld_script)
{
	static char copy[256];
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "mkdir -p %s/inst && cp %s %s/inst/vmctl", data, VMCTL_BIN,
		 data);
	cr_assert_eq(system(cmd), 0);
	write_file("inst/vmctld", vmctld_script, 0755);
	snprintf(copy, sizeof(copy), "%s/inst/vmctl", data);
	vmctl_bin = copy;
	autostart = true;
	return copy;
}

Test(cli_broker, starts_the_broker_when_none_answers)
{
	char script[1024], *args = NULL, log[4096];
	size_t len = 0;
	struct run r;
	FILE *f;

	/* the stand-in "broker" makes the socket appear: a link to the fake broker's */
	snprintf(script, sizeof(script),
		 "#!/bin/sh\n"
		 "echo \"$@\" > %s/vmctld.args\n"
		 "echo noise-on-stdout\n"
		 "echo noise-on-stderr >&2\n"
		 "ln -s %s/real.sock %s/vmctld.sock\n",
		 data, data, data);
	install_copy(script);
	broker_start_at("real.sock");
	RUN(&r, "list");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "Name  State    IPv4      Image\nweb   Running  10.1.2.3  Debian 12\n");
	snprintf(log, sizeof(log), "%s/vmctld.args", data);
	f = fopen(log, "r");
	cr_assert_not_null(f, "vmctld was not run");
	cr_assert_gt(getline(&args, &len, f), 0);
	fclose(f);
	cr_assert_str_eq(args, "--detach\n");
	free(args);
	/* the broker's output never reaches vmctl's stdout, and a broker that
	 * started is not news (vmctl does not write the broker's log) */
	cr_assert(strstr(r.err, "noise") == NULL, "stderr: %s", r.err);
}

Test(cli_broker, broker_that_fails_to_start_exits_3)
{
	struct run r;

	/* what it says is the news, not the socket missing because of it */
	install_copy("#!/bin/sh\n"
		     "echo 'vmctld: /d/settings.yaml: line 2, column 7: no good' >&2\n"
		     "echo 'vmctld: see /d/vmctld.log' >&2\n"
		     "exit 1\n");
	RUN(&r, "list");
	cr_assert_eq(r.status, 3);
	cr_assert_str_eq(r.err, "vmctl: the broker could not start: /d/settings.yaml: line 2, "
				"column 7: no good\n"
				"vmctl: see /d/vmctld.log\n");
}

Test(cli_broker, a_start_up_error_reaches_the_terminal_without_control_bytes)
{
	struct run r;

	install_copy("#!/bin/sh\nprintf 'vmctld: invalid value \"\\033[31mx\"\\n' >&2\nexit 1\n");
	RUN(&r, "list");
	cr_assert_eq(r.status, 3);
	cr_assert_str_eq(r.err, "vmctl: the broker could not start: invalid value \"?[31mx\"\n");
}

Test(cli_broker, broker_that_fails_silently_is_named)
{
	struct run r;

	install_copy("#!/bin/sh\nexit 1\n");
	RUN(&r, "list");
	cr_assert_eq(r.status, 3);
	assert_contains(r.err, "/vmctld --detach failed (exit status 1); see ");
	assert_contains(r.err, "/vmctld.log");
	cr_assert(strstr(r.err, "No such file") == NULL, "stderr: %s", r.err);
}

Test(cli_broker, exec_in_a_working_directory)
{
	char want[256];
	struct run r;

	broker_start();
	write_file("bin/marker", "", 0644);
	RUN(&r, "exec", "--working-directory", bin, "web", "--", "ls");
	cr_assert_eq(r.status, 0, "%s", r.err);
	assert_contains(r.out, "marker\n");
	snprintf(want, sizeof(want), "%s/no such dir", data);
	RUN(&r, "exec", "web", "-d", want, "--", "echo", "ran");
	cr_assert_neq(r.status, 0);
	cr_assert_str_eq(r.out, "");
}

Test(cli_broker, an_unanswered_request_gives_up_at_its_timeout)
{
	char pid[32], log[128];
	struct run r;

	broker_start();
	/* the socket names the process that listened: here, this one */
	snprintf(pid, sizeof(pid), "(pid %d)", (int)getpid());
	snprintf(log, sizeof(log), "its log is %s/vmctld.log", data);
	RUN(&r, "info", "hang", "--timeout", "1");
	cr_assert_eq(r.status, 5, "stderr: %s", r.err);
	assert_contains(r.err, "vmctl: the broker ");
	assert_contains(r.err, pid);
	assert_contains(r.err, "did not answer 'info' within 1 seconds");
	assert_contains(r.err, log);
	/* the same for a command whose --timeout is the instance's */
	RUN(&r, "recover", "hang", "--timeout", "1");
	cr_assert_eq(r.status, 5, "stderr: %s", r.err);
	assert_contains(r.err, "did not answer 'recover' within 1 seconds");
}

Test(cli_broker, version_as_json_and_yaml)
{
	struct run r;

	broker_start();
	RUN(&r, "version", "--format", "json");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, "{\n"
				"    \"vmctl\": \"" VMCTL_VERSION "\",\n"
				"    \"vmctld\": \"9.9.9\",\n"
				"    \"driver\": \"qemu\",\n"
				"    \"helper_version\": \"1.2.3\",\n"
				"    \"protocol\": 1\n"
				"}\n");
	RUN(&r, "version", "--format", "yaml");
	cr_assert_eq(r.status, 0, "%s", r.err);
	assert_contains(r.out, "vmctld: 9.9.9\n");
	assert_contains(r.out, "helper_version: 1.2.3\n");
}

Test(cli_broker, progress_in_a_log_is_one_line_per_ten_percent)
{
	struct run r;
	int lines = 0;

	broker_start();
	RUN(&r, "launch", "--name", "download");
	cr_assert_eq(r.status, 0, "%s", r.err);
	for (const char *p = r.err; (p = strstr(p, "Downloading ")) != NULL; p++)
		lines++;
	cr_assert_eq(lines, 11, "%s", r.err);
	assert_contains(r.err, "Downloading 0.0MiB/s 0%\nDownloading 2.0MiB/s 10%\n");
	assert_contains(r.err, "Downloading 20.0MiB/s 100%\n");
}
