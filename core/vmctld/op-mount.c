/*
 * Native mounts: mount and umount record host folders in the instance's
 * record (mounts), which reaches the helper in every instance map, so the
 * driver shares them from each start (9p with qemu). Inside the guest the
 * broker mounts them over SSH once the instance answers (mount_activate).
 * Classic mounts (Multipass's default) are the broker's alone, on every
 * driver: recorded in classic_mounts (which the helper never sees) and
 * served over SSH by classic.c; the classic_* functions here are their
 * mount and umount requests.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"

/* ---- the record's mounts ---- */

static void mount_record_clear(struct mount_record *m)
{
	free(m->source);
	free(m->target);
	free(m->uid_map);
	free(m->gid_map);
	memset(m, 0, sizeof(*m));
}

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
	for (size_t i = 0; i < src->n_classic_mounts; i++) {
		const struct mount_record *m = &src->classic_mounts[i];
		int rc = classic_record_add(dst, m->source, m->target, m->uid_map, m->gid_map);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* mount_record_add on the classic list: the same records, another list. */
int classic_record_add(struct instance_record *rec, const char *source, const char *target,
		       const char *uid_map, const char *gid_map)
{
	struct instance_record tmp = {0};
	int rc;

	/* Borrow the native list's code: swap the lists around it. */
	tmp.mounts = rec->classic_mounts;
	tmp.n_mounts = rec->n_classic_mounts;
	rc = mount_record_add(&tmp, source, target, uid_map, gid_map);
	rec->classic_mounts = tmp.mounts;
	rec->n_classic_mounts = tmp.n_mounts;
	return rc;
}

static void classic_record_remove(struct instance_record *rec, const char *target)
{
	for (size_t i = 0; i < rec->n_classic_mounts; i++) {
		if (strcmp(rec->classic_mounts[i].target, target) != 0)
			continue;
		mount_record_clear(&rec->classic_mounts[i]);
		memmove(&rec->classic_mounts[i], &rec->classic_mounts[i + 1],
			(rec->n_classic_mounts - i - 1) * sizeof(rec->classic_mounts[0]));
		rec->n_classic_mounts--;
		return;
	}
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
	msgpack_pack_array(pk, rec ? rec->n_mounts + rec->n_classic_mounts : 0);
	for (size_t i = 0; rec && i < rec->n_mounts; i++) {
		msgpack_pack_map(pk, 5);
		proto_pack_kv_str(pk, "source", rec->mounts[i].source);
		proto_pack_kv_str(pk, "target", rec->mounts[i].target);
		proto_pack_kv_str(pk, "type", "native");
		proto_pack_kv_str(pk, "uid_map", rec->mounts[i].uid_map ? rec->mounts[i].uid_map : "");
		proto_pack_kv_str(pk, "gid_map", rec->mounts[i].gid_map ? rec->mounts[i].gid_map : "");
	}
	for (size_t i = 0; rec && i < rec->n_classic_mounts; i++) {
		const struct mount_record *m = &rec->classic_mounts[i];
		char status[700];

		msgpack_pack_map(pk, 6);
		proto_pack_kv_str(pk, "source", m->source);
		proto_pack_kv_str(pk, "target", m->target);
		proto_pack_kv_str(pk, "type", "classic");
		proto_pack_kv_str(pk, "uid_map", m->uid_map ? m->uid_map : "");
		proto_pack_kv_str(pk, "gid_map", m->gid_map ? m->gid_map : "");
		proto_pack_kv_str(pk, "status", classic_status(rec->name, m->target, status,
							       sizeof(status)));
	}
}

/* ---- mount ---- */

/* Answer r and return true when something, native or classic, is mounted
 * at target already. */
static bool mount_refuse_taken(struct creq *r, const struct instance_record *rec,
			       const char *target)
{
	for (size_t i = 0; i < rec->n_mounts + rec->n_classic_mounts; i++) {
		const struct mount_record *m = i < rec->n_mounts ? &rec->mounts[i]
								 : &rec->classic_mounts[i - rec->n_mounts];

		if (strcmp(m->target, target) == 0) {
			creq_fail(r, PROTO_E_ALREADY_EXISTS, "%s:%s is already mounted (from %s)",
				  rec->name, target, m->source);
			return true;
		}
	}
	return false;
}

static void classic_op_mount(struct creq *r, const msgpack_object *p);

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
		free(m);
		classic_op_mount(r, p);
		return;
	}
	if (strcmp(type, "native") != 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "unknown mount type \"%s\" (use classic or "
			  "native)", type);
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
	if (mount_refuse_taken(r, rec, m->target))
		goto out_free;
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
static void native_umount(struct creq *r, const char *name, const char *path);

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

