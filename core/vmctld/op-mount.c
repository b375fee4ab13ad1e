/*
 * Native mounts: mount and umount record host folders in the instance's
 * record (mounts), which reaches the helper in every instance map, so the
 * driver shares them from each start (9p with qemu). Inside the guest the
 * broker mounts them over SSH once the instance answers (mount_activate).
 * Classic mounts (over SSH, Multipass's default) do not exist yet.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "broker.h"

/* ---- the record's mounts ---- */

int mount_record_add(struct instance_record *rec, const char *source, const char *target,
		     const char *uid_map, const char *gid_map)
{
	struct mount_record *grown = realloc(rec->mounts, (rec->n_mounts + 1) * sizeof(*grown));
	struct mount_record *m;

	if (!grown)
		return PROTO_E_NOMEM;
	rec->mounts = grown;
	m = &grown[rec->n_mounts];
	memset(m, 0, sizeof(*m));
	if (record_set(&m->source, source) < 0 || record_set(&m->target, target) < 0 ||
	    record_set(&m->uid_map, uid_map) < 0 || record_set(&m->gid_map, gid_map) < 0) {
		free(m->source);
		free(m->target);
		free(m->uid_map);
		free(m->gid_map);
		return PROTO_E_NOMEM;
	}
	rec->n_mounts++;
	return 0;
}

static void mount_record_clear(struct mount_record *m)
{
	free(m->source);
	free(m->target);
	free(m->uid_map);
	free(m->gid_map);
	memset(m, 0, sizeof(*m));
}

void mount_records_replace(struct instance_record *rec, struct instance_record *from)
{
	for (size_t i = 0; i < rec->n_mounts; i++)
		mount_record_clear(&rec->mounts[i]);
	free(rec->mounts);
	rec->mounts = from->mounts;
	rec->n_mounts = from->n_mounts;
	from->mounts = NULL;
	from->n_mounts = 0;
}

int mount_records_copy(struct instance_record *dst, const struct instance_record *src)
{
	for (size_t i = 0; i < src->n_mounts; i++) {
		const struct mount_record *m = &src->mounts[i];
		int rc = mount_record_add(dst, m->source, m->target, m->uid_map, m->gid_map);

		if (rc < 0)
			return rc;
	}
	return 0;
}

