/*
 * The connection to libvirt: opened on a worker thread (the first one to a
 * fresh libvirtd takes seconds while it probes QEMU), watched with a close
 * callback, and reopened with backoff when the daemon goes away. Lifecycle
 * events arrive on the main thread and become "state" notifications.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <libvirt/virterror.h>

#include "lvh.h"

#define CONN_BACKOFF_MIN 0.5
#define CONN_BACKOFF_MAX 10.0
/* How long a request waits for a connection attempt already under way. */
#define CONN_WAIT_CONNECTING 30.0

/* Fields under lock are shared with workers; the rest is main thread only. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	virConnectPtr conn;    /* lock */
	bool connecting;       /* lock */
	bool kvm;              /* lock */
	char error[512];       /* lock: why there is no connection */
	unsigned long gen;     /* lock: bumped on every event or connection change */
	unsigned long attempts; /* lock: connection attempts finished */
	struct conn_settings set; /* written once in conn_init */
	struct ev_loop *loop;
	ev_timer retry;
	double backoff;
	bool stopping;
} cs = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

struct conn_attempt {
	virConnectPtr conn;
	bool kvm;
	char error[512];
};

static void conn_attempt_start(void);

static void conn_bump_locked(void)
{
	cs.gen++;
	pthread_cond_broadcast(&cs.cond);
}

/* ---- states (main thread; the SDK remembers them) ---- */

struct conn_state_post {
	char name[64];
	enum proto_state state;
};

static void conn_post_state_cb(void *arg)
{
	struct conn_state_post *p = arg;
	vmh_state_notify(p->name, p->state);
	free(p);
}

void conn_post_state(const char *name, enum proto_state state)
{
	struct conn_state_post *p = calloc(1, sizeof(*p));
	if (!p)
		return;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->state = state;
	if (job_post(conn_post_state_cb, p) < 0)
		free(p);
}

/* ---- events (main thread, from libvirt's dispatch) ---- */

/* The state a lifecycle event moves the instance to; false: no change. */
static bool conn_event_state(const char *name, int event, int detail, enum proto_state *state)
{
	enum proto_state cur = PROTO_STATE_UNKNOWN;

	vmh_state_last(name, &cur);
	switch (event) {
	case VIR_DOMAIN_EVENT_STARTED:
	case VIR_DOMAIN_EVENT_RESUMED:
		*state = PROTO_STATE_RUNNING;
		return true;
	case VIR_DOMAIN_EVENT_SUSPENDED:
		/* A managed save pauses the guest before writing it out: it is
		 * still on its way to suspended. */
		*state = PROTO_STATE_SUSPENDED;
		return cur != PROTO_STATE_SUSPENDING;
	case VIR_DOMAIN_EVENT_PMSUSPENDED:
		*state = PROTO_STATE_SUSPENDED;
		return true;
	case VIR_DOMAIN_EVENT_SHUTDOWN:
		*state = PROTO_STATE_STOPPING;
		return detail != VIR_DOMAIN_EVENT_SHUTDOWN_FINISHED;
	case VIR_DOMAIN_EVENT_STOPPED:
		if (detail == VIR_DOMAIN_EVENT_STOPPED_SAVED) {
			*state = PROTO_STATE_SUSPENDED;
			return true;
		}
		/* Stopped as one step of a restart: the restart reports on. */
		*state = PROTO_STATE_STOPPED;
		return cur != PROTO_STATE_RESTARTING;
	default:
		return false;
	}
}

static int conn_lifecycle_cb(virConnectPtr c, virDomainPtr dom, int event, int detail, void *opaque)
{
	const char *dname = virDomainGetName(dom);
	size_t plen = strlen(LVH_DOMAIN_PREFIX);

	if (!dname || strncmp(dname, LVH_DOMAIN_PREFIX, plen) != 0)
		return 0;
	const char *name = dname + plen;
	enum proto_state state;
	bool changes = conn_event_state(name, event, detail, &state);

	vmh_log(VMH_DEBUG, "libvirt event for %s: event %d detail %d -> %s", name, event, detail,
		changes ? proto_state_name(state) : "(no change)");
	if (changes)
		vmh_state_notify(name, state);

	pthread_mutex_lock(&cs.lock);
	conn_bump_locked();
	pthread_mutex_unlock(&cs.lock);
	return 0;
}

/* ---- losing and regaining the daemon ---- */

static void conn_schedule_retry(void)
{
	if (cs.stopping)
		return;
	ev_timer_stop(cs.loop, &cs.retry);
	ev_timer_set(&cs.retry, cs.backoff, 0.);
	ev_timer_start(cs.loop, &cs.retry);
	cs.backoff *= 2;
	if (cs.backoff > CONN_BACKOFF_MAX)
		cs.backoff = CONN_BACKOFF_MAX;
}

