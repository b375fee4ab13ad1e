/*
 * The active helper and switching drivers. The broker starts the helper of
 * the active driver with its callbacks (hello's settings; after each hello,
 * reconciling the records; state notifications into the registry and the
 * SSH waits). Switching: the running instances of the scope being left are
 * suspended (or stopped) and remembered in switch_state, the old helper is
 * shut down, the new one started; coming back to a scope starts again what
 * was running when it was left. Also restarting the active helper so that
 * it reads a setting of its driver that changed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

/* ---- the active helper ---- */

/* The settings of hello: {STR: STR}, local.driver being the active one. */
static void active_pack_settings(void *ud, msgpack_packer *pk)
{
	const char *const *keys = settings_known_keys();
	size_t n = 0;

	for (size_t i = 0; keys && keys[i]; i++)
		if (strcmp(keys[i], "local.driver") == 0 || settings_get(&B->settings, keys[i]))
			n++;
	msgpack_pack_map(pk, n);
	for (size_t i = 0; keys && keys[i]; i++) {
		const char *v = strcmp(keys[i], "local.driver") == 0 ? B->driver
								      : settings_get(&B->settings, keys[i]);

		if (v)
			proto_pack_kv_str(pk, keys[i], v);
	}
}

static void active_on_ready(void *ud, struct helper *h)
{
	if (h == B->helper)
		ops_reconcile();
}

static void active_on_state(void *ud, struct helper *h, const char *name, enum proto_state state)
{
	struct instance_record *rec;

	/* A helper being replaced speaks of a scope that is no longer ours. */
	if (h != B->helper)
		return;
	rec = registry_find(&B->reg, name);
	if (rec && !rec->deleted && scope_set_state(rec, state)) {
		vlog(LOG_INFO_, "%s is now %s", name, proto_state_name(state));
		scope_save();
	}
	ssh_wait_state_changed(name, state);
}

static const struct helper_ops active_helper_ops = {
	.find = helper_find,
	.pack_settings = active_pack_settings,
	.ready = active_on_ready,
	.state = active_on_state,
};

void switch_start_helper(void)
{
	struct helper_spec spec = {
		.loop = B->loop,
		.driver = B->driver,
		.scope = B->scope,
		.scope_dir = B->scope_dir,
		.deadline_cap = B->deadline_cap,
		.ops = &active_helper_ops,
	};

	B->helper = helper_new(&spec);
}

/* ---- switching ---- */

/* Make driver (of scope) the active one: its registry, its delayed stops. */
static int switch_enter(const char *driver, const char *scope, char *err, size_t errlen)
{
	int rc = scope_enter(driver, scope, err, errlen);

	if (rc == 0)
		stop_delay_scope_entered();
	return rc;
}

int switch_init(char *err, size_t errlen)
{
	/* Stored canonical; a file edited by hand was checked as it loaded. */
	const char *drv = settings_get(&B->settings, "local.driver");
	struct driver_info d;
	char scope[DRIVER_NAME_MAX + 1], why[4400];

	if (driver_describe_now(drv, &d, why, sizeof(why)) == 0) {
		snprintf(scope, sizeof(scope), "%s", d.scope);
	} else {
		/* Not installed, or it could not say: its helper's start will
		 * tell the user. */
		driver_scope(drv, scope, sizeof(scope));
		vlog(LOG_WARN_, "%s; taking the scope of the %s driver to be %s", why, drv, scope);
	}
	return switch_enter(drv, scope, err, errlen);
}

struct dswitch {
	struct creq *r;
	char from[DRIVER_NAME_MAX + 1], from_scope[DRIVER_NAME_MAX + 1];
	char to[DRIVER_NAME_MAX + 1], to_scope[DRIVER_NAME_MAX + 1];
	size_t pending;
	struct helper *old;
};

struct dswitch_item {
	struct dswitch *s;
	char name[INSTANCE_NAME_MAX + 1];
	bool suspending;
};

