/*
 * get / set / keys, and switching the active driver: the running instances
 * of the scope being left are suspended (or stopped) and remembered in
 * switch_state, the old helper is shut down, the new one started; coming
 * back to a scope starts again what was running when it was left.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "image.h"

void config_pack_settings(msgpack_packer *pk)
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

static bool config_known_key(const char *key)
{
	const char *const *keys = settings_known_keys();

	for (size_t i = 0; keys && keys[i]; i++)
		if (strcmp(keys[i], key) == 0)
			return true;
	return false;
}

static void config_reply_value(struct creq *r, const char *value)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "value", value);
	creq_ok(r, &sb);
	msgpack_sbuffer_destroy(&sb);
}

void op_get(struct creq *r, const msgpack_object *p)
{
	char key[256], name[INSTANCE_NAME_MAX + 1], prop[16], value[64];
	const char *v;

	if (proto_get_str(p, "key", key, sizeof(key)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "get needs a key (vmctl get --keys lists them)");
		return;
	}
	if (strcmp(key, "local.driver") == 0) {
		config_reply_value(r, B->driver);
		return;
	}
	if (config_known_key(key)) {
		v = settings_get(&B->settings, key);
		config_reply_value(r, v ? v : "");
		return;
	}
	if (util_instance_key(key, name, sizeof(name), prop, sizeof(prop)) == 0) {
		struct instance_record *rec = registry_find(&B->reg, name);

		if (!rec) {
			creq_fail(r, PROTO_E_NOT_FOUND, "instance \"%s\" does not exist (driver %s, scope %s)",
				  name, B->driver, B->scope);
			return;
		}
		if (strcmp(prop, "cpus") == 0)
			snprintf(value, sizeof(value), "%u", rec->cpus);
		else
			format_size(strcmp(prop, "memory") == 0 ? rec->memory : rec->disk, value,
				    sizeof(value));
		config_reply_value(r, value);
		return;
	}
	creq_fail(r, PROTO_E_INVALID_ARGUMENT, "unknown setting %s (vmctl get --keys lists them)", key);
}

void op_keys(struct creq *r, const msgpack_object *p)
{
	const char *const *keys = settings_known_keys();
	static const char *const props[] = {"cpus", "disk", "memory"};
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n = 0, live = 0;

	for (size_t i = 0; keys && keys[i]; i++)
		n++;
	for (size_t i = 0; i < B->reg.n; i++)
		if (!B->reg.v[i].deleted)
			live++;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "keys");
	msgpack_pack_array(&pk, n + 3 * live);
	for (size_t i = 0; i < n; i++)
		proto_pack_str(&pk, keys[i]);
	for (size_t i = 0; i < B->reg.n; i++) {
		if (B->reg.v[i].deleted)
			continue;
		for (size_t j = 0; j < 3; j++) {
			char key[128];

			snprintf(key, sizeof(key), "local.%s.%s", B->reg.v[i].name, props[j]);
			proto_pack_str(&pk, key);
		}
	}
	creq_ok(r, &sb);
	msgpack_sbuffer_destroy(&sb);
}

/* ---- driver switch ---- */

struct dswitch {
	struct creq *r;
	char from[32];
	char to[32];
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
	rc = scope_enter(s->to, err, sizeof(err));
	if (rc < 0) {
		/* Stay on the old scope rather than on no scope at all. */
		char err2[1024];

		scope_enter(s->from, err2, sizeof(err2));
		B->helper = helper_new(s->from);
		dswitch_finish(s, rc, err);
		return;
	}
	vlog(LOG_INFO_, "switched from the %s driver to %s", s->from, s->to);
	/* Its hello leads to reconcile and to restoring this scope's instances. */
	B->helper = helper_new(s->to);
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
		char state[32];

		snprintf(state, sizeof(state), "%s", it->suspending ? "suspended" : "stopped");
		proto_get_str(result, "state", state, sizeof(state));
		scope_set_state(rec, state);
	}
	free(it);
	if (--s->pending == 0)
		dswitch_swap(s);
}

