/*
 * Child processes without blocking the helper's loop (qemu-img, a
 * hypervisor, a blocking conversation run in a forked child). Each child is
 * watched with ev_child; its output is read with ev_io so a chatty child
 * never blocks on a full pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include <vmproto/vmh.h>

#define RUN_OUTPUT_MAX (64 * 1024)
#define VMH_RUN_ERR 1024

struct run {
	ev_child child;
	ev_io out;
	ev_timer deadline;
	pid_t pid;
	int out_fd; /* -1 when not capturing or at EOF */
	char *buf;
	size_t len;
	bool timed_out;
	vmh_run_cb cb;
	void *ud;
};

static void run_read(struct run *r)
{
	char chunk[4096];
	ssize_t n;

	while (r->out_fd >= 0) {
		n = read(r->out_fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			ev_io_stop(vmh_loop(), &r->out);
			close(r->out_fd);
			r->out_fd = -1;
			return;
		}
		/* Keep the first RUN_OUTPUT_MAX bytes: the error is usually at the start. */
		size_t room = RUN_OUTPUT_MAX - r->len;
		size_t take = (size_t)n < room ? (size_t)n : room;

		memcpy(r->buf + r->len, chunk, take);
		r->len += take;
	}
}

static void run_out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	run_read(w->data);
}

static void run_finish(struct run *r, int wstatus)
{
	struct vmh_run_result res = {.status = -1};

	/* The child has exited: whatever it wrote is in the pipe now. Grandchildren
	 * (a daemonized qemu) may hold the pipe open, so do not wait for EOF. */
	run_read(r);
	if (r->out_fd >= 0) {
		ev_io_stop(vmh_loop(), &r->out);
		close(r->out_fd);
	}
	ev_timer_stop(vmh_loop(), &r->deadline);
	while (r->len && (r->buf[r->len - 1] == '\n' || r->buf[r->len - 1] == ' '))
		r->len--;
	r->buf[r->len] = '\0';
	if (WIFEXITED(wstatus))
		res.status = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		res.signal = WTERMSIG(wstatus);
	res.timed_out = r->timed_out;
	res.output = r->buf;
	r->cb(r->ud, &res);
	free(r->buf);
	free(r);
}

static void run_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	ev_child_stop(loop, w);
	run_finish(w->data, w->rstatus);
}

static void run_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct run *r = w->data;

	vmh_log(VMH_WARN, "child %d passed its deadline; killing it", (int)r->pid);
	r->timed_out = true;
	kill(r->pid, SIGKILL);
}

