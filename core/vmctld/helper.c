/*
 * Helper supervision: spawn vmctl-DRIVER-helper on pipes, shake hands, pass
 * calls with deadlines, and notice when it crashes, breaks the protocol or
 * hangs. Whoever was waiting gets a sentence saying what happened; the helper
 * is restarted with backoff. It knows nothing of the broker: whoever calls
 * helper_new() gives it the loop, what the hello must say and callbacks
 * (struct helper_ops) for finding the binary, hello's settings, each
 * successful hello and each state notification.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"

#define HELPER_REAP_GRACE 2.0 /* after EOF on its pipe, wait this long for it to exit */
#define HELPER_STOP_GRACE 5.0 /* after "shutdown", wait this long before SIGKILL */
/* What helpers write to the broker's log: each line cut at HELPER_LOG_LINE_MAX
 * bytes; at most HELPER_LOG_BURST stderr lines of all helpers together (a
 * helper restarted in a loop gets no fresh allowance), and as many log
 * notifications of each helper, per HELPER_LOG_WINDOW seconds. The rest is
 * counted as dropped. */
#define HELPER_LOG_LINE_MAX 1024
#define HELPER_LOG_BURST 200
#define HELPER_LOG_WINDOW 10.0

/* The rate limit of one stream of forwarded lines. */
struct log_gate {
	struct ev_loop *loop;
	char what[96]; /* "lines of helper stderr" */
	struct log_ratelimit rl;
	ev_timer report_w; /* says how many were dropped once the window ends */
};

enum hcall_state { HC_QUEUED, HC_SENT, HC_PARKED, HC_FAILED };

struct hcall {
	struct hcall *next, *prev;
	struct helper *h;
	char method[PROTO_MAX_METHOD + 1];
	char *params;
	size_t params_len;
	double deadline;
	ev_timer wait_w; /* queued: give up waiting; failed: deliver the error */
	uint64_t msgid;
	enum hcall_state st;
	bool timed_out;
	int err;
	char *errmsg;
	proto_result_fn cb;
	void *ud;
};

struct helper {
	struct ev_loop *loop;
	const struct helper_ops *ops;
	void *ud; /* for ops */
	char driver[32];
	char scope[32]; /* what its hello must say */
	char scope_dir[4200];
	double deadline_cap;
	bool once; /* a probe: never restarted */
	char name[64]; /* "qemu helper", for messages */
	char path[4096];
	enum helper_state state;
	pid_t pid;
	struct proto_conn *conn;
	ev_child child_w;
	ev_timer restart_w;
	ev_timer reap_w;
	ev_timer stop_w;
	struct proto_hello hello;
	char why[1024];
	/* It answered hello with an error: it is not started again (it would
	 * only refuse again) until its binary is replaced. */
	bool refused;
	struct stat refused_st;
	struct hcall *calls;      /* oldest first */
	struct hcall *calls_tail;
	size_t n_queued;          /* calls in HC_QUEUED */
	unsigned backoff_ms;
	ev_tstamp up_since;
	bool alive;       /* a process exists and has not been reaped */
	bool dying;       /* this incarnation is over; waiting for reap and EOF */
	bool conn_closed;
	char death[512];  /* "crashed (killed by signal 9)" */
	void (*stop_done)(void *ud);
	void *stop_ud;
	struct log_gate log_gate; /* its log notifications */
	struct state_reason *reasons; /* what it said of instances' states */
};

/* The reason a helper gave beside an instance's state (a state notification,
 * an instances.list or instance.info answer), until it gives another state
 * without one. Only instances with a reason have an entry: a few. */
struct state_reason {
	struct state_reason *next;
	char name[PROTO_NAME_MAX + 1];
	char text[PROTO_REASON_MAX + 1];
};

/* A helper's stderr, logged line by line. It outlives the helper: a VM
 * process that inherited it must never get EPIPE because the helper died. */
struct errpipe {
	struct errpipe *next;
	struct ev_loop *loop;
	ev_io w;
	char name[64]; /* "vmctl-qemu-helper[123]" */
	size_t len;
	size_t cut; /* bytes of this line past HELPER_LOG_LINE_MAX */
	char buf[HELPER_LOG_LINE_MAX + 1];
};
static struct errpipe *errpipes;
static struct log_gate errpipe_gate; /* shared by every errpipe */

static void helper_spawn(struct helper *h);
static void helper_finish_death(struct helper *h);

/* ---- rate-limited forwarding ---- */

static void log_gate_report(struct log_gate *g)
{
	unsigned long n = log_ratelimit_take(&g->rl);

	if (n > 0)
		vlog(LOG_WARN_, "%lu %s dropped (more than %u in %g s)", n, g->what, g->rl.burst,
		     g->rl.interval_s);
}

static void log_gate_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	log_gate_report(w->data);
}

