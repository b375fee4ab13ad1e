/*
 * stop --time MINUTES and stop --cancel: a delayed stop is a libev timer per
 * instance; until it fires, list and info show the instance as "delayed
 * shutdown". An immediate stop replaces a pending delayed one.
 *
 * Delayed stops outlive the broker: the pending ones of the active scope are
 * kept in SCOPE_DIR/delayed-stops (written atomically at every change, one
 * "NAME DUE CREATED" line each: the due time in seconds since the epoch and
 * the instance's creation time, so that a later instance of the same name is
 * not stopped by its predecessor's entry). Entering a scope (broker start,
 * driver switch) reads its file; a stop that fell due meanwhile fires at
 * once. Leaving a scope keeps its file, so coming back brings its delayed
 * stops back, as it brings back the instances that were running.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define STOP_DELAY_BUSY_RETRY 10.0  /* the instance was busy when the timer fired */
#define STOP_DELAY_READY_RETRY 2.0  /* the helper was not ready yet */
#define STOP_DELAY_FILE "delayed-stops"
#define STOP_DELAY_FILE_MAX (1u << 20)

struct delayed_stop {
	struct delayed_stop *next;
	char name[INSTANCE_NAME_MAX + 1];
	char created[40]; /* the instance's creation time, "" if it has none */
	time_t due;       /* wall clock */
	unsigned gen;
	bool stopping; /* fired: the stop is running */
	ev_timer w;
};

static struct delayed_stop *stop_delays;

static void stop_delay_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", B->scope_dir, STOP_DELAY_FILE);
}

/* Is d still about the instance of that name in the registry (not deleted,
 * not purged and replaced by a new one)? NULL if not. */
static struct instance_record *stop_delay_rec(const struct delayed_stop *d)
{
	struct instance_record *rec =
		d->gen == B->scope_gen ? registry_find(&B->reg, d->name) : NULL;

	if (!rec || rec->deleted || strcmp(rec->created ? rec->created : "", d->created) != 0)
		return NULL;
	return rec;
}

/* Rewrite the active scope's file from the entries of this scope. A stop
 * that is running stays listed until it is done: if the broker dies
 * meanwhile, its successor stops the instance again. */
static void stop_delay_save(void)
{
	char path[sizeof(B->scope_dir) + 32];
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int rc;

	if (!f) {
		vlog(LOG_ERROR_, "cannot record the delayed stops: out of memory");
		return;
	}
	fprintf(f, "# vmctld: pending delayed stops (NAME DUE-EPOCH-SECONDS CREATED)\n");
	for (struct delayed_stop *d = stop_delays; d; d = d->next)
		if (stop_delay_rec(d))
			fprintf(f, "%s %" PRId64 " %s\n", d->name, (int64_t)d->due,
				d->created[0] ? d->created : "-");
	if (fclose(f) != 0 || !text) {
		free(text);
		vlog(LOG_ERROR_, "cannot record the delayed stops: out of memory");
		return;
	}
	stop_delay_path(path, sizeof(path));
	rc = atomic_write_file(path, text, len, 0600);
	if (rc < 0)
		vlog(LOG_ERROR_, "cannot write %s: %s; delayed stops will not survive a restart",
		     path, proto_strerror(rc));
	free(text);
}

static struct delayed_stop *stop_delay_find(const char *name)
{
	for (struct delayed_stop *d = stop_delays; d; d = d->next)
		if (!d->stopping && d->gen == B->scope_gen && strcmp(d->name, name) == 0)
			return d;
	return NULL;
}

static void stop_delay_arm(struct delayed_stop *d, double seconds);

