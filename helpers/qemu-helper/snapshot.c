/*
 * Snapshots are qcow2 internal snapshots of DIR/disk.qcow2, taken and
 * applied with qemu-img on a stopped instance. What qcow2 does not keep
 * (comment, parent, the instance's specs at the time) is kept beside the
 * disk in DIR/snapshots.json:
 *   {"head": NAME|null, "snapshots": [{name, comment, created, parent,
 *                                      cpus, memory, disk, mounts}]}
 * "head" is the snapshot the disk last came from: the parent of the next.
 * mounts are the instance map's: [{source, target, tag, uid_map, gid_map}],
 * the id maps as [[HOST, GUEST]...]; a restore hands them back to the broker.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qh.h"
#include "vmcommon.h"

struct snap_op {
	struct vmh_req *req;
	struct vmh_instance inst;
	char name[128];
	char *comment;
	json_t *mounts; /* create: the instance's mounts when it was asked */
};

static void snap_free(struct snap_op *s)
{
	vmh_busy_release(s->inst.name);
	vmh_instance_free(&s->inst);
	json_decref(s->mounts);
	free(s->comment);
	free(s);
}

static void snap_fail(struct snap_op *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void snap_fail(struct snap_op *s, int err, const char *fmt, ...)
{
	char msg[QH_ERR * 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vmh_fail(s->req, err, "%s", msg);
	snap_free(s);
}

/* Metadata: a missing file is an empty list. */
static json_t *snap_load(const struct vmh_instance *inst)
{
	char path[QH_PATH];
	json_error_t jerr;
	json_t *meta;

	qh_path(inst, QH_SNAPSHOTS, path, sizeof(path));
	meta = json_load_file(path, 0, &jerr);
	if (!meta || !json_is_array(json_object_get(meta, "snapshots"))) {
		json_decref(meta);
		meta = json_pack("{s:n, s:[]}", "head", "snapshots");
	}
	return meta;
}

static int snap_save(const struct vmh_instance *inst, json_t *meta)
{
	char path[QH_PATH];
	char *text = json_dumps(meta, JSON_INDENT(2));
	int rc;

	if (!text)
		return PROTO_E_NOMEM;
	qh_path(inst, QH_SNAPSHOTS, path, sizeof(path));
	rc = atomic_write_file(path, text, strlen(text), 0644);
	free(text);
	return rc;
}

/* A string member, "" when absent. */
static const char *snap_str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "";
}

static json_t *snap_find(json_t *meta, const char *name, size_t *index)
{
	json_t *arr = json_object_get(meta, "snapshots"), *s;
	size_t i;

	json_array_foreach(arr, i, s) {
		if (!strcmp(snap_str(s, "name"), name)) {
			if (index)
				*index = i;
			return s;
		}
	}
	return NULL;
}

/* [[H,G]...] as JSON. */
static json_t *snap_idmap_json(const struct vmh_idpair *p, size_t n)
{
	json_t *out = json_array();

	for (size_t i = 0; out && i < n; i++)
		json_array_append_new(out, json_pack("[I, I]", (json_int_t)p[i].host,
						     (json_int_t)p[i].guest));
	return out;
}

/* The instance's mounts with their id maps, as snapshots.json keeps them. */
static json_t *snap_mounts_json(const struct vmh_instance *inst)
{
	json_t *out = json_array();

	for (size_t i = 0; out && i < inst->n_mounts; i++) {
		const struct vmh_mount *m = &inst->mounts[i];

		if (m->target)
			json_array_append_new(
				out, json_pack("{s:s, s:s, s:s, s:o, s:o}", "source", m->source, "target",
					       m->target, "tag", m->tag ? m->tag : "", "uid_map",
					       snap_idmap_json(m->uid_map, m->n_uid_map), "gid_map",
					       snap_idmap_json(m->gid_map, m->n_gid_map)));
	}
	return out;
}

/* Pack [[H,G]...] from snapshots.json. */
static void snap_pack_idmap(msgpack_packer *pk, const json_t *arr)
{
	const json_t *pair;
	size_t i;

	msgpack_pack_array(pk, json_array_size(arr));
	json_array_foreach(arr, i, pair) {
		msgpack_pack_array(pk, 2);
		msgpack_pack_uint64(pk, (uint64_t)json_integer_value(json_array_get(pair, 0)));
		msgpack_pack_uint64(pk, (uint64_t)json_integer_value(json_array_get(pair, 1)));
	}
}

/* "mounts": [{source, target, uid_map, gid_map}] of a snapshot entry. */
static void snap_pack_mounts(msgpack_packer *pk, const json_t *mounts)
{
	const json_t *m;
	size_t i;

	proto_pack_str(pk, "mounts");
	msgpack_pack_array(pk, json_array_size(mounts));
	json_array_foreach(mounts, i, m) {
		msgpack_pack_map(pk, 4);
		proto_pack_kv_str(pk, "source", snap_str(m, "source"));
		proto_pack_kv_str(pk, "target", snap_str(m, "target"));
		proto_pack_str(pk, "uid_map");
		snap_pack_idmap(pk, json_object_get(m, "uid_map"));
		proto_pack_str(pk, "gid_map");
		snap_pack_idmap(pk, json_object_get(m, "gid_map"));
	}
}

/* Parse the request, claim the instance, and require it stopped. */
static struct snap_op *snap_begin(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *snap = proto_map_get(params, "snapshot");
	struct snap_op *s = calloc(1, sizeof(*s));
	char err[QH_ERR];
	int rc;

	if (!s) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return NULL;
	}
	s->req = req;
	if (qh_inst_from_req(req, params, &s->inst) < 0) {
		free(s);
		return NULL;
	}
	rc = proto_get_str(snap, "name", s->name, sizeof(s->name));
	if (rc < 0 || !s->name[0] || strlen(s->name) > 63 || strpbrk(s->name, " \t\n/,=") ||
	    !strncmp(s->name, "vmctl-", 6)) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT,
			 "a snapshot needs a 'name' of 1-63 characters without spaces, '/', ',' or "
			 "'=' (and not starting with 'vmctl-')");
		vmh_instance_free(&s->inst);
		free(s);
		return NULL;
	}
	s->comment = proto_dup_str(snap, "comment");
	rc = vmh_busy_claim(s->inst.name, PROTO_STATE_STOPPED, err, sizeof(err));
	if (rc < 0) {
		vmh_fail(req, rc, "%s", err);
		vmh_instance_free(&s->inst);
		free(s->comment);
		free(s);
		return NULL;
	}
	if (qh_vm_pid(&s->inst) || qh_vm_suspended(&s->inst)) {
		snap_fail(s, PROTO_E_INVALID_STATE,
			  "instance '%s' is %s: stop it first (snapshots are taken of a stopped "
			  "instance)",
			  s->inst.name, qh_vm_pid(&s->inst) ? "running" : "suspended");
		return NULL;
	}
	return s;
}

