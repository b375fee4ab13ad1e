/*
 * The connection to vmctld: $VMCTL_DATA/vmctld.sock, MessagePack-RPC through
 * libvmproto on a private libev loop. When nothing answers, the broker is
 * started as tmux starts its server (docs/protocol.md, "Starting the
 * broker"), so a user never has to set anything up.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

#define CLI_CONNECT_WAIT 10.0 /* seconds to wait for a broker we started */
#define CLI_START_WAIT 30.0   /* seconds for `vmctld --detach` to return */

static struct {
	struct ev_loop *loop;
	struct proto_conn *conn;
	char why[256]; /* why the connection closed */
} cli;

struct cli_call {
	bool done;
	struct cli_reply *reply;
};

static double cli_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cli_sleep(double seconds)
{
	struct timespec ts = { .tv_sec = (time_t)seconds,
			       .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- connecting ---- */

static int cli_socket_path(char *path, size_t len, char *dir, size_t dirlen)
{
	int rc = data_dir(dir, dirlen);

	if (rc < 0) {
		fprintf(stderr, "vmctl: cannot find the data folder (set VMCTL_DATA or HOME)\n");
		return rc;
	}
	if ((size_t)snprintf(path, len, "%s/vmctld.sock", dir) >= len) {
		fprintf(stderr, "vmctl: the socket path %s/vmctld.sock is too long for a unix socket "
				"(at most %zu bytes); set VMCTL_DATA to a shorter folder\n",
			dir, len - 1);
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

/* One attempt: the connected fd, or -errno. */
static int cli_try_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	err = errno;
	close(fd);
	return -err;
}

/* The broker binary: beside vmctl, else found on PATH by execvp. */
static void cli_broker_path(char *buf, size_t len)
{
	char dir[4096];

	if (exe_dir(dir, sizeof(dir)) == 0 &&
	    (size_t)snprintf(buf, len, "%s/vmctld", dir) < len && access(buf, X_OK) == 0)
		return;
	snprintf(buf, len, "vmctld");
}

/* Run `vmctld --detach` and wait for it to return. 0, or -1 after
 * explaining what went wrong in why. */
static int cli_start_broker(const char *dir, char *why, size_t whylen)
{
	char broker[4096], log[4096 + 16];
	double deadline;
	pid_t pid;
	int status, pidfd, logfd;

	cli_broker_path(broker, sizeof(broker));
	snprintf(log, sizeof(log), "%s/vmctld.log", dir);
	mkdir_p(dir, 0700);
	/* Never a symbolic link, nor a file or folder someone else controls. */
	if (path_check_trusted(dir, S_IFDIR, "the data folder", why, whylen) < 0)
		return -1;
	logfd = open_private_file(log, O_WRONLY | O_CREAT | O_APPEND, "the broker's log", why, whylen);
	if (logfd < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "cannot start %s: %s", broker, strerror(errno));
		close(logfd);
		return -1;
	}
	if (pid == 0) {
		/* The broker must not hold our stdout: a caller reading vmctl's
		 * output until EOF would wait for the broker to exit. */
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(logfd, STDERR_FILENO);
		}
		signal(SIGPIPE, SIG_DFL);
		execlp(broker, broker, "--detach", (char *)NULL);
		_exit(127);
	}
	close(logfd);
	deadline = cli_now() + CLI_START_WAIT;
	/* vmctld --detach exits the moment the broker listens: a pidfd says
	 * so at once, where sleeping between looks cost up to 20 ms. */
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	for (;;) {
		pid_t got = waitpid(pid, &status, WNOHANG);

		if (got == pid)
			break;
		if (got < 0 && errno != EINTR) {
			snprintf(why, whylen, "lost track of %s: %s", broker, strerror(errno));
			goto out_close;
		}
		if (cli_now() > deadline) {
			snprintf(why, whylen, "%s --detach did not return within %.0f seconds", broker,
				 CLI_START_WAIT);
			goto out_close;
		}
		if (pidfd >= 0) {
			struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

			poll(&pfd, 1, 1000);
		} else {
			cli_sleep(0.02);
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		snprintf(why, whylen,
			 "could not run vmctld (looked beside vmctl and on PATH)");
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(why, whylen, "%.2000s --detach failed (exit status %d); see %.2000s", broker,
			 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), log);
		return -1;
	}
	return 0;

out_close:
	if (pidfd >= 0)
		close(pidfd);
	return -1;
}

static void cli_on_notify(struct proto_conn *c, void *ud, const char *method,
			  const msgpack_object *params)
{
	char text[1024] = "";
	double fraction = -1;

	proto_get_str(params, "text", text, sizeof(text));
	if (strcmp(method, "progress") == 0) {
		if (proto_get_double(params, "fraction", &fraction) < 0) {
			int64_t whole;

			/* a whole-number fraction (0 or 1) may arrive as an int */
			if (proto_get_int(params, "fraction", &whole) == 0)
				fraction = (double)whole;
		}
		progress_show(text, fraction);
	} else if (strcmp(method, "warning") == 0) {
		progress_end();
		fprintf(stderr, "vmctl: warning: %s\n", text);
	}
}

static void cli_on_closed(struct proto_conn *c, void *ud, int err, const char *why)
{
	snprintf(cli.why, sizeof(cli.why), "%s",
		 why != NULL && why[0] != '\0' ? why : "the broker closed the connection");
}

static const struct proto_conn_ops cli_conn_ops = {
	.notify = cli_on_notify,
	.closed = cli_on_closed,
};

/* A broker whose folder or socket someone else controls is not ours to
 * talk to (nor to start: cli_start_broker checks again once it exists). */
static int cli_trust(const char *dir, const char *sock)
{
	char err[8192];
	int rc = path_check_trusted(dir, S_IFDIR, "the data folder", err, sizeof(err));

	if (rc == 0)
		rc = path_check_trusted(sock, S_IFSOCK, "the broker's socket", err, sizeof(err));
	if (rc < 0 && rc != PROTO_E_NOT_FOUND) {
		fprintf(stderr, "vmctl: %s\n", err);
		return rc;
	}
	return 0;
}

static int cli_connect(void)
{
	char dir[4096], path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char why[8192] = "";
	const char *no_start = getenv("VMCTL_NO_AUTOSTART");
	double deadline;
	int fd;

	if (cli_socket_path(path, sizeof(path), dir, sizeof(dir)) < 0)
		return EXIT_UNREACHABLE;
	if (cli_trust(dir, path) < 0)
		return EXIT_UNREACHABLE;
	fd = cli_try_connect(path);
	if (fd < 0 && (fd == -ENOENT || fd == -ECONNREFUSED) &&
	    (no_start == NULL || no_start[0] == '\0' || strcmp(no_start, "0") == 0)) {
		if (cli_start_broker(dir, why, sizeof(why)) == 0) {
			deadline = cli_now() + CLI_CONNECT_WAIT;
			while ((fd = cli_try_connect(path)) < 0 && cli_now() < deadline)
				cli_sleep(0.05);
			if (fd < 0)
				snprintf(why, sizeof(why),
					 "vmctld was started but does not answer; see %s/vmctld.log",
					 dir);
		}
	}
	if (fd < 0) {
		fprintf(stderr, "vmctl: cannot reach the broker at %s: %s\n", path, strerror(-fd));
		if (why[0] != '\0')
			fprintf(stderr, "vmctl: %s\n", why);
		else if (fd == -EACCES)
			fprintf(stderr, "vmctl: you may not have access to that socket "
					"(is it a system-wide broker owned by a group you are not in?)\n");
		return EXIT_UNREACHABLE;
	}

	cli.loop = ev_loop_new(EVFLAG_AUTO);
	if (cli.loop == NULL) {
		close(fd);
		fprintf(stderr, "vmctl: cannot create an event loop\n");
		return EXIT_FAILED;
	}
	cli.conn = proto_conn_new(cli.loop, fd, fd, &cli_conn_ops, NULL);
	if (cli.conn == NULL) {
		close(fd);
		ev_loop_destroy(cli.loop);
		cli.loop = NULL;
		fprintf(stderr, "vmctl: out of memory\n");
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

void cli_disconnect(void)
{
	if (cli.conn != NULL)
		proto_conn_free(cli.conn);
	cli.conn = NULL;
	if (cli.loop != NULL)
		ev_loop_destroy(cli.loop);
	cli.loop = NULL;
}

/* ---- calling ---- */

/* Bytes the copy of o needs: objects (8-aligned) and string bytes apart. */
static void cli_clone_size(const msgpack_object *o, size_t *objs, size_t *bytes)
{
	switch (o->type) {
	case MSGPACK_OBJECT_STR:
		*bytes += o->via.str.size;
		break;
	case MSGPACK_OBJECT_BIN:
		*bytes += o->via.bin.size;
		break;
	case MSGPACK_OBJECT_EXT:
		*bytes += o->via.ext.size;
		break;
	case MSGPACK_OBJECT_ARRAY:
		*objs += o->via.array.size * sizeof(msgpack_object);
		for (uint32_t i = 0; i < o->via.array.size; i++)
			cli_clone_size(&o->via.array.ptr[i], objs, bytes);
		break;
	case MSGPACK_OBJECT_MAP:
		*objs += o->via.map.size * sizeof(msgpack_object_kv);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			cli_clone_size(&o->via.map.ptr[i].key, objs, bytes);
			cli_clone_size(&o->via.map.ptr[i].val, objs, bytes);
		}
		break;
	default:
		break;
	}
}

static void cli_clone_into(msgpack_object *dst, const msgpack_object *src, char **objs, char **bytes)
{
	*dst = *src;
	switch (src->type) {
	case MSGPACK_OBJECT_STR:
		memcpy(*bytes, src->via.str.ptr, src->via.str.size);
		dst->via.str.ptr = *bytes;
		*bytes += src->via.str.size;
		break;
	case MSGPACK_OBJECT_BIN:
		memcpy(*bytes, src->via.bin.ptr, src->via.bin.size);
		dst->via.bin.ptr = *bytes;
		*bytes += src->via.bin.size;
		break;
	case MSGPACK_OBJECT_EXT:
		memcpy(*bytes, src->via.ext.ptr, src->via.ext.size);
		dst->via.ext.ptr = *bytes;
		*bytes += src->via.ext.size;
		break;
	case MSGPACK_OBJECT_ARRAY:
		dst->via.array.ptr = (msgpack_object *)(void *)*objs;
		*objs += src->via.array.size * sizeof(msgpack_object);
		for (uint32_t i = 0; i < src->via.array.size; i++)
			cli_clone_into(&dst->via.array.ptr[i], &src->via.array.ptr[i], objs, bytes);
		break;
	case MSGPACK_OBJECT_MAP:
		dst->via.map.ptr = (msgpack_object_kv *)(void *)*objs;
		*objs += src->via.map.size * sizeof(msgpack_object_kv);
		for (uint32_t i = 0; i < src->via.map.size; i++) {
			cli_clone_into(&dst->via.map.ptr[i].key, &src->via.map.ptr[i].key, objs, bytes);
			cli_clone_into(&dst->via.map.ptr[i].val, &src->via.map.ptr[i].val, objs, bytes);
		}
		break;
	default:
		break;
	}
}

/* Copy result into one block held by r->data (the root in r->unpacked):
 * a list of 1,000 instances used to be packed and unpacked again here. */
static int cli_keep_result(struct cli_reply *r, const msgpack_object *result)
{
	size_t objs = 0, bytes = 0;
	char *block, *obj_cur, *byte_cur;

	cli_clone_size(result, &objs, &bytes);
	block = malloc(objs + bytes + 1);
	if (block == NULL)
		return PROTO_E_NOMEM;
	obj_cur = block;
	byte_cur = block + objs;
	cli_clone_into(&r->unpacked.data, result, &obj_cur, &byte_cur);
	msgpack_sbuffer_destroy(&r->data);
	r->data.data = block;
	r->data.size = r->data.alloc = objs + bytes + 1;
	r->result = &r->unpacked.data;
	return 0;
}

static void cli_on_result(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct cli_call *call = ud;
	struct cli_reply *r = call->reply;

	call->done = true;
	r->err = err;
	if (err < 0) {
		r->errmsg = strdup(errmsg != NULL && errmsg[0] != '\0' ? errmsg : proto_strerror(err));
		return;
	}
	/* the result lives only during this callback: keep our own copy */
	if (result != NULL && cli_keep_result(r, result) == 0)
		return;
	r->err = result == NULL ? PROTO_E_PROTOCOL : PROTO_E_NOMEM;
	r->errmsg = strdup(result == NULL ? "the broker sent no result" : "out of memory");
}

int cli_exit_for_error(int err)
{
	switch (err) {
	case 0:
		return EXIT_OK;
	case PROTO_E_TIMEOUT:
		return EXIT_TIMEOUT;
	case PROTO_E_INVALID_ARGUMENT:
		return EXIT_USAGE;
	default:
		return EXIT_FAILED;
	}
}

void cli_reply_free(struct cli_reply *r)
{
	free(r->errmsg);
	r->errmsg = NULL;
	msgpack_unpacked_destroy(&r->unpacked);
	msgpack_sbuffer_destroy(&r->data);
	r->result = NULL;
}

int cli_request(const char *method, const msgpack_sbuffer *params, double timeout_s,
		struct cli_reply *r)
{
	struct cli_call call = { .reply = r };
	double started = cli_now();
	uint64_t msgid;
	int rc;

	memset(r, 0, sizeof(*r));
	msgpack_sbuffer_init(&r->data);
	msgpack_unpacked_init(&r->unpacked);
	if (cli.conn == NULL) {
		rc = cli_connect();
		if (rc != EXIT_OK)
			return rc;
	}
	rc = proto_call_sb(cli.conn, method, params, timeout_s, cli_on_result, &call, &msgid);
	if (rc < 0)
		cli_on_result(&call, rc, cli.why[0] != '\0' ? cli.why : NULL, NULL);
	while (!call.done) {
		if (!proto_conn_is_open(cli.conn)) {
			/* closed without answering: should not happen, but never spin */
			cli_on_result(&call, PROTO_E_UNAVAILABLE, cli.why, NULL);
			break;
		}
		ev_run(cli.loop, EVRUN_ONCE);
	}
	progress_end();
	if (r->err == 0)
		return EXIT_OK;
	if (r->err == PROTO_E_UNAVAILABLE && !proto_conn_is_open(cli.conn))
		fprintf(stderr, "vmctl: lost the connection to the broker: %s\n",
			cli.why[0] != '\0' ? cli.why : r->errmsg);
	else if (r->err == PROTO_E_TIMEOUT && timeout_s > 0 && cli_now() - started >= timeout_s)
		fprintf(stderr, "vmctl: %s (no answer from the broker within %.0f seconds)\n",
			r->errmsg, timeout_s);
	else
		fprintf(stderr, "vmctl: %s\n", r->errmsg != NULL ? r->errmsg : proto_strerror(r->err));
	return cli_exit_for_error(r->err);
}