static void log_gate_init(struct log_gate *g, struct ev_loop *loop, const char *what)
{
	g->loop = loop;
	snprintf(g->what, sizeof(g->what), "%s", what);
	g->rl.interval_s = HELPER_LOG_WINDOW;
	g->rl.burst = HELPER_LOG_BURST;
	ev_init(&g->report_w, log_gate_on_timer);
	g->report_w.data = g;
}

/* May the next line be logged? Says first how many were dropped before it. */
static bool log_gate_pass(struct log_gate *g)
{
	ev_tstamp now = ev_now(g->loop);

	if (log_ratelimit_allow(&g->rl, now)) {
		log_gate_report(g);
		return true;
	}
	if (!ev_is_active(&g->report_w)) {
		ev_tstamp left = log_ratelimit_window_end(&g->rl) - now;

		ev_timer_set(&g->report_w, left > 0.01 ? left : 0.01, 0);
		ev_timer_start(g->loop, &g->report_w);
	}
	return false;
}

static void log_gate_stop(struct log_gate *g)
{
	ev_timer_stop(g->loop, &g->report_w);
	log_gate_report(g);
}

/* ---- stderr forwarding ---- */

static void errpipe_flush(struct errpipe *e)
{
	if (e->len == 0 && e->cut == 0)
		return;
	e->buf[e->len] = '\0';
	if (log_gate_pass(&errpipe_gate)) {
		if (e->cut > 0)
			vlog(LOG_INFO_, "%s: %s … [%zu more bytes cut]", e->name, e->buf, e->cut);
		else
			vlog(LOG_INFO_, "%s: %s", e->name, e->buf);
	}
	e->len = 0;
	e->cut = 0;
}

static void errpipe_free(struct errpipe *e)
{
	for (struct errpipe **pp = &errpipes; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	ev_io_stop(e->loop, &e->w);
	close(e->w.fd);
	free(e);
}

static void errpipe_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct errpipe *e = w->data;
	static char chunk[65536]; /* a flood is read in big bites */
	ssize_t n = read(w->fd, chunk, sizeof(chunk));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		errpipe_flush(e);
		errpipe_free(e);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (chunk[i] == '\n')
			errpipe_flush(e);
		else if (e->len < HELPER_LOG_LINE_MAX)
			e->buf[e->len++] = chunk[i];
		else
			e->cut++;
	}
}

static void errpipe_start(struct ev_loop *loop, int fd, const char *name)
{
	struct errpipe *e = calloc(1, sizeof(*e));

	if (!e) {
		close(fd);
		return;
	}
	e->loop = loop;
	snprintf(e->name, sizeof(e->name), "%s", name);
	if (!errpipe_gate.rl.burst)
		log_gate_init(&errpipe_gate, loop, "lines of helper stderr");
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	ev_io_init(&e->w, errpipe_on_read, fd, EV_READ);
	e->w.data = e;
	ev_io_start(loop, &e->w);
	e->next = errpipes;
	errpipes = e;
}

void helper_errpipes_free(void)
{
	while (errpipes) {
		errpipe_flush(errpipes);
		errpipe_free(errpipes);
	}
	if (errpipe_gate.rl.burst)
		log_gate_stop(&errpipe_gate);
}

/* ---- calls ---- */

static void hcall_unlink(struct hcall *c)
{
	struct helper *h = c->h;

	if (c->prev)
		c->prev->next = c->next;
	else if (h->calls == c)
		h->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else if (h->calls_tail == c)
		h->calls_tail = c->prev;
	c->next = c->prev = NULL;
}

/* Every state change of a call goes through here, to keep n_queued right. */
static void hcall_set_state(struct hcall *c, enum hcall_state st)
{
	if (c->st == HC_QUEUED && st != HC_QUEUED)
		c->h->n_queued--;
	else if (c->st != HC_QUEUED && st == HC_QUEUED)
		c->h->n_queued++;
	c->st = st;
}

static void hcall_complete(struct hcall *c, int err, const char *errmsg, const msgpack_object *result)
{
	proto_result_fn cb = c->cb;
	void *ud = c->ud;

	ev_timer_stop(c->h->loop, &c->wait_w);
	hcall_set_state(c, HC_FAILED);
	hcall_unlink(c);
	free(c->params);
	free(c->errmsg);
	free(c);
	if (cb)
		cb(ud, err, errmsg, result);
}

static void hcall_on_failed_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hcall *c = w->data;
	int err = c->err;
	char *msg = c->errmsg;

	c->errmsg = NULL;
	hcall_complete(c, err, msg, NULL);
	free(msg);
}

/* Answer c with an error from the loop, not from inside helper_call(). */
static void hcall_fail_later(struct hcall *c, int err, const char *msg)
{
	ev_timer_stop(c->h->loop, &c->wait_w);
	hcall_set_state(c, HC_FAILED);
	c->err = err;
	free(c->errmsg);
	c->errmsg = strdup(msg ? msg : proto_strerror(err));
	ev_timer_init(&c->wait_w, hcall_on_failed_timer, 0, 0);
	c->wait_w.data = c;
	ev_timer_start(c->h->loop, &c->wait_w);
}