static int snap_qemu_img(struct snap_op *s, const char *flag, vmh_run_cb cb)
{
	char disk[QH_PATH];
	struct vmh_run_opts opts = {.timeout_s = 600};
	int rc;

	qh_path(&s->inst, PROTO_FILE_DISK, disk, sizeof(disk));
	char *argv[] = {"qemu-img", "snapshot", (char *)flag, s->name, disk, NULL};
	rc = vmh_run(argv, &opts, cb, s);
	if (rc < 0)
		snap_fail(s, rc, "cannot run qemu-img");
	return rc;
}

static void snap_answer_empty(struct snap_op *s)
{
	msgpack_pack_map(vmh_result(s->req), 0);
	vmh_done(s->req);
	snap_free(s);
}

/* ---- snapshot.create ---- */

static void create_done(void *ud, const struct vmh_run_result *r)
{
	struct snap_op *s = ud;
	char created[32];
	time_t t = time(NULL);
	json_t *meta, *entry;
	int rc;

	if (r->status != 0) {
		snap_fail(s, PROTO_E_DRIVER, "qemu-img could not take snapshot '%s' of '%s': %s",
			  s->name, s->inst.name, r->output);
		return;
	}
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	meta = snap_load(&s->inst);
	entry = json_pack("{s:s, s:s, s:s, s:O, s:I, s:I, s:I, s:O}", "name", s->name, "comment",
			  s->comment ? s->comment : "", "created", created, "parent",
			  json_object_get(meta, "head"), "cpus", (json_int_t)s->inst.cpus, "memory",
			  (json_int_t)s->inst.memory, "disk", (json_int_t)s->inst.disk, "mounts",
			  s->mounts);
	if (!entry) {
		json_decref(meta);
		snap_fail(s, PROTO_E_NOMEM, "out of memory");
		return;
	}
	json_array_append_new(json_object_get(meta, "snapshots"), entry);
	json_object_set_new(meta, "head", json_string(s->name));
	rc = snap_save(&s->inst, meta);
	json_decref(meta);
	if (rc < 0) {
		snap_fail(s, rc, "snapshot '%s' was taken but %s/%s could not be written", s->name,
			  s->inst.dir, QH_SNAPSHOTS);
		return;
	}
	vmh_log(VMH_INFO, "%s: snapshot '%s' taken", s->inst.name, s->name);
	snap_answer_empty(s);
}

