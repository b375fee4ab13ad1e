/*
 * snapshot, restore, snapshots, and the snapshot settings
 * local.NAME.SNAPSHOT.name|comment. The helper keeps the snapshots and
 * their metadata with the instance's disk; the broker names them, takes a
 * safety snapshot before a non-destructive restore, and takes back the
 * specs a restored snapshot carries.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define SNAP_NAME_MAX 63

struct snap_req {
	struct creq *r;
	unsigned gen;
	char name[INSTANCE_NAME_MAX + 1];
	char snap[SNAP_NAME_MAX + 1];   /* asked for (restore: the target) */
	char safety[SNAP_NAME_MAX + 1]; /* restore: the snapshot of the current state */
	char *comment;
	bool restore;
	bool destructive;
	bool busy;
};

static int snap_validate_name(const char *s, char *err, size_t errlen)
{
	size_t n = strlen(s);

	if (n == 0 || n > SNAP_NAME_MAX) {
		snprintf(err, errlen, "a snapshot name has 1 to %d characters", SNAP_NAME_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!isalpha((unsigned char)s[0])) {
		snprintf(err, errlen, "snapshot name '%s' must start with a letter", s);
		return PROTO_E_INVALID_ARGUMENT;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '-') {
			snprintf(err, errlen,
				 "snapshot name '%s' may contain only letters, digits and hyphens", s);
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	if (s[n - 1] == '-') {
		snprintf(err, errlen, "snapshot name '%s' must not end with a hyphen", s);
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

static void snap_free(struct snap_req *s)
{
	if (s->busy)
		busy_remove(s->name);
	free(s->comment);
	free(s);
}

static struct instance_record *snap_rec(struct snap_req *s)
{
	return s->gen == B->scope_gen ? registry_find(&B->reg, s->name) : NULL;
}

static void snap_fail(struct snap_req *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void snap_fail(struct snap_req *s, int err, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	creq_fail(s->r, err, "%s", msg);
	snap_free(s);
}

static bool snap_listed(const msgpack_object *list, const char *name)
{
	const msgpack_object *arr = proto_map_get(list, "snapshots");

	if (!arr || arr->type != MSGPACK_OBJECT_ARRAY)
		return false;
	for (uint32_t i = 0; i < arr->via.array.size; i++)
		if (proto_obj_streq(proto_map_get(&arr->via.array.ptr[i], "name"), name))
			return true;
	return false;
}

/* After snapshot.list: true if s->snap is there; else s is answered with
 * the reason and freed. */
static bool snap_expect_listed(struct snap_req *s, int err, const char *errmsg,
			       const msgpack_object *result)
{
	if (err < 0) {
		snap_fail(s, err, "could not list the snapshots of %s: %s", s->name, errmsg);
		return false;
	}
	if (!snap_listed(result, s->snap)) {
		snap_fail(s, PROTO_E_NOT_FOUND, "%s has no snapshot named %s (vmctl info %s "
			  "--snapshots lists them)", s->name, s->snap, s->name);
		return false;
	}
	return true;
}

/* snapshotN with the lowest N above the number of snapshots that is free. */
static void snap_pick_name(const msgpack_object *list, char *buf, size_t len)
{
	const msgpack_object *arr = proto_map_get(list, "snapshots");
	unsigned n = arr && arr->type == MSGPACK_OBJECT_ARRAY ? arr->via.array.size : 0;

	do
		snprintf(buf, len, "snapshot%u", ++n);
	while (snap_listed(list, buf));
}

static struct hcall *snap_call(struct snap_req *s, const char *method, const char *snap,
			       const char *comment, proto_result_fn cb)
{
	struct instance_record *rec = snap_rec(s);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct hcall *c;

	if (!rec)
		return NULL;
	scope_pack_instance_params(&sb, rec, 1, &pk);
	proto_pack_str(&pk, "snapshot");
	msgpack_pack_map(&pk, comment ? 2 : 1);
	proto_pack_kv_str(&pk, "name", snap);
	if (comment)
		proto_pack_kv_str(&pk, "comment", comment);
	c = helper_call(B->helper, method, &sb, BROKER_CREATE_DEADLINE, cb, s);
	msgpack_sbuffer_destroy(&sb);
	return c;
}

/* ---- snapshot ---- */

static void snapshot_on_created(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct snap_req *s = ud;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (err < 0) {
		snap_fail(s, err, "could not take snapshot %s of %s: %s", s->snap, s->name, errmsg);
		return;
	}
	vlog(LOG_INFO_, "snapshot %s.%s taken", s->name, s->snap);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "snapshot", s->snap);
	creq_ok(s->r, &sb);
	msgpack_sbuffer_destroy(&sb);
	s->r = NULL;
	snap_free(s);
}

static void snapshot_on_list(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct snap_req *s = ud;

	if (err < 0) {
		snap_fail(s, err, "could not list the snapshots of %s: %s", s->name, errmsg);
		return;
	}
	if (!s->snap[0])
		snap_pick_name(result, s->snap, sizeof(s->snap));
	else if (snap_listed(result, s->snap)) {
		snap_fail(s, PROTO_E_ALREADY_EXISTS, "%s already has a snapshot named %s", s->name,
			  s->snap);
		return;
	}
	creq_progress(s->r, -1, "Taking snapshot %s of %s", s->snap, s->name);
	if (!snap_call(s, "snapshot.create", s->snap, s->comment ? s->comment : "",
		       snapshot_on_created))
		snap_fail(s, PROTO_E_NOMEM, "out of memory");
}

/* Common start of snapshot and restore: the instance, stopped and held. */
static struct snap_req *snap_begin(struct creq *r, const msgpack_object *p, const char *what)
{
	struct snap_req *s;
	struct instance_record *rec;
	char name[INSTANCE_NAME_MAX + 1] = "";

	if (opx_refuse_feature(r, PROTO_FEAT_SNAPSHOTS))
		return NULL;
	if (proto_get_str(p, "name", name, sizeof(name)) == PROTO_E_INVALID_ARGUMENT) {
		creq_fail(r, PROTO_E_NOT_FOUND, "no such instance (the name is too long)");
		return NULL;
	}
	rec = opx_instance(r, name);
	if (!rec || opx_refuse_unless_stopped(r, rec, what))
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s || busy_add(name, "being snapshotted or restored") < 0) {
		free(s);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return NULL;
	}
	s->busy = true;
	s->r = r;
	s->gen = B->scope_gen;
	snprintf(s->name, sizeof(s->name), "%s", name);
	return s;
}

/* snap_begin() for a request naming an existing snapshot ("snapshot" key). */
static struct snap_req *snap_begin_named(struct creq *r, const msgpack_object *p,
					 const char *what, const char *missing)
{
	char snap[SNAP_NAME_MAX + 2] = "", err[256];
	struct snap_req *s;
	int rc;

	rc = proto_get_str(p, "snapshot", snap, sizeof(snap));
	if (rc < 0 || snap_validate_name(snap, err, sizeof(err)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "%s",
			  rc == PROTO_E_NOT_FOUND ? missing
			  : rc < 0		  ? "a snapshot name has at most 63 characters"
						  : err);
		return NULL;
	}
	s = snap_begin(r, p, what);
	if (s)
		snprintf(s->snap, sizeof(s->snap), "%.63s", snap);
	return s;
}

void op_snapshot(struct creq *r, const msgpack_object *p)
{
	char snap[SNAP_NAME_MAX + 2] = "", err[256];
	struct snap_req *s;
	int rc;

	rc = proto_get_str(p, "snapshot", snap, sizeof(snap));
	if (rc == PROTO_E_INVALID_ARGUMENT ||
	    (snap[0] && snap_validate_name(snap, err, sizeof(err)) < 0)) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "%s",
			  rc < 0 ? "a snapshot name has at most 63 characters" : err);
		return;
	}
	s = snap_begin(r, p, "a snapshot");
	if (!s)
		return;
	snprintf(s->snap, sizeof(s->snap), "%.63s", snap);
	s->comment = proto_dup_str(p, "comment");
	if (!opx_call(snap_rec(s), "snapshot.list", BROKER_SHORT_DEADLINE, snapshot_on_list, s))
		snap_fail(s, PROTO_E_NOMEM, "out of memory");
}

/* ---- restore ---- */

/* A spec the snapshot carried; 0 (absent) keeps the current one. */
static uint64_t restore_spec(const msgpack_object *result, const char *key)
{
	int64_t v = 0;

	if (proto_get_int(result, key, &v) < 0 || v <= 0)
		return 0;
	return (uint64_t)v;
}

/* The mounts a restored snapshot carried replace the record's; the next
 * start shares and mounts them as it does every recorded mount. An entry
 * that cannot be read is left out with a warning rather than failing a
 * restore that has already happened on disk. */
static void restore_take_mounts(struct snap_req *s, struct instance_record *rec,
				const msgpack_object *mounts)
{
	struct instance_record tmp = {0};

	if (!mounts || mounts->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t i = 0; i < mounts->via.array.size; i++) {
		const msgpack_object *m = &mounts->via.array.ptr[i];
		char *source = proto_dup_str(m, "source"), *target = proto_dup_str(m, "target");
		char uid_map[512], gid_map[512];

		if (!source || !target || !source[0] || !target[0] ||
		    mount_idmap_text(proto_map_get(m, "uid_map"), uid_map, sizeof(uid_map)) < 0 ||
		    mount_idmap_text(proto_map_get(m, "gid_map"), gid_map, sizeof(gid_map)) < 0) {
			creq_warning(s->r, "snapshot %s.%s has a mount that cannot be read; it is left "
				     "out", s->name, s->snap);
		} else if (mount_record_add(&tmp, source, target, uid_map[0] ? uid_map : NULL,
					    gid_map[0] ? gid_map : NULL) < 0) {
			creq_warning(s->r, "out of memory: the mount of %s at %s is left out", source,
				     target);
		}
		free(source);
		free(target);
	}
	mount_records_replace(rec, &tmp);
}

static void restore_on_restored(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct snap_req *s = ud;
	struct instance_record *rec = snap_rec(s);
	uint64_t v;

	if (err < 0) {
		if (s->safety[0])
			snap_fail(s, err, "could not restore %s.%s: %s (the state before is kept as "
				  "snapshot %s)", s->name, s->snap, errmsg, s->safety);
		else
			snap_fail(s, err, "could not restore %s.%s: %s", s->name, s->snap, errmsg);
		return;
	}
	if (rec) {
		if ((v = restore_spec(result, "cpus")) != 0)
			rec->cpus = (uint32_t)v;
		if ((v = restore_spec(result, "memory")) != 0)
			rec->memory = v;
		if ((v = restore_spec(result, "disk")) != 0)
			rec->disk = v;
		restore_take_mounts(s, rec, proto_map_get(result, "mounts"));
		scope_save();
	}
	vlog(LOG_INFO_, "%s restored to snapshot %s", s->name, s->snap);
	creq_ok(s->r, NULL);
	s->r = NULL;
	snap_free(s);
}

static void restore_run(struct snap_req *s)
{
	creq_progress(s->r, -1, "Restoring %s to snapshot %s", s->name, s->snap);
	if (!snap_call(s, "snapshot.restore", s->snap, NULL, restore_on_restored))
		snap_fail(s, PROTO_E_NOMEM, "out of memory");
}

static void restore_on_safety(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct snap_req *s = ud;

	if (err < 0) {
		snap_fail(s, err, "could not save the current state of %s before restoring (%s); "
			  "nothing was restored (--destructive restores without saving it)",
			  s->name, errmsg);
		return;
	}
	creq_warning(s->r, "the state of %s before the restore is kept as snapshot %s.%s",
		     s->name, s->name, s->safety);
	restore_run(s);
}

static void restore_on_list(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct snap_req *s = ud;
	char comment[128];

	if (!snap_expect_listed(s, err, errmsg, result))
		return;
	if (s->destructive) {
		restore_run(s);
		return;
	}
	snap_pick_name(result, s->safety, sizeof(s->safety));
	snprintf(comment, sizeof(comment), "Before restoring %s", s->snap);
	creq_progress(s->r, -1, "Saving the current state of %s as snapshot %s", s->name, s->safety);
	if (!snap_call(s, "snapshot.create", s->safety, comment, restore_on_safety))
		snap_fail(s, PROTO_E_NOMEM, "out of memory");
}

void op_restore(struct creq *r, const msgpack_object *p)
{
	struct snap_req *s = snap_begin_named(r, p, "a restore",
					      "restore needs a snapshot (NAME.SNAPSHOT)");

	if (!s)
		return;
	s->restore = true;
	proto_get_bool(p, "destructive", &s->destructive);
	if (!opx_call(snap_rec(s), "snapshot.list", BROKER_SHORT_DEADLINE, restore_on_list, s))
		snap_fail(s, PROTO_E_NOMEM, "out of memory");
}

/* ---- snapshot_delete (vmctl delete --purge NAME.SNAPSHOT) ---- */

static void snapdel_on_deleted(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct snap_req *s = ud;

	if (err < 0) {
		snap_fail(s, err, "could not delete snapshot %s.%s: %s", s->name, s->snap, errmsg);
		return;
	}
	vlog(LOG_INFO_, "snapshot %s.%s deleted", s->name, s->snap);
	creq_ok(s->r, NULL);
	s->r = NULL;
	snap_free(s);
}

static void snapdel_on_list(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct snap_req *s = ud;

	if (!snap_expect_listed(s, err, errmsg, result))
		return;
	if (!snap_call(s, "snapshot.delete", s->snap, NULL, snapdel_on_deleted))
		snap_fail(s, PROTO_E_NOMEM, "out of memory");
}

void op_snapshot_delete(struct creq *r, const msgpack_object *p)
{
	struct snap_req *s = snap_begin_named(r, p, "a snapshot deletion",
					      "snapshot_delete needs a snapshot name");

	if (!s)
		return;
	if (!opx_call(snap_rec(s), "snapshot.list", BROKER_SHORT_DEADLINE, snapdel_on_list, s))
		snap_fail(s, PROTO_E_NOMEM, "out of memory");
}

/* ---- snapshots ---- */

struct snaps_req {
	struct creq *r;
	unsigned gen;
	char **names;
	size_t n, next, count;
	msgpack_sbuffer rows; /* packed entries, count of them */
};

static void snaps_free(struct snaps_req *q)
{
	names_free(q->names, q->n);
	msgpack_sbuffer_destroy(&q->rows);
	free(q);
}

static void snaps_next(struct snaps_req *q);

static void snaps_on_list(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct snaps_req *q = ud;
	const char *name = q->names[q->next];
	const msgpack_object *arr = proto_map_get(result, "snapshots");
	msgpack_packer pk;

	if (err < 0) {
		creq_fail(q->r, err, "could not list the snapshots of %s: %s", name, errmsg);
		snaps_free(q);
		return;
	}
	msgpack_packer_init(&pk, &q->rows, msgpack_sbuffer_write);
	for (uint32_t i = 0; arr && arr->type == MSGPACK_OBJECT_ARRAY && i < arr->via.array.size; i++) {
		const msgpack_object *e = &arr->via.array.ptr[i];
		char *snap = proto_dup_str(e, "name"), *comment = proto_dup_str(e, "comment");
		char *created = proto_dup_str(e, "created"), *parent = proto_dup_str(e, "parent");

		msgpack_pack_map(&pk, 5);
		proto_pack_kv_str(&pk, "instance", name);
		proto_pack_kv_str(&pk, "name", snap ? snap : "");
		proto_pack_kv_str(&pk, "comment", comment ? comment : "");
		proto_pack_kv_str(&pk, "created", created ? created : "");
		proto_pack_kv_str(&pk, "parent", parent ? parent : "");
		q->count++;
		free(snap);
		free(comment);
		free(created);
		free(parent);
	}
	q->next++;
	snaps_next(q);
}

static void snaps_next(struct snaps_req *q)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	while (q->next < q->n) {
		struct instance_record *rec =
			q->gen == B->scope_gen ? registry_find(&B->reg, q->names[q->next]) : NULL;

		if (rec && !rec->deleted) {
			if (!opx_call(rec, "snapshot.list", BROKER_SHORT_DEADLINE, snaps_on_list, q)) {
				creq_fail(q->r, PROTO_E_NOMEM, "out of memory");
				snaps_free(q);
			}
			return;
		}
		q->next++;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "snapshots");
	msgpack_pack_array(&pk, q->count);
	msgpack_sbuffer_write(&sb, q->rows.data, q->rows.size);
	creq_ok(q->r, &sb);
	msgpack_sbuffer_destroy(&sb);
	snaps_free(q);
}