static void hcall_on_result(void *ud, int err, const char *errmsg, const msgpack_object *result);

static void hcall_send(struct hcall *c)
{
	struct helper *h = c->h;
	int rc;

	ev_timer_stop(h->loop, &c->wait_w);
	rc = proto_call(h->conn, c->method, c->params, c->params_len, c->deadline, hcall_on_result,
			c, &c->msgid);
	if (rc == PROTO_E_BUSY) {
		/* PROTO_MAX_INFLIGHT calls are out: this one goes when one returns. */
		hcall_set_state(c, HC_QUEUED);
		return;
	}
	if (rc < 0) {
		char msg[256];

		snprintf(msg, sizeof(msg), "cannot send %s to the %s: %s", c->method, h->name,
			 proto_strerror(rc));
		hcall_fail_later(c, rc, msg);
		return;
	}
	hcall_set_state(c, HC_SENT);
}

/* Send the waiting calls, oldest first, as far as the in-flight limit allows. */
static void helper_flush(struct helper *h)
{
	for (struct hcall *c = h->calls; c && h->n_queued > 0; c = c->next) {
		if (c->st != HC_QUEUED)
			continue;
		hcall_send(c);
		if (c->st == HC_QUEUED)
			break;
	}
}

static void helper_kill(struct helper *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void hcall_on_result(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct hcall *c = ud;
	struct helper *h = c->h;
	char why[256];

	/* A state the protocol does not have must not reach the registry. */
	if (err == 0 && !h->dying && util_check_states(result, why, sizeof(why)) < 0) {
		hcall_set_state(c, HC_PARKED);
		helper_kill(h, "broke the protocol (%s) and was killed", why);
		return;
	}
	if (err == PROTO_E_TIMEOUT && !h->dying) {
		hcall_set_state(c, HC_PARKED);
		c->timed_out = true;
		helper_kill(h, "hung (no answer to %s within %.0f s) and was killed", c->method,
			    c->deadline);
		return;
	}
	if (err == PROTO_E_UNAVAILABLE && (h->dying || !h->conn || !proto_conn_is_open(h->conn))) {
		/* The helper is gone; the answer waits until we know how it died. */
		hcall_set_state(c, HC_PARKED);
		return;
	}
	hcall_complete(c, err, errmsg, result);
	if (h->n_queued > 0 && h->state == HELPER_READY && h->conn && proto_conn_is_open(h->conn))
		helper_flush(h);
}

/* Is the binary that refused the handshake not the one at h->path now? */
static bool helper_replaced(const struct helper *h)
{
	struct stat st;

	if (stat(h->path, &st) < 0)
		return false;
	return st.st_dev != h->refused_st.st_dev || st.st_ino != h->refused_st.st_ino ||
	       st.st_size != h->refused_st.st_size ||
	       st.st_mtim.tv_sec != h->refused_st.st_mtim.tv_sec ||
	       st.st_mtim.tv_nsec != h->refused_st.st_mtim.tv_nsec;
}

static void hcall_on_wait_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hcall *c = w->data;
	struct helper *h = c->h;
	char msg[1400];

	if (h->death[0])
		snprintf(msg, sizeof(msg),
			 "the %s is restarting (it %s) and did not come back within %.0f s", h->name,
			 h->death, BROKER_QUEUE_WAIT);
	else
		snprintf(msg, sizeof(msg), "the %s did not become ready within %.0f s", h->name,
			 BROKER_QUEUE_WAIT);
	hcall_complete(c, PROTO_E_UNAVAILABLE, msg, NULL);
}

