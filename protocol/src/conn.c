/*
 * proto_conn: one MessagePack-RPC peer on a pair of non-blocking fds.
 *
 * Re-entrancy: user callbacks may call anything on the conn, including
 * proto_conn_free(). Every entry from the loop (I/O and timer callbacks) and
 * proto_conn_close() bracket their work with conn_enter()/conn_leave();
 * a free requested while inside only marks the conn doomed, and the
 * outermost conn_leave() releases it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>

#include "internal.h"

/* Queued output a slow peer may leave unread before proto_call() and
 * friends answer PROTO_E_BUSY. */
#define CONN_MAX_QUEUE (16u * PROTO_MAX_MESSAGE)
/* Bytes asked of read() at a time. */
#define CONN_READ_CHUNK 65536u
/* An error message longer than this is cut: it is meant for a human. */
#define CONN_MAX_ERRMSG 65536u
/* Pipe capacity asked for, so that a large message (instances.list with a
 * thousand instances) crosses in one wake-up instead of one per 64 KiB. */
#define CONN_PIPE_SIZE (1024 * 1024)

enum { MSG_REQUEST = 0, MSG_RESPONSE = 1, MSG_NOTIFY = 2 };

struct conn_call {
	struct conn_call *next;
	struct proto_conn *conn;
	uint64_t msgid;
	char method[PROTO_MAX_METHOD + 1];
	double timeout_s;
	proto_result_fn cb;
	void *ud;
	ev_timer timer;
};

struct proto_conn {
	struct ev_loop *loop;
	int rfd, wfd;
	bool wsock; /* send() with MSG_NOSIGNAL instead of write() */
	ev_io rio, wio;
	/* While messages read in one go are delivered, what the callbacks
	 * send is only queued, then written with one write(); flush_w writes
	 * it before the loop next blocks, should a callback run a nested loop. */
	bool batching;
	ev_prepare flush_w;
	const struct proto_conn_ops *ops;
	void *ud;

	bool open;
	bool doomed;    /* freed while a callback was running */
	unsigned depth; /* nesting of conn_enter() */

	char *rbuf;
	size_t rlen, rcap;
	struct skim_state skim; /* of the message at rbuf[0] */

	char *wbuf;
	size_t woff, wlen, wcap;

	/* Ours, awaiting an answer, oldest first: answers mostly come in order,
	 * so the one looked for is near the head even with many in flight. */
	struct conn_call *calls, **calls_tail;
	unsigned ncalls;
	uint64_t next_msgid;

	uint64_t peer_ids[PROTO_MAX_INFLIGHT]; /* the peer's, awaiting our answer */
	unsigned npeer;

	/* proto_conn_set_limits(): one timer serves both deadlines; it looks
	 * at the times below when it fires and sets itself again if need be. */
	bool limited;
	struct proto_conn_limits limits;
	ev_timer limit_w;
	ev_tstamp last_io;       /* a byte read or written */
	ev_tstamp partial_since; /* the first byte of the incomplete message in rbuf */
	size_t held;             /* bytes counted in limits.budget */
	bool read_paused;        /* more than limits.max_output queued */

	char why[256]; /* text passed to closed() */
};

static const msgpack_object conn_nil = {.type = MSGPACK_OBJECT_NIL};

/* Take the call at *pp out of the pending list and return it. */
static struct conn_call *conn_call_unlink(struct proto_conn *c, struct conn_call **pp)
{
	struct conn_call *call = *pp;

	*pp = call->next;
	if (!*pp)
		c->calls_tail = pp;
	c->ncalls--;
	return call;
}

/* ---- lifetime ---- */

static void conn_enter(struct proto_conn *c)
{
	c->depth++;
}

static int conn_write_some(struct proto_conn *c);

/* Last chance for queued output (a final answer) without blocking. */
static void conn_flush_once(struct proto_conn *c)
{
	if (c->wfd >= 0 && c->wlen > c->woff)
		conn_write_some(c);
}

