/*
 * The active helper and switching drivers. The broker starts the helper of
 * the active driver with its callbacks (hello's settings; after each hello,
 * reconciling the records; state notifications into the registry and the
 * SSH waits). Switching: every instance of the scope being left has its
 * state remembered in switch_state and the running ones are suspended (or
 * stopped), the old helper is shut down, the new one started; coming back to
 * a scope starts again what was running when it was left. An instance that
 * cannot be brought to rest abandons the switch. Also restarting the active
 * helper so that it reads a setting of its driver that changed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	if (state != PROTO_STATE_RUNNING && state != PROTO_STATE_STARTING &&
	    state != PROTO_STATE_UNKNOWN)
		classic_instance_down(name);
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


/*
 * A switch brings every live instance of the scope being left to rest
 * (dswitch_item: what it was, what was done to it), then swaps helpers.
 * Before anything is done it is written to DATA/switch.journal, and the
 * journal follows each step, so that a broker killed half-way finishes
 * (helpers already being swapped) or rolls back (instances still being
 * brought to rest) when it starts again: switch_recover().
 */
#define SWITCH_JOURNAL "switch.journal"

enum park_action { PARK_NONE, PARK_SUSPEND, PARK_STOP };
enum park_result { PARK_PENDING, PARK_DONE, PARK_FAILED };

static const char *const park_action_names[] = {"none", "suspend", "stop"};
static const char *const park_result_names[] = {"pending", "done", "failed"};

struct dswitch;

struct dswitch_item {
	struct dswitch *s;
	char name[INSTANCE_NAME_MAX + 1];
	enum proto_state before;
	enum park_action action;
	enum park_result result;
};

struct dswitch {
	struct creq *r;
	char from[DRIVER_NAME_MAX + 1], from_scope[DRIVER_NAME_MAX + 1];
	char to[DRIVER_NAME_MAX + 1], to_scope[DRIVER_NAME_MAX + 1];
	const char *phase; /* "resting", "abandoning", "swapping" */
	struct dswitch_item *items;
	size_t n_items;
	size_t pending;
	char failure[2048]; /* why the instances that could not rest did not */
	int fail_code;      /* the first of their errors */
	struct helper *old;
};

static void journal_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", B->data_dir, SWITCH_JOURNAL);
}

/* One line per fact, names being validated (no blanks):
 *   from DRIVER SCOPE / to DRIVER SCOPE / phase PHASE /
 *   instance NAME STATE-BEFORE ACTION RESULT */
static int journal_write(const struct dswitch *s)
{
	size_t cap = 256 + s->n_items * (INSTANCE_NAME_MAX + 64), len;
	char path[4200], *text = malloc(cap);
	int rc;

	if (!text)
		return PROTO_E_NOMEM;
	len = (size_t)snprintf(text, cap,
			       "# a driver switch in progress: vmctld finishes or undoes it when it starts\n"
			       "from %s %s\nto %s %s\nphase %s\n",
			       s->from, s->from_scope, s->to, s->to_scope, s->phase);
	for (size_t i = 0; i < s->n_items && len < cap; i++) {
		const struct dswitch_item *it = &s->items[i];
		char state[32];

		/* "delayed shutdown" has a blank. */
		snprintf(state, sizeof(state), "%s", proto_state_name(it->before));
		for (char *p = state; *p; p++)
			if (*p == ' ')
				*p = '_';
		len += (size_t)snprintf(text + len, cap - len, "instance %s %s %s %s\n", it->name, state,
					park_action_names[it->action], park_result_names[it->result]);
	}
	journal_path(path, sizeof(path));
	rc = len < cap ? atomic_write_file(path, text, len, 0600) : PROTO_E_NOMEM;
	if (rc < 0)
		vlog(LOG_ERROR_, "cannot write %s: %s", path, proto_strerror(rc));
	free(text);
	return rc;
}