static void conn_unknown(void *ud, const char *name, enum proto_state state)
{
	vmh_state_notify_why(name, PROTO_STATE_UNKNOWN,
			     "the connection to libvirt was lost; reconnecting");
}

static void conn_lost(void *arg)
{
	virConnectPtr c = arg;

	/* Our reference; workers still holding theirs fail their calls. */
	virConnectClose(c);
	vmh_state_each(conn_unknown, NULL);
	cs.backoff = CONN_BACKOFF_MIN;
	conn_schedule_retry();
}

static void conn_close_cb(virConnectPtr c, int reason, void *opaque)
{
	static const char *const reasons[] = {"an error", "end of file", "keepalive timeout",
					      "the client"};
	const char *why = reason >= 0 && reason < 4 ? reasons[reason] : "an unknown reason";

	pthread_mutex_lock(&cs.lock);
	if (cs.conn != c) {
		pthread_mutex_unlock(&cs.lock);
		return;
	}
	cs.conn = NULL;
	snprintf(cs.error, sizeof(cs.error), "the connection was closed (%s); reconnecting", why);
	conn_bump_locked();
	pthread_mutex_unlock(&cs.lock);
	vmh_log(VMH_WARN, "libvirt connection to %s closed (%s); reconnecting", cs.set.uri, why);
	/* Not from inside libvirt's own callback: close it a moment later. */
	if (job_post(conn_lost, c) < 0)
		vmh_log(VMH_ERROR, "out of memory while handling the lost connection");
}

/* ---- reconciling after a reconnect ---- */

struct conn_reconcile {
	size_t n;
	char (*names)[64];
	char (*dirs)[PATH_MAX];
	enum proto_state *states;
};

static void conn_reconcile_work(void *arg)
{
	struct conn_reconcile *r = arg;
	char err[256];
	virConnectPtr c = conn_get(err, sizeof(err));

	/* Folders are only meaningful on this machine. */
	if (c && conn_is_local())
		dom_collect_orphans(c);

	for (size_t i = 0; i < r->n; i++) {
		r->states[i] = PROTO_STATE_UNKNOWN;
		if (c && dom_query_state(c, r->names[i], r->dirs[i][0] ? r->dirs[i] : NULL,
					 &r->states[i], err, sizeof(err)) < 0)
			r->states[i] = PROTO_STATE_UNKNOWN;
	}
	if (c)
		virConnectClose(c);
}

static void conn_reconcile_done(void *arg)
{
	struct conn_reconcile *r = arg;

	for (size_t i = 0; i < r->n; i++)
		if (vmh_state_last(r->names[i], NULL))
			vmh_state_notify(r->names[i], r->states[i]);
	free(r->names);
	free(r->dirs);
	free(r->states);
	free(r);
}

static void conn_count(void *ud, const char *name, enum proto_state state)
{
	(*(size_t *)ud)++;
}

/* The instance and its folder, for the worker to look at. */
static void conn_collect(void *ud, const char *name, enum proto_state state)
{
	struct conn_reconcile *r = ud;

	snprintf(r->names[r->n], sizeof(r->names[0]), "%s", name);
	if (vmh_instance_dir(name, r->dirs[r->n], sizeof(r->dirs[0])) < 0)
		r->dirs[r->n][0] = '\0';
	r->n++;
}

static void conn_reconcile(void)
{
	struct conn_reconcile *r = calloc(1, sizeof(*r));
	size_t n = 0;

	vmh_state_each(conn_count, &n);
	if (!r)
		return;
	r->names = calloc(n ? n : 1, sizeof(*r->names));
	r->dirs = calloc(n ? n : 1, sizeof(*r->dirs));
	r->states = calloc(n ? n : 1, sizeof(*r->states));
	if (!r->names || !r->dirs || !r->states)
		goto out_free;
	vmh_state_each(conn_collect, r);
	if (job_spawn(conn_reconcile_work, conn_reconcile_done, r) == 0)
		return;
out_free:
	free(r->names);
	free(r->dirs);
	free(r->states);
	free(r);
}

/* ---- opening ---- */

