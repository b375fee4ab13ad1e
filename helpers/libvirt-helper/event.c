/*
 * libvirt's event loop on the helper's libev loop (virEventRegisterImpl).
 *
 * libvirt calls the add/update/remove functions from any thread (a worker
 * in the middle of an RPC disables its socket watch, for instance), while
 * libev watchers may only be touched on the loop's thread. So every call
 * records the wanted state under a lock and wakes the loop with an
 * ev_async; the loop thread then brings the libev watchers in line.
 * Callbacks into libvirt always run on the loop thread, without the lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <ev.h>

#include "lvh.h"

struct lvev_handle {
	int id;
	int fd;
	int events; /* VIR_EVENT_HANDLE_* wanted */
	bool dirty;
	bool removed;
	virEventHandleCallback cb;
	void *opaque;
	virFreeCallback ff;
	ev_io io;
	struct lvev_handle *next;
};

struct lvev_timer {
	int id;
	int ms; /* -1 off, 0 every loop iteration, else period */
	bool dirty;
	bool removed;
	virEventTimeoutCallback cb;
	void *opaque;
	virFreeCallback ff;
	ev_timer timer;
	struct lvev_timer *next;
};

static pthread_mutex_t lvev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ev_loop *lvev_loop;
static ev_async lvev_wake;
static struct lvev_handle *lvev_handles;
static struct lvev_timer *lvev_timers;
static int lvev_next_id = 1;

static void lvev_kick(void)
{
	ev_async_send(lvev_loop, &lvev_wake);
}

static void lvev_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct lvev_handle *h = (struct lvev_handle *)((char *)w - offsetof(struct lvev_handle, io));
	int events = 0;

	pthread_mutex_lock(&lvev_lock);
	if (h->removed || h->dirty) {
		pthread_mutex_unlock(&lvev_lock);
		return;
	}
	virEventHandleCallback cb = h->cb;
	void *opaque = h->opaque;
	int id = h->id, fd = h->fd;
	pthread_mutex_unlock(&lvev_lock);

	if (revents & EV_READ)
		events |= VIR_EVENT_HANDLE_READABLE;
	if (revents & EV_WRITE)
		events |= VIR_EVENT_HANDLE_WRITABLE;
	if (revents & EV_ERROR)
		events |= VIR_EVENT_HANDLE_ERROR;
	cb(id, fd, events, opaque);
}

static void lvev_timer_arm(struct lvev_timer *t)
{
	ev_timer_stop(lvev_loop, &t->timer);
	if (t->ms < 0)
		return;
	double s = t->ms / 1000.0;
	ev_timer_set(&t->timer, s, s);
	ev_timer_start(lvev_loop, &t->timer);
}

static void lvev_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lvev_timer *t = (struct lvev_timer *)((char *)w - offsetof(struct lvev_timer, timer));

	pthread_mutex_lock(&lvev_lock);
	if (t->removed || t->dirty || t->ms < 0) {
		pthread_mutex_unlock(&lvev_lock);
		return;
	}
	virEventTimeoutCallback cb = t->cb;
	void *opaque = t->opaque;
	int id = t->id;
	/* A zero period means "on every iteration": a zero repeat would stop
	 * the libev timer, so re-arm it by hand. */
	if (t->ms == 0)
		lvev_timer_arm(t);
	pthread_mutex_unlock(&lvev_lock);

	cb(id, opaque);
}

/* Loop thread: apply the recorded changes, then free what was removed.
 * libvirt requires the free callbacks to run outside its own calls, which
 * this deferral guarantees. */
