/*
 * stop --time MINUTES and stop --cancel: a delayed stop is a libev timer per
 * instance; until it fires, list and info show the instance as "delayed
 * shutdown". An immediate stop replaces a pending delayed one. Delayed stops
 * live in the broker only: they do not survive its restart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define STOP_DELAY_BUSY_RETRY 10.0 /* the instance was busy when the timer fired */

struct delayed_stop {
	struct delayed_stop *next;
	char name[INSTANCE_NAME_MAX + 1];
	unsigned gen;
	bool stopping; /* fired: the stop is running */
	ev_timer w;
};

static struct delayed_stop *stop_delays;

static struct delayed_stop *stop_delay_find(const char *name)
{
	for (struct delayed_stop *d = stop_delays; d; d = d->next)
		if (!d->stopping && d->gen == B->scope_gen && strcmp(d->name, name) == 0)
			return d;
	return NULL;
}

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
	return true;
}

const char *stop_delay_shown_state(const char *name, const char *state)
{
	if (state && strcmp(state, "running") == 0 && stop_delay_find(name))
		return "delayed shutdown";
	return state;
}

static void stop_delay_on_stopped(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct delayed_stop *d = ud;
	struct instance_record *rec =
		d->gen == B->scope_gen ? registry_find(&B->reg, d->name) : NULL;
	char state[32] = "stopped";

	busy_remove(d->name);
	if (err < 0) {
		vlog(LOG_WARN_, "delayed stop of %s failed: %s", d->name, errmsg);
	} else {
		proto_get_str(result, "state", state, sizeof(state));
		if (rec && scope_set_state(rec, state))
			scope_save();
		vlog(LOG_INFO_, "%s: delayed stop done (%s)", d->name, state);
	}
	stop_delay_free(d);
}

static void stop_delay_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct delayed_stop *d = w->data;
	struct instance_record *rec =
		d->gen == B->scope_gen ? registry_find(&B->reg, d->name) : NULL;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (!rec || rec->deleted) {
		stop_delay_free(d);
		return;
	}
	if (busy_find(d->name)) {
		ev_timer_set(&d->w, STOP_DELAY_BUSY_RETRY, 0);
		ev_timer_start(loop, &d->w);
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

static int stop_delay_add(const char *name, double seconds)
{
	struct delayed_stop *d = calloc(1, sizeof(*d));

	if (!d)
		return PROTO_E_NOMEM;
	stop_delay_cancel(name);
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->gen = B->scope_gen;
	ev_timer_init(&d->w, stop_delay_on_timer, seconds, 0);
	d->w.data = d;
	ev_timer_start(B->loop, &d->w);
	d->next = stop_delays;
	stop_delays = d;
	vlog(LOG_INFO_, "%s: stopping in %.0f s", name, seconds);
	return 0;
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

			if (!d->stopping)
				stop_delay_free(d);
			d = next;
		}
		return;
	}
	for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
		char name[INSTANCE_NAME_MAX + 1];

		if (proto_obj_str(&list->via.array.ptr[i], name, sizeof(name)) == 0)
			stop_delay_cancel(name);
	}
}

void op_stop_delayed(struct creq *r, const msgpack_object *p)
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
		return;
	}
	if (!cancel && minutes == 0) {
		stop_delay_cancel_addressed(p);
		op_stop(r, p);
		return;
	}
	if (creq_names(r, p, false, &names, &n) < 0)
		return;
	if (cancel) {
		for (size_t i = 0; i < n; i++)
			if (!stop_delay_cancel(names[i]))
				creq_warning(r, "%s had no delayed stop to cancel", names[i]);
		names_free(names, n);
		creq_ok(r, NULL);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct instance_record *rec = registry_find(&B->reg, names[i]);
		const char *state = rec && rec->state ? rec->state : "unknown";

		if (strcmp(state, "running") != 0) {
			creq_fail(r, PROTO_E_INVALID_STATE, "%s is %s, not running: there is nothing to stop "
				  "later", names[i], state);
			names_free(names, n);
			return;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (stop_delay_add(names[i], (double)minutes * 60.0) < 0) {
			names_free(names, n);
			creq_fail(r, PROTO_E_NOMEM, "out of memory");
			return;
		}
	}
	names_free(names, n);
	creq_ok(r, NULL);
}
