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
	double wait;         /* for requests that give no timeout (cli_set_wait) */
	pid_t broker_pid;    /* 0 if the socket did not say */
	char log_path[4200]; /* the broker's log, for messages */
	char why[256];       /* why the connection closed */
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

/* One attempt: the connected fd, or -errno. Non-blocking, so that a
 * broker whose queue of new connections is full (stopped, or swamped)
 * gives -EAGAIN instead of holding us in connect() for good. */
static int cli_try_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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

/* Append what is readable on fd (non-blocking) to buf, keeping at most
 * cap - 1 bytes; the rest is read and dropped. */
static void cli_drain(int fd, char *buf, size_t cap, size_t *len)
{
	char chunk[1024];
	ssize_t n;

	while ((n = read(fd, chunk, sizeof(chunk))) > 0 || (n < 0 && errno == EINTR)) {
		size_t keep = n > 0 && *len + 1 < cap ? cap - 1 - *len : 0;

		if (keep > (size_t)n)
			keep = (size_t)n;
		memcpy(buf + *len, chunk, keep);
		*len += keep;
		buf[*len] = '\0';
	}
}

/* why = "the broker could not start: " and what vmctld printed, one
 * "vmctl: " line per line it printed, without its own "vmctld: ". */
static void cli_explain_start_failure(const char *said, char *why, size_t whylen)
{
	size_t used = 0;
	const char *line = said;

	why[0] = '\0';
	while (*line != '\0' && used + 1 < whylen) {
		size_t len = strcspn(line, "\n");
		const char *text = line;

		if (len >= 8 && strncmp(text, "vmctld: ", 8) == 0) {
			text += 8;
			len -= 8;
		}
		if (len > 0)
			used += (size_t)snprintf(why + used, whylen - used, "%s%.*s",
						 used == 0 ? "the broker could not start: " : "\nvmctl: ",
						 (int)len, text);
		line = text + len;
		if (*line == '\n')
			line++;
	}
	/* It may quote a hand-edited file: no control bytes reach the terminal. */
	for (char *p = why; *p != '\0'; p++)
		if ((*p > 0 && *p < ' ' && *p != '\n') || *p == 0x7f)
			*p = '?';
}

/* Run `vmctld --detach` and wait for it to return. 0, or -1 after
 * explaining what went wrong in why. Its stderr is a pipe to us: when the
 * broker cannot start (a settings file it cannot read, say), the reason it
 * prints there is what the user gets to see. */
static int cli_start_broker(const char *dir, char *why, size_t whylen)
{
	char broker[4096], log[4096 + 16], said[4096] = "";
	size_t said_len = 0;
	double deadline;
	pid_t pid;
	int status, pidfd, errpipe[2];

	cli_broker_path(broker, sizeof(broker));
	snprintf(log, sizeof(log), "%s/vmctld.log", dir);
	mkdir_p(dir, 0700);
	/* Never a symbolic link, nor a file or folder someone else controls
	 * (the broker opens its log itself, with the same checks). */
	if (path_check_trusted(dir, S_IFDIR, "the data folder", why, whylen) < 0)
		return -1;
	if (pipe2(errpipe, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "cannot start %s: pipe: %s", broker, strerror(errno));
		return -1;
	}
	fcntl(errpipe[0], F_SETFL, O_NONBLOCK);
	pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "cannot start %s: %s", broker, strerror(errno));
		goto out_close_pipe;
	}
	if (pid == 0) {
		/* The broker must not hold our stdout: a caller reading vmctl's
		 * output until EOF would wait for the broker to exit. (It swaps
		 * the pipe on stderr for its log once detached.) */
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
		}
		dup2(errpipe[1], STDERR_FILENO);
		signal(SIGPIPE, SIG_DFL);
		execlp(broker, broker, "--detach", (char *)NULL);
		_exit(127);
	}
	close(errpipe[1]);
	errpipe[1] = -1;
	deadline = cli_now() + CLI_START_WAIT;
	/* vmctld --detach exits the moment the broker listens: a pidfd says
	 * so at once, where sleeping between looks cost up to 20 ms. */
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	for (;;) {
		pid_t got = waitpid(pid, &status, WNOHANG);

		cli_drain(errpipe[0], said, sizeof(said), &said_len);
		if (got == pid)
			break;
		if (got < 0 && errno != EINTR) {
			snprintf(why, whylen, "lost track of %s: %s", broker, strerror(errno));
			goto out_close;
		}
		if (cli_now() > deadline) {
			snprintf(why, whylen, "%s --detach did not return within %.0f seconds; see %s",
				 broker, CLI_START_WAIT, log);
			goto out_close;
		}
		{
			struct pollfd pfd[2] = { { .fd = errpipe[0], .events = POLLIN },
						 { .fd = pidfd, .events = POLLIN } };

			/* Without a pidfd, look again every 20 ms. */
			poll(pfd, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? 1000 : 20);
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	close(errpipe[0]);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		snprintf(why, whylen,
			 "could not run vmctld (looked beside vmctl and on PATH)");
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		cli_explain_start_failure(said, why, whylen);
		if (why[0] == '\0')
			snprintf(why, whylen, "%.2000s --detach failed (exit status %d); see %.2000s",
				 broker,
				 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
				 log);
		return -1;
	}
	return 0;

out_close:
	if (pidfd >= 0)
		close(pidfd);
out_close_pipe:
	close(errpipe[0]);
	if (errpipe[1] >= 0)
		close(errpipe[1]);
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


/* The broker's pid, from the socket (0 if the kernel does not say). */
static pid_t cli_peer_pid(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred))
		return 0;
	return cred.pid;
}