static void lvev_sync(struct ev_loop *loop, ev_async *w, int revents)
{
	struct lvev_handle *dead_h = NULL;
	struct lvev_timer *dead_t = NULL;

	pthread_mutex_lock(&lvev_lock);
	for (struct lvev_handle **pp = &lvev_handles; *pp;) {
		struct lvev_handle *h = *pp;
		if (h->removed) {
			ev_io_stop(loop, &h->io);
			*pp = h->next;
			h->next = dead_h;
			dead_h = h;
			continue;
		}
		if (h->dirty) {
			int mask = 0;
			if (h->events & VIR_EVENT_HANDLE_READABLE)
				mask |= EV_READ;
			if (h->events & VIR_EVENT_HANDLE_WRITABLE)
				mask |= EV_WRITE;
			ev_io_stop(loop, &h->io);
			if (mask) {
				ev_io_set(&h->io, h->fd, mask);
				ev_io_start(loop, &h->io);
			}
			h->dirty = false;
		}
		pp = &h->next;
	}
	for (struct lvev_timer **pp = &lvev_timers; *pp;) {
		struct lvev_timer *t = *pp;
		if (t->removed) {
			ev_timer_stop(loop, &t->timer);
			*pp = t->next;
			t->next = dead_t;
			dead_t = t;
			continue;
		}
		if (t->dirty) {
			lvev_timer_arm(t);
			t->dirty = false;
		}
		pp = &t->next;
	}
	pthread_mutex_unlock(&lvev_lock);

	while (dead_h) {
		struct lvev_handle *h = dead_h;
		dead_h = h->next;
		if (h->ff)
			h->ff(h->opaque);
		free(h);
	}
	while (dead_t) {
		struct lvev_timer *t = dead_t;
		dead_t = t->next;
		if (t->ff)
			t->ff(t->opaque);
		free(t);
	}
}

static int lvev_add_handle(int fd, int events, virEventHandleCallback cb, void *opaque,
			   virFreeCallback ff)
{
	struct lvev_handle *h = calloc(1, sizeof(*h));
	if (!h)
		return -1;
	h->fd = fd;
	h->events = events;
	h->dirty = true;
	h->cb = cb;
	h->opaque = opaque;
	h->ff = ff;
	ev_io_init(&h->io, lvev_io_cb, fd, EV_READ);

	pthread_mutex_lock(&lvev_lock);
	h->id = lvev_next_id++;
	h->next = lvev_handles;
	lvev_handles = h;
	int id = h->id;
	pthread_mutex_unlock(&lvev_lock);
	lvev_kick();
	return id;
}

static void lvev_update_handle(int id, int events)
{
	pthread_mutex_lock(&lvev_lock);
	for (struct lvev_handle *h = lvev_handles; h; h = h->next) {
		if (h->id == id && !h->removed) {
			h->events = events;
			h->dirty = true;
			break;
		}
	}
	pthread_mutex_unlock(&lvev_lock);
	lvev_kick();
}

static int lvev_remove_handle(int id)
{
	int rc = -1;

	pthread_mutex_lock(&lvev_lock);
	for (struct lvev_handle *h = lvev_handles; h; h = h->next) {
		if (h->id == id && !h->removed) {
			h->removed = true;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&lvev_lock);
	lvev_kick();
	return rc;
}

static int lvev_add_timeout(int ms, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff)
{
	struct lvev_timer *t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	t->ms = ms;
	t->dirty = true;
	t->cb = cb;
	t->opaque = opaque;
	t->ff = ff;
	ev_timer_init(&t->timer, lvev_timer_cb, 0., 0.);

	pthread_mutex_lock(&lvev_lock);
	t->id = lvev_next_id++;
	t->next = lvev_timers;
	lvev_timers = t;
	int id = t->id;
	pthread_mutex_unlock(&lvev_lock);
	lvev_kick();
	return id;
}

static void lvev_update_timeout(int id, int ms)
{
	pthread_mutex_lock(&lvev_lock);
	for (struct lvev_timer *t = lvev_timers; t; t = t->next) {
		if (t->id == id && !t->removed) {
			t->ms = ms;
			t->dirty = true;
			break;
		}
	}
	pthread_mutex_unlock(&lvev_lock);
	lvev_kick();
}

static int lvev_remove_timeout(int id)
{
	int rc = -1;

	pthread_mutex_lock(&lvev_lock);
	for (struct lvev_timer *t = lvev_timers; t; t = t->next) {
		if (t->id == id && !t->removed) {
			t->removed = true;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&lvev_lock);
	lvev_kick();
	return rc;
}

int lvev_register(struct ev_loop *loop)
{
	lvev_loop = loop;
	ev_async_init(&lvev_wake, lvev_sync);
	ev_async_start(loop, &lvev_wake);
	/* The wake-up watcher alone must not keep the loop alive at exit. */
	ev_unref(loop);
	virEventRegisterImpl(lvev_add_handle, lvev_update_handle, lvev_remove_handle,
			     lvev_add_timeout, lvev_update_timeout, lvev_remove_timeout);
	return 0;
}