static bool classic_op_umount(struct creq *r, const char *name, const char *path);

void op_umount(struct creq *r, const msgpack_object *p)
{
	char name[INSTANCE_NAME_MAX + 1] = "", path[1100] = "";

	proto_get_str(p, "name", name, sizeof(name));
	proto_get_str(p, "path", path, sizeof(path));
	if (classic_op_umount(r, name, path))
		return;
	native_umount(r, name, path);
}

static void native_umount(struct creq *r, const char *name, const char *path)
{
	struct instance_record *rec;
	struct mount_req *m;

	if (opx_refuse_feature(r, PROTO_FEAT_NATIVE_MOUNTS))
		return;
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

/* Native mounts first, then classic ones; done hears of both. */
struct mount_chain {
	char name[INSTANCE_NAME_MAX + 1];
	mount_done_fn done;
	void *ud;
	int err;
	char msg[2048];
};

static void mount_chain_on_classic(void *ud, int err, const char *errmsg)
{
	struct mount_chain *c = ud;
	mount_done_fn done = c->done;
	void *dud = c->ud;
	char msg[4200];

	if (err < 0)
		c->err = err;
	snprintf(msg, sizeof(msg), "%s%s%s", c->msg, c->msg[0] && err < 0 ? "; " : "",
		 err < 0 && errmsg ? errmsg : "");
	err = c->err;
	free(c);
	done(dud, err, err < 0 ? msg : NULL);
}

static void mount_chain_on_native(void *ud, int err, const char *errmsg)
{
	struct mount_chain *c = ud;

	if (err < 0) {
		c->err = err;
		snprintf(c->msg, sizeof(c->msg), "%s", errmsg ? errmsg : "");
	}
	if (!classic_establish(c->name, NULL, mount_chain_on_classic, c))
		mount_chain_on_classic(c, 0, NULL);
}

bool mount_activate(const char *name, mount_done_fn done, void *ud)
{
	struct instance_record *rec = registry_find(&B->reg, name);
	struct mount_chain *c;

	if (!rec || (rec->n_mounts == 0 && rec->n_classic_mounts == 0))
		return false;
	c = calloc(1, sizeof(*c));
	if (!c)
		return false;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->done = done;
	c->ud = ud;
	if (!mount_act_start(name, false, mount_chain_on_native, c))
		mount_chain_on_native(c, 0, NULL);
	return true;
}

bool mount_deactivate(const char *name, mount_done_fn done, void *ud)
{
	return mount_act_start(name, true, done, ud);
}

/* ---- classic mounts: mount and umount requests ---- */

struct classic_req {
	struct creq *r;
	unsigned gen;
	char name[INSTANCE_NAME_MAX + 1];
	char source[1100], target[1100];
	/* umount: the classic targets still to remove; then the native ones
	 * when the request named no path */
	char **targets;
	size_t n_targets, next;
	bool then_native;
};

static void classic_req_free(struct classic_req *c)
{
	busy_remove(c->name);
	names_free(c->targets, c->n_targets);
	free(c);
}

static struct instance_record *classic_req_rec(struct classic_req *c)
{
	return c->gen == B->scope_gen ? registry_find(&B->reg, c->name) : NULL;
}

static void classic_on_mounted(void *ud, int err, const char *errmsg)
{
	struct classic_req *c = ud;
	struct instance_record *rec = classic_req_rec(c);

	if (err < 0) {
		/* Nothing is left of a mount that did not work. */
		classic_forget(c->name, c->target);
		if (rec) {
			classic_record_remove(rec, c->target);
			scope_save();
		}
		creq_fail(c->r, err, "%s", errmsg);
	} else {
		vlog(LOG_INFO_, "%s: mounted %s at %s (classic)", c->name, c->source, c->target);
		creq_ok(c->r, NULL);
	}
	classic_req_free(c);
}

/* A map nobody gave: the host user (the broker's) is the guest's ubuntu, 1000. */
static void classic_default_map(char *buf, size_t len, unsigned host_id)
{
	if (!buf[0])
		snprintf(buf, len, "%u:1000", host_id);
}

static void classic_op_mount(struct creq *r, const msgpack_object *p)
{
	char name[INSTANCE_NAME_MAX + 1] = "", uid_map[512], gid_map[512];
	struct instance_record *rec;
	struct classic_req *c;
	struct stat st;
	int rc;

	c = calloc(1, sizeof(*c));
	if (!c) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	/* op_mount checked the source's shape. */
	proto_get_str(p, "source", c->source, sizeof(c->source));
	if (stat(c->source, &st) < 0 || !S_ISDIR(st.st_mode)) {
		creq_fail(r, PROTO_E_NOT_FOUND, "the mount source %s is not a folder on this host%s%s",
			  c->source, errno == ENOENT ? "" : ": ", errno == ENOENT ? "" : strerror(errno));
		goto out_free;
	}
	if (proto_get_str(p, "path", c->target, sizeof(c->target)) < 0 || !c->target[0])
		snprintf(c->target, sizeof(c->target), "%s", c->source);
	if (!mount_path_ok(c->target) || strcmp(c->target, "/") == 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT,
			  "the mount target %s must be an absolute guest path (not /) without ',' or "
			  "quotes", c->target);
		goto out_free;
	}
	if (mount_idmap_text(proto_map_get(p, "uid_map"), uid_map, sizeof(uid_map)) < 0 ||
	    mount_idmap_text(proto_map_get(p, "gid_map"), gid_map, sizeof(gid_map)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "uid_map and gid_map must be lists of [HOST, GUEST]");
		goto out_free;
	}
	classic_default_map(uid_map, sizeof(uid_map), (unsigned)getuid());
	classic_default_map(gid_map, sizeof(gid_map), (unsigned)getgid());
	proto_get_str(p, "name", name, sizeof(name));
	rec = opx_instance(r, name);
	if (!rec)
		goto out_free;
	if (mount_refuse_taken(r, rec, c->target))
		goto out_free;
	rc = classic_record_add(rec, c->source, c->target, uid_map, gid_map);
	if (rc == 0)
		rc = scope_save();
	if (rc < 0) {
		classic_record_remove(rec, c->target);
		creq_fail(r, rc, "could not record the mount of %s in %s: %s", c->source, name,
			  proto_strerror(rc));
		goto out_free;
	}
	if (rec->state != PROTO_STATE_RUNNING) {
		/* Established by the next start. */
		vlog(LOG_INFO_, "%s: recorded the classic mount of %s at %s", name, c->source,
		     c->target);
		creq_ok(r, NULL);
		goto out_free;
	}
	if (busy_add(name, "being mounted") < 0) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		goto out_free;
	}
	c->r = r;
	c->gen = B->scope_gen;
	snprintf(c->name, sizeof(c->name), "%s", name);
	creq_progress(r, -1, "Mounting %s in %s", c->source, name);
	if (!classic_establish(name, c->target, classic_on_mounted, c))
		classic_on_mounted(c, PROTO_E_NOMEM, "out of memory");
	return;