struct hcall *helper_call(struct helper *h, const char *method, const msgpack_sbuffer *params,
			  double deadline_s, proto_result_fn cb, void *ud)
{
	struct hcall *c;

	/* No active helper (it is being replaced, or the broker is exiting). */
	if (!h)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->h = h;
	snprintf(c->method, sizeof(c->method), "%s", method);
	if (h->state == HELPER_READY && h->conn && h->n_queued == 0) {
		/* Sent at once: the params need not be kept (a list of 1,000
		 * instances is a few hundred KiB). */
		c->params = params ? params->data : NULL;
		c->params_len = params ? params->size : 0;
	} else if (params && params->size) {
		c->params = malloc(params->size);
		if (!c->params) {
			free(c);
			return NULL;
		}
		memcpy(c->params, params->data, params->size);
		c->params_len = params->size;
	}
	if (h->deadline_cap > 0 && (deadline_s <= 0 || deadline_s > h->deadline_cap))
		deadline_s = h->deadline_cap;
	c->deadline = deadline_s;
	c->cb = cb;
	c->ud = ud;
	ev_timer_init(&c->wait_w, hcall_on_wait_timer, BROKER_QUEUE_WAIT, 0);
	c->wait_w.data = c;
	c->st = HC_FAILED; /* not queued yet, for hcall_set_state */
	c->prev = h->calls_tail;
	if (h->calls_tail)
		h->calls_tail->next = c;
	else
		h->calls = c;
	h->calls_tail = c;

	if (h->state == HELPER_MISSING) {
		char err[1024];

		/* It may have been installed since. */
		if (h->ops->find(h->driver, h->path, sizeof(h->path), err, sizeof(err)) == 0) {
			helper_spawn(h);
		} else {
			snprintf(h->why, sizeof(h->why), "%s", err);
			hcall_fail_later(c, PROTO_E_UNAVAILABLE, h->why);
			return c;
		}
	}
	if (h->state == HELPER_UNUSABLE && h->refused && !h->alive && h->conn_closed &&
	    helper_replaced(h)) {
		vlog(LOG_INFO_, "%s has changed since it refused the handshake; trying it again",
		     h->path);
		helper_spawn(h);
	}
	switch (h->state) {
	case HELPER_READY:
		if (h->n_queued > 0) {
			/* Behind the ones already waiting for a free slot. */
			hcall_set_state(c, HC_QUEUED);
			break;
		}
		hcall_send(c);
		if (c->params && c->params == (params ? params->data : NULL)) {
			if (c->st == HC_QUEUED) {
				/* Not sent after all: keep a copy. */
				c->params = malloc(params->size);
				if (c->params)
					memcpy(c->params, params->data, params->size);
				else
					hcall_fail_later(c, PROTO_E_NOMEM, "out of memory");
			} else {
				c->params = NULL;
				c->params_len = 0;
			}
		}
		break;
	case HELPER_STARTING:
	case HELPER_RESTARTING:
		hcall_set_state(c, HC_QUEUED);
		ev_timer_start(h->loop, &c->wait_w);
		break;
	case HELPER_UNUSABLE:
	case HELPER_MISSING:
		hcall_fail_later(c, PROTO_E_UNAVAILABLE, h->why);
		break;
	case HELPER_STOPPING:
	case HELPER_STOPPED: {
		char msg[256];

		snprintf(msg, sizeof(msg), "the %s is shutting down", h->name);
		hcall_fail_later(c, PROTO_E_UNAVAILABLE, msg);
		break;
	}
	}
	return c;
}

/* Fail every call in one of the given states. */
static void helper_fail_calls(struct helper *h, enum hcall_state st, int err, const char *msg)
{
	struct hcall *c = h->calls;

	while (c) {
		struct hcall *next = c->next;

		if (c->st == st)
			hcall_complete(c, err, msg, NULL);
		c = next;
	}
}

/* ---- life and death ---- */

static void helper_kill(struct helper *h, const char *fmt, ...)
{
	va_list ap;

	if (h->dying)
		return;
	h->dying = true;
	va_start(ap, fmt);
	vsnprintf(h->death, sizeof(h->death), fmt, ap);
	va_end(ap);
	vlog(LOG_WARN_, "the %s (pid %d) %s", h->name, (int)h->pid, h->death);
	if (h->alive)
		kill(h->pid, SIGKILL);
	if (h->conn && proto_conn_is_open(h->conn))
		proto_conn_close(h->conn, PROTO_E_UNAVAILABLE, "helper killed");
}

static void helper_on_reap_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct helper *h = w->data;

	if (h->alive) {
		vlog(LOG_WARN_, "the %s (pid %d) did not exit; killing it", h->name, (int)h->pid);
		kill(h->pid, SIGKILL);
	}
}

static void helper_on_exit(struct ev_loop *loop, ev_child *w, int revents)
{
	struct helper *h = w->data;
	char how[128];

	ev_child_stop(loop, w);
	h->alive = false;
	util_describe_status(w->rstatus, how, sizeof(how));
	if (h->state == HELPER_STOPPING) {
		vlog(LOG_INFO_, "the %s (pid %d) %s", h->name, (int)h->pid, how);
		h->dying = true;
	} else if (!h->dying || strncmp(h->death, "closed", 6) == 0) {
		/* Its exit status says more than the EOF that may have come first. */
		h->dying = true;
		if (WIFSIGNALED(w->rstatus))
			snprintf(h->death, sizeof(h->death), "crashed (%s)", how);
		else
			snprintf(h->death, sizeof(h->death), "exited unexpectedly (%s)", how);
		vlog(LOG_WARN_, "the %s (pid %d) %s", h->name, (int)h->pid, h->death);
	}
	if (h->conn && proto_conn_is_open(h->conn))
		proto_conn_close(h->conn, PROTO_E_UNAVAILABLE, "helper exited");
	else
		helper_finish_death(h);
}