/* Count held bytes of an incomplete message in the shared budget. */
static void conn_budget_hold(struct proto_conn *c, size_t held)
{
	struct proto_budget *b = c->limited ? c->limits.budget : NULL;

	if (b)
		b->used = b->used - c->held + held;
	c->held = held;
}

static void conn_destroy(struct proto_conn *c)
{
	conn_flush_once(c);
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	ev_prepare_stop(c->loop, &c->flush_w);
	ev_timer_stop(c->loop, &c->limit_w);
	conn_budget_hold(c, 0);
	while (c->calls) {
		struct conn_call *call = c->calls;

		c->calls = call->next;
		ev_timer_stop(c->loop, &call->timer);
		free(call);
	}
	if (c->rfd >= 0)
		close(c->rfd);
	if (c->wfd >= 0 && c->wfd != c->rfd)
		close(c->wfd);
	free(c->rbuf);
	free(c->wbuf);
	free(c);
}

/* After this returns the conn may be gone: touch it no more. */
static void conn_leave(struct proto_conn *c)
{
	if (--c->depth == 0 && c->doomed)
		conn_destroy(c);
}

/* Whether the caller may go on delivering events to the user. */
static bool conn_live(const struct proto_conn *c)
{
	return c->open && !c->doomed;
}

static void conn_close_fds(struct proto_conn *c)
{
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	ev_prepare_stop(c->loop, &c->flush_w);
	ev_timer_stop(c->loop, &c->limit_w);
	conn_budget_hold(c, 0);
	if (c->rfd >= 0)
		close(c->rfd);
	if (c->wfd >= 0 && c->wfd != c->rfd)
		close(c->wfd);
	c->rfd = c->wfd = -1;
}

/* The work of proto_conn_close(); the caller has entered the conn. */
static void conn_shutdown(struct proto_conn *c, int err, const char *why)
{
	if (!c->open)
		return;
	c->open = false;
	snprintf(c->why, sizeof(c->why), "%s", why ? why : proto_strerror(err));
	conn_flush_once(c);
	conn_close_fds(c);
	c->woff = c->wlen = 0;
	c->rlen = 0;
	c->npeer = 0;

	while (c->calls && !c->doomed) {
		struct conn_call *call = conn_call_unlink(c, &c->calls);

		ev_timer_stop(c->loop, &call->timer);
		call->cb(call->ud, PROTO_E_UNAVAILABLE, c->why, &conn_nil);
		free(call);
	}
	if (!c->doomed && c->ops && c->ops->closed)
		c->ops->closed(c, c->ud, err, c->why);
}

static int conn_set_flags(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -1;
	return 0;
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents);
static void conn_limit_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Best effort: a pipe that stays at its default size still works. */
static void conn_grow_pipe(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) &&
	    fcntl(fd, F_GETPIPE_SZ) < (int)CONN_PIPE_SIZE)
		fcntl(fd, F_SETPIPE_SZ, (int)CONN_PIPE_SIZE);
}