out_free:
	free(c);
}

static void classic_umount_next(struct classic_req *c);

static void classic_umount_on_ended(void *ud, int err, const char *errmsg)
{
	struct classic_req *c = ud;
	struct instance_record *rec = classic_req_rec(c);

	if (rec) {
		classic_record_remove(rec, c->targets[c->next]);
		scope_save();
	}
	vlog(LOG_INFO_, "%s: unmounted %s (classic)", c->name, c->targets[c->next]);
	c->next++;
	classic_umount_next(c);
}

static void classic_umount_next(struct classic_req *c)
{
	struct instance_record *rec;

	if (c->next < c->n_targets) {
		if (!classic_unmount(c->name, c->targets[c->next], classic_umount_on_ended, c))
			classic_umount_on_ended(c, 0, NULL);
		return;
	}
	rec = classic_req_rec(c);
	if (c->then_native && rec && rec->n_mounts) {
		struct creq *r = c->r;
		char name[INSTANCE_NAME_MAX + 1];

		snprintf(name, sizeof(name), "%s", c->name);
		classic_req_free(c);
		native_umount(r, name, "");
		return;
	}
	creq_ok(c->r, NULL);
	classic_req_free(c);
}

/* true when r is the classic mounts' (answered, or being answered): path is
 * a classic mount's target, or no path was given and there are classic
 * mounts (the native ones follow them). */