static void helper_on_closed(struct proto_conn *conn, void *ud, int err, const char *why)
{
	struct helper *h = ud;

	h->conn_closed = true;
	if (!h->dying && h->state != HELPER_STOPPING) {
		if (err == PROTO_E_PROTOCOL) {
			helper_kill(h, "broke the protocol (%s) and was killed", why ? why : "?");
		} else {
			h->dying = true;
			snprintf(h->death, sizeof(h->death), "closed its protocol pipe");
		}
	}
	if (h->alive && !ev_is_active(&h->reap_w)) {
		ev_timer_set(&h->reap_w, HELPER_REAP_GRACE, 0);
		ev_timer_start(h->loop, &h->reap_w);
	}
	helper_finish_death(h);
}

/* ---- reasons ---- */

static void reasons_free(struct helper *h)
{
	while (h->reasons) {
		struct state_reason *r = h->reasons;

		h->reasons = r->next;
		free(r);
	}
}

void helper_reason_set(struct helper *h, const char *name, const msgpack_object *reason)
{
	struct state_reason **pp, *r;
	uint32_t n;

	if (!h || !name)
		return;
	for (pp = &h->reasons; *pp && strcmp((*pp)->name, name); pp = &(*pp)->next)
		;
	r = *pp;
	n = reason && reason->type == MSGPACK_OBJECT_STR ? reason->via.str.size : 0;
	if (n == 0 || strlen(name) > PROTO_NAME_MAX) {
		if (r) {
			*pp = r->next;
			free(r);
		}
		return;
	}
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return;
		snprintf(r->name, sizeof(r->name), "%s", name);
		r->next = h->reasons;
		h->reasons = r;
	}
	if (n > PROTO_REASON_MAX)
		n = PROTO_REASON_MAX;
	/* One line, whatever the helper sent. */
	for (uint32_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)reason->via.str.ptr[i];

		r->text[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	r->text[n] = '\0';
}

const char *helper_reason(const struct helper *h, const char *name)
{
	for (const struct state_reason *r = h ? h->reasons : NULL; r && name; r = r->next)
		if (!strcmp(r->name, name))
			return r->text;
	return "";
}

static void helper_on_notify(struct proto_conn *conn, void *ud, const char *method,
			     const msgpack_object *params)
{
	struct helper *h = ud;

	if (strcmp(method, "log") == 0) {
		const msgpack_object *text = proto_map_get(params, "text");
		char level[16] = "info";
		uint32_t n, cut;

		if (!log_gate_pass(&h->log_gate))
			return;
		proto_get_str(params, "level", level, sizeof(level));
		n = text && text->type == MSGPACK_OBJECT_STR ? text->via.str.size : 0;
		cut = n > HELPER_LOG_LINE_MAX ? n - HELPER_LOG_LINE_MAX : 0;
		if (cut > 0)
			vlog(LOG_INFO_, "%s: %s: %.*s … [%u more bytes cut]", h->name, level,
			     (int)(n - cut), text->via.str.ptr, (unsigned)cut);
		else
			vlog(LOG_INFO_, "%s: %s: %.*s", h->name, level, (int)n,
			     n ? text->via.str.ptr : "");
	} else if (strcmp(method, "state") == 0) {
		char name[INSTANCE_NAME_MAX + 1], why[256];
		enum proto_state state;

		if (util_check_states(params, why, sizeof(why)) < 0) {
			helper_kill(h, "broke the protocol (%s, in a state notification) and was killed", why);
			return;
		}
		if (proto_get_str(params, "name", name, sizeof(name)) < 0 ||
		    proto_get_state(params, "new", &state) < 0)
			return;
		helper_reason_set(h, name, proto_map_get(params, "reason"));
		if (h->ops->state)
			h->ops->state(h->ud, h, name, state);
	}
	/* progress belongs to a request; the calls that care ask for it. */
}

static void helper_on_request(struct proto_conn *conn, void *ud, uint64_t msgid,
			      const char *method, const msgpack_object *params)
{
	proto_reply(conn, msgid, PROTO_E_UNSUPPORTED, "the broker answers no requests from helpers",
		    NULL, 0);
}

static double helper_hello_deadline(const struct helper *h)
{
	if (h->deadline_cap > 0 && h->deadline_cap < BROKER_HELLO_DEADLINE)
		return h->deadline_cap;
	return BROKER_HELLO_DEADLINE;
}

static const struct proto_conn_ops helper_conn_ops = {
	.request = helper_on_request,
	.notify = helper_on_notify,
	.closed = helper_on_closed,
};