void qh_snapshot_create(struct vmh_req *req, const msgpack_object *params)
{
	struct snap_op *s = snap_begin(req, params);
	json_t *meta;

	if (!s)
		return;
	s->mounts = snap_mounts_json(&s->inst);
	if (!s->mounts) {
		snap_fail(s, PROTO_E_NOMEM, "out of memory");
		return;
	}
	meta = snap_load(&s->inst);
	if (snap_find(meta, s->name, NULL)) {
		json_decref(meta);
		snap_fail(s, PROTO_E_ALREADY_EXISTS, "instance '%s' already has a snapshot '%s'",
			  s->inst.name, s->name);
		return;
	}
	json_decref(meta);
	snap_qemu_img(s, "-c", create_done);
}

/* ---- snapshot.list ---- */

void qh_snapshot_list(struct vmh_req *req, const msgpack_object *params)
{
	struct vmh_instance inst;
	msgpack_packer *pk;
	json_t *meta, *arr, *e;
	size_t i;

	if (qh_inst_from_req(req, params, &inst) < 0)
		return;
	meta = snap_load(&inst);
	arr = json_object_get(meta, "snapshots");
	pk = vmh_result(req);
	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "snapshots");
	msgpack_pack_array(pk, json_array_size(arr));
	json_array_foreach(arr, i, e) {
		msgpack_pack_map(pk, 7);
		proto_pack_kv_str(pk, "name", json_string_value(json_object_get(e, "name")));
		proto_pack_kv_str(pk, "comment", snap_str(e, "comment"));
		proto_pack_kv_str(pk, "created", json_string_value(json_object_get(e, "created")));
		/* nil for a snapshot taken from the image's fresh state */
		proto_pack_kv_str(pk, "parent", json_string_value(json_object_get(e, "parent")));
		proto_pack_kv_int(pk, "cpus", json_integer_value(json_object_get(e, "cpus")));
		proto_pack_kv_int(pk, "memory", json_integer_value(json_object_get(e, "memory")));
		proto_pack_kv_int(pk, "disk", json_integer_value(json_object_get(e, "disk")));
	}
	vmh_done(req);
	json_decref(meta);
	vmh_instance_free(&inst);
}

/* ---- snapshot.restore ---- */

