/*
 * Waiting until a guest answers SSH (and, when asked, until cloud-init is
 * done in it), for launch, start and restart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "broker.h"
#include "readiness.h"

/* Between two looks at the SSH port: a look costs no process. */
#define SSH_POLL_INTERVAL 0.25
/* After a login that did not get in: each one costs the guest a login. */
#define SSH_LOGIN_RETRY 1.0
/* How long a look waits for the banner, at first and at most. */
#define SSH_BANNER_WAIT 2.0
#define SSH_BANNER_WAIT_MAX 30.0
/* Getting in never takes longer than this. A login on a loaded systemd
 * guest can take over 30 s (pam_systemd starts the user manager): killing
 * it sooner would retry forever. */
#define SSH_PROBE_MAX 120.0
/* A guest whose SSH port has refused connections this long, on a driver
 * with the exec feature, is taken as one without sshd: its readiness is
 * asked through the driver's exec (op-exec.c) instead. sshd starts within
 * seconds of the network where it is installed, even on a loaded host. */
#define SSH_REFUSED_FOR_EXEC 30.0
/* After a readiness check through exec that failed, wait this long for
 * SSH before the next one. */
#define SSH_EXEC_RETRY 30.0

/*
 * Each round looks at the port first (probe.c: no process, a quarter of a
 * second apart) and spends an ssh login only once sshd has greeted. That
 * login proves the key works and, when asked, also waits for cloud-init: a
 * login costs seconds on an emulated guest. Hosts that are names rather
 * than addresses skip the look and are probed by ssh alone, as before.
 */
struct ssh_wait;

/* An instance.exec in flight for a wait; the wait may end first. */
struct ssh_wait_exec {
	struct ssh_wait *w; /* NULL once the wait has ended */
};

struct ssh_wait {
	struct ssh_wait *next; /* in ssh_waits */
	unsigned gen;          /* B->scope_gen of name */
	char name[INSTANCE_NAME_MAX + 1];
	char host[64];
	char port[16];
	bool cloud_init;
	bool precheck;       /* the host is an address probe.c can reach */
	bool ssh_up;         /* a login got in */
	bool guest_refused;  /* a probe was refused: the guest's network is up */
	double banner_wait;  /* how long the next probe waits for the banner */
	int last_probe;      /* the last probe_result, -1 before the first */
	ev_tstamp refused_since; /* the port has refused every look since (0: it has not) */
	ev_tstamp exec_after;    /* no readiness check through exec before this */
	struct ssh_wait_exec *exec; /* one in flight, or NULL */
	ev_tstamp deadline;
	double timeout_s;
	struct creq *r;
	struct probe *probe;
	struct child *child;
	ev_timer retry_w;
	ev_timer login_w;    /* bounds a login that has not got in yet */
	ssh_wait_fn done;
	void *ud;
};

/* Every wait in progress, for ssh_wait_state_changed(). */
static struct ssh_wait *ssh_waits;

static void ssh_wait_step(struct ssh_wait *w);
static void ssh_wait_cloud_init_done(struct ssh_wait *w, enum ready_cloud_init ci, int ci_status);

static void ssh_wait_free(struct ssh_wait *w)
{
	for (struct ssh_wait **pp = &ssh_waits; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	ev_timer_stop(B->loop, &w->retry_w);
	ev_timer_stop(B->loop, &w->login_w);
	probe_cancel(w->probe);
	child_cancel(w->child);
	if (w->exec)
		w->exec->w = NULL;
	free(w);
}

static void ssh_wait_finish(struct ssh_wait *w, int err, const char *msg)
{
	ssh_wait_fn done = w->done;
	void *ud = w->ud;

	ssh_wait_free(w);
	done(ud, err, msg);
}

static void ssh_wait_timed_out(struct ssh_wait *w)
{
	char msg[512];
	double waited = w->timeout_s;

	if (w->ssh_up)
		snprintf(msg, sizeof(msg), "timed out waiting for cloud-init on %s after %.0f s",
			 w->name, waited);
	else
		snprintf(msg, sizeof(msg), "timed out waiting for %s to answer SSH after %.0f s",
			 w->name, waited);
	ssh_wait_finish(w, PROTO_E_TIMEOUT, msg);
}

static void ssh_wait_on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
	ssh_wait_step(t->data);
}