int mount_idmap_text(const msgpack_object *arr, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	if (!arr || arr->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (arr->type != MSGPACK_OBJECT_ARRAY)
		return PROTO_E_INVALID_ARGUMENT;
	for (uint32_t i = 0; i < arr->via.array.size; i++) {
		uint32_t host, guest;

		if (proto_obj_u32_pair(&arr->via.array.ptr[i], &host, &guest) < 0)
			return PROTO_E_INVALID_ARGUMENT;
		used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%" PRIu32 ":%" PRIu32,
					 i ? "," : "", host, guest);
		if (used >= len)
			return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

/* Absolute, no "..", no characters the 9p option string or a shell quote would trip on. */
static bool mount_path_ok(const char *path)
{
	if (path[0] != '/' || strlen(path) > 1024 || strstr(path, "/../") ||
	    strcmp(path + strlen(path) - (strlen(path) >= 3 ? 3 : 0), "/..") == 0)
		return false;
	for (const char *c = path; *c; c++)
		if (*c == '\'' || *c == '\n' || *c == ',' || (unsigned char)*c < 0x20)
			return false;
	return true;
}

void mount_pack_info(msgpack_packer *pk, const struct instance_record *rec)
{
	proto_pack_str(pk, "mounts");
	msgpack_pack_array(pk, rec ? rec->n_mounts : 0);
	for (size_t i = 0; rec && i < rec->n_mounts; i++) {
		msgpack_pack_map(pk, 5);
		proto_pack_kv_str(pk, "source", rec->mounts[i].source);
		proto_pack_kv_str(pk, "target", rec->mounts[i].target);
		proto_pack_kv_str(pk, "type", "native");
		proto_pack_kv_str(pk, "uid_map", rec->mounts[i].uid_map ? rec->mounts[i].uid_map : "");
		proto_pack_kv_str(pk, "gid_map", rec->mounts[i].gid_map ? rec->mounts[i].gid_map : "");
	}
}

/* ---- mount ---- */

/* Mounts change on a stopped instance, and on a running one where the
 * driver says it does that live (native_mounts_live); else r is answered
 * with the refusal and true returned. */
static bool mount_refuse_state(struct creq *r, const struct instance_record *rec, const char *what)
{
	if (rec->state == PROTO_STATE_RUNNING && broker_has_feature(PROTO_FEAT_NATIVE_MOUNTS_LIVE))
		return false;
	return opx_refuse_unless_stopped(r, rec, what);
}

struct mount_req {
	struct creq *r;
	unsigned gen;
	char name[INSTANCE_NAME_MAX + 1];
	char source[1100], target[1100], uid_map[512], gid_map[512];
	/* umount: the targets still to remove */
	char **targets;
	size_t n_targets, next;
};

static void mount_req_free(struct mount_req *m)
{
	busy_remove(m->name);
	names_free(m->targets, m->n_targets);
	free(m);
}

static struct instance_record *mount_rec(struct mount_req *m)
{
	return m->gen == B->scope_gen ? registry_find(&B->reg, m->name) : NULL;
}

static void mount_on_added(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct mount_req *m = ud;
	struct instance_record *rec = mount_rec(m);
	int rc;

	if (err < 0) {
		creq_fail(m->r, err, "could not mount %s in %s: %s", m->source, m->name, errmsg);
		goto out_free;
	}
	if (!rec) {
		creq_fail(m->r, PROTO_E_NOT_FOUND, "%s vanished while it was being mounted", m->name);
		goto out_free;
	}
	rc = mount_record_add(rec, m->source, m->target, m->uid_map[0] ? m->uid_map : NULL,
			      m->gid_map[0] ? m->gid_map : NULL);
	if (rc == 0)
		rc = scope_save();
	if (rc < 0) {
		creq_fail(m->r, rc, "could not record the mount of %s in %s: %s", m->source, m->name,
			  proto_strerror(rc));
		goto out_free;
	}
	vlog(LOG_INFO_, "%s: mounted %s at %s", m->name, m->source, m->target);
	creq_ok(m->r, NULL);
out_free:
	mount_req_free(m);
}

void op_mount(struct creq *r, const msgpack_object *p)
{
	char type[32] = "", name[INSTANCE_NAME_MAX + 1] = "";
	struct instance_record *rec;
	struct mount_req *m;
	struct stat st;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	m = calloc(1, sizeof(*m));
	if (!m) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	/* Before the type: a request without a source is malformed, whatever its type. */
	if (proto_get_str(p, "source", m->source, sizeof(m->source)) < 0 || !mount_path_ok(m->source)) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT,
			  "the mount source must be an absolute host path without ',' or quotes");
		goto out_free;
	}
	proto_get_str(p, "type", type, sizeof(type));
	if (!type[0] || strcmp(type, "classic") == 0) {
		creq_fail(r, PROTO_E_UNSUPPORTED, "classic mounts are not available yet; use --type native");
		goto out_free;
	}
	if (strcmp(type, "native") != 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "unknown mount type \"%s\"; use --type native", type);
		goto out_free;
	}
	if (opx_refuse_feature(r, PROTO_FEAT_NATIVE_MOUNTS))
		goto out_free;
	if (stat(m->source, &st) < 0 || !S_ISDIR(st.st_mode)) {
		creq_fail(r, PROTO_E_NOT_FOUND, "the mount source %s is not a folder on this host%s%s",
			  m->source, errno == ENOENT ? "" : ": ", errno == ENOENT ? "" : strerror(errno));
		goto out_free;
	}
	if (proto_get_str(p, "path", m->target, sizeof(m->target)) < 0 || !m->target[0])
		snprintf(m->target, sizeof(m->target), "%s", m->source);
	if (!mount_path_ok(m->target) || strcmp(m->target, "/") == 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT,
			  "the mount target %s must be an absolute guest path (not /) without ',' or "
			  "quotes", m->target);
		goto out_free;
	}
	if (mount_idmap_text(proto_map_get(p, "uid_map"), m->uid_map, sizeof(m->uid_map)) < 0 ||
	    mount_idmap_text(proto_map_get(p, "gid_map"), m->gid_map, sizeof(m->gid_map)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "uid_map and gid_map must be lists of [HOST, GUEST]");
		goto out_free;
	}
	proto_get_str(p, "name", name, sizeof(name));
	rec = opx_instance(r, name);
	if (!rec)
		goto out_free;
	for (size_t i = 0; i < rec->n_mounts; i++) {
		if (strcmp(rec->mounts[i].target, m->target) == 0) {
			creq_fail(r, PROTO_E_ALREADY_EXISTS, "%s:%s is already mounted (from %s)", name,
				  m->target, rec->mounts[i].source);
			goto out_free;
		}
	}
	if (mount_refuse_state(r, rec, "a native mount"))
		goto out_free;
	if (busy_add(name, "being mounted") < 0) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		goto out_free;
	}
	m->r = r;
	m->gen = B->scope_gen;
	snprintf(m->name, sizeof(m->name), "%s", name);
	scope_pack_instance_params(&sb, rec, 1, &pk);
	proto_pack_str(&pk, "mount");
	{
		static const char *const maps[] = {"uid_map", "gid_map"};
		char tag[32];

		snprintf(tag, sizeof(tag), "vmctl%zu", rec->n_mounts);
		msgpack_pack_map(&pk, 5);
		proto_pack_kv_str(&pk, "source", m->source);
		proto_pack_kv_str(&pk, "target", m->target);
		proto_pack_kv_str(&pk, "tag", tag);
		for (size_t i = 0; i < 2; i++) {
			const msgpack_object *v = proto_map_get(p, maps[i]);

			proto_pack_str(&pk, maps[i]);
			if (v && v->type == MSGPACK_OBJECT_ARRAY)
				msgpack_pack_object(&pk, *v);
			else
				msgpack_pack_array(&pk, 0);
		}
	}
	if (!helper_call(B->helper, "instance.mount", &sb, BROKER_SHORT_DEADLINE, mount_on_added, m)) {
		msgpack_sbuffer_destroy(&sb);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		mount_req_free(m);
		return;
	}
	msgpack_sbuffer_destroy(&sb);
	return;