static void config_switch_driver(struct creq *r, const char *value)
{
	const char *to = driver_canonical(value);
	struct dswitch *s;
	char path[4096], err[2048];
	bool same_scope, can_suspend;

	if (!to) {
		char names[256] = "";
		size_t used = 0;

		for (const char *const *d = driver_names(); d && *d; d++)
			used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
						 used ? ", " : "", *d);
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "unknown driver \"%s\"; choose one of: %s", value,
			  names);
		return;
	}
	if (strcmp(to, B->driver) == 0) {
		if (settings_set(&B->settings, "local.driver", to, err, sizeof(err)) == 0)
			settings_save(B->settings_path, &B->settings);
		creq_ok(r, NULL);
		return;
	}
	if (helper_find(to, path, sizeof(path), err, sizeof(err)) < 0) {
		creq_fail(r, PROTO_E_NOT_FOUND, "%s; local.driver is still %s", err, B->driver);
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
	snprintf(s->to, sizeof(s->to), "%s", to);
	B->switching = true;
	snprintf(B->switch_note, sizeof(B->switch_note), "the driver is being switched to %s", to);
	same_scope = strcmp(driver_scope(to), B->scope) == 0;
	/* Another driver of the same scope cannot resume this one's saved state. */
	can_suspend = !same_scope && broker_has_feature(PROTO_FEAT_SUSPEND);
	vlog(LOG_INFO_, "switching from the %s driver to %s", s->from, s->to);
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
		record_set(&rec->switch_state, "running");
		scope_pack_instance_params(&sb, rec, can_suspend ? 0 : 2, &pk);
		if (!can_suspend) {
			proto_pack_kv_bool(&pk, "force", false);
			proto_pack_kv_int(&pk, "timeout", BROKER_STOP_DEFAULT);
		}
		creq_progress(r, -1, "%s %s", can_suspend ? "Suspending" : "Stopping", rec->name);
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

/* "local.qemu.accel" while qemu is active: the helper got its settings in
 * hello, so it must be restarted to see the new value. */
static bool config_is_driver_key(const char *key)
{
	size_t n = strlen(B->driver);

	return strncmp(key, "local.", 6) == 0 && strncmp(key + 6, B->driver, n) == 0 &&
	       key[6 + n] == '.';
}

struct helper_restart {
	struct creq *r;
	struct helper *old;
};

static void config_on_helper_stopped(void *ud)
{
	struct helper_restart *hr = ud;

	helper_free(hr->old);
	B->helper = helper_new(B->driver);
	B->switching = false;
	creq_ok(hr->r, NULL);
	free(hr);
}

static void config_restart_helper(struct creq *r, const char *key)
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
	helper_stop(hr->old, config_on_helper_stopped, hr);
}

void op_set(struct creq *r, const msgpack_object *p)
{
	char key[256], value[4096], err[1024], name[INSTANCE_NAME_MAX + 1], prop[16];
	int rc;

	if (proto_get_str(p, "key", key, sizeof(key)) < 0 ||
	    proto_get_str(p, "value", value, sizeof(value)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "set needs a key and a value (KEY=VALUE)");
		return;
	}
	if (strcmp(key, "local.driver") == 0) {
		config_switch_driver(r, value);
		return;
	}
	if (!config_known_key(key) &&
	    util_instance_key(key, name, sizeof(name), prop, sizeof(prop)) == 0) {
		if (!registry_find(&B->reg, name)) {
			creq_fail(r, PROTO_E_NOT_FOUND, "instance \"%s\" does not exist (driver %s, scope %s)",
				  name, B->driver, B->scope);
			return;
		}
		creq_fail(r, PROTO_E_UNSUPPORTED,
			  "changing the %s of an instance (%s) is not supported by this vmctld yet",
			  prop, key);
		return;
	}
	rc = settings_set(&B->settings, key, value, err, sizeof(err));
	if (rc < 0) {
		creq_fail(r, rc, "%s", err);
		return;
	}
	rc = settings_save(B->settings_path, &B->settings);
	if (rc < 0) {
		creq_fail(r, rc, "could not save %s: %s", B->settings_path, proto_strerror(rc));
		return;
	}
	if (strcmp(key, "local.image.mirror") == 0)
		image_cache_set_mirror(B->images, value);
	if (config_is_driver_key(key)) {
		config_restart_helper(r, key);
		return;
	}
	creq_ok(r, NULL);
}