void op_snapshots(struct creq *r, const msgpack_object *p)
{
	struct snaps_req *q;

	if (opx_refuse_feature(r, PROTO_FEAT_SNAPSHOTS))
		return;
	q = calloc(1, sizeof(*q));
	if (!q) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	msgpack_sbuffer_init(&q->rows);
	q->r = r;
	q->gen = B->scope_gen;
	if (creq_names(r, p, false, &q->names, &q->n) < 0) {
		msgpack_sbuffer_destroy(&q->rows);
		free(q);
		return;
	}
	snaps_next(q);
}

/* ---- local.NAME.SNAPSHOT.name|comment ---- */

int snapshot_setting_key(const char *key, char *name, size_t namelen, char *snap, size_t snaplen,
			 char *prop, size_t proplen)
{
	const char *a, *b;

	if (strncmp(key, "local.", 6) != 0)
		return PROTO_E_NOT_FOUND;
	key += 6;
	a = strchr(key, '.');
	b = a ? strchr(a + 1, '.') : NULL;
	if (!a || !b || strchr(b + 1, '.') ||
	    (strcmp(b + 1, "name") != 0 && strcmp(b + 1, "comment") != 0))
		return PROTO_E_NOT_FOUND;
	if ((size_t)(a - key) >= namelen || (size_t)(b - a - 1) >= snaplen || a == key || b == a + 1)
		return PROTO_E_NOT_FOUND;
	snprintf(name, namelen, "%.*s", (int)(a - key), key);
	snprintf(snap, snaplen, "%.*s", (int)(b - a - 1), a + 1);
	snprintf(prop, proplen, "%s", b + 1);
	return 0;
}

