/*
 * Watching the qemu of each running instance through a pidfd, so that a VM
 * that stops by itself (the guest powered off) is noticed and reported.
 * The SDK keeps the claims of operations in progress and the state last
 * told to the broker (vmh_busy_*, vmh_state_*); none of it needs to be
 * correct after a restart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ev.h>

#include "qh.h"

struct watched {
	char *name;
	char *dir;
	int pidfd; /* -1 when not watching a process */
	ev_io io;
	struct watched *next; /* in its hash bucket */
};

/* Watches by folder: instances.list looks up every instance on every call. */
static struct {
	struct watched **v;
	size_t n_buckets; /* a power of two, or 0 */
	size_t n;
} watches;

static size_t watch_hash(const char *dir)
{
	size_t h = 14695981039346656037u; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)dir; *p; p++)
		h = (h ^ *p) * 1099511628211u;
	return h;
}

static struct watched *watch_find(const char *dir)
{
	if (!watches.n_buckets)
		return NULL;
	for (struct watched *w = watches.v[watch_hash(dir) & (watches.n_buckets - 1)]; w; w = w->next)
		if (!strcmp(w->dir, dir))
			return w;
	return NULL;
}

/* Keep about one watch per bucket; if memory runs out the chains grow. */
static void watch_grow(void)
{
	size_t nb = watches.n_buckets ? watches.n_buckets * 2 : 64;
	struct watched **v = calloc(nb, sizeof(*v));

	if (!v)
		return;
	for (size_t i = 0; i < watches.n_buckets; i++) {
		while (watches.v[i]) {
			struct watched *w = watches.v[i];
			size_t b = watch_hash(w->dir) & (nb - 1);

			watches.v[i] = w->next;
			w->next = v[b];
			v[b] = w;
		}
	}
	free(watches.v);
	watches.v = v;
	watches.n_buckets = nb;
}

/* false (and w freed) when there is no table to hold it. */
static bool watch_insert(struct watched *w)
{
	size_t b;

	if (watches.n >= watches.n_buckets)
		watch_grow();
	if (!watches.n_buckets) {
		free(w->name);
		free(w->dir);
		free(w);
		return false;
	}
	b = watch_hash(w->dir) & (watches.n_buckets - 1);
	w->next = watches.v[b];
	watches.v[b] = w;
	watches.n++;
	return true;
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
	struct vmh_instance inst = {.name = w->name, .dir = w->dir};
	enum proto_state told;

	watch_disarm(w);
	/* An operation in progress (stop, suspend, restart) reports for itself,
	 * and one that just ended has already told the broker. */
	if (vmh_busy(w->name, NULL) || !vmh_state_last(w->name, &told) ||
	    told != PROTO_STATE_RUNNING)
		return;
	if (qh_vm_pid(&inst))
		return;
	vmh_log(VMH_INFO, "%s: qemu exited", w->name);
	qh_vm_cleanup(&inst);
	qh_notify_state(&inst, qh_vm_suspended(&inst) ? PROTO_STATE_SUSPENDED : PROTO_STATE_STOPPED);
}

/* pid: qh_vm_pid() of the instance, just read. */
static void watch_arm_pid(struct watched *w, pid_t pid)
{
	int fd;

	if (w->pidfd >= 0 || !pid)
		return;
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return; /* an old kernel: changes are seen on the next request instead */
	w->pidfd = fd;
	ev_io_init(&w->io, watch_exit_cb, fd, EV_READ);
	w->io.data = w;
	ev_io_start(vmh_loop(), &w->io);
}

static void watch_arm(struct watched *w)
{
	struct vmh_instance inst = {.name = w->name, .dir = w->dir};

	if (w->pidfd < 0)
		watch_arm_pid(w, qh_vm_pid(&inst));
}

pid_t qh_watch_pid(const struct vmh_instance *inst)
{
	struct watched *w = watch_find(inst->dir);
	pid_t pid = qh_vm_pid(inst);

	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return pid;
		w->name = strdup(inst->name);
		w->dir = strdup(inst->dir);
		if (!w->name || !w->dir) {
			free(w->name);
			free(w->dir);
			free(w);
			return pid;
		}
		w->pidfd = -1;
		if (!watch_insert(w))
			return pid;
	}
	/* The state before this helper did anything: the "old" of the next change. */
	if (!vmh_state_last(inst->name, NULL))
		vmh_state_seen(inst->name, pid ? PROTO_STATE_RUNNING
					 : qh_vm_suspended(inst) ? PROTO_STATE_SUSPENDED
								 : PROTO_STATE_STOPPED);
	watch_arm_pid(w, pid);
	return pid;
}

void qh_watch(const struct vmh_instance *inst)
{
	(void)qh_watch_pid(inst);
}

void qh_notify_state(const struct vmh_instance *inst, enum proto_state state)
{
	struct watched *w = watch_find(inst->dir);

	vmh_state_notify(inst->name, state);
	if (w && state == PROTO_STATE_RUNNING)
		watch_arm(w);
}

void qh_ops_free(void)
{
	for (size_t i = 0; i < watches.n_buckets; i++) {
		while (watches.v[i]) {
			struct watched *w = watches.v[i];

			watches.v[i] = w->next;
			watch_disarm(w);
			free(w->name);
			free(w->dir);
			free(w);
		}
	}
	free(watches.v);
	watches.v = NULL;
	watches.n_buckets = watches.n = 0;
}