static void helper_on_hello(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct helper *h = ud;

	if (h->dying || h->state != HELPER_STARTING)
		return;
	if (err == PROTO_E_TIMEOUT) {
		helper_kill(h, "did not answer hello within %.0f s and was killed", helper_hello_deadline(h));
		return;
	}
	if (err == PROTO_E_UNAVAILABLE && (!h->conn || !proto_conn_is_open(h->conn))) {
		/* Not an answer: its pipe closed (it exited, or broke the
		 * protocol); how it died is told once it is reaped. */
		return;
	}
	if (err < 0) {
		/* It spoke the protocol and said no: starting it again would get
		 * the same answer, and every request would wait for restarts. */
		h->state = HELPER_UNUSABLE;
		h->refused = true;
		if (stat(h->path, &h->refused_st) < 0)
			memset(&h->refused_st, 0, sizeof(h->refused_st));
		memset(&h->hello, 0, sizeof(h->hello));
		snprintf(h->why, sizeof(h->why),
			 "the %s (%.300s) refused the handshake: %.400s; it is not used until that "
			 "file is replaced",
			 h->name, h->path, errmsg && errmsg[0] ? errmsg : proto_strerror(err));
		helper_fail_calls(h, HC_QUEUED, PROTO_E_UNAVAILABLE, h->why);
		helper_kill(h, "refused the handshake (%s) and was stopped", errmsg ? errmsg : "?");
		return;
	}
	if (proto_hello_parse(result, &h->hello) < 0) {
		helper_kill(h, "answered hello with something that is not a hello answer");
		return;
	}
	if (strcmp(h->hello.driver, h->driver) != 0 || strcmp(h->hello.scope, h->scope) != 0) {
		h->state = HELPER_UNUSABLE;
		snprintf(h->why, sizeof(h->why),
			 "%.300s says it is driver %s with scope %s; expected driver %s with scope %s",
			 h->path, h->hello.driver, h->hello.scope, h->driver, h->scope);
	} else if (!h->hello.usable) {
		h->state = HELPER_UNUSABLE;
		snprintf(h->why, sizeof(h->why), "the %s driver cannot run on this host: %s",
			 h->driver, h->hello.why[0] ? h->hello.why : "no reason given");
	} else {
		h->state = HELPER_READY;
		h->why[0] = '\0';
	}
	h->refused = false;
	h->up_since = ev_now(h->loop);
	if (h->state == HELPER_UNUSABLE) {
		vlog(LOG_WARN_, "%s", h->why);
		helper_fail_calls(h, HC_QUEUED, PROTO_E_UNAVAILABLE, h->why);
		return;
	}
	vlog(LOG_INFO_, "the %s %s (pid %d) is ready", h->name, h->hello.helper_version,
	     (int)h->pid);
	helper_flush(h);
	if (h->ops->ready)
		h->ops->ready(h->ud, h);
}

static void helper_send_hello(struct helper *h)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int rc;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	proto_pack_str(&pk, "versions");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_int(&pk, PROTO_VERSION);
	proto_pack_kv_str(&pk, "scope_dir", h->scope_dir);
	proto_pack_str(&pk, "settings");
	if (h->ops->pack_settings)
		h->ops->pack_settings(h->ud, &pk);
	else
		msgpack_pack_map(&pk, 0);
	rc = proto_call_sb(h->conn, "hello", &sb, helper_hello_deadline(h), helper_on_hello, h, NULL);
	msgpack_sbuffer_destroy(&sb);
	if (rc < 0)
		helper_kill(h, "could not be sent hello (%s)", proto_strerror(rc));
}

static void helper_on_restart_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	helper_spawn(w->data);
}

