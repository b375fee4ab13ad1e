/*
 * `vmctl drivers`: one row per driver the broker knows of (the seed's five,
 * then every other vmctl-NAME-helper found), saying what its helper says of
 * itself. The active driver's row is its running helper's; every other
 * installed helper is probed (driver_probe(): --describe, then one hello,
 * in parallel, never blocking the loop), so that usable and its reason are
 * this host's now.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define DRIVERS_MAX 64

struct drivers_req {
	struct creq *r;
	size_t n, pending;
	char names[DRIVERS_MAX][DRIVER_NAME_MAX + 1];
	struct driver_probe_result res[DRIVERS_MAX];
	bool active[DRIVERS_MAX];
};

struct drivers_slot {
	struct drivers_req *q;
	size_t i;
};

static void drivers_pack_row(msgpack_packer *pk, const struct driver_probe_result *res, bool active)
{
	static const unsigned features[] = {
		PROTO_FEAT_NATIVE_MOUNTS, PROTO_FEAT_EXTRA_NETWORKS, PROTO_FEAT_SNAPSHOTS,
		PROTO_FEAT_CLONE, PROTO_FEAT_SUSPEND,
	};
	size_t n_features = 0;
	char shown[4400];

	/* BIN/../libexec/vmctl/... as the folder it is. */
	if (!res->found || !realpath(res->info.path, shown))
		snprintf(shown, sizeof(shown), "%s", res->found ? res->info.path : "not found");

	for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++)
		n_features += (res->info.features & features[i]) != 0;
	msgpack_pack_map(pk, 8 + sizeof(features) / sizeof(features[0]));
	proto_pack_kv_str(pk, "driver", res->info.driver);
	proto_pack_kv_str(pk, "helper", shown);
	proto_pack_kv_bool(pk, "usable", res->usable);
	proto_pack_kv_str(pk, "why", res->usable ? "" : res->why);
	proto_pack_kv_bool(pk, "active", active);
	proto_pack_kv_str(pk, "scope", res->info.scope);
	proto_pack_kv_str(pk, "version", res->info.version);
	/* What the helper says; nothing for a helper that could not say. */
	proto_pack_str(pk, "features");
	msgpack_pack_array(pk, n_features);
	for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++)
		if (res->info.features & features[i])
			proto_pack_str(pk, proto_feature_name(features[i]));
	for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
		proto_pack_str(pk, proto_feature_name(features[i]));
		if (res->info.described || res->hello) {
			if (res->info.features & features[i])
				msgpack_pack_true(pk);
			else
				msgpack_pack_false(pk);
		} else
			msgpack_pack_nil(pk);
	}
}

static void drivers_answer(struct drivers_req *q)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "drivers");
	msgpack_pack_array(&pk, q->n);
	for (size_t i = 0; i < q->n; i++)
		drivers_pack_row(&pk, &q->res[i], q->active[i]);
	creq_ok(q->r, &sb);
	msgpack_sbuffer_destroy(&sb);
	free(q);
}

static void drivers_on_probed(void *ud, const struct driver_probe_result *res)
{
	struct drivers_slot *slot = ud;
	struct drivers_req *q = slot->q;

	q->res[slot->i] = *res;
	free(slot);
	if (--q->pending == 0)
		drivers_answer(q);
}

static void drivers_fill_active(struct driver_probe_result *res, const char *driver);

/* The active helper was starting: it has now answered hello, or failed to. */
static void drivers_on_active_ping(void *ud, int err, const char *errmsg,
				   const msgpack_object *result)
{
	struct drivers_slot *slot = ud;
	struct drivers_req *q = slot->q;

	drivers_fill_active(&q->res[slot->i], q->names[slot->i]);
	free(slot);
	if (--q->pending == 0)
		drivers_answer(q);
}

/* The active driver: what its running helper said in hello. */
static void drivers_fill_active(struct driver_probe_result *res, const char *driver)
{
	const struct driver_info *known = driver_info_get(driver);
	const struct proto_hello *hello = B->helper ? helper_hello(B->helper) : NULL;
	char err[2048];

	if (known && known->described)
		res->info = *known;
	snprintf(res->info.driver, sizeof(res->info.driver), "%s", driver);
	snprintf(res->info.scope, sizeof(res->info.scope), "%s", B->scope);
	res->found = helper_find(driver, res->info.path, sizeof(res->info.path), err,
				 sizeof(err)) == 0;
	if (!res->found) {
		res->info.path[0] = '\0';
		res->info.features = 0;
		res->info.described = false;
	}
	if (hello) {
		res->hello = true;
		res->info.features = hello->features;
		snprintf(res->info.version, sizeof(res->info.version), "%s", hello->helper_version);
	}
	res->usable = B->helper && helper_get_state(B->helper) == HELPER_READY;
	if (res->usable)
		return;
	if (B->helper)
		helper_describe_problem(B->helper, res->why, sizeof(res->why));
	else if (B->switching)
		snprintf(res->why, sizeof(res->why), "%s", B->switch_note);
	if (!res->why[0])
		snprintf(res->why, sizeof(res->why), "its helper is %s",
			 B->helper ? helper_state_name(helper_get_state(B->helper)) : "not running");
}

void op_drivers(struct creq *r, const msgpack_object *p)
{
	struct drivers_req *q = calloc(1, sizeof(*q));

	if (!q) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	q->r = r;
	q->n = drivers_known(q->names, DRIVERS_MAX);
	q->pending = 1;
	for (size_t i = 0; i < q->n; i++) {
		struct drivers_slot *slot;

		bool active = strcmp(q->names[i], B->driver) == 0;
		enum helper_state st = B->helper ? helper_get_state(B->helper) : HELPER_STOPPED;

		q->active[i] = active;
		if (active && st != HELPER_STARTING && st != HELPER_RESTARTING) {
			drivers_fill_active(&q->res[i], q->names[i]);
			continue;
		}
		slot = calloc(1, sizeof(*slot));
		if (!slot) {
			snprintf(q->res[i].info.driver, sizeof(q->res[i].info.driver), "%s", q->names[i]);
			snprintf(q->res[i].why, sizeof(q->res[i].why), "out of memory");
			continue;
		}
		slot->q = q;
		slot->i = i;
		q->pending++;
		if (!active) {
			driver_probe(q->names[i], drivers_on_probed, slot);
		} else if (!helper_call(B->helper, "ping", NULL, BROKER_SHORT_DEADLINE,
					drivers_on_active_ping, slot)) {
			/* Not waited for: what is known now. */
			q->pending--;
			free(slot);
			drivers_fill_active(&q->res[i], q->names[i]);
		}
	}
	if (--q->pending == 0)
		drivers_answer(q);
}