struct snapget {
	struct creq *r;
	char snap[SNAP_NAME_MAX + 1];
	char name[INSTANCE_NAME_MAX + 1];
	bool comment;
};

static void snapget_on_list(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct snapget *g = ud;
	const msgpack_object *arr = proto_map_get(result, "snapshots");
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (err < 0) {
		creq_fail(g->r, err, "could not list the snapshots of %s: %s", g->name, errmsg);
		goto out_free;
	}
	for (uint32_t i = 0; arr && arr->type == MSGPACK_OBJECT_ARRAY && i < arr->via.array.size; i++) {
		const msgpack_object *e = &arr->via.array.ptr[i];
		char *comment;

		if (!proto_obj_streq(proto_map_get(e, "name"), g->snap))
			continue;
		comment = proto_dup_str(e, "comment");
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 1);
		proto_pack_kv_str(&pk, "value", g->comment ? (comment ? comment : "") : g->snap);
		creq_ok(g->r, &sb);
		msgpack_sbuffer_destroy(&sb);
		free(comment);
		goto out_free;
	}
	creq_fail(g->r, PROTO_E_NOT_FOUND, "%s has no snapshot named %s", g->name, g->snap);
out_free:
	free(g);
}

void snapshot_setting_get(struct creq *r, const char *name, const char *snap, const char *prop)
{
	struct instance_record *rec;
	struct snapget *g;

	if (opx_refuse_feature(r, PROTO_FEAT_SNAPSHOTS))
		return;
	rec = registry_find(&B->reg, name);
	if (!rec || rec->deleted) {
		creq_fail(r, PROTO_E_NOT_FOUND, "instance \"%s\" does not exist (driver %s, scope %s)",
			  name, B->driver, B->scope);
		return;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	g->r = r;
	g->comment = strcmp(prop, "comment") == 0;
	snprintf(g->name, sizeof(g->name), "%s", name);
	snprintf(g->snap, sizeof(g->snap), "%s", snap);
	if (!opx_call(rec, "snapshot.list", BROKER_SHORT_DEADLINE, snapget_on_list, g)) {
		free(g);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
	}
}

void snapshot_setting_set(struct creq *r, const char *name, const char *snap, const char *prop)
{
	if (opx_refuse_feature(r, PROTO_FEAT_SNAPSHOTS))
		return;
	creq_fail(r, PROTO_E_UNSUPPORTED,
		  "changing the %s of snapshot %s.%s is not available yet (the %s driver keeps "
		  "snapshots as they were taken)", prop, name, snap, B->driver);
}
