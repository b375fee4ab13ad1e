/*
 * Child processes (genisoimage, ssh logins, ssh-keygen, helper --describe)
 * run under ev_child with their output captured on a pipe, so the loop never
 * waits for one.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"

#define CHILD_OUTPUT_MAX (64 * 1024)

struct child {
	pid_t pid;
	ev_child child_w;
	ev_io out_w;
	ev_timer kill_w;
	int out_fd;
	char *out;
	size_t out_len;
	bool exited;
	bool eof;
	int status;
	child_done_fn done;
	child_output_fn output_fn;
	void *ud;
};

static void child_finish(struct child *c)
{
	child_done_fn done = c->done;
	void *ud = c->ud;
	int status = c->status;
	char *out = c->out;

	ev_timer_stop(B->loop, &c->kill_w);
	free(c);
	if (done)
		done(ud, status, out ? out : "");
	free(out);
}

static void child_close_output(struct child *c)
{
	if (c->out_fd < 0)
		return;
	ev_io_stop(B->loop, &c->out_w);
	close(c->out_fd);
	c->out_fd = -1;
}

static void child_on_output(struct ev_loop *loop, ev_io *w, int revents)
{
	struct child *c = w->data;
	char buf[4096];
	ssize_t n = read(c->out_fd, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		child_close_output(c);
		c->eof = true;
		if (c->exited)
			child_finish(c);
		return;
	}
	if (c->out_len < CHILD_OUTPUT_MAX) {
		size_t keep = (size_t)n;
		char *grown;

		if (keep > CHILD_OUTPUT_MAX - c->out_len)
			keep = CHILD_OUTPUT_MAX - c->out_len;
		grown = realloc(c->out, c->out_len + keep + 1);
		if (!grown)
			return;
		c->out = grown;
		memcpy(c->out + c->out_len, buf, keep);
		c->out_len += keep;
		c->out[c->out_len] = '\0';
		if (c->output_fn && c->done)
			c->output_fn(c->ud, c->out);
	}
}

static void child_on_exit(struct ev_loop *loop, ev_child *w, int revents)
{
	struct child *c = w->data;

	ev_child_stop(loop, w);
	c->exited = true;
	c->status = w->rstatus;
	/* A grandchild may hold the output pipe open; what the child itself
	 * wrote is already in the pipe, so drain it and stop there. */
	if (c->out_fd >= 0) {
		for (;;) {
			char buf[4096];
			ssize_t n = read(c->out_fd, buf, sizeof(buf));

			if (n <= 0)
				break;
			if (c->out_len + (size_t)n <= CHILD_OUTPUT_MAX) {
				char *grown = realloc(c->out, c->out_len + (size_t)n + 1);

				if (!grown)
					break;
				c->out = grown;
				memcpy(c->out + c->out_len, buf, (size_t)n);
				c->out_len += (size_t)n;
				c->out[c->out_len] = '\0';
			}
		}
		child_close_output(c);
	}
	child_finish(c);
}

static void child_on_kill_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct child *c = w->data;

	if (!c->exited)
		kill(c->pid, SIGKILL);
}

/* In the child after fork: only async-signal-safe calls until exec. */
static void child_exec(char *const argv[], const char *cwd, int out_fd)
{
	int devnull = open("/dev/null", O_RDONLY);
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	if (devnull >= 0) {
		dup2(devnull, 0);
		if (devnull > 2)
			close(devnull);
	}
	if (out_fd >= 0) {
		dup2(out_fd, 1);
		dup2(out_fd, 2);
		if (out_fd > 2)
			close(out_fd);
	}
	if (cwd && chdir(cwd) < 0)
		_exit(126);
	execvp(argv[0], argv);
	_exit(127);
}

struct child *child_run(char *const argv[], const char *cwd, double kill_after_s,
			child_done_fn done, void *ud, char *err, size_t errlen)
{
	struct child *c = calloc(1, sizeof(*c));
	int pipefd[2];

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "cannot create a pipe for %s: %s", argv[0], strerror(errno));
		goto out_free;
	}
	c->pid = fork();
	if (c->pid < 0) {
		snprintf(err, errlen, "cannot start %s: %s", argv[0], strerror(errno));
		goto out_close;
	}
	if (c->pid == 0) {
		close(pipefd[0]);
		child_exec(argv, cwd, pipefd[1]);
	}
	close(pipefd[1]);
	c->out_fd = pipefd[0];
	fcntl(c->out_fd, F_SETFL, fcntl(c->out_fd, F_GETFL) | O_NONBLOCK);
	c->done = done;
	c->ud = ud;
	ev_child_init(&c->child_w, child_on_exit, c->pid, 0);
	c->child_w.data = c;
	ev_child_start(B->loop, &c->child_w);
	ev_io_init(&c->out_w, child_on_output, c->out_fd, EV_READ);
	c->out_w.data = c;
	ev_io_start(B->loop, &c->out_w);
	ev_timer_init(&c->kill_w, child_on_kill_timer, kill_after_s > 0 ? kill_after_s : 0, 0);
	c->kill_w.data = c;
	if (kill_after_s > 0)
		ev_timer_start(B->loop, &c->kill_w);
	return c;

out_close:
	close(pipefd[0]);
	close(pipefd[1]);
out_free:
	free(c);
	return NULL;
}

void child_cancel(struct child *c)
{
	if (!c)
		return;
	/* Keep watching until it is reaped, but nobody hears about it. */
	c->done = NULL;
	if (!c->exited)
		kill(c->pid, SIGKILL);
}

void child_watch_output(struct child *c, child_output_fn fn)
{
	if (c)
		c->output_fn = fn;
}

int child_run_sync(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0)
		child_exec(argv, NULL, -1);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return status;
}

struct child *child_run_ssh(const char *host, const char *port, int connect_timeout_s,
			    const char *command, double kill_after_s, child_done_fn done, void *ud,
			    char *err, size_t errlen)
{
	char login[128], timeout[48];
	char *argv[] = {
		"ssh", "-F", "/dev/null", "-i", B->ssh_key, "-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes", "-o", timeout, "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", (char *)port, login,
		(char *)command, NULL,
	};

	snprintf(login, sizeof(login), "ubuntu@%s", host);
	snprintf(timeout, sizeof(timeout), "ConnectTimeout=%d", connect_timeout_s);
	return child_run(argv, NULL, kill_after_s, done, ud, err, errlen);
}