/* Connect to the broker, starting it when nothing listens. timeout_s
 * bounds the wait for a broker that accepts no connections. */
static int cli_connect(double timeout_s)
{
	char dir[4096], path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char why[8192] = "";
	const char *no_start = getenv("VMCTL_NO_AUTOSTART");
	double deadline;
	int fd;

	if (cli_socket_path(path, sizeof(path), dir, sizeof(dir)) < 0)
		return EXIT_UNREACHABLE;
	snprintf(cli.log_path, sizeof(cli.log_path), "%s/vmctld.log", dir);
	if (cli_trust(dir, path) < 0)
		return EXIT_UNREACHABLE;
	fd = cli_try_connect(path);
	if (fd == -EAGAIN) {
		deadline = cli_now() + (timeout_s > 0 ? timeout_s : CLI_CONNECT_WAIT);
		while ((fd = cli_try_connect(path)) == -EAGAIN && cli_now() < deadline)
			cli_sleep(0.05);
		if (fd == -EAGAIN) {
			fprintf(stderr, "vmctl: the broker at %s takes no new connections (tried for "
					"%.0f seconds): it may be stopped, hung or swamped; its log is %s\n",
				path, timeout_s > 0 ? timeout_s : CLI_CONNECT_WAIT, cli.log_path);
			return EXIT_TIMEOUT;
		}
	}
	if (fd < 0 && (fd == -ENOENT || fd == -ECONNREFUSED) &&
	    (no_start == NULL || no_start[0] == '\0' || strcmp(no_start, "0") == 0)) {
		if (cli_start_broker(dir, why, sizeof(why)) == 0) {
			int err;

			deadline = cli_now() + CLI_CONNECT_WAIT;
			while ((fd = cli_try_connect(path)) < 0 && cli_now() < deadline)
				cli_sleep(0.05);
			err = -fd;
			if (fd < 0)
				snprintf(why, sizeof(why),
					 "vmctld was started but does not answer at %s (%s); see %s", path,
					 strerror(err), cli.log_path);
		}
	}
	if (fd < 0) {
		/* A broker that could not start says why; that is the news, not
		 * the socket that is missing because of it. */
		if (why[0] != '\0') {
			fprintf(stderr, "vmctl: %s\n", why);
			return EXIT_UNREACHABLE;
		}
		fprintf(stderr, "vmctl: cannot reach the broker at %s: %s\n", path, strerror(-fd));
		if (fd == -EACCES)
			fprintf(stderr, "vmctl: you may not have access to that socket "
					"(is it a system-wide broker owned by a group you are not in?)\n");
		return EXIT_UNREACHABLE;
	}
	cli.broker_pid = cli_peer_pid(fd);

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

void cli_set_wait(double seconds)
{
	cli.wait = seconds;
}

/* "the broker (pid 123)", or "the broker" when the socket did not say. */
static void cli_broker_name(char *buf, size_t len)
{
	if (cli.broker_pid > 0)
		snprintf(buf, len, "the broker (pid %d)", (int)cli.broker_pid);
	else
		snprintf(buf, len, "the broker");
}

/* While a request runs, a cheap question ("version") every CLI_PROBE_EVERY
 * seconds tells a broker that works on it (it answers at once: its loop
 * never blocks) from one that is stopped or hung. */
struct cli_probe {
	ev_timer w;
	bool in_flight;
	bool hung; /* a question went unanswered for CLI_PROBE_WAIT seconds */
	uint64_t msgid;
};

static void cli_on_probe_result(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct cli_probe *probe = ud;

	probe->in_flight = false;
	/* Any answer, even an error, says the broker is there. */
	if (err == PROTO_E_TIMEOUT)
		probe->hung = true;
}

static void cli_on_probe_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct cli_probe *probe = w->data;

	if (probe->in_flight || !proto_conn_is_open(cli.conn))
		return;
	if (proto_call_sb(cli.conn, "version", NULL, CLI_PROBE_WAIT, cli_on_probe_result, probe,
			  &probe->msgid) == 0)
		probe->in_flight = true;
}