out_free:
	free(m);
}

/* ---- umount ---- */

static void umount_next(struct mount_req *m);

static void umount_on_removed(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct mount_req *m = ud;
	struct instance_record *rec = mount_rec(m);
	const char *target = m->targets[m->next];

	if (err < 0) {
		creq_fail(m->r, err, "could not unmount %s:%s: %s", m->name, target, errmsg);
		mount_req_free(m);
		return;
	}
	for (size_t i = 0; rec && i < rec->n_mounts; i++) {
		if (strcmp(rec->mounts[i].target, target) != 0)
			continue;
		mount_record_clear(&rec->mounts[i]);
		memmove(&rec->mounts[i], &rec->mounts[i + 1],
			(rec->n_mounts - i - 1) * sizeof(rec->mounts[0]));
		rec->n_mounts--;
		scope_save();
		vlog(LOG_INFO_, "%s: unmounted %s", m->name, target);
		break;
	}
	m->next++;
	umount_next(m);
}

static void umount_next(struct mount_req *m)
{
	struct instance_record *rec = mount_rec(m);
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (m->next >= m->n_targets || !rec) {
		creq_ok(m->r, NULL);
		mount_req_free(m);
		return;
	}
	for (size_t i = 0; i < rec->n_mounts; i++) {
		char tag[32];

		if (strcmp(rec->mounts[i].target, m->targets[m->next]) != 0)
			continue;
		snprintf(tag, sizeof(tag), "vmctl%zu", i);
		scope_pack_instance_params(&sb, rec, 1, &pk);
		proto_pack_str(&pk, "mount");
		msgpack_pack_map(&pk, 3);
		proto_pack_kv_str(&pk, "source", rec->mounts[i].source);
		proto_pack_kv_str(&pk, "target", rec->mounts[i].target);
		proto_pack_kv_str(&pk, "tag", tag);
		if (!helper_call(B->helper, "instance.umount", &sb, BROKER_SHORT_DEADLINE,
				 umount_on_removed, m)) {
			creq_fail(m->r, PROTO_E_NOMEM, "out of memory");
			mount_req_free(m);
		}
		msgpack_sbuffer_destroy(&sb);
		return;
	}
	m->next++;
	umount_next(m);
}

void op_umount(struct creq *r, const msgpack_object *p)
{
	char name[INSTANCE_NAME_MAX + 1] = "", path[1100] = "";
	struct instance_record *rec;
	struct mount_req *m;

	if (opx_refuse_feature(r, PROTO_FEAT_NATIVE_MOUNTS))
		return;
	proto_get_str(p, "name", name, sizeof(name));
	proto_get_str(p, "path", path, sizeof(path));
	rec = opx_instance(r, name);
	if (!rec)
		return;
	m = calloc(1, sizeof(*m));
	if (!m) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	m->targets = calloc(rec->n_mounts ? rec->n_mounts : 1, sizeof(*m->targets));
	if (!m->targets) {
		free(m);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	for (size_t i = 0; i < rec->n_mounts; i++) {
		if (path[0] && strcmp(rec->mounts[i].target, path) != 0)
			continue;
		m->targets[m->n_targets] = strdup(rec->mounts[i].target);
		if (m->targets[m->n_targets])
			m->n_targets++;
	}
	if (m->n_targets == 0) {
		names_free(m->targets, 0);
		free(m);
		if (path[0])
			creq_fail(r, PROTO_E_NOT_FOUND, "nothing is mounted at %s:%s (vmctl info %s shows "
				  "the mounts)", name, path, name);
		else
			creq_fail(r, PROTO_E_NOT_FOUND, "%s has no mounts", name);
		return;
	}
	if (mount_refuse_state(r, rec, "removing a native mount")) {
		names_free(m->targets, m->n_targets);
		free(m);
		return;
	}
	busy_add(name, "being unmounted");
	m->r = r;
	m->gen = B->scope_gen;
	snprintf(m->name, sizeof(m->name), "%s", name);
	umount_next(m);
}

/* ---- inside the guest, after a start ---- */

struct mount_act {
	char name[INSTANCE_NAME_MAX + 1];
	unsigned gen;
	bool unmount; /* before a suspend: QEMU cannot save a VM with a 9p mount in use */
	mount_done_fn done;
	void *ud;
};

static void mount_act_finish(struct mount_act *a, int err, const char *msg)
{
	mount_done_fn done = a->done;
	void *ud = a->ud;

	free(a);
	done(ud, err, msg);
}

static void mount_act_on_ssh(void *ud, int status, const char *out)
{
	struct mount_act *a = ud;
	char how[64], msg[1024];

	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		vlog(LOG_INFO_, "%s: native mounts %s in the guest", a->name,
		     a->unmount ? "unmounted" : "active");
		mount_act_finish(a, 0, NULL);
		return;
	}
	util_describe_status(status, how, sizeof(how));
	snprintf(msg, sizeof(msg), "the mounts of %s could not be %s in the guest (ssh %s): %.600s",
		 a->name, a->unmount ? "unmounted" : "mounted", how, out);
	mount_act_finish(a, PROTO_E_DRIVER, msg);
}