/* In the child: stdin from /dev/null, stdout+stderr to out_fd, keep_fds as 3.. */
static void run_child_setup(const struct vmh_run_opts *o, int out_fd)
{
	int null_fd = open("/dev/null", O_RDONLY);
	int moved[VMH_MAX_KEEP_FDS];
	size_t n = o && o->n_keep_fds <= VMH_MAX_KEEP_FDS ? o->n_keep_fds : 0;

	if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
		_exit(127);
	/* Move the fds to pass above the range they will land in, then into place. */
	for (size_t i = 0; i < n; i++) {
		moved[i] = fcntl(o->keep_fds[i], F_DUPFD, 3 + VMH_MAX_KEEP_FDS);
		if (moved[i] < 0)
			_exit(127);
	}
	for (size_t i = 0; i < n; i++)
		if (dup2(moved[i], 3 + (int)i) < 0)
			_exit(127);
	/* Nothing else of the helper's (the protocol pipe above all) may leak
	 * into a VM that outlives it. */
	close_range(3 + (unsigned)n, ~0u, 0);
	signal(SIGPIPE, SIG_DFL);
	if (o && o->new_session)
		setsid();
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static struct run *run_new(vmh_run_cb cb, void *ud)
{
	struct run *r;

	/* The loop (libev's default one, which owns SIGCHLD) must exist before
	 * the fork: a child that exits before its handler is installed is
	 * never reaped, and its callback never runs. vmh_main() makes it
	 * early; a diagnostic run before vmh_main() would race. */
	(void)vmh_loop();
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->buf = malloc(RUN_OUTPUT_MAX + 1);
	if (!r->buf) {
		free(r);
		return NULL;
	}
	r->out_fd = -1;
	r->cb = cb;
	r->ud = ud;
	return r;
}

static void run_watch(struct run *r, double timeout_s)
{
	struct ev_loop *loop = vmh_loop();

	ev_child_init(&r->child, run_child_cb, r->pid, 0);
	r->child.data = r;
	ev_child_start(loop, &r->child);
	if (r->out_fd >= 0) {
		ev_io_init(&r->out, run_out_cb, r->out_fd, EV_READ);
		r->out.data = r;
		ev_io_start(loop, &r->out);
	}
	ev_timer_init(&r->deadline, run_deadline_cb, timeout_s > 0 ? timeout_s : 0, 0);
	r->deadline.data = r;
	if (timeout_s > 0)
		ev_timer_start(loop, &r->deadline);
}

int vmh_run(char *const argv[], const struct vmh_run_opts *opts, vmh_run_cb cb, void *ud)
{
	struct run *r = run_new(cb, ud);
	int pipefd[2] = {-1, -1};
	int out_fd;
	char line[1024];

	if (!r)
		return PROTO_E_NOMEM;
	if (opts && opts->log_path) {
		out_fd = open(opts->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out_fd < 0) {
			vmh_log(VMH_ERROR, "cannot open %s: %s", opts->log_path, strerror(errno));
			goto out_free_run;
		}
	} else {
		if (pipe2(pipefd, O_CLOEXEC) < 0)
			goto out_free_run;
		out_fd = pipefd[1];
		r->out_fd = pipefd[0];
		fcntl(r->out_fd, F_SETFL, O_NONBLOCK);
	}
	if (!opts || !opts->log_path) {
		vmh_argv_str(argv, line, sizeof(line));
		vmh_log(VMH_DEBUG, "run: %s", line);
	}
	r->pid = fork();
	if (r->pid < 0) {
		close(out_fd);
		if (r->out_fd >= 0)
			close(r->out_fd);
		goto out_free_run;
	}
	if (r->pid == 0) {
		run_child_setup(opts, out_fd);
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(out_fd);
	run_watch(r, opts ? opts->timeout_s : 0);
	return 0;
out_free_run:
	free(r->buf);
	free(r);
	return PROTO_E_IO;
}

int vmh_run_task(vmh_task_fn fn, void *arg, double timeout_s, vmh_run_cb cb, void *ud)
{
	struct run *r = run_new(cb, ud);
	int pipefd[2];

	if (!r)
		return PROTO_E_NOMEM;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		goto out_free_run;
	r->out_fd = pipefd[0];
	fcntl(r->out_fd, F_SETFL, O_NONBLOCK);
	r->pid = fork();
	if (r->pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		goto out_free_run;
	}
	if (r->pid == 0) {
		char err[VMH_RUN_ERR] = "";
		int rc;

		/* Keep only the answer pipe (as fd 3): a helper killed meanwhile must
		 * not have its protocol pipe held open by this child. */
		if (dup2(pipefd[1], 3) < 0)
			_exit(127);
		close_range(4, ~0u, 0);
		rc = fn(arg, err, sizeof(err));
		if (write(3, err, strlen(err)) < 0)
			_exit(127);
		/* _exit: the parent's atexit handlers and stdio buffers are not ours. */
		_exit(-rc);
	}
	close(pipefd[1]);
	run_watch(r, timeout_s);
	return 0;
out_free_run:
	free(r->buf);
	free(r);
	return PROTO_E_IO;
}

int vmh_task_code(const struct vmh_run_result *r)
{
	if (r->timed_out)
		return PROTO_E_TIMEOUT;
	if (r->status == 0)
		return 0;
	if (r->status > 0 && r->status <= -PROTO_E_MIN)
		return -r->status;
	return PROTO_E_DRIVER;
}

void vmh_argv_str(char *const argv[], char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; argv[i] && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? " " : "", argv[i]);

		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/* ---- vmh_run_wait: blocking, for init only ---- */

extern char **environ;

static double run_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int vmh_run_wait(char *const argv[], double timeout_s, char *out, size_t outlen)
{
	posix_spawn_file_actions_t fa;
	int fds[2], status = 0;
	size_t used = 0;
	double deadline = run_now() + timeout_s;
	bool killed = false;
	pid_t pid;

	if (outlen)
		out[0] = '\0';
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	for (;;) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		double left = deadline - run_now();
		char buf[4096];
		ssize_t n;

		if (left <= 0) {
			kill(pid, SIGKILL);
			killed = true;
			break;
		}
		if (poll(&p, 1, (int)(left * 1000) + 1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(fds[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && used + 1 < outlen; i++)
			out[used++] = buf[i];
		if (outlen)
			out[used] = '\0';
	}
	close(fds[0]);
	/* The loop does not run yet: nothing else reaps this child. */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (killed || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}