struct proto_conn *proto_conn_new(struct ev_loop *loop, int rfd, int wfd,
				  const struct proto_conn_ops *ops, void *ud)
{
	struct proto_conn *c;
	struct stat st;

	if (!loop || rfd < 0 || wfd < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->rbuf = malloc(CONN_READ_CHUNK);
	if (!c->rbuf)
		goto out_free_conn;
	c->rcap = CONN_READ_CHUNK;
	if (conn_set_flags(rfd) < 0 || conn_set_flags(wfd) < 0)
		goto out_free_rbuf;
	c->wsock = fstat(wfd, &st) == 0 && S_ISSOCK(st.st_mode);
	conn_grow_pipe(rfd);
	if (wfd != rfd)
		conn_grow_pipe(wfd);
	c->loop = loop;
	c->rfd = rfd;
	c->wfd = wfd;
	c->ops = ops;
	c->ud = ud;
	c->open = true;
	c->next_msgid = 1;
	c->calls_tail = &c->calls;
	skim_reset(&c->skim);
	ev_io_init(&c->rio, conn_read_cb, rfd, EV_READ);
	c->rio.data = c;
	ev_io_init(&c->wio, conn_write_cb, wfd, EV_WRITE);
	c->wio.data = c;
	ev_prepare_init(&c->flush_w, conn_flush_cb);
	c->flush_w.data = c;
	ev_init(&c->limit_w, conn_limit_cb);
	c->limit_w.data = c;
	ev_io_start(loop, &c->rio);
	return c;

out_free_rbuf:
	free(c->rbuf);
out_free_conn:
	free(c);
	return NULL;
}

void proto_conn_free(struct proto_conn *c)
{
	if (!c)
		return;
	if (c->depth > 0) {
		/* Silence it now; conn_leave() releases the memory. */
		c->doomed = true;
		conn_flush_once(c);
		conn_close_fds(c);
		for (struct conn_call *call = c->calls; call; call = call->next)
			ev_timer_stop(c->loop, &call->timer);
		return;
	}
	conn_destroy(c);
}

void proto_conn_close(struct proto_conn *c, int err, const char *why)
{
	if (!c || !c->open)
		return;
	conn_enter(c);
	conn_shutdown(c, err, why);
	conn_leave(c);
}

bool proto_conn_is_open(const struct proto_conn *c)
{
	return c && conn_live(c);
}

size_t proto_conn_pending_bytes(const struct proto_conn *c)
{
	return c ? c->wlen - c->woff : 0;
}

void proto_conn_set_ud(struct proto_conn *c, void *ud)
{
	c->ud = ud;
}

size_t proto_conn_partial_bytes(const struct proto_conn *c)
{
	return c ? c->rlen : 0;
}

/* ---- limits ---- */

/* Set the timer for the nearest deadline that applies now. */
static void conn_limit_arm(struct proto_conn *c)
{
	ev_tstamp now = ev_now(c->loop), due = 0;

	if (!c->limited || !c->open)
		return;
	if (c->rlen > 0 && c->limits.message_s > 0) {
		due = c->partial_since + c->limits.message_s;
	} else if (c->limits.idle_s > 0) {
		due = c->last_io + c->limits.idle_s;
		/* Past due but an answer is awaited: not idle; look again later. */
		if (due <= now)
			due = now + c->limits.idle_s;
	}
	ev_timer_stop(c->loop, &c->limit_w);
	if (due > 0) {
		ev_timer_set(&c->limit_w, due - now > 0.001 ? due - now : 0.001, 0);
		ev_timer_start(c->loop, &c->limit_w);
	}
}

static void conn_limit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct proto_conn *c = w->data;
	ev_tstamp now = ev_now(loop);
	char why[160];

	conn_enter(c);
	if (c->rlen > 0 && c->limits.message_s > 0 &&
	    now - c->partial_since >= c->limits.message_s) {
		snprintf(why, sizeof(why), "a message was not complete %g s after its first byte "
			 "(%zu bytes of it received)", c->limits.message_s, c->rlen);
		conn_shutdown(c, PROTO_E_TIMEOUT, why);
	} else if (c->rlen == 0 && c->npeer == 0 && c->ncalls == 0 && c->limits.idle_s > 0 &&
		   now - c->last_io >= c->limits.idle_s) {
		snprintf(why, sizeof(why), "idle for %g s", c->limits.idle_s);
		conn_shutdown(c, PROTO_E_TIMEOUT, why);
	} else {
		conn_limit_arm(c);
	}
	conn_leave(c);
}

void proto_conn_set_limits(struct proto_conn *c, const struct proto_conn_limits *limits)
{
	if (!c || !limits)
		return;
	conn_budget_hold(c, 0);
	c->limits = *limits;
	c->limited = true;
	c->last_io = ev_now(c->loop);
	if (c->rlen > 0 && c->partial_since == 0)
		c->partial_since = c->last_io;
	conn_budget_hold(c, c->rlen);
	conn_limit_arm(c);
}

/* Read again once the peer has taken most of what was queued for it. */
static void conn_resume_read(struct proto_conn *c)
{
	if (c->read_paused && conn_live(c) &&
	    c->wlen - c->woff <= c->limits.max_output / 2) {
		c->read_paused = false;
		ev_io_start(c->loop, &c->rio);
	}
}