static bool classic_op_umount(struct creq *r, const char *name, const char *path)
{
	struct instance_record *rec = registry_find(&B->reg, name);
	struct classic_req *c;
	size_t n = 0;

	for (size_t i = 0; rec && !rec->deleted && i < rec->n_classic_mounts; i++)
		if (!path[0] || !strcmp(rec->classic_mounts[i].target, path))
			n++;
	if (n == 0)
		return false;
	rec = opx_instance(r, name);
	if (!rec)
		return true;
	c = calloc(1, sizeof(*c));
	if (c)
		c->targets = calloc(n, sizeof(*c->targets));
	if (!c || !c->targets || busy_add(name, "being unmounted") < 0) {
		if (c)
			free(c->targets);
		free(c);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return true;
	}
	for (size_t i = 0; i < rec->n_classic_mounts; i++) {
		if (path[0] && strcmp(rec->classic_mounts[i].target, path) != 0)
			continue;
		c->targets[c->n_targets] = strdup(rec->classic_mounts[i].target);
		if (c->targets[c->n_targets])
			c->n_targets++;
	}
	c->r = r;
	c->gen = B->scope_gen;
	c->then_native = !path[0];
	snprintf(c->name, sizeof(c->name), "%s", name);
	classic_umount_next(c);
	return true;
}

/* ---- launch --mount ---- */

int mount_launch_params(const msgpack_object *p, struct instance_record *into, char *err,
			size_t errlen)
{
	const msgpack_object *arr = proto_map_get(p, "mounts");

	if (!arr || arr->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (arr->type != MSGPACK_OBJECT_ARRAY || arr->via.array.size > 64) {
		snprintf(err, errlen, "mounts must be a list of at most 64 {source, target, type}");
		return PROTO_E_INVALID_ARGUMENT;
	}
	for (uint32_t i = 0; i < arr->via.array.size; i++) {
		const msgpack_object *e = &arr->via.array.ptr[i];
		char source[1100] = "", target[1100] = "", type[32] = "", uid_map[512], gid_map[512];
		struct stat st;
		int rc;

		if (proto_get_str(e, "source", source, sizeof(source)) < 0 || !mount_path_ok(source)) {
			snprintf(err, errlen, "the mount source %.200s must be an absolute host path "
				 "without ',' or quotes", source);
			return PROTO_E_INVALID_ARGUMENT;
		}
		if (stat(source, &st) < 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "the mount source %s is not a folder on this host", source);
			return PROTO_E_NOT_FOUND;
		}
		if (proto_get_str(e, "target", target, sizeof(target)) < 0 || !target[0])
			snprintf(target, sizeof(target), "%s", source);
		if (!mount_path_ok(target) || strcmp(target, "/") == 0) {
			snprintf(err, errlen, "the mount target %s must be an absolute guest path (not /) "
				 "without ',' or quotes", target);
			return PROTO_E_INVALID_ARGUMENT;
		}
		proto_get_str(e, "type", type, sizeof(type));
		if (type[0] && strcmp(type, "classic") != 0 && strcmp(type, "native") != 0) {
			snprintf(err, errlen, "unknown mount type \"%.31s\" (use classic or native)", type);
			return PROTO_E_INVALID_ARGUMENT;
		}
		if (!strcmp(type, "native") && !broker_has_feature(PROTO_FEAT_NATIVE_MOUNTS)) {
			driver_refusal(PROTO_FEAT_NATIVE_MOUNTS, B->driver, err, errlen);
			return PROTO_E_UNSUPPORTED;
		}
		if (mount_idmap_text(proto_map_get(e, "uid_map"), uid_map, sizeof(uid_map)) < 0 ||
		    mount_idmap_text(proto_map_get(e, "gid_map"), gid_map, sizeof(gid_map)) < 0) {
			snprintf(err, errlen, "uid_map and gid_map must be lists of [HOST, GUEST]");
			return PROTO_E_INVALID_ARGUMENT;
		}
		for (size_t j = 0; j < into->n_mounts + into->n_classic_mounts; j++) {
			const struct mount_record *m = j < into->n_mounts
							       ? &into->mounts[j]
							       : &into->classic_mounts[j - into->n_mounts];

			if (!strcmp(m->target, target)) {
				snprintf(err, errlen, "two mounts at %s (from %s and %s)", target,
					 m->source, source);
				return PROTO_E_ALREADY_EXISTS;
			}
		}
		if (!strcmp(type, "native")) {
			rc = mount_record_add(into, source, target, uid_map[0] ? uid_map : NULL,
					      gid_map[0] ? gid_map : NULL);
		} else {
			classic_default_map(uid_map, sizeof(uid_map), (unsigned)getuid());
			classic_default_map(gid_map, sizeof(gid_map), (unsigned)getgid());
			rc = classic_record_add(into, source, target, uid_map, gid_map);
		}
		if (rc < 0) {
			snprintf(err, errlen, "out of memory");
			return rc;
		}
	}
	return 0;
}