static void journal_remove(void)
{
	char path[4200];

	journal_path(path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		vlog(LOG_ERROR_, "cannot remove %s: %s", path, strerror(errno));
}

static void dswitch_free(struct dswitch *s)
{
	free(s->items);
	free(s);
}

static void dswitch_finish(struct dswitch *s, int err, const char *msg)
{
	B->switching = false;
	if (err < 0)
		creq_fail(s->r, err, "%s", msg);
	else
		creq_ok(s->r, NULL);
	dswitch_free(s);
}

/* The switch is over, one way or the other: the scope left keeps what it
 * recorded (switch_state) only when it was really left. */
static void dswitch_clear_states(void)
{
	for (size_t i = 0; i < B->reg.n; i++)
		B->reg.v[i].has_switch_state = false;
	scope_save();
}

static int save_driver(const char *driver)
{
	char err[1024];
	int rc = settings_set(&B->settings, "local.driver", driver, err, sizeof(err));

	if (rc == 0)
		rc = settings_save(B->settings_path, &B->settings);
	if (rc < 0)
		vlog(LOG_ERROR_, "could not save local.driver=%s: %s", driver, proto_strerror(rc));
	return rc;
}

static void dswitch_on_old_stopped(void *ud)
{
	struct dswitch *s = ud;
	char err[1024];
	int rc;

	helper_free(s->old);
	s->old = NULL;
	save_driver(s->to);
	rc = switch_enter(s->to, s->to_scope, err, sizeof(err));
	if (rc < 0) {
		/* Stay on the old scope rather than on no scope at all: its
		 * helper's hello restores what was brought to rest. */
		char err2[1024];

		save_driver(s->from);
		switch_enter(s->from, s->from_scope, err2, sizeof(err2));
		journal_remove();
		switch_start_helper();
		dswitch_finish(s, rc, err);
		return;
	}
	journal_remove();
	vlog(LOG_INFO_, "switched from the %s driver to %s", s->from, s->to);
	/* Its hello leads to reconcile and to restoring this scope's instances. */
	switch_start_helper();
	dswitch_finish(s, 0, NULL);
}

static void dswitch_swap(struct dswitch *s)
{
	scope_save();
	s->phase = "swapping";
	journal_write(s);
	s->old = B->helper;
	B->helper = NULL;
	helper_stop(s->old, dswitch_on_old_stopped, s);
}

/* Every instance brought back after an abandoned switch has answered. */
static void dswitch_abandoned(struct dswitch *s)
{
	char msg[3000], back[1024] = "";
	size_t n = 0;

	for (size_t i = 0; i < s->n_items; i++) {
		const struct dswitch_item *it = &s->items[i];

		if (it->action == PARK_NONE || it->result == PARK_FAILED)
			continue;
		n += (size_t)snprintf(back + n, n < sizeof(back) ? sizeof(back) - n : 0, "%s%s",
				      n ? ", " : "", it->name);
	}
	dswitch_clear_states();
	journal_remove();
	snprintf(msg, sizeof(msg), "%s; the switch to the %s driver is abandoned%s%s, local.driver is still %s",
		 s->failure, s->to, back[0] ? ": running again: " : "", back, s->from);
	vlog(LOG_WARN_, "%s", msg);
	dswitch_finish(s, s->fail_code ? s->fail_code : PROTO_E_DRIVER, msg);
}

static void dswitch_on_restored(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct dswitch_item *it = ud;
	struct dswitch *s = it->s;
	struct instance_record *rec = registry_find(&B->reg, it->name);

	if (err < 0) {
		vlog(LOG_ERROR_, "could not bring %s back after the abandoned switch: %s", it->name, errmsg);
		creq_warning(s->r, "could not start %s again: %s", it->name, errmsg);
		it->result = PARK_FAILED;
	} else if (rec) {
		enum proto_state state = PROTO_STATE_RUNNING;

		proto_get_state(result, "state", &state);
		scope_set_state(rec, state);
	}
	if (--s->pending == 0)
		dswitch_abandoned(s);
}

/* An instance could not be brought to rest: start again, under the driver
 * that stays, what already was. */
static void dswitch_abandon(struct dswitch *s)
{
	s->phase = "abandoning";
	journal_write(s);
	s->pending = 1;
	for (size_t i = 0; i < s->n_items; i++) {
		struct dswitch_item *it = &s->items[i];
		struct instance_record *rec = registry_find(&B->reg, it->name);
		msgpack_sbuffer sb;
		msgpack_packer pk;

		if (it->action == PARK_NONE || it->result != PARK_DONE || !rec)
			continue;
		vlog(LOG_INFO_, "starting %s again: the switch is abandoned", it->name);
		creq_progress(s->r, -1, "%s %s", it->action == PARK_SUSPEND ? "Resuming" : "Starting", it->name);
		scope_pack_instance_params(&sb, rec, 0, &pk);
		s->pending++;
		if (!helper_call(B->helper, "instance.start", &sb, BROKER_START_DEADLINE, dswitch_on_restored, it))
			s->pending--;
		msgpack_sbuffer_destroy(&sb);
	}
	if (--s->pending == 0)
		dswitch_abandoned(s);
}

static void dswitch_parked(struct dswitch *s)
{
	if (s->failure[0])
		dswitch_abandon(s);
	else
		dswitch_swap(s);
}

static void dswitch_on_parked(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct dswitch_item *it = ud;
	struct dswitch *s = it->s;
	struct instance_record *rec = registry_find(&B->reg, it->name);
	const char *verb = it->action == PARK_SUSPEND ? "suspend" : "stop";

	if (err < 0) {
		size_t n = strlen(s->failure);

		vlog(LOG_WARN_, "could not %s %s before switching drivers: %s", verb, it->name, errmsg);
		snprintf(s->failure + n, sizeof(s->failure) - n, "%scould not %s %s before switching drivers: %s",
			 n ? "; " : "", verb, it->name, errmsg);
		if (!s->fail_code)
			s->fail_code = err;
		it->result = PARK_FAILED;
	} else {
		enum proto_state state = it->action == PARK_SUSPEND ? PROTO_STATE_SUSPENDED : PROTO_STATE_STOPPED;

		proto_get_state(result, "state", &state);
		if (rec)
			scope_set_state(rec, state);
		it->result = PARK_DONE;
		vlog(LOG_INFO_, "%s is at rest (%s)", it->name, proto_state_name(state));
	}
	journal_write(s);
	if (--s->pending == 0)
		dswitch_parked(s);
}

/* The rest timeout: how long one instance may take to suspend or to stop
 * gracefully ($VMCTL_SWITCH_REST_TIMEOUT seconds, for the tests). */
static int switch_rest_timeout(void)
{
	const char *env = getenv("VMCTL_SWITCH_REST_TIMEOUT");
	long v = env ? strtol(env, NULL, 10) : 0;

	return v > 0 && v < 24 * 3600 ? (int)v : BROKER_STOP_DEFAULT;
}

/* The helper of the driver switched to has said what it is: record every
 * instance of the scope being left, bring the running ones to rest, then
 * swap helpers. */
static void dswitch_on_described(void *ud, int err, const char *errmsg,
				 const struct driver_info *d)
{
	struct dswitch *s = ud;
	bool same_scope, can_suspend;
	int timeout = switch_rest_timeout();
	size_t n_rest = 0;

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
	s->items = calloc(B->reg.n ? B->reg.n : 1, sizeof(*s->items));
	if (!s->items) {
		dswitch_finish(s, PROTO_E_NOMEM, "out of memory");
		return;
	}
	for (size_t i = 0; i < B->reg.n; i++) {
		struct instance_record *rec = &B->reg.v[i];
		struct dswitch_item *it = &s->items[s->n_items];

		if (rec->deleted)
			continue;
		it->s = s;
		snprintf(it->name, sizeof(it->name), "%s", rec->name);
		it->before = rec->state;
		if (util_state_active(rec->state)) {
			it->action = can_suspend ? PARK_SUSPEND : PARK_STOP;
			n_rest++;
		}
		s->n_items++;
	}
	s->phase = "resting";
	if (journal_write(s) < 0) {
		char msg[600];

		snprintf(msg, sizeof(msg), "cannot record the switch in %s/%s; local.driver is still %s",
			 B->data_dir, SWITCH_JOURNAL, s->from);
		dswitch_finish(s, PROTO_E_IO, msg);
		return;
	}
	vlog(LOG_INFO_, "switching from the %s driver to %s (scope %s): bringing %zu instance(s) to rest",
	     s->from, s->to, s->to_scope, n_rest);
	s->pending = 1;
	for (size_t i = 0; i < s->n_items; i++) {
		struct dswitch_item *it = &s->items[i];
		struct instance_record *rec = registry_find(&B->reg, it->name);
		msgpack_sbuffer sb;
		msgpack_packer pk;

		/* What it was is what coming back restores. */
		rec->switch_state = util_state_active(it->before) ? PROTO_STATE_RUNNING : it->before;
		rec->has_switch_state = true;
		if (it->action == PARK_NONE)
			continue;
		scope_pack_instance_params(&sb, rec, it->action == PARK_STOP ? 3 : 0, &pk);
		if (it->action == PARK_STOP) {
			/* A guest that does not power off in time abandons the
			 * switch rather than being powered off by force. */
			proto_pack_kv_bool(&pk, "force", false);
			proto_pack_kv_bool(&pk, "escalate", false);
			proto_pack_kv_int(&pk, "timeout", timeout);
		}
		creq_progress(s->r, -1, "%s %s", it->action == PARK_SUSPEND ? "Suspending" : "Stopping", rec->name);
		s->pending++;
		if (!helper_call(B->helper, it->action == PARK_SUSPEND ? "instance.suspend" : "instance.stop", &sb,
				 timeout + BROKER_SHORT_DEADLINE, dswitch_on_parked, it)) {
			s->pending--;
			it->result = PARK_FAILED;
			snprintf(s->failure, sizeof(s->failure), "out of memory");
			s->fail_code = PROTO_E_NOMEM;
		}
		msgpack_sbuffer_destroy(&sb);
	}
	if (--s->pending == 0)
		dswitch_parked(s);
}

/* ---- a switch the broker did not live to finish ---- */

struct journal {
	char from[DRIVER_NAME_MAX + 1], from_scope[DRIVER_NAME_MAX + 1];
	char to[DRIVER_NAME_MAX + 1], to_scope[DRIVER_NAME_MAX + 1];
	char phase[16];
};

/* The journal's header; its instance lines are read by journal_restore_states. */
static int journal_read_header(const char *text, struct journal *j)
{
	char kw[16], a[DRIVER_NAME_MAX + 2], b[DRIVER_NAME_MAX + 2];

	memset(j, 0, sizeof(*j));
	for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		int n = sscanf(line, "%15s %32s %32s", kw, a, b);

		if (n >= 3 && strcmp(kw, "from") == 0 && strlen(a) <= DRIVER_NAME_MAX && strlen(b) <= DRIVER_NAME_MAX) {
			snprintf(j->from, sizeof(j->from), "%s", a);
			snprintf(j->from_scope, sizeof(j->from_scope), "%s", b);
		} else if (n >= 3 && strcmp(kw, "to") == 0 && strlen(a) <= DRIVER_NAME_MAX &&
			   strlen(b) <= DRIVER_NAME_MAX) {
			snprintf(j->to, sizeof(j->to), "%s", a);
			snprintf(j->to_scope, sizeof(j->to_scope), "%s", b);
		} else if (n >= 2 && strcmp(kw, "phase") == 0) {
			snprintf(j->phase, sizeof(j->phase), "%.15s", a);
		}
	}
	if (!j->from[0] || !j->to[0] || !j->phase[0] || !driver_name_valid(j->from) ||
	    !driver_name_valid(j->to) || !driver_name_valid(j->from_scope) || !driver_name_valid(j->to_scope))
		return PROTO_E_PROTOCOL;
	return 0;
}