static void dswitch_finish(struct dswitch *s, int err, const char *msg)
{
	B->switching = false;
	if (err < 0)
		creq_fail(s->r, err, "%s", msg);
	else
		creq_ok(s->r, NULL);
	free(s);
}

static void dswitch_on_old_stopped(void *ud)
{
	struct dswitch *s = ud;
	char err[1024];
	int rc;

	helper_free(s->old);
	s->old = NULL;
	rc = settings_set(&B->settings, "local.driver", s->to, err, sizeof(err));
	if (rc == 0)
		rc = settings_save(B->settings_path, &B->settings);
	if (rc < 0)
		vlog(LOG_ERROR_, "could not save local.driver=%s: %s", s->to, proto_strerror(rc));
	rc = switch_enter(s->to, s->to_scope, err, sizeof(err));
	if (rc < 0) {
		/* Stay on the old scope rather than on no scope at all. */
		char err2[1024];

		switch_enter(s->from, s->from_scope, err2, sizeof(err2));
		switch_start_helper();
		dswitch_finish(s, rc, err);
		return;
	}
	vlog(LOG_INFO_, "switched from the %s driver to %s", s->from, s->to);
	/* Its hello leads to reconcile and to restoring this scope's instances. */
	switch_start_helper();
	dswitch_finish(s, 0, NULL);
}

static void dswitch_swap(struct dswitch *s)
{
	scope_save();
	s->old = B->helper;
	B->helper = NULL;
	helper_stop(s->old, dswitch_on_old_stopped, s);
}

static void dswitch_on_parked(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct dswitch_item *it = ud;
	struct dswitch *s = it->s;
	struct instance_record *rec = registry_find(&B->reg, it->name);

	if (err < 0) {
		creq_warning(s->r, "could not %s %s before switching drivers: %s", it->suspending ? "suspend" : "stop",
			     it->name, errmsg);
	} else if (rec) {
		enum proto_state state = it->suspending ? PROTO_STATE_SUSPENDED : PROTO_STATE_STOPPED;

		proto_get_state(result, "state", &state);
		scope_set_state(rec, state);
	}
	free(it);
	if (--s->pending == 0)
		dswitch_swap(s);
}

/* The helper of the driver switched to has said what it is: park the
 * running instances of the scope being left, then swap helpers. */
static void dswitch_on_described(void *ud, int err, const char *errmsg,
				 const struct driver_info *d)
{
	struct dswitch *s = ud;
	bool same_scope, can_suspend;

	if (err < 0) {
		char msg[4600];

		snprintf(msg, sizeof(msg), "%s; local.driver is still %s", errmsg, s->from);
		dswitch_finish(s, PROTO_E_UNAVAILABLE, msg);
		return;
	}
	snprintf(s->to_scope, sizeof(s->to_scope), "%s", d->scope);
	same_scope = strcmp(s->to_scope, B->scope) == 0;
	/* Another driver of the same scope cannot resume this one's saved state. */
	can_suspend = !same_scope && broker_has_feature(PROTO_FEAT_SUSPEND);
	vlog(LOG_INFO_, "switching from the %s driver to %s (scope %s)", s->from, s->to, s->to_scope);
	s->pending = 1;
	for (size_t i = 0; i < B->reg.n; i++) {
		struct instance_record *rec = &B->reg.v[i];
		struct dswitch_item *it;
		msgpack_sbuffer sb;
		msgpack_packer pk;

		if (rec->deleted || !util_state_active(rec->state))
			continue;
		it = calloc(1, sizeof(*it));
		if (!it)
			continue;
		it->s = s;
		it->suspending = can_suspend;
		snprintf(it->name, sizeof(it->name), "%s", rec->name);
		rec->switch_state = PROTO_STATE_RUNNING;
		rec->has_switch_state = true;
		scope_pack_instance_params(&sb, rec, can_suspend ? 0 : 2, &pk);
		if (!can_suspend) {
			proto_pack_kv_bool(&pk, "force", false);
			proto_pack_kv_int(&pk, "timeout", BROKER_STOP_DEFAULT);
		}
		creq_progress(s->r, -1, "%s %s", can_suspend ? "Suspending" : "Stopping", rec->name);
		s->pending++;
		if (!helper_call(B->helper, can_suspend ? "instance.suspend" : "instance.stop", &sb,
				 BROKER_STOP_DEFAULT + BROKER_SHORT_DEADLINE, dswitch_on_parked, it)) {
			s->pending--;
			free(it);
		}
		msgpack_sbuffer_destroy(&sb);
	}
	if (--s->pending == 0)
		dswitch_swap(s);
}