static void ssh_wait_again(struct ssh_wait *w, double after)
{
	if (ev_now(B->loop) + after >= w->deadline) {
		ssh_wait_timed_out(w);
		return;
	}
	ev_timer_set(&w->retry_w, after, 0);
	ev_timer_start(B->loop, &w->retry_w);
}

static void ssh_wait_got_in(struct ssh_wait *w)
{
	w->ssh_up = true;
	ev_timer_stop(B->loop, &w->login_w);
	vlog(LOG_INFO_, "%s answers SSH", w->name);
	if (w->cloud_init)
		creq_progress(w->r, -1, "Waiting for cloud-init");
}

static void ssh_wait_on_output(void *ud, const char *out)
{
	struct ssh_wait *w = ud;

	if (!w->ssh_up && ready_output_up(out))
		ssh_wait_got_in(w);
}

static void ssh_wait_on_login(void *ud, int status, const char *out)
{
	struct ssh_wait *w = ud;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	int ci_status;
	enum ready_cloud_init ci;

	w->child = NULL;
	ev_timer_stop(B->loop, &w->login_w);
	/* The mark may have come with the last of the output. */
	if (!w->ssh_up && (code == 0 || ready_output_up(out)))
		ssh_wait_got_in(w);
	if (!w->ssh_up) {
		/* Not in yet (sshd still starting, keys not installed, ...). */
		ssh_wait_again(w, SSH_LOGIN_RETRY);
		return;
	}
	if (!w->cloud_init) {
		ssh_wait_finish(w, 0, NULL);
		return;
	}
	ci = ready_output_cloud_init(out, &ci_status);
	if (ci == READY_CI_UNKNOWN) {
		/* 255 is ssh's own failure (connection lost): try again. */
		if (code == 255 || code < 0) {
			ssh_wait_again(w, SSH_LOGIN_RETRY);
			return;
		}
		ci = READY_CI_DONE;
		ci_status = code;
	}
	ssh_wait_cloud_init_done(w, ci, ci_status);
}

/* cloud-init's verdict (from a login, or through exec) ends the wait. */
static void ssh_wait_cloud_init_done(struct ssh_wait *w, enum ready_cloud_init ci, int ci_status)
{
	if (ci == READY_CI_ABSENT)
		vlog(LOG_INFO_, "cloud-init does not run in this boot of %s", w->name);
	else if (ci_status != 0)
		creq_warning(w->r,
			     "cloud-init on %s finished with errors (exit status %d); see "
			     "/var/log/cloud-init-output.log in the instance",
			     w->name, ci_status);
	else
		vlog(LOG_INFO_, "cloud-init finished on %s", w->name);
	ssh_wait_finish(w, 0, NULL);
}

/* A login that has not got in for this long is stuck: start over. */
static void ssh_wait_on_login_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct ssh_wait *w = t->data;

	child_cancel(w->child);
	w->child = NULL;
	ssh_wait_again(w, SSH_POLL_INTERVAL);
}

static void ssh_wait_login(struct ssh_wait *w)
{
	double left = w->deadline - ev_now(B->loop);
	char err[256];

	if (left <= 0) {
		ssh_wait_timed_out(w);
		return;
	}
	/* cloud-init may take long; getting in never should. */
	w->child = child_run_ssh(w->host, w->port, 15, w->cloud_init ? ready_cloud_init_cmd : "true",
				 left, ssh_wait_on_login, w, err, sizeof(err));
	if (!w->child) {
		vlog(LOG_WARN_, "%s", err);
		ssh_wait_again(w, SSH_LOGIN_RETRY);
		return;
	}
	child_watch_output(w->child, ssh_wait_on_output);
	if (!w->ssh_up) {
		ev_timer_set(&w->login_w, left < SSH_PROBE_MAX ? left : SSH_PROBE_MAX, 0);
		ev_timer_start(B->loop, &w->login_w);
	}
}

