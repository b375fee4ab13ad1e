/*
 * Worker threads for blocking libvirt calls, and the queue that brings
 * their results back to the main thread (the only one that may touch the
 * SDK and answer the broker).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <ev.h>

#include "lvh.h"

struct job_post_item {
	void (*fn)(void *arg);
	void *arg;
	struct job_post_item *next;
};

struct job_thread_arg {
	void (*work)(void *arg);
	void (*done)(void *arg);
	void *arg;
};

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;
static struct job_post_item *job_head, **job_tail = &job_head;
static struct ev_loop *job_loop;
static ev_async job_wake;

static void job_drain(struct ev_loop *loop, ev_async *w, int revents)
{
	pthread_mutex_lock(&job_lock);
	struct job_post_item *list = job_head;
	job_head = NULL;
	job_tail = &job_head;
	pthread_mutex_unlock(&job_lock);

	while (list) {
		struct job_post_item *it = list;
		list = it->next;
		it->fn(it->arg);
		free(it);
	}
}

int job_init(struct ev_loop *loop)
{
	job_loop = loop;
	ev_async_init(&job_wake, job_drain);
	ev_async_start(loop, &job_wake);
	ev_unref(loop);
	return 0;
}

int job_post(void (*fn)(void *arg), void *arg)
{
	struct job_post_item *it = calloc(1, sizeof(*it));
	if (!it)
		return PROTO_E_NOMEM;
	it->fn = fn;
	it->arg = arg;
	pthread_mutex_lock(&job_lock);
	*job_tail = it;
	job_tail = &it->next;
	pthread_mutex_unlock(&job_lock);
	ev_async_send(job_loop, &job_wake);
	return 0;
}

static void *job_thread(void *p)
{
	struct job_thread_arg *ta = p;

	ta->work(ta->arg);
	/* Posting can only fail on ENOMEM; then the answer is lost rather than
	 * delivered from the wrong thread. */
	if (job_post(ta->done, ta->arg) < 0)
		vmh_log(VMH_ERROR, "out of memory: a request will not be answered");
	free(ta);
	return NULL;
}

int job_spawn(void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	struct job_thread_arg *ta = malloc(sizeof(*ta));
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	if (!ta)
		return PROTO_E_NOMEM;
	ta->work = work;
	ta->done = done;
	ta->arg = arg;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, job_thread, ta);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		free(ta);
		return rc == EAGAIN ? PROTO_E_BUSY : PROTO_E_INTERNAL;
	}
	return 0;
}