int cli_request(const char *method, const msgpack_sbuffer *params, double timeout_s,
		struct cli_reply *r)
{
	struct cli_call call = { .reply = r };
	struct cli_probe probe = { .in_flight = false };
	double started = cli_now();
	char broker[64];
	uint64_t msgid = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	msgpack_sbuffer_init(&r->data);
	msgpack_unpacked_init(&r->unpacked);
	if (timeout_s <= 0) /* no request waits forever */
		timeout_s = cli.wait > 0 ? cli.wait : CLI_WAIT_QUICK;
	if (cli.conn == NULL) {
		rc = cli_connect(timeout_s);
		if (rc != EXIT_OK)
			return rc;
	}
	rc = proto_call_sb(cli.conn, method, params, timeout_s, cli_on_result, &call, &msgid);
	if (rc < 0)
		cli_on_result(&call, rc, cli.why[0] != '\0' ? cli.why : NULL, NULL);
	ev_timer_init(&probe.w, cli_on_probe_timer, CLI_PROBE_EVERY, CLI_PROBE_EVERY);
	probe.w.data = &probe;
	if (!call.done)
		ev_timer_start(cli.loop, &probe.w);
	while (!call.done && !probe.hung) {
		if (!proto_conn_is_open(cli.conn)) {
			/* closed without answering: should not happen, but never spin */
			cli_on_result(&call, PROTO_E_UNAVAILABLE, cli.why, NULL);
			break;
		}
		ev_run(cli.loop, EVRUN_ONCE);
	}
	ev_timer_stop(cli.loop, &probe.w);
	if (probe.in_flight)
		proto_cancel(cli.conn, probe.msgid);
	progress_end();
	cli_broker_name(broker, sizeof(broker));
	if (!call.done) {
		proto_cancel(cli.conn, msgid);
		fprintf(stderr,
			"vmctl: %s stopped answering while '%s' was under way (a check got no "
			"answer within %.0f seconds): it may be stopped or hung; its log is %s\n",
			broker, method, CLI_PROBE_WAIT, cli.log_path);
		r->err = PROTO_E_TIMEOUT;
		return EXIT_TIMEOUT;
	}
	if (r->err == 0)
		return EXIT_OK;
	if (r->err == PROTO_E_UNAVAILABLE && !proto_conn_is_open(cli.conn))
		fprintf(stderr, "vmctl: lost the connection to the broker: %s\n",
			cli.why[0] != '\0' ? cli.why : r->errmsg);
	else if (r->err == PROTO_E_TIMEOUT && cli_now() - started >= timeout_s)
		fprintf(stderr,
			"vmctl: %s did not answer '%s' within %.0f seconds: it may be stopped, hung "
			"or busy; its log is %s (--timeout SECONDS waits longer)\n",
			broker, method, timeout_s, cli.log_path);
	else
		fprintf(stderr, "vmctl: %s\n", r->errmsg != NULL ? r->errmsg : proto_strerror(r->err));
	return cli_exit_for_error(r->err);
}