static void conn_attempt_work(void *arg)
{
	struct conn_attempt *a = arg;
	char *caps;

	a->conn = virConnectOpen(cs.set.uri);
	if (!a->conn) {
		const char *m = virGetLastErrorMessage();
		snprintf(a->error, sizeof(a->error), "%s", m ? m : "unknown error");
		return;
	}
	if (virConnectRegisterCloseCallback(a->conn, conn_close_cb, NULL, NULL) < 0 ||
	    virConnectDomainEventRegisterAny(a->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
					     VIR_DOMAIN_EVENT_CALLBACK(conn_lifecycle_cb), NULL,
					     NULL) < 0) {
		const char *m = virGetLastErrorMessage();
		snprintf(a->error, sizeof(a->error), "cannot watch domain events: %s",
			 m ? m : "unknown error");
		virConnectClose(a->conn);
		a->conn = NULL;
		return;
	}
	/* Notice a daemon that hangs, not only one that exits. */
	if (virConnectSetKeepAlive(a->conn, 5, 3) < 0)
		virResetLastError();

	/* A daemon on this machine runs the QEMU our own probe tried (see
	 * vmh_accel_*). A remote one can only be asked: libvirt offers kvm
	 * domains where its probe of QEMU with KVM worked, which is no proof
	 * that KVM runs guests there, but all there is from here. */
	if (!conn_is_local()) {
		enum vmh_accel forced;

		/* Remote: nothing probes, so only a forced choice is known. */
		if (vmh_accel_chosen(&forced, NULL)) {
			a->kvm = forced == VMH_ACCEL_KVM;
		} else {
			caps = virConnectGetDomainCapabilities(a->conn, NULL, NULL, NULL, "kvm", 0);
			a->kvm = caps != NULL;
			free(caps);
			virResetLastError();
		}
	}
}

static void conn_attempt_done(void *arg)
{
	struct conn_attempt *a = arg;

	/* The daemon may have gone between the open and now, before the close
	 * callback could recognise this connection as ours. */
	if (a->conn && virConnectIsAlive(a->conn) != 1) {
		snprintf(a->error, sizeof(a->error), "the connection closed while opening");
		virConnectClose(a->conn);
		a->conn = NULL;
	}
	pthread_mutex_lock(&cs.lock);
	cs.connecting = false;
	cs.attempts++;
	if (a->conn && !cs.stopping) {
		cs.conn = a->conn;
		cs.kvm = a->kvm;
		cs.error[0] = '\0';
		a->conn = NULL;
	} else if (!a->conn) {
		bool changed = strcmp(cs.error, a->error) != 0;
		snprintf(cs.error, sizeof(cs.error), "%s", a->error);
		if (changed)
			vmh_log(VMH_WARN, "cannot reach libvirt at %s: %s", cs.set.uri, a->error);
	}
	conn_bump_locked();
	bool up = cs.conn != NULL;
	pthread_mutex_unlock(&cs.lock);

	if (a->conn) /* connected while shutting down */
		virConnectClose(a->conn);
	free(a);
	if (up) {
		const char *why = NULL;

		if (!conn_is_local())
			vmh_log(VMH_INFO, "connected to libvirt at %s (domain type %s: remote host, "
				"as libvirt's capabilities offer it)", cs.set.uri,
				conn_use_kvm() ? "kvm" : "qemu");
		else if (vmh_accel_chosen(NULL, &why))
			vmh_log(VMH_INFO, "connected to libvirt at %s (domain type %s: %s)", cs.set.uri,
				conn_use_kvm() ? "kvm" : "qemu", why);
		else
			vmh_log(VMH_INFO, "connected to libvirt at %s (domain type: the KVM probe "
				"under way decides)", cs.set.uri);
		cs.backoff = CONN_BACKOFF_MIN;
		conn_reconcile();
	} else {
		conn_schedule_retry();
	}
}

static void conn_attempt_start(void)
{
	struct conn_attempt *a;

	pthread_mutex_lock(&cs.lock);
	if (cs.conn || cs.connecting || cs.stopping) {
		pthread_mutex_unlock(&cs.lock);
		return;
	}
	cs.connecting = true;
	pthread_mutex_unlock(&cs.lock);

	a = calloc(1, sizeof(*a));
	if (!a || job_spawn(conn_attempt_work, conn_attempt_done, a) < 0) {
		free(a);
		pthread_mutex_lock(&cs.lock);
		cs.connecting = false;
		pthread_mutex_unlock(&cs.lock);
		conn_schedule_retry();
	}
}

static void conn_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	conn_attempt_start();
}

static void conn_quiet_error(void *opaque, virErrorPtr err)
{
	/* Errors are reported where they matter, with context; libvirt's own
	 * printing to stderr would only duplicate them in the broker's log. */
}

int conn_init(const struct conn_settings *s)
{
	cs.set = *s;
	cs.loop = vmh_loop();
	cs.backoff = CONN_BACKOFF_MIN;
	snprintf(cs.error, sizeof(cs.error), "still connecting");
	ev_timer_init(&cs.retry, conn_retry_cb, 0., 0.);

	job_init(cs.loop);
	lvev_register(cs.loop);
	virSetErrorFunc(NULL, conn_quiet_error);
	if (virInitialize() < 0)
		return PROTO_E_INTERNAL;
	conn_attempt_start();
	return 0;
}