/* Undoing: the scope left gets back, as switch_state, what each of its
 * instances was, so that its helper's hello restores them. */
static int journal_restore_states(const char *text, const struct journal *j, char *err, size_t errlen)
{
	int rc = scope_enter(j->from, j->from_scope, err, errlen);

	if (rc < 0)
		return rc;
	for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		char name[INSTANCE_NAME_MAX + 2], state[32];
		struct instance_record *rec;
		enum proto_state before;

		if (sscanf(line, "instance %64s %31s", name, state) != 2)
			continue;
		for (char *p = state; *p; p++)
			if (*p == '_')
				*p = ' ';
		rec = registry_find(&B->reg, name);
		if (!rec || proto_state_from_name(state, &before) < 0)
			continue;
		rec->switch_state = util_state_active(before) ? PROTO_STATE_RUNNING : before;
		rec->has_switch_state = true;
	}
	return scope_save();
}

/* At start-up, before the active driver is read: a journal left by a
 * broker that died during a switch is finished when the helpers were
 * already being swapped (every instance of the scope left was at rest and
 * recorded), and undone otherwise. */
static void switch_recover(void)
{
	char path[4200], err[1024], *text = NULL;
	struct journal j;
	size_t len;
	int rc;

	journal_path(path, sizeof(path));
	rc = read_file(path, 1 << 20, &text, &len);
	if (rc == PROTO_E_NOT_FOUND)
		return;
	if (rc < 0 || journal_read_header(text, &j) < 0) {
		vlog(LOG_ERROR_, "%s is unreadable; local.driver stays %s", path,
		     settings_get(&B->settings, "local.driver"));
		goto out_remove;
	}
	if (strcmp(j.phase, "swapping") == 0) {
		vlog(LOG_WARN_, "a switch from the %s driver to %s was interrupted after its instances were at "
				"rest: finishing it",
		     j.from, j.to);
		save_driver(j.to);
		goto out_remove;
	}
	vlog(LOG_WARN_, "a switch from the %s driver to %s was interrupted while %s: undoing it", j.from, j.to,
	     strcmp(j.phase, "abandoning") == 0 ? "being abandoned" : "its instances were brought to rest");
	save_driver(j.from);
	if (journal_restore_states(text, &j, err, sizeof(err)) < 0)
		vlog(LOG_ERROR_, "cannot restore the states of the %s scope: %s", j.from_scope, err);
out_remove:
	free(text);
	journal_remove();
}

int switch_init(char *err, size_t errlen)
{
	/* Stored canonical; a file edited by hand was checked as it loaded. */
	const char *drv;
	struct driver_info d;
	char scope[DRIVER_NAME_MAX + 1], why[4400];

	switch_recover();
	drv = settings_get(&B->settings, "local.driver");
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