/* ---- writing ---- */

/* Write what the kernel takes. 0, or a negative errno on a real failure. */
static int conn_write_some(struct proto_conn *c)
{
	while (c->woff < c->wlen) {
		ssize_t n;
		size_t left = c->wlen - c->woff;

		if (c->wsock)
			n = send(c->wfd, c->wbuf + c->woff, left, MSG_NOSIGNAL);
		else
			n = write(c->wfd, c->wbuf + c->woff, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		c->woff += (size_t)n;
		if (c->limited)
			c->last_io = ev_now(c->loop);
	}
	c->woff = c->wlen = 0;
	if (c->wcap > 4 * CONN_READ_CHUNK) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->wcap = 0;
	}
	return 0;
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct proto_conn *c = w->data;
	int ret;

	conn_enter(c);
	ret = conn_write_some(c);
	if (ret < 0) {
		char why[128];

		snprintf(why, sizeof(why), "write: %s", strerror(-ret));
		conn_shutdown(c, PROTO_E_IO, why);
	} else {
		if (c->wlen == 0)
			ev_io_stop(loop, &c->wio);
		conn_resume_read(c);
	}
	conn_leave(c);
}

static int conn_reserve_write(struct proto_conn *c, size_t n)
{
	if (c->woff > 0 && c->woff == c->wlen)
		c->woff = c->wlen = 0;
	if (c->wcap - c->wlen >= n)
		return 0;
	if (c->woff > 0) {
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
		c->wlen -= c->woff;
		c->woff = 0;
		if (c->wcap - c->wlen >= n)
			return 0;
	}
	size_t cap = c->wcap ? c->wcap : 4096;
	while (cap - c->wlen < n)
		cap *= 2;
	char *p = realloc(c->wbuf, cap);
	if (!p)
		return PROTO_E_NOMEM;
	c->wbuf = p;
	c->wcap = cap;
	return 0;
}

/* Write what is queued now; the write watcher takes the rest, or reports
 * a failure from the loop. */
static void conn_kick_write(struct proto_conn *c)
{
	ev_prepare_stop(c->loop, &c->flush_w);
	if (c->wlen == c->woff || ev_is_active(&c->wio))
		return;
	if (conn_write_some(c) < 0) {
		ev_io_start(c->loop, &c->wio);
		ev_feed_event(c->loop, &c->wio, EV_WRITE);
	} else if (c->wlen > 0) {
		ev_io_start(c->loop, &c->wio);
	}
	conn_resume_read(c);
}

static void conn_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	conn_kick_write(w->data);
}

/*
 * Queue one message made of a header and a body, and try to send it at
 * once (or after the batch, while delivering messages read in one go). A
 * write failure is not reported here: the write watcher is fed so that the
 * conn closes from the loop, never inside the caller's call.
 */
static int conn_queue(struct proto_conn *c, const char *hdr, size_t hlen,
		      const char *body, size_t blen)
{
	size_t total = hlen + blen;
	int ret;

	if (total > PROTO_MAX_MESSAGE)
		return PROTO_E_INVALID_ARGUMENT;
	if (c->wlen - c->woff + total > CONN_MAX_QUEUE)
		return PROTO_E_BUSY;
	ret = conn_reserve_write(c, total);
	if (ret < 0)
		return ret;
	memcpy(c->wbuf + c->wlen, hdr, hlen);
	if (blen)
		memcpy(c->wbuf + c->wlen + hlen, body, blen);
	c->wlen += total;

	if (ev_is_active(&c->wio))
		return 0;
	if (c->batching) {
		ev_prepare_start(c->loop, &c->flush_w);
		return 0;
	}
	conn_kick_write(c);
	return 0;
}

static bool conn_method_ok(const char *method)
{
	size_t n = method ? strlen(method) : 0;

	return n > 0 && n <= PROTO_MAX_METHOD;
}

/* params/len must be exactly one object within the limits. */
static bool conn_object_ok(const char *obj, size_t len)
{
	return len > 0 && proto_skim(obj, len, NULL) == (long)len;
}