static void ssh_wait_on_exec(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct ssh_wait_exec *e = ud;
	struct ssh_wait *w = e->w;
	const msgpack_object *out = result ? proto_map_get(result, "stdout") : NULL;
	enum ready_cloud_init ci;
	int64_t status = -1;
	int ci_status;
	char *text;

	free(e);
	if (!w)
		return; /* the wait ended meanwhile */
	w->exec = NULL;
	if (err == 0 && proto_get_int(result, "status", &status) < 0)
		err = PROTO_E_PROTOCOL;
	if (err < 0) {
		vlog(LOG_WARN_, "%s: the readiness check through the driver's exec failed (%s); "
		     "waiting for SSH again", w->name, errmsg ? errmsg : proto_strerror(err));
		w->exec_after = ev_now(B->loop) + SSH_EXEC_RETRY;
		ssh_wait_again(w, SSH_POLL_INTERVAL);
		return;
	}
	if (!w->cloud_init) {
		vlog(LOG_INFO_, "%s is ready through the driver's exec (no SSH; exit status %d)", w->name,
		     (int)status);
		ssh_wait_finish(w, 0, NULL);
		return;
	}
	text = out && (out->type == MSGPACK_OBJECT_BIN || out->type == MSGPACK_OBJECT_STR)
		       ? strndup(out->via.bin.ptr, out->via.bin.size)
		       : strdup("");
	ci = text ? ready_output_cloud_init(text, &ci_status) : READY_CI_UNKNOWN;
	free(text);
	if (ci == READY_CI_UNKNOWN) {
		ci = READY_CI_DONE;
		ci_status = (int)status;
	}
	vlog(LOG_INFO_, "%s is ready through the driver's exec (no SSH)", w->name);
	ssh_wait_cloud_init_done(w, ci, ci_status);
}

/* The port has refused long enough: ask the guest through exec. false if
 * that cannot be done (the wait goes on probing). */
static bool ssh_wait_exec(struct ssh_wait *w)
{
	struct instance_record *rec = w->gen == B->scope_gen ? registry_find(&B->reg, w->name) : NULL;
	double left = w->deadline - ev_now(B->loop);
	char via[64];

	if (!rec || left <= 1)
		return false;
	w->exec = calloc(1, sizeof(*w->exec));
	if (!w->exec)
		return false;
	w->exec->w = w;
	exec_via(via, sizeof(via));
	vlog(LOG_INFO_, "%s: no SSH (its SSH port has refused connections for %.0f s); checking "
	     "readiness%s through %s", w->name, SSH_REFUSED_FOR_EXEC,
	     w->cloud_init ? " and cloud-init" : "", via);
	if (w->cloud_init)
		creq_progress(w->r, -1, "Waiting for cloud-init (no SSH: through %s)", via);
	if (!exec_call(rec, w->cloud_init ? ready_cloud_init_cmd : "true", left, ssh_wait_on_exec,
		       w->exec)) {
		free(w->exec);
		w->exec = NULL;
		return false;
	}
	return true;
}