/* Before anything changes: the helper of the driver switched to was
 * started once, for its hello (driver_probe()). Unless it said it is that
 * driver, of the scope its --describe named, and can run here, the switch
 * is refused with its reason, local.driver and every instance untouched. */
static void dswitch_on_checked(void *ud, const struct driver_probe_result *res)
{
	struct dswitch *s = ud;
	char msg[2200];

	if (!res->found || !res->usable) {
		snprintf(msg, sizeof(msg), "cannot switch to the %s driver: %s; local.driver is still %s",
			 s->to, res->why[0] ? res->why : "its helper cannot be used", s->from);
		dswitch_finish(s, PROTO_E_UNAVAILABLE, msg);
		return;
	}
	dswitch_on_described(s, 0, NULL, &res->info);
}

void switch_driver(struct creq *r, const char *value)
{
	char to[DRIVER_NAME_MAX + 1], path[4096], err[2048], installed[512];
	struct dswitch *s;

	if (driver_canonical(value, to, sizeof(to)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "invalid value \"%s\" for local.driver: %s", value,
			  DRIVER_NAME_RULE);
		return;
	}
	if (strcmp(to, B->driver) == 0) {
		if (settings_set(&B->settings, "local.driver", to, err, sizeof(err)) == 0)
			settings_save(B->settings_path, &B->settings);
		creq_ok(r, NULL);
		return;
	}
	/* A driver exists when its helper does. */
	if (helper_find(to, path, sizeof(path), err, sizeof(err)) < 0) {
		drivers_installed(installed, sizeof(installed));
		creq_fail(r, PROTO_E_NOT_FOUND, "%s; %s%s; local.driver is still %s", err,
			  installed[0] ? "the drivers installed are " : "no driver is installed",
			  installed, B->driver);
		return;
	}
	if (B->busy) {
		creq_fail(r, PROTO_E_BUSY, "cannot switch drivers while %s is %s; try again later",
			  B->busy->name, B->busy->what);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	s->r = r;
	snprintf(s->from, sizeof(s->from), "%s", B->driver);
	snprintf(s->from_scope, sizeof(s->from_scope), "%s", B->scope);
	snprintf(s->to, sizeof(s->to), "%s", to);
	B->switching = true;
	snprintf(B->switch_note, sizeof(B->switch_note), "the driver is being switched to %s", to);
	/* Its scope is what it says it is; it must be able to run first. */
	driver_probe(to, dswitch_on_checked, s);
}

struct helper_restart {
	struct creq *r;
	struct helper *old;
};

static void restart_on_helper_stopped(void *ud)
{
	struct helper_restart *hr = ud;

	helper_free(hr->old);
	switch_start_helper();
	B->switching = false;
	creq_ok(hr->r, NULL);
	free(hr);
}

void switch_restart_helper(struct creq *r, const char *key)
{
	struct helper_restart *hr = calloc(1, sizeof(*hr));

	if (!hr || B->busy || !B->helper) {
		/* Not now: the value is saved and the next helper start reads it. */
		free(hr);
		creq_warning(r, "%s takes effect when the %s helper next starts", key, B->driver);
		creq_ok(r, NULL);
		return;
	}
	vlog(LOG_INFO_, "restarting the %s helper to apply %s", B->driver, key);
	hr->r = r;
	hr->old = B->helper;
	B->helper = NULL;
	B->switching = true;
	snprintf(B->switch_note, sizeof(B->switch_note),
		 "the %s helper is restarting to apply %s", B->driver, key);
	helper_stop(hr->old, restart_on_helper_stopped, hr);
}