/* ---- sending ---- */

static void conn_call_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents);

static struct conn_call **conn_call_find(struct proto_conn *c, uint64_t msgid)
{
	for (struct conn_call **pp = &c->calls; *pp; pp = &(*pp)->next)
		if ((*pp)->msgid == msgid)
			return pp;
	return NULL;
}

int proto_call(struct proto_conn *c, const char *method, const char *params,
	       size_t len, double timeout_s, proto_result_fn cb, void *ud,
	       uint64_t *msgid_out)
{
	static const char empty_map = (char)0x80;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct conn_call *call;
	int ret;

	if (!c || !conn_live(c))
		return PROTO_E_UNAVAILABLE;
	if (!conn_method_ok(method) || !cb || (params && !conn_object_ok(params, len)))
		return PROTO_E_INVALID_ARGUMENT;
	if (c->ncalls >= PROTO_MAX_INFLIGHT)
		return PROTO_E_BUSY;
	call = calloc(1, sizeof(*call));
	if (!call)
		return PROTO_E_NOMEM;
	call->conn = c;
	call->msgid = c->next_msgid++;
	snprintf(call->method, sizeof(call->method), "%s", method);
	call->timeout_s = timeout_s;
	call->cb = cb;
	call->ud = ud;
	ev_timer_init(&call->timer, conn_call_timeout_cb, timeout_s > 0 ? timeout_s : 0, 0);
	call->timer.data = call;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, MSG_REQUEST);
	msgpack_pack_uint64(&pk, call->msgid);
	proto_pack_str(&pk, method);
	if (!sb.data) {
		ret = PROTO_E_NOMEM;
		goto out_free_call;
	}
	ret = params ? conn_queue(c, sb.data, sb.size, params, len)
		     : conn_queue(c, sb.data, sb.size, &empty_map, 1);
	if (ret < 0)
		goto out_free_call;
	msgpack_sbuffer_destroy(&sb);

	*c->calls_tail = call;
	c->calls_tail = &call->next;
	c->ncalls++;
	if (timeout_s > 0)
		ev_timer_start(c->loop, &call->timer);
	if (msgid_out)
		*msgid_out = call->msgid;
	return 0;

out_free_call:
	msgpack_sbuffer_destroy(&sb);
	free(call);
	return ret;
}

void proto_cancel(struct proto_conn *c, uint64_t msgid)
{
	struct conn_call **pp = c ? conn_call_find(c, msgid) : NULL;

	if (!pp)
		return;
	struct conn_call *call = conn_call_unlink(c, pp);
	ev_timer_stop(c->loop, &call->timer);
	free(call);
}

static int conn_peer_index(const struct proto_conn *c, uint64_t msgid)
{
	for (unsigned i = 0; i < c->npeer; i++)
		if (c->peer_ids[i] == msgid)
			return (int)i;
	return -1;
}

int proto_reply(struct proto_conn *c, uint64_t msgid, int err, const char *errmsg,
		const char *result, size_t len)
{
	static const char nil = (char)0xc0;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int idx, ret;

	if (!c || !conn_live(c))
		return PROTO_E_UNAVAILABLE;
	idx = conn_peer_index(c, msgid);
	if (idx < 0 || err > 0 || (err == 0 && result && !conn_object_ok(result, len)))
		return PROTO_E_INVALID_ARGUMENT;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, MSG_RESPONSE);
	msgpack_pack_uint64(&pk, msgid);
	if (err == 0) {
		msgpack_pack_nil(&pk);
	} else {
		const char *text = errmsg && *errmsg ? errmsg : proto_strerror(err);
		size_t n = strnlen(text, CONN_MAX_ERRMSG);

		msgpack_pack_array(&pk, 2);
		msgpack_pack_int(&pk, -err);
		msgpack_pack_str(&pk, n);
		msgpack_pack_str_body(&pk, text, n);
		msgpack_pack_nil(&pk);
	}
	if (!sb.data)
		ret = PROTO_E_NOMEM;
	else if (err == 0 && result)
		ret = conn_queue(c, sb.data, sb.size, result, len);
	else if (err == 0)
		ret = conn_queue(c, sb.data, sb.size, &nil, 1);
	else
		ret = conn_queue(c, sb.data, sb.size, NULL, 0);
	msgpack_sbuffer_destroy(&sb);
	if (ret < 0)
		return ret;
	c->peer_ids[idx] = c->peer_ids[--c->npeer];
	return 0;
}