static void stop_delay_free(struct delayed_stop *d)
{
	for (struct delayed_stop **pp = &stop_delays; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	ev_timer_stop(B->loop, &d->w);
	free(d);
}

/* true if one was pending. */
static bool stop_delay_cancel(const char *name)
{
	struct delayed_stop *d = stop_delay_find(name);

	if (!d)
		return false;
	vlog(LOG_INFO_, "%s: delayed stop cancelled", name);
	stop_delay_free(d);
	stop_delay_save();
	return true;
}

void stop_delay_forget(const char *name)
{
	struct delayed_stop *d = stop_delay_find(name);

	if (!d)
		return;
	vlog(LOG_INFO_, "%s: delayed stop dropped (the instance is deleted)", name);
	stop_delay_free(d);
	stop_delay_save();
}

enum proto_state stop_delay_shown_state(const char *name, enum proto_state state)
{
	struct delayed_stop *d = stop_delay_find(name);

	if (!d)
		return state;
	/* Deleted (or purged and launched again) since: a recover must not
	 * bring the old stop back. (delete forgets it at once; this catches
	 * what slips past that, such as a purged name launched again.) */
	if (!stop_delay_rec(d)) {
		stop_delay_forget(name);
		return state;
	}
	if (state == PROTO_STATE_RUNNING)
		return PROTO_STATE_DELAYED_SHUTDOWN;
	return state;
}

static void stop_delay_on_stopped(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct delayed_stop *d = ud;
	struct instance_record *rec = stop_delay_rec(d);
	bool ours = d->gen == B->scope_gen;
	enum proto_state state = PROTO_STATE_STOPPED;

	busy_remove(d->name);
	if (err < 0) {
		vlog(LOG_WARN_, "delayed stop of %s failed: %s", d->name, errmsg);
	} else {
		proto_get_state(result, "state", &state);
		if (rec && scope_set_state(rec, state))
			scope_save();
		vlog(LOG_INFO_, "%s: delayed stop done (%s)", d->name, proto_state_name(state));
	}
	stop_delay_free(d);
	/* A stop that outlived a driver switch must not rewrite the new scope's file. */
	if (ours)
		stop_delay_save();
}

static void stop_delay_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct delayed_stop *d = w->data;
	struct instance_record *rec = stop_delay_rec(d);
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (!rec) {
		vlog(LOG_INFO_, "%s: delayed stop dropped (the instance is gone)", d->name);
		stop_delay_free(d);
		stop_delay_save();
		return;
	}
	if (busy_find(d->name) || B->switching ||
	    (rec->has_switch_state && !util_state_active(rec->state))) {
		/* Busy, being parked by a driver switch, or parked by one and about
		 * to be started again. */
		stop_delay_arm(d, STOP_DELAY_BUSY_RETRY);
		return;
	}
	if (!B->helper || helper_get_state(B->helper) != HELPER_READY) {
		stop_delay_arm(d, STOP_DELAY_READY_RETRY);
		return;
	}
	if (rec->state != PROTO_STATE_RUNNING) {
		vlog(LOG_INFO_, "%s: delayed stop dropped (the instance is %s)", d->name,
		     proto_state_name(scope_shown_state(rec)));
		stop_delay_free(d);
		stop_delay_save();
		return;
	}
	vlog(LOG_INFO_, "%s: the delayed stop is due", d->name);
	d->stopping = true;
	busy_add(d->name, "being stopped");
	scope_pack_instance_params(&sb, rec, 2, &pk);
	proto_pack_kv_bool(&pk, "force", false);
	proto_pack_kv_int(&pk, "timeout", BROKER_STOP_DEFAULT);
	if (!helper_call(B->helper, "instance.stop", &sb, BROKER_STOP_DEFAULT + BROKER_SHORT_DEADLINE,
			 stop_delay_on_stopped, d)) {
		busy_remove(d->name);
		stop_delay_free(d);
	}
	msgpack_sbuffer_destroy(&sb);
}

static void stop_delay_arm(struct delayed_stop *d, double seconds)
{
	ev_timer_stop(B->loop, &d->w);
	ev_timer_set(&d->w, seconds > 0 ? seconds : 0, 0);
	ev_timer_start(B->loop, &d->w);
}

static struct delayed_stop *stop_delay_new(const char *name, const char *created, time_t due)
{
	struct delayed_stop *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->created, sizeof(d->created), "%s", created ? created : "");
	d->due = due;
	d->gen = B->scope_gen;
	ev_timer_init(&d->w, stop_delay_on_timer, 0, 0);
	d->w.data = d;
	stop_delay_arm(d, difftime(due, time(NULL)));
	d->next = stop_delays;
	stop_delays = d;
	return d;
}

static int stop_delay_add(const struct instance_record *rec, int64_t seconds)
{
	struct delayed_stop *old = stop_delay_find(rec->name);

	if (old)
		stop_delay_free(old);
	if (!stop_delay_new(rec->name, rec->created, time(NULL) + (time_t)seconds))
		return PROTO_E_NOMEM;
	vlog(LOG_INFO_, "%s: stopping in %" PRId64 " s", rec->name, seconds);
	return 0;
}

