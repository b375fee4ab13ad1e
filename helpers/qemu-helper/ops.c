/*
 * What the helper remembers between requests, none of it needed to be
 * correct after a restart: which instances have an operation in progress
 * (to answer "starting", "stopping", ... and refuse a second one), and the
 * last state told to the broker, so that a VM that stops by itself (the
 * guest powered off) is noticed through a pidfd and reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ev.h>

#include "qh.h"

struct busy {
	char *dir;
	const char *state;
	struct busy *next;
};

struct watched {
	char *name;
	char *dir;
	char state[16];
	int pidfd; /* -1 when not watching a process */
	ev_io io;
	struct watched *next;
};

static struct busy *busy_list;
static struct watched *watch_list;

int qh_busy_claim(const char *dir, const char *state)
{
	struct busy *b;

	if (qh_busy_state(dir))
		return PROTO_E_BUSY;
	b = calloc(1, sizeof(*b));
	if (!b || !(b->dir = strdup(dir))) {
		free(b);
		return PROTO_E_NOMEM;
	}
	b->state = state;
	b->next = busy_list;
	busy_list = b;
	return 0;
}

void qh_busy_release(const char *dir)
{
	for (struct busy **p = &busy_list; *p; p = &(*p)->next) {
		if (!strcmp((*p)->dir, dir)) {
			struct busy *b = *p;

			*p = b->next;
			free(b->dir);
			free(b);
			return;
		}
	}
}

const char *qh_busy_state(const char *dir)
{
	for (struct busy *b = busy_list; b; b = b->next)
		if (!strcmp(b->dir, dir))
			return b->state;
	return NULL;
}

static struct watched *watch_find(const char *dir)
{
	for (struct watched *w = watch_list; w; w = w->next)
		if (!strcmp(w->dir, dir))
			return w;
	return NULL;
}

static void watch_disarm(struct watched *w)
{
	if (w->pidfd < 0)
		return;
	ev_io_stop(vmh_loop(), &w->io);
	close(w->pidfd);
	w->pidfd = -1;
}

static void watch_exit_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct watched *w = io->data;
	struct qh_inst inst = {.name = w->name, .dir = w->dir};

	watch_disarm(w);
	/* An operation in progress (stop, suspend, restart) reports for itself,
	 * and one that just ended has already told the broker. */
	if (qh_busy_state(w->dir) || strcmp(w->state, "running"))
		return;
	if (qh_vm_pid(&inst))
		return;
	vmh_log(VMH_INFO, "%s: qemu exited", w->name);
	qh_vm_cleanup(&inst);
	qh_notify_state(w->name, w->dir, qh_vm_suspended(&inst) ? "suspended" : "stopped");
}

static void watch_arm(struct watched *w)
{
	struct qh_inst inst = {.name = w->name, .dir = w->dir};
	pid_t pid;
	int fd;

	if (w->pidfd >= 0)
		return;
	pid = qh_vm_pid(&inst);
	if (!pid)
		return;
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return; /* an old kernel: changes are seen on the next request instead */
	w->pidfd = fd;
	ev_io_init(&w->io, watch_exit_cb, fd, EV_READ);
	w->io.data = w;
	ev_io_start(vmh_loop(), &w->io);
}

void qh_watch(const struct qh_inst *inst)
{
	struct watched *w = watch_find(inst->dir);

	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return;
		w->name = strdup(inst->name);
		w->dir = strdup(inst->dir);
		if (!w->name || !w->dir) {
			free(w->name);
			free(w->dir);
			free(w);
			return;
		}
		w->pidfd = -1;
		w->next = watch_list;
		watch_list = w;
		/* The state before this helper did anything: the "old" of the next change. */
		snprintf(w->state, sizeof(w->state), "%s",
			 qh_vm_pid(inst) ? "running" : qh_vm_suspended(inst) ? "suspended" : "stopped");
	}
	watch_arm(w);
}

void qh_notify_state(const char *name, const char *dir, const char *state)
{
	struct watched *w = watch_find(dir);
	const char *old = w && w->state[0] ? w->state : "unknown";

	if (strcmp(old, state))
		vmh_state_changed(name, old, state);
	if (!w)
		return;
	snprintf(w->state, sizeof(w->state), "%s", state);
	if (!strcmp(state, "running"))
		watch_arm(w);
}

void qh_ops_free(void)
{
	while (watch_list) {
		struct watched *w = watch_list;

		watch_list = w->next;
		watch_disarm(w);
		free(w->name);
		free(w->dir);
		free(w);
	}
	while (busy_list) {
		struct busy *b = busy_list;

		busy_list = b->next;
		free(b->dir);
		free(b);
	}
}