int proto_notify(struct proto_conn *c, const char *method, const char *params, size_t len)
{
	static const char empty_map = (char)0x80;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int ret;

	if (!c || !conn_live(c))
		return PROTO_E_UNAVAILABLE;
	if (!conn_method_ok(method) || (params && !conn_object_ok(params, len)))
		return PROTO_E_INVALID_ARGUMENT;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint8(&pk, MSG_NOTIFY);
	proto_pack_str(&pk, method);
	if (!sb.data)
		ret = PROTO_E_NOMEM;
	else if (params)
		ret = conn_queue(c, sb.data, sb.size, params, len);
	else
		ret = conn_queue(c, sb.data, sb.size, &empty_map, 1);
	msgpack_sbuffer_destroy(&sb);
	return ret;
}

int proto_call_sb(struct proto_conn *c, const char *method, const msgpack_sbuffer *params,
		  double timeout_s, proto_result_fn cb, void *ud, uint64_t *msgid_out)
{
	return proto_call(c, method, params ? params->data : NULL, params ? params->size : 0,
			  timeout_s, cb, ud, msgid_out);
}

int proto_reply_sb(struct proto_conn *c, uint64_t msgid, int err, const char *errmsg,
		   const msgpack_sbuffer *result)
{
	return proto_reply(c, msgid, err, errmsg, result ? result->data : NULL,
			   result ? result->size : 0);
}

int proto_notify_sb(struct proto_conn *c, const char *method, const msgpack_sbuffer *params)
{
	return proto_notify(c, method, params ? params->data : NULL, params ? params->size : 0);
}

/* ---- receiving ---- */

static void conn_call_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn_call *call = w->data;
	struct proto_conn *c = call->conn;
	struct conn_call **pp = conn_call_find(c, call->msgid);
	char text[160];

	if (!pp)
		return;
	conn_call_unlink(c, pp);
	snprintf(text, sizeof(text), "no answer to %s within %g seconds", call->method,
		 call->timeout_s);
	conn_enter(c);
	call->cb(call->ud, PROTO_E_TIMEOUT, text, &conn_nil);
	free(call);
	conn_leave(c);
}

/* A method name: a str of 1..PROTO_MAX_METHOD bytes without NUL. */
static bool conn_get_method(const msgpack_object *o, char *buf)
{
	return o->type == MSGPACK_OBJECT_STR && o->via.str.size > 0 &&
	       proto_obj_str(o, buf, PROTO_MAX_METHOD + 1) == 0;
}

static void conn_on_request(struct proto_conn *c, const msgpack_object *m)
{
	const msgpack_object *id = &m[1], *params = &m[3];
	char method[PROTO_MAX_METHOD + 1];

	if (id->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		conn_shutdown(c, PROTO_E_PROTOCOL, "request msgid is not an unsigned integer");
		return;
	}
	if (!conn_get_method(&m[2], method)) {
		conn_shutdown(c, PROTO_E_PROTOCOL, "request method is not a name of 1 to 64 bytes");
		return;
	}
	if (params->type != MSGPACK_OBJECT_MAP) {
		conn_shutdown(c, PROTO_E_PROTOCOL, "request params is not a map");
		return;
	}
	if (conn_peer_index(c, id->via.u64) >= 0) {
		conn_shutdown(c, PROTO_E_PROTOCOL, "request msgid reused while still in flight");
		return;
	}
	if (c->npeer >= PROTO_MAX_INFLIGHT) {
		conn_shutdown(c, PROTO_E_PROTOCOL, "more than 256 requests in flight");
		return;
	}
	c->peer_ids[c->npeer++] = id->via.u64;
	if (c->ops && c->ops->request) {
		c->ops->request(c, c->ud, id->via.u64, method, params);
	} else {
		char text[PROTO_MAX_METHOD + 32];

		snprintf(text, sizeof(text), "%s is not supported here", method);
		proto_reply(c, id->via.u64, PROTO_E_UNSUPPORTED, text, NULL, 0);
	}
}