/* One shell script: for each mount, make the folder and mount the tag there. */
static char *mount_act_script(const struct instance_record *rec, bool unmount)
{
	size_t cap = 64, used = 0;
	char *s;

	for (size_t i = 0; i < rec->n_mounts; i++)
		cap += 2 * strlen(rec->mounts[i].target) + 256;
	s = malloc(cap);
	if (!s)
		return NULL;
	used += (size_t)snprintf(s, cap, "set -e; ");
	for (size_t i = 0; unmount && i < rec->n_mounts; i++)
		used += (size_t)snprintf(s + used, cap - used,
					 "if mountpoint -q '%s'; then sudo umount '%s'; fi; ",
					 rec->mounts[i].target, rec->mounts[i].target);
	for (size_t i = 0; !unmount && i < rec->n_mounts; i++)
		used += (size_t)snprintf(s + used, cap - used,
					 "sudo mkdir -p '%s'; mountpoint -q '%s' || sudo mount -t 9p "
					 "-o trans=virtio,version=9p2000.L,msize=262144 vmctl%zu '%s'; ",
					 rec->mounts[i].target, rec->mounts[i].target, i,
					 rec->mounts[i].target);
	return s;
}

static void mount_act_on_info(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct mount_act *a = ud;
	struct instance_record *rec =
		a->gen == B->scope_gen ? registry_find(&B->reg, a->name) : NULL;
	char host[64] = "127.0.0.1", port[16], cerr[256];
	int64_t p = 0;
	char *script;

	if (err < 0) {
		mount_act_finish(a, err, errmsg);
		return;
	}
	if (!rec || rec->n_mounts == 0) {
		mount_act_finish(a, 0, NULL);
		return;
	}
	proto_get_str(result, "ssh_host", host, sizeof(host));
	if (proto_get_int(result, "ssh_port", &p) < 0 || p <= 0 || p > 65535) {
		mount_act_finish(a, PROTO_E_UNAVAILABLE, "the driver does not say where SSH listens");
		return;
	}
	snprintf(port, sizeof(port), "%lld", (long long)p);
	script = mount_act_script(rec, a->unmount);
	if (!script) {
		mount_act_finish(a, PROTO_E_NOMEM, "out of memory");
		return;
	}
	if (!child_run_ssh(host, port, 10, script, 120.0, mount_act_on_ssh, a, cerr, sizeof(cerr))) {
		free(script);
		mount_act_finish(a, PROTO_E_IO, cerr);
		return;
	}
	free(script);
}

static bool mount_act_start(const char *name, bool unmount, mount_done_fn done, void *ud)
{
	struct instance_record *rec = registry_find(&B->reg, name);
	struct mount_act *a;

	if (!rec || rec->n_mounts == 0)
		return false;
	a = calloc(1, sizeof(*a));
	if (!a)
		return false;
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->gen = B->scope_gen;
	a->unmount = unmount;
	a->done = done;
	a->ud = ud;
	if (!opx_call(rec, "instance.info", BROKER_SHORT_DEADLINE, mount_act_on_info, a)) {
		free(a);
		return false;
	}
	return true;
}

bool mount_activate(const char *name, mount_done_fn done, void *ud)
{
	return mount_act_start(name, false, done, ud);
}

bool mount_deactivate(const char *name, mount_done_fn done, void *ud)
{
	return mount_act_start(name, true, done, ud);
}
