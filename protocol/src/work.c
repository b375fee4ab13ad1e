/*
 * Blocking work on a thread of its own, its end handed back to the loop: for
 * a helper whose hypervisor speaks a blocking API (libcurl easy calls on a
 * REST socket, a library without an event interface). The work function runs
 * on the new thread and must not touch the SDK; done runs on the loop's
 * thread, where it may answer requests and notify.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <ev.h>

#include <vmproto/vmh.h>

struct work_item {
	void (*work)(void *arg);
	void (*done)(void *arg);
	void *arg;
	struct work_item *next;
};

static pthread_mutex_t work_lock = PTHREAD_MUTEX_INITIALIZER;
static struct work_item *work_done_head, **work_done_tail = &work_done_head;
static unsigned work_pending; /* started, done not yet run; loop thread only */
static struct ev_loop *work_loop;
static ev_async work_wake;

static void work_drain(struct ev_loop *loop, ev_async *w, int revents)
{
	struct work_item *list;

	(void)w;
	(void)revents;
	pthread_mutex_lock(&work_lock);
	list = work_done_head;
	work_done_head = NULL;
	work_done_tail = &work_done_head;
	pthread_mutex_unlock(&work_lock);
	while (list) {
		struct work_item *it = list;

		list = it->next;
		/* The watcher keeps the loop alive only while work is pending. */
		if (--work_pending == 0)
			ev_unref(loop);
		it->done(it->arg);
		free(it);
	}
}

static void *work_thread(void *p)
{
	struct work_item *it = p;

	it->work(it->arg);
	pthread_mutex_lock(&work_lock);
	*work_done_tail = it;
	work_done_tail = &it->next;
	pthread_mutex_unlock(&work_lock);
	ev_async_send(work_loop, &work_wake);
	return NULL;
}

int vmh_work(void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	struct work_item *it;
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	if (!work || !done)
		return PROTO_E_INVALID_ARGUMENT;
	if (!work_loop) {
		work_loop = vmh_loop();
		ev_async_init(&work_wake, work_drain);
		ev_async_start(work_loop, &work_wake);
		ev_unref(work_loop);
	}
	it = calloc(1, sizeof(*it));
	if (!it)
		return PROTO_E_NOMEM;
	it->work = work;
	it->done = done;
	it->arg = arg;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, work_thread, it);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		free(it);
		return rc == EAGAIN ? PROTO_E_BUSY : PROTO_E_INTERNAL;
	}
	if (work_pending++ == 0)
		ev_ref(work_loop);
	return 0;
}