void conn_fini(void)
{
	virConnectPtr c;

	if (!cs.loop) /* init never ran, e.g. --describe */
		return;
	pthread_mutex_lock(&cs.lock);
	cs.stopping = true;
	c = cs.conn;
	cs.conn = NULL;
	conn_bump_locked();
	pthread_mutex_unlock(&cs.lock);
	ev_timer_stop(cs.loop, &cs.retry);
	if (c) {
		virConnectUnregisterCloseCallback(c, conn_close_cb);
		dom_retire_idle(c);
		virConnectClose(c);
	}
}

static void conn_deadline(struct timespec *ts, double s)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += (time_t)s;
	ts->tv_nsec += (long)((s - (double)(time_t)s) * 1e9);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Main thread: try now rather than when the backoff timer says. */
static void conn_kick(void *arg)
{
	pthread_mutex_lock(&cs.lock);
	bool idle = !cs.conn && !cs.connecting;
	pthread_mutex_unlock(&cs.lock);
	if (idle) {
		ev_timer_stop(cs.loop, &cs.retry);
		conn_attempt_start();
	}
}

virConnectPtr conn_get(char *err, size_t errlen)
{
	struct timespec until;
	virConnectPtr c;
	unsigned long attempts;
	bool kicked = false;

	conn_deadline(&until, CONN_WAIT_CONNECTING);
	pthread_mutex_lock(&cs.lock);
	attempts = cs.attempts;
	/* Without a connection, wait for one fresh attempt (started now if
	 * none is under way), so that a request right after libvirtd came
	 * back does not fail for the backoff's sake. */
	while (!cs.conn && !cs.stopping) {
		if (!cs.connecting) {
			if (cs.attempts != attempts)
				break;
			if (!kicked) {
				kicked = true;
				pthread_mutex_unlock(&cs.lock);
				if (job_post(conn_kick, NULL) < 0) {
					pthread_mutex_lock(&cs.lock);
					break;
				}
				pthread_mutex_lock(&cs.lock);
				continue;
			}
		}
		if (pthread_cond_timedwait(&cs.cond, &cs.lock, &until) == ETIMEDOUT)
			break;
	}
	c = cs.conn;
	if (c)
		virConnectRef(c);
	else
		snprintf(err, errlen, "cannot reach libvirt at %s: %s", cs.set.uri, cs.error);
	pthread_mutex_unlock(&cs.lock);
	return c;
}

virConnectPtr conn_peek(double wait_s)
{
	struct timespec until;

	conn_deadline(&until, wait_s);
	pthread_mutex_lock(&cs.lock);
	while (!cs.conn && cs.connecting && !cs.stopping)
		if (pthread_cond_timedwait(&cs.cond, &cs.lock, &until) == ETIMEDOUT)
			break;
	virConnectPtr c = cs.conn;
	if (c)
		virConnectRef(c);
	pthread_mutex_unlock(&cs.lock);
	return c;
}

const struct conn_settings *conn_settings(void)
{
	return &cs.set;
}

bool conn_use_kvm(void)
{
	enum vmh_accel a;

	/* Local: the helper's probe, known before any job runs (ops_run waits
	 * for it on the main thread, before the worker thread starts). */
	if (conn_is_local())
		return vmh_accel_chosen(&a, NULL) && a == VMH_ACCEL_KVM;
	pthread_mutex_lock(&cs.lock);
	bool kvm = cs.kvm;
	pthread_mutex_unlock(&cs.lock);
	return kvm;
}

/* The URI after its transport: "qemu:///x" and "qemu+unix:///x" are local. */
static const char *conn_local_path(void)
{
	if (strncmp(cs.set.uri, "qemu:///", 8) == 0)
		return cs.set.uri + 7;
	if (strncmp(cs.set.uri, "qemu+unix:///", 13) == 0)
		return cs.set.uri + 12;
	return NULL;
}

bool conn_is_local_system(void)
{
	const char *p = conn_local_path();

	return p && (strcmp(p, "/system") == 0 || strncmp(p, "/system?", 8) == 0);
}

bool conn_is_local(void)
{
	return conn_local_path() != NULL;
}

unsigned long conn_event_gen(void)
{
	pthread_mutex_lock(&cs.lock);
	unsigned long g = cs.gen;
	pthread_mutex_unlock(&cs.lock);
	return g;
}

void conn_wait_event(unsigned long *gen, double timeout_s)
{
	struct timespec until;

	conn_deadline(&until, timeout_s);
	pthread_mutex_lock(&cs.lock);
	while (cs.gen == *gen)
		if (pthread_cond_timedwait(&cs.cond, &cs.lock, &until) == ETIMEDOUT)
			break;
	*gen = cs.gen;
	pthread_mutex_unlock(&cs.lock);
}