/* One line of the file: "NAME DUE CREATED"; false if it is not one. */
static bool stop_delay_parse_line(const char *line, char *name, size_t namelen, int64_t *due,
				  char *created, size_t createdlen)
{
	char n[INSTANCE_NAME_MAX + 2], c[40], err[128];
	long long t;

	if (sscanf(line, "%64s %lld %39s", n, &t, c) != 3 || strlen(n) > INSTANCE_NAME_MAX ||
	    validate_instance_name(n, err, sizeof(err)) < 0 || t <= 0)
		return false;
	snprintf(name, namelen, "%s", n);
	snprintf(created, createdlen, "%s", strcmp(c, "-") == 0 ? "" : c);
	*due = t;
	return true;
}

void stop_delay_scope_entered(void)
{
	char path[sizeof(B->scope_dir) + 32];
	char *text = NULL, *line, *save = NULL;
	size_t len = 0, n = 0;
	int rc;

	/* The scope left keeps its file; its timers go. Stops already running
	 * finish on their own. */
	for (struct delayed_stop *d = stop_delays, *next; d; d = next) {
		next = d->next;
		if (!d->stopping)
			stop_delay_free(d);
	}
	stop_delay_path(path, sizeof(path));
	rc = read_file(path, STOP_DELAY_FILE_MAX, &text, &len);
	if (rc == PROTO_E_NOT_FOUND)
		return;
	if (rc < 0) {
		vlog(LOG_ERROR_, "cannot read %s: %s; its delayed stops are lost", path,
		     proto_strerror(rc));
		return;
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[INSTANCE_NAME_MAX + 1], created[40];
		struct delayed_stop *d;
		int64_t due;

		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (!stop_delay_parse_line(line, name, sizeof(name), &due, created, sizeof(created))) {
			vlog(LOG_WARN_, "%s: ignoring the line \"%.80s\"", path, line);
			continue;
		}
		if (stop_delay_find(name))
			continue;
		d = stop_delay_new(name, created, (time_t)due);
		if (!d)
			break;
		n++;
		vlog(LOG_INFO_, "%s: delayed stop due in %.0f s", name,
		     difftime(d->due, time(NULL)) > 0 ? difftime(d->due, time(NULL)) : 0.0);
	}
	free(text);
	/* Drop the entries of instances that are gone. */
	if (n)
		stop_delay_save();
}

/* Cancel what the names of a plain stop address, without answering r. */
static void stop_delay_cancel_addressed(const msgpack_object *p)
{
	const msgpack_object *list = proto_map_get(p, "names");
	bool all = false;

	proto_get_bool(p, "all", &all);
	if (all) {
		for (struct delayed_stop *d = stop_delays; d;) {
			struct delayed_stop *next = d->next;

			if (!d->stopping && d->gen == B->scope_gen)
				stop_delay_free(d);
			d = next;
		}
		stop_delay_save();
		return;
	}
	for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
		char name[INSTANCE_NAME_MAX + 1];

		if (proto_obj_str(&list->via.array.ptr[i], name, sizeof(name)) == 0)
			stop_delay_cancel(name);
	}
}

bool stop_delay_request(struct creq *r, const msgpack_object *p)
{
	bool cancel = false;
	int64_t minutes = 0;
	char **names;
	size_t n;

	proto_get_bool(p, "cancel", &cancel);
	if (proto_get_int(p, "time", &minutes) == PROTO_E_INVALID_ARGUMENT || minutes < 0 ||
	    minutes > 7 * 24 * 60) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "time must be a number of minutes from 0 to %d",
			  7 * 24 * 60);
		return true;
	}
	if (!cancel && minutes == 0) {
		stop_delay_cancel_addressed(p);
		return false;
	}
	if (creq_names(r, p, false, &names, &n) < 0)
		return true;
	if (cancel) {
		for (size_t i = 0; i < n; i++)
			if (!stop_delay_cancel(names[i]))
				creq_warning(r, "%s had no delayed stop to cancel", names[i]);
		names_free(names, n);
		creq_ok(r, NULL);
		return true;
	}
	for (size_t i = 0; i < n; i++) {
		struct instance_record *rec = registry_find(&B->reg, names[i]);
		enum proto_state state = rec ? rec->state : PROTO_STATE_UNKNOWN;

		if (state != PROTO_STATE_RUNNING) {
			creq_fail(r, PROTO_E_INVALID_STATE, "%s is %s, not running: there is nothing to stop "
				  "later", names[i], proto_state_name(state));
			names_free(names, n);
			return true;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (stop_delay_add(registry_find(&B->reg, names[i]), minutes * 60) < 0) {
			stop_delay_save();
			names_free(names, n);
			creq_fail(r, PROTO_E_NOMEM, "out of memory");
			return true;
		}
	}
	stop_delay_save();
	names_free(names, n);
	creq_ok(r, NULL);
	return true;
}