static void helper_spawn(struct helper *h)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	char errname[96];

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		snprintf(h->death, sizeof(h->death), "could not be started (pipe: %s)", strerror(errno));
		goto out_close;
	}
	h->pid = fork();
	if (h->pid < 0) {
		snprintf(h->death, sizeof(h->death), "could not be started (fork: %s)", strerror(errno));
		goto out_close;
	}
	if (h->pid == 0) {
		sigset_t none;
		char *argv[] = {h->path, NULL};

		/* Own process group: a ^C meant for a foreground broker must not
		 * reach the helper or its VMs. */
		setpgid(0, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		execv(h->path, argv);
		dprintf(2, "cannot run %s: %s\n", h->path, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	snprintf(errname, sizeof(errname), "vmctl-%s-helper[%d]", h->driver, (int)h->pid);
	errpipe_start(h->loop, err[0], errname);
	h->alive = true;
	h->dying = false;
	h->conn_closed = false;
	h->death[0] = '\0';
	h->state = HELPER_STARTING;
	ev_child_set(&h->child_w, h->pid, 0);
	ev_child_start(h->loop, &h->child_w);
	h->conn = proto_conn_new(h->loop, out[0], in[1], &helper_conn_ops, h);
	if (!h->conn) {
		close(out[0]);
		close(in[1]);
		h->conn_closed = true;
		helper_kill(h, "could not be attached (out of memory)");
		return;
	}
	vlog(LOG_INFO_, "started %s (pid %d)", h->path, (int)h->pid);
	helper_send_hello(h);
	return;

out_close:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	vlog(LOG_ERROR_, "the %s %s", h->name, h->death);
	if (h->once) {
		h->state = HELPER_UNUSABLE;
		snprintf(h->why, sizeof(h->why), "the %s %s", h->name, h->death);
		return;
	}
	h->backoff_ms = backoff_next_ms(h->backoff_ms, 0);
	h->state = HELPER_RESTARTING;
	ev_timer_set(&h->restart_w, h->backoff_ms / 1000.0, 0);
	ev_timer_start(h->loop, &h->restart_w);
}

/* Both the process and the pipe are gone: answer the calls that were in
 * flight and restart (or finish a requested stop). */
static void helper_finish_death(struct helper *h)
{
	bool was_ready = h->state == HELPER_READY;
	double uptime;

	if (h->alive || !h->conn_closed)
		return;
	/* The next incarnation starts from nothing, as the SDK's states do. */
	reasons_free(h);
	ev_timer_stop(h->loop, &h->reap_w);
	if (h->conn) {
		proto_conn_free(h->conn);
		h->conn = NULL;
	}
	if (h->state == HELPER_STOPPING) {
		char msg[256];

		ev_timer_stop(h->loop, &h->stop_w);
		snprintf(msg, sizeof(msg), "the %s was shut down", h->name);
		h->state = HELPER_STOPPED;
		helper_fail_calls(h, HC_PARKED, PROTO_E_UNAVAILABLE, msg);
		helper_fail_calls(h, HC_QUEUED, PROTO_E_UNAVAILABLE, msg);
		if (h->stop_done) {
			void (*done)(void *) = h->stop_done;

			h->stop_done = NULL;
			done(h->stop_ud);
		}
		return;
	}
	if (h->state == HELPER_UNUSABLE && h->refused) {
		helper_fail_calls(h, HC_PARKED, PROTO_E_UNAVAILABLE, h->why);
		helper_fail_calls(h, HC_QUEUED, PROTO_E_UNAVAILABLE, h->why);
		return;
	}
	if (h->once) {
		/* Its first death is its last: what it died of is why it cannot be used. */
		if (h->state != HELPER_UNUSABLE)
			snprintf(h->why, sizeof(h->why), "the %s (%.300s) %s%s", h->name, h->path,
				 h->death[0] ? h->death : "ended",
				 h->state == HELPER_STARTING ? " before answering hello" : "");
		h->state = HELPER_UNUSABLE;
		helper_fail_calls(h, HC_PARKED, PROTO_E_UNAVAILABLE, h->why);
		helper_fail_calls(h, HC_QUEUED, PROTO_E_UNAVAILABLE, h->why);
		return;
	}
	uptime = was_ready ? ev_now(h->loop) - h->up_since : 0;
	h->backoff_ms = backoff_next_ms(h->backoff_ms, uptime);
	h->state = HELPER_RESTARTING;
	if (h->backoff_ms)
		vlog(LOG_WARN_, "restarting the %s in %u ms", h->name, h->backoff_ms);
	else
		vlog(LOG_WARN_, "restarting the %s (it had been up %.0f s)", h->name, uptime);
	for (struct hcall *c = h->calls, *next; c; c = next) {
		char msg[1400];

		next = c->next;
		if (c->st != HC_PARKED)
			continue;
		if (c->timed_out) {
			snprintf(msg, sizeof(msg),
				 "the %s did not answer %s within %.0f s; it has been killed and restarted",
				 h->name, c->method, c->deadline);
			hcall_complete(c, PROTO_E_TIMEOUT, msg, NULL);
		} else {
			snprintf(msg, sizeof(msg), "the %s %s during %s; it has been restarted",
				 h->name, h->death, c->method);
			hcall_complete(c, PROTO_E_UNAVAILABLE, msg, NULL);
		}
	}
	/* Calls that were waiting for a free slot now wait for the restart. */
	for (struct hcall *c = h->calls; c; c = c->next)
		if (c->st == HC_QUEUED && !ev_is_active(&c->wait_w))
			ev_timer_start(h->loop, &c->wait_w);
	ev_timer_set(&h->restart_w, h->backoff_ms / 1000.0, 0);
	ev_timer_start(h->loop, &h->restart_w);
}

struct helper *helper_new(const struct helper_spec *spec)
{
	struct helper *h = calloc(1, sizeof(*h));
	char err[1024], what[96];

	if (!h)
		return NULL;
	h->loop = spec->loop;
	h->ops = spec->ops;
	h->ud = spec->ud;
	h->deadline_cap = spec->deadline_cap;
	h->once = spec->once;
	snprintf(h->driver, sizeof(h->driver), "%s", spec->driver);
	snprintf(h->scope, sizeof(h->scope), "%s", spec->scope);
	snprintf(h->scope_dir, sizeof(h->scope_dir), "%s", spec->scope_dir);
	snprintf(h->name, sizeof(h->name), "%s helper", spec->driver);
	ev_child_init(&h->child_w, helper_on_exit, 0, 0);
	h->child_w.data = h;
	ev_timer_init(&h->restart_w, helper_on_restart_timer, 0, 0);
	h->restart_w.data = h;
	ev_timer_init(&h->reap_w, helper_on_reap_timer, HELPER_REAP_GRACE, 0);
	h->reap_w.data = h;
	snprintf(what, sizeof(what), "log notifications of the %s", h->name);
	log_gate_init(&h->log_gate, h->loop, what);
	h->conn_closed = true;
	if (h->ops->find(h->driver, h->path, sizeof(h->path), err, sizeof(err)) < 0) {
		h->state = HELPER_MISSING;
		snprintf(h->why, sizeof(h->why), "%s", err);
		vlog(LOG_ERROR_, "%s", err);
		return h;
	}
	helper_spawn(h);
	return h;
}

enum helper_state helper_get_state(const struct helper *h)
{
	return h->state;
}

const struct proto_hello *helper_hello(const struct helper *h)
{
	/* A probe that died before its hello has none. */
	if (!h->hello.driver[0])
		return NULL;
	if (h->state == HELPER_READY || (h->state == HELPER_UNUSABLE && !h->refused))
		return &h->hello;
	return NULL;
}

const char *helper_why(const struct helper *h)
{
	return h->why;
}

const char *helper_state_name(enum helper_state st)
{
	static const char *const names[] = {
		[HELPER_MISSING] = "missing",	  [HELPER_STARTING] = "starting",
		[HELPER_READY] = "ready",	  [HELPER_UNUSABLE] = "unusable",
		[HELPER_RESTARTING] = "restarting", [HELPER_STOPPING] = "stopping",
		[HELPER_STOPPED] = "stopped",
	};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) && names[st] ? names[st] : "unknown";
}

void helper_describe_problem(const struct helper *h, char *buf, size_t len)
{
	if (h->why[0])
		snprintf(buf, len, "%s", h->why);
	else if (h->state == HELPER_RESTARTING && h->death[0])
		snprintf(buf, len, "the %s %s; it is being restarted", h->name, h->death);
	else
		snprintf(buf, len, "%s", "");
}

static void helper_on_stop_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct helper *h = w->data;

	if (h->alive) {
		vlog(LOG_WARN_, "the %s did not exit after shutdown; killing it", h->name);
		kill(h->pid, SIGKILL);
	} else if (h->state == HELPER_STOPPED && h->stop_done) {
		void (*done)(void *) = h->stop_done;

		h->stop_done = NULL;
		done(h->stop_ud);
	}
}