static void ssh_wait_on_probe(void *ud, enum probe_result result)
{
	struct ssh_wait *w = ud;

	w->probe = NULL;
	if ((int)result != w->last_probe)
		vlog(LOG_DEBUG_, "%s: SSH port %s", w->name,
		     result == PROBE_BANNER ? "greets" : result == PROBE_CLOSED ? "refuses" : "silent");
	w->last_probe = (int)result;
	if (result != PROBE_CLOSED)
		w->refused_since = 0;
	switch (result) {
	case PROBE_BANNER:
		w->banner_wait = SSH_BANNER_WAIT;
		ssh_wait_login(w);
		return;
	case PROBE_CLOSED:
		w->guest_refused = true;
		w->banner_wait = SSH_BANNER_WAIT;
		if (w->refused_since == 0)
			w->refused_since = ev_now(B->loop);
		if (broker_has_feature(PROTO_FEAT_EXEC) &&
		    ev_now(B->loop) - w->refused_since >= SSH_REFUSED_FOR_EXEC &&
		    ev_now(B->loop) >= w->exec_after && ssh_wait_exec(w))
			return;
		break;
	case PROBE_SILENT:
		/* Before the guest's network is up, silence is the rule and a
		 * fresh connection finds it up sooner than QEMU's retries would.
		 * After the guest refused once, silence means sshd accepted but
		 * is slow to greet: wait longer, or a loaded guest would never
		 * greet in time. */
		w->banner_wait = w->guest_refused ? w->banner_wait * 2 : w->banner_wait + 0.5;
		if (w->banner_wait > SSH_BANNER_WAIT_MAX)
			w->banner_wait = SSH_BANNER_WAIT_MAX;
		break;
	}
	ssh_wait_again(w, SSH_POLL_INTERVAL);
}

static void ssh_wait_step(struct ssh_wait *w)
{
	double left = w->deadline - ev_now(B->loop);

	if (left <= 0) {
		ssh_wait_timed_out(w);
		return;
	}
	if (w->precheck && !w->ssh_up) {
		w->probe = probe_start(w->host, atoi(w->port),
				       left < w->banner_wait ? left : w->banner_wait, ssh_wait_on_probe, w);
		if (w->probe)
			return;
	}
	ssh_wait_login(w);
}

struct ssh_wait *ssh_wait_start(const char *name, const char *host, int port, bool cloud_init,
				ev_tstamp deadline, double timeout_s, struct creq *progress_r,
				ssh_wait_fn done, void *ud)
{
	struct ssh_wait *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(w->host, sizeof(w->host), "%s", host && *host ? host : "127.0.0.1");
	snprintf(w->port, sizeof(w->port), "%d", port);
	w->cloud_init = cloud_init;
	w->precheck = probe_host_usable(w->host);
	w->banner_wait = SSH_BANNER_WAIT;
	w->last_probe = -1;
	w->deadline = deadline;
	w->timeout_s = timeout_s;
	w->r = progress_r;
	w->done = done;
	w->ud = ud;
	ev_timer_init(&w->login_w, ssh_wait_on_login_timer, 0, 0);
	w->login_w.data = w;
	/* The first round runs from the loop: done never runs before we return. */
	ev_timer_init(&w->retry_w, ssh_wait_on_retry, 0, 0);
	w->retry_w.data = w;
	ev_timer_start(B->loop, &w->retry_w);
	w->gen = B->scope_gen;
	w->next = ssh_waits;
	ssh_waits = w;
	return w;
}

void ssh_wait_cancel(struct ssh_wait *w)
{
	if (w)
		ssh_wait_free(w);
}

/* A VM that stopped will never answer: end its waits now rather than at
 * their deadline (a launch whose QEMU died used to hold the instance for
 * the whole --timeout). */
void ssh_wait_state_changed(const char *name, enum proto_state state)
{
	char msg[512];

	if (state != PROTO_STATE_STOPPED && state != PROTO_STATE_SUSPENDED)
		return;
	for (;;) {
		struct ssh_wait *w = ssh_waits;

		while (w && (w->gen != B->scope_gen || strcmp(w->name, name) != 0))
			w = w->next;
		if (!w)
			return;
		snprintf(msg, sizeof(msg), "%s %s before %s (the %s driver reports it %s)", name,
			 proto_state_name(state), w->ssh_up ? "cloud-init finished" : "it answered SSH",
			 B->driver, proto_state_name(state));
		vlog(LOG_INFO_, "%s", msg);
		/* done may start or end other waits: look again from the start. */
		ssh_wait_finish(w, PROTO_E_INVALID_STATE, msg);
	}
}