static void conn_on_response(struct proto_conn *c, const msgpack_object *m)
{
	const msgpack_object *id = &m[1], *error = &m[2], *result = &m[3];
	struct conn_call **pp, *call;
	int err = 0;
	char *text = NULL;

	if (id->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		conn_shutdown(c, PROTO_E_PROTOCOL, "response msgid is not an unsigned integer");
		return;
	}
	if (error->type != MSGPACK_OBJECT_NIL) {
		const msgpack_object *e = error->via.array.ptr;

		if (error->type != MSGPACK_OBJECT_ARRAY || error->via.array.size != 2 ||
		    e[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		    (e[1].type != MSGPACK_OBJECT_STR && e[1].type != MSGPACK_OBJECT_NIL)) {
			conn_shutdown(c, PROTO_E_PROTOCOL, "response error is not [code, message]");
			return;
		}
		err = e[0].via.u64 >= 1 && e[0].via.u64 <= 0x7fffffff ? -(int)e[0].via.u64
								       : PROTO_E_INTERNAL;
		if (e[1].type == MSGPACK_OBJECT_STR && e[1].via.str.size > 0) {
			uint32_t n = e[1].via.str.size;

			text = malloc((size_t)n + 1);
			if (text) {
				memcpy(text, e[1].via.str.ptr, n);
				text[n] = '\0';
			}
		}
	}
	/* Answers to cancelled or timed-out calls arrive late: not an error. */
	pp = conn_call_find(c, id->via.u64);
	if (!pp)
		goto out_free_text;
	call = conn_call_unlink(c, pp);
	ev_timer_stop(c->loop, &call->timer);
	if (err)
		call->cb(call->ud, err, text ? text : proto_strerror(err), &conn_nil);
	else
		call->cb(call->ud, 0, NULL, result);
	free(call);
out_free_text:
	free(text);
}

static void conn_on_notify(struct proto_conn *c, const msgpack_object *m)
{
	char method[PROTO_MAX_METHOD + 1];

	if (!conn_get_method(&m[1], method)) {
		conn_shutdown(c, PROTO_E_PROTOCOL,
			      "notification method is not a name of 1 to 64 bytes");
		return;
	}
	if (m[2].type != MSGPACK_OBJECT_MAP) {
		conn_shutdown(c, PROTO_E_PROTOCOL, "notification params is not a map");
		return;
	}
	if (c->ops && c->ops->notify)
		c->ops->notify(c, c->ud, method, &m[2]);
}

/* Decode one skimmed message and hand it to the user. */
static void conn_dispatch(struct proto_conn *c, const char *data, size_t len)
{
	msgpack_unpacked msg;
	size_t off = 0;
	const msgpack_object *m;
	uint32_t n;

	msgpack_unpacked_init(&msg);
	if (msgpack_unpack_next(&msg, data, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) {
		conn_shutdown(c, PROTO_E_PROTOCOL, "message cannot be decoded");
		goto out_destroy;
	}
	if (msg.data.type != MSGPACK_OBJECT_ARRAY || msg.data.via.array.size < 3 ||
	    msg.data.via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		conn_shutdown(c, PROTO_E_PROTOCOL, "message is not a [type, ...] array");
		goto out_destroy;
	}
	m = msg.data.via.array.ptr;
	n = msg.data.via.array.size;
	if (m[0].via.u64 == MSG_REQUEST && n == 4)
		conn_on_request(c, m);
	else if (m[0].via.u64 == MSG_RESPONSE && n == 4)
		conn_on_response(c, m);
	else if (m[0].via.u64 == MSG_NOTIFY && n == 3)
		conn_on_notify(c, m);
	else
		conn_shutdown(c, PROTO_E_PROTOCOL, "message has an unknown type or length");
out_destroy:
	msgpack_unpacked_destroy(&msg);
}

/*
 * After a read: note when the incomplete message in rbuf began, count it in
 * the shared budget, stop reading a peer that leaves its answers unread.
 * false if that closed the conn. consumed: messages were taken from rbuf,
 * so what is left (if anything) is a message that began in this read.
 */
static bool conn_limit_input(struct proto_conn *c, bool consumed)
{
	struct proto_budget *b = c->limits.budget;
	ev_tstamp now = ev_now(c->loop);

	c->last_io = now;
	if (c->rlen == 0)
		c->partial_since = 0;
	else if (consumed || c->partial_since == 0)
		c->partial_since = now;
	if (b && b->max > 0 && c->rlen > c->held && b->used - c->held + c->rlen > b->max) {
		char why[160];

		snprintf(why, sizeof(why), "incomplete messages would hold more than the %zu bytes "
			 "allowed for all peers together", b->max);
		conn_shutdown(c, PROTO_E_BUSY, why);
		return false;
	}
	conn_budget_hold(c, c->rlen);
	if (c->limits.max_output > 0 && c->wlen - c->woff > c->limits.max_output) {
		c->read_paused = true;
		ev_io_stop(c->loop, &c->rio);
	}
	conn_limit_arm(c);
	return true;
}

/* Deliver every complete message in rbuf, then keep the partial rest. */
static void conn_process(struct proto_conn *c)
{
	size_t start = 0;

	c->batching = true;
	while (conn_live(c)) {
		const char *why = NULL;
		long n = skim_resume(&c->skim, c->rbuf + start, c->rlen - start, &why);

		if (n == 0)
			break;
		if (n < 0) {
			c->batching = false;
			conn_shutdown(c, PROTO_E_PROTOCOL, why);
			return;
		}
		conn_dispatch(c, c->rbuf + start, (size_t)n);
		start += (size_t)n;
		skim_reset(&c->skim);
	}
	c->batching = false;
	if (!conn_live(c))
		return;
	conn_kick_write(c);
	memmove(c->rbuf, c->rbuf + start, c->rlen - start);
	c->rlen -= start;
	if (c->limited && !conn_limit_input(c, start > 0))
		return;
	/* One big message should not pin megabytes for the conn's lifetime. */
	if (c->rlen == 0 && c->rcap > 4 * CONN_READ_CHUNK) {
		char *p = realloc(c->rbuf, CONN_READ_CHUNK);

		if (p) {
			c->rbuf = p;
			c->rcap = CONN_READ_CHUNK;
		}
	}
}

static int conn_reserve_read(struct proto_conn *c)
{
	if (c->rcap - c->rlen >= CONN_READ_CHUNK)
		return 0;
	size_t cap = c->rcap * 2;
	while (cap - c->rlen < CONN_READ_CHUNK)
		cap *= 2;
	char *p = realloc(c->rbuf, cap);
	if (!p)
		return PROTO_E_NOMEM;
	c->rbuf = p;
	c->rcap = cap;
	return 0;
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct proto_conn *c = w->data;
	ssize_t n;
	char why[128];

	conn_enter(c);
	if (conn_reserve_read(c) < 0) {
		conn_shutdown(c, PROTO_E_NOMEM, "out of memory for the read buffer");
		goto out_leave;
	}
	n = read(c->rfd, c->rbuf + c->rlen, c->rcap - c->rlen);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			snprintf(why, sizeof(why), "read: %s", strerror(errno));
			conn_shutdown(c, PROTO_E_IO, why);
		}
		goto out_leave;
	}
	if (n == 0) {
		if (c->rlen > 0)
			conn_shutdown(c, PROTO_E_PROTOCOL, "connection closed in the middle of a message");
		else
			conn_shutdown(c, 0, "connection closed by the peer");
		goto out_leave;
	}
	c->rlen += (size_t)n;
	conn_process(c);
out_leave:
	conn_leave(c);
}