static void helper_on_shutdown_answer(void *ud, int err, const char *errmsg,
				      const msgpack_object *result)
{
	struct helper *h = ud;

	if (err < 0 && h->alive)
		kill(h->pid, SIGKILL);
}

void helper_stop(struct helper *h, void (*done)(void *ud), void *ud)
{
	char msg[256];

	h->stop_done = done;
	h->stop_ud = ud;
	ev_timer_stop(h->loop, &h->restart_w);
	ev_timer_init(&h->stop_w, helper_on_stop_timer, HELPER_STOP_GRACE, 0);
	h->stop_w.data = h;
	snprintf(msg, sizeof(msg), "the %s was shut down", h->name);
	helper_fail_calls(h, HC_QUEUED, PROTO_E_UNAVAILABLE, msg);
	if (!h->alive && h->conn_closed) {
		/* Nothing running: report from the loop, as a real stop would. */
		h->state = HELPER_STOPPED;
		ev_timer_set(&h->stop_w, 0, 0);
		ev_timer_start(h->loop, &h->stop_w);
		return;
	}
	h->state = HELPER_STOPPING;
	ev_timer_start(h->loop, &h->stop_w);
	if (h->conn && proto_conn_is_open(h->conn) &&
	    proto_call(h->conn, "shutdown", NULL, 0, HELPER_STOP_GRACE - 1, helper_on_shutdown_answer,
		       h, NULL) == 0)
		return;
	if (h->alive)
		kill(h->pid, SIGKILL);
}

void helper_free(struct helper *h)
{
	if (!h)
		return;
	while (h->calls)
		hcall_complete(h->calls, PROTO_E_UNAVAILABLE, "the broker is shutting down", NULL);
	ev_timer_stop(h->loop, &h->restart_w);
	ev_timer_stop(h->loop, &h->reap_w);
	ev_timer_stop(h->loop, &h->stop_w);
	ev_child_stop(h->loop, &h->child_w);
	log_gate_stop(&h->log_gate);
	if (h->conn)
		proto_conn_free(h->conn);
	reasons_free(h);
	free(h);
}