static void restore_done(void *ud, const struct vmh_run_result *r)
{
	struct snap_op *s = ud;
	json_t *meta, *e, *mounts;
	msgpack_packer *pk;

	if (r->status != 0) {
		snap_fail(s, PROTO_E_DRIVER, "qemu-img could not restore snapshot '%s' of '%s': %s",
			  s->name, s->inst.name, r->output);
		return;
	}
	meta = snap_load(&s->inst);
	json_object_set_new(meta, "head", json_string(s->name));
	if (snap_save(&s->inst, meta) < 0)
		vmh_log(VMH_WARN, "%s: cannot record '%s' as the current snapshot", s->inst.name,
			s->name);
	vmh_log(VMH_INFO, "%s: snapshot '%s' restored", s->inst.name, s->name);
	/* The specs the instance had then, for the broker to take back. A
	 * snapshot recorded without mounts leaves the current ones alone. */
	e = snap_find(meta, s->name, NULL);
	mounts = json_object_get(e, "mounts");
	pk = vmh_result(s->req);
	msgpack_pack_map(pk, json_is_array(mounts) ? 4 : 3);
	proto_pack_kv_int(pk, "cpus", json_integer_value(json_object_get(e, "cpus")));
	proto_pack_kv_int(pk, "memory", json_integer_value(json_object_get(e, "memory")));
	proto_pack_kv_int(pk, "disk", json_integer_value(json_object_get(e, "disk")));
	if (json_is_array(mounts))
		snap_pack_mounts(pk, mounts);
	json_decref(meta);
	vmh_done(s->req);
	snap_free(s);
}

void qh_snapshot_restore(struct vmh_req *req, const msgpack_object *params)
{
	struct snap_op *s = snap_begin(req, params);
	json_t *meta;

	if (!s)
		return;
	meta = snap_load(&s->inst);
	if (!snap_find(meta, s->name, NULL)) {
		json_decref(meta);
		snap_fail(s, PROTO_E_NOT_FOUND, "instance '%s' has no snapshot '%s'", s->inst.name,
			  s->name);
		return;
	}
	json_decref(meta);
	snap_qemu_img(s, "-a", restore_done);
}

/* ---- snapshot.delete ---- */

static void delete_done(void *ud, const struct vmh_run_result *r)
{
	struct snap_op *s = ud;
	json_t *meta, *arr, *gone, *e, *parent;
	size_t index, i;
	int rc;

	if (r->status != 0) {
		snap_fail(s, PROTO_E_DRIVER, "qemu-img could not delete snapshot '%s' of '%s': %s",
			  s->name, s->inst.name, r->output);
		return;
	}
	meta = snap_load(&s->inst);
	arr = json_object_get(meta, "snapshots");
	gone = snap_find(meta, s->name, &index);
	if (gone) {
		/* Children of the deleted snapshot now descend from its parent. */
		parent = json_incref(json_object_get(gone, "parent"));
		json_array_foreach(arr, i, e)
			if (!strcmp(snap_str(e, "parent"), s->name))
				json_object_set(e, "parent", parent);
		if (!strcmp(snap_str(meta, "head"), s->name))
			json_object_set(meta, "head", parent);
		json_decref(parent);
		json_array_remove(arr, index);
	}
	rc = snap_save(&s->inst, meta);
	json_decref(meta);
	if (rc < 0) {
		snap_fail(s, rc, "snapshot '%s' was deleted but %s/%s could not be written", s->name,
			  s->inst.dir, QH_SNAPSHOTS);
		return;
	}
	vmh_log(VMH_INFO, "%s: snapshot '%s' deleted", s->inst.name, s->name);
	snap_answer_empty(s);
}

void qh_snapshot_delete(struct vmh_req *req, const msgpack_object *params)
{
	struct snap_op *s = snap_begin(req, params);
	json_t *meta;

	if (!s)
		return;
	meta = snap_load(&s->inst);
	if (!snap_find(meta, s->name, NULL)) {
		json_decref(meta);
		snap_fail(s, PROTO_E_NOT_FOUND, "instance '%s' has no snapshot '%s'", s->inst.name,
			  s->name);
		return;
	}
	json_decref(meta);
	snap_qemu_img(s, "-d", delete_done);
}
