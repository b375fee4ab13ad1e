/*
 * Changes to an instance: specs, folder mounts, extra NICs, and clones.
 * cpus, memory, mounts and NICs live in the broker's record and reach qemu's
 * command line at the next start, so they are accepted on a stopped
 * instance only (a suspended one must come back with the exact device set
 * it was saved with). The disk grows with qemu-img resize.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qh.h"
#include "vmcommon.h"

/* Interface names are at most 15 characters (IFNAMSIZ - 1). */
#define IFNAME_MAX 16

struct change {
	struct vmh_req *req;
	struct vmh_instance inst;
	struct vmh_instance clone;
	struct vmh_mount mount; /* instance.mount: the one to try */
	bool claimed;
};

static void change_free(struct change *c)
{
	if (c->claimed)
		vmh_busy_release(c->inst.name);
	vmh_instance_free(&c->inst);
	vmh_instance_free(&c->clone);
	vmh_mount_free(&c->mount);
	free(c);
}

static void change_fail(struct change *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void change_fail(struct change *c, int err, const char *fmt, ...)
{
	char msg[QH_ERR * 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vmh_fail(c->req, err, "%s", msg);
	change_free(c);
}

static void change_done(struct change *c)
{
	msgpack_pack_map(vmh_result(c->req), 0);
	vmh_done(c->req);
	change_free(c);
}

/* Parse, claim, and require a stopped instance (why: what needs it). */
static struct change *change_begin(struct vmh_req *req, const msgpack_object *params,
				   const char *why)
{
	struct change *c = calloc(1, sizeof(*c));
	char err[QH_ERR];
	int rc;

	if (!c) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return NULL;
	}
	c->req = req;
	if (qh_inst_from_req(req, params, &c->inst) < 0) {
		free(c);
		return NULL;
	}
	rc = vmh_busy_claim(c->inst.name, PROTO_STATE_STOPPED, err, sizeof(err));
	if (rc < 0) {
		change_fail(c, rc, "%s", err);
		return NULL;
	}
	c->claimed = true;
	if (qh_vm_pid(&c->inst)) {
		change_fail(c, PROTO_E_INVALID_STATE, "instance '%s' is running: stop it first (%s)",
			    c->inst.name, why);
		return NULL;
	}
	if (qh_vm_suspended(&c->inst)) {
		change_fail(c, PROTO_E_INVALID_STATE,
			    "instance '%s' is suspended: start and stop it first (%s)", c->inst.name,
			    why);
		return NULL;
	}
	return c;
}

/* ---- instance.set ---- */

static void resize_done(void *ud, const struct vmh_run_result *r)
{
	struct change *c = ud;

	if (r->status != 0 && strstr(r->output, "--shrink")) {
		change_fail(c, PROTO_E_INVALID_ARGUMENT,
			    "the disk of '%s' can only grow, not shrink", c->inst.name);
		return;
	}
	if (r->status != 0) {
		change_fail(c, PROTO_E_DRIVER, "qemu-img could not resize the disk of '%s': %s",
			    c->inst.name, r->output);
		return;
	}
	vmh_log(VMH_INFO, "%s: disk resized", c->inst.name);
	change_done(c);
}

static int set_read_value(const msgpack_object *params, uint64_t *out, char *err, size_t errlen)
{
	const msgpack_object *v = proto_map_get(params, "value");
	char text[64];

	if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*out = v->via.u64;
		return 0;
	}
	if (v && v->type == MSGPACK_OBJECT_STR && proto_obj_str(v, text, sizeof(text)) == 0)
		return parse_size(text, out, err, errlen);
	snprintf(err, errlen, "'value' must be a positive integer or a size like 20G");
	return PROTO_E_INVALID_ARGUMENT;
}

void qh_instance_set(struct vmh_req *req, const msgpack_object *params)
{
	char key[32], disk[QH_PATH], err[QH_ERR], size[32];
	struct change *c;
	uint64_t value;
	int rc;

	if (proto_get_str(params, "key", key, sizeof(key)) < 0 ||
	    (strcmp(key, "cpus") && strcmp(key, "memory") && strcmp(key, "disk"))) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'key' must be cpus, memory or disk");
		return;
	}
	rc = set_read_value(params, &value, err, sizeof(err));
	if (rc < 0 || value == 0) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "%s: %s", key, rc < 0 ? err : "must not be 0");
		return;
	}
	c = change_begin(req, params, "qemu takes new specs at its start");
	if (!c)
		return;
	if (strcmp(key, "disk")) {
		/* Recorded by the broker; the next start uses it. */
		change_done(c);
		return;
	}
	qh_path(&c->inst, PROTO_FILE_DISK, disk, sizeof(disk));
	if (access(disk, F_OK) < 0) {
		change_fail(c, PROTO_E_NOT_FOUND, "instance '%s' has no disk %s", c->inst.name, disk);
		return;
	}
	snprintf(size, sizeof(size), "%llu", (unsigned long long)value);
	/* Without --shrink, qemu-img refuses to make the disk smaller and says so. */
	char *argv[] = {"qemu-img", "resize", "-q", "-f", "qcow2", disk, size, NULL};
	struct vmh_run_opts opts = {.timeout_s = 120};
	rc = vmh_run(argv, &opts, resize_done, c);
	if (rc < 0)
		change_fail(c, rc, "cannot run qemu-img");
}

/* ---- instance.mount / instance.umount ---- */

/*
 * 9p cannot translate ids: with security_model=none qemu serves the owners
 * it sees and, as root, gives a file the guest creates the guest user's
 * ids. So a map other than ids onto themselves is made on the host: qemu
 * shares an idmapped mount of the source (idmap.c), which only root can
 * make. As another user than root, qemu shows the host's ids unchanged and
 * cannot chown, so only the map of that user's own id onto itself holds.
 */
static int mount_check_unprivileged(const struct vmh_idpair *p, size_t n, const char *what,
				    unsigned self, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i].host != p[i].guest) {
			snprintf(err, errlen,
				 "the qemu driver cannot map host %s %u to guest %s %u: it maps ids "
				 "with an idmapped mount of the source, which needs root "
				 "(CAP_SYS_ADMIN), and it runs as %s %u. Only a map of that id onto "
				 "itself (%u:%u) holds",
				 what, (unsigned)p[i].host, what, (unsigned)p[i].guest, what, self, self,
				 self);
			return PROTO_E_INVALID_ARGUMENT;
		}
		if (self != 0 && p[i].host != self) {
			snprintf(err, errlen,
				 "the qemu driver runs as %s %u, not root: files the guest creates in a "
				 "native mount belong to %s %u on the host, so only the map %u:%u holds, "
				 "not %u:%u",
				 what, self, what, self, self, self, (unsigned)p[i].host,
				 (unsigned)p[i].guest);
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	return 0;
}

static int mount_check_idmap(const struct vmh_mount *m, char *err, size_t errlen)
{
	int rc = qh_idmap_check(m, err, errlen);

	if (rc < 0 || qh_idmap_possible())
		return rc;
	rc = mount_check_unprivileged(m->uid_map, m->n_uid_map, "uid", (unsigned)geteuid(), err,
				      errlen);
	if (rc == 0)
		rc = mount_check_unprivileged(m->gid_map, m->n_gid_map, "gid", (unsigned)getegid(),
					      err, errlen);
	return rc;
}

/* In a child of the runner: qh_idmap_try() waits for a process of its own. */
static int mount_try_task(void *arg, char *err, size_t errlen)
{
	struct change *c = arg;

	return qh_idmap_try(&c->mount, err, errlen);
}

static void mount_tried(void *ud, const struct vmh_run_result *r)
{
	struct change *c = ud;
	int rc = vmh_task_code(r);

	if (rc < 0) {
		change_fail(c, rc, "%s", r->output[0] ? r->output : "the idmapped mount failed");
		return;
	}
	change_done(c);
}

void qh_instance_mount(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *mount = proto_map_get(params, "mount");
	struct vmh_mount m;
	struct change *c;
	struct stat st;
	char err[QH_ERR];
	int rc;

	rc = qh_mount_parse(mount, &m, err, sizeof(err));
	if (rc < 0) {
		vmh_fail(req, rc, "%s", err);
		return;
	}
	rc = mount_check_idmap(&m, err, sizeof(err));
	if (rc < 0) {
		vmh_fail(req, rc, "%s", err);
		vmh_mount_free(&m);
		return;
	}
	if (stat(m.source, &st) < 0 || !S_ISDIR(st.st_mode)) {
		vmh_fail(req, PROTO_E_NOT_FOUND, "mount source %s is not a folder", m.source);
		vmh_mount_free(&m);
		return;
	}
	/* qemu cannot add a 9p share to a running VM (fsdev has no hot-plug). */
	c = change_begin(req, params, "qemu shares folders from the VM's start");
	if (!c) {
		vmh_mount_free(&m);
		return;
	}
	c->mount = m;
	if (!qh_idmap_active(&c->mount)) {
		change_done(c);
		return;
	}
	/* Kernel and filesystem support are known now rather than at the start. */
	rc = vmh_run_task(mount_try_task, c, QH_IDMAP_TIMEOUT, mount_tried, c);
	if (rc < 0)
		change_fail(c, rc, "cannot start trying an idmapped mount of %s", c->mount.source);
}

void qh_instance_umount(struct vmh_req *req, const msgpack_object *params)
{
	struct change *c = change_begin(req, params, "qemu shares folders from the VM's start");

	if (!c)
		return;
	/* The VM is stopped, so its idmapped views should be gone; one left by
	 * a helper that died is not left to outlive the mount. */
	qh_idmap_release(&c->inst);
	change_done(c);
}

/* ---- instance.network.add, networks.list ---- */

void qh_instance_network_add(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *net = proto_map_get(params, "network");
	char name[64];
	struct change *c;

	if (proto_get_str(net, "name", name, sizeof(name)) < 0) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'network' needs the 'name' of a host bridge");
		return;
	}
	if (!qh_is_bridge(name)) {
		vmh_fail(req, PROTO_E_NOT_FOUND,
			 "%s is not a network bridge on this host (see the networks list)", name);
		return;
	}
	c = change_begin(req, params, "qemu adds network cards at the VM's start");
	if (c)
		change_done(c);
}

void qh_networks_list(struct vmh_req *req, const msgpack_object *params)
{
	char names[64][IFNAME_MAX];
	size_t n = 0;
	msgpack_packer *pk;
	struct dirent *de;
	DIR *d = opendir("/sys/class/net");

	while (d && (de = readdir(d)) && n < 64) {
		if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(names[0]) ||
		    !qh_is_bridge(de->d_name))
			continue;
		snprintf(names[n++], sizeof(names[0]), "%.15s", de->d_name);
	}
	if (d)
		closedir(d);
	pk = vmh_result(req);
	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "networks");
	msgpack_pack_array(pk, n);
	for (size_t i = 0; i < n; i++) {
		char desc[IFNAME_MAX + 32];

		snprintf(desc, sizeof(desc), "Network bridge %.15s", names[i]);
		msgpack_pack_map(pk, 3);
		proto_pack_kv_str(pk, "name", names[i]);
		proto_pack_kv_str(pk, "type", "bridge");
		proto_pack_kv_str(pk, "description", desc);
	}
	vmh_done(req);
}

/* ---- instance.clone ---- */

static void clone_done(void *ud, const struct vmh_run_result *r)
{
	struct change *c = ud;
	char disk[QH_PATH];

	if (r->status != 0) {
		qh_path(&c->clone, PROTO_FILE_DISK, disk, sizeof(disk));
		unlink(disk);
		change_fail(c, PROTO_E_DRIVER, "qemu-img could not copy the disk of '%s': %s",
			    c->inst.name, r->output);
		return;
	}
	vmh_log(VMH_INFO, "%s: cloned into '%s'", c->inst.name, c->clone.name);
	change_done(c);
}

void qh_instance_clone(struct vmh_req *req, const msgpack_object *params)
{
	char src[QH_PATH], dst[QH_PATH], err[QH_ERR];
	struct change *c;
	int rc;

	c = change_begin(req, params, "a clone is copied from a stopped instance");
	if (!c)
		return;
	rc = qh_inst_parse(proto_map_get(params, "clone"), &c->clone, err, sizeof(err));
	if (rc < 0) {
		change_fail(c, rc, "clone: %s", err);
		return;
	}
	if (!c->inst.image.disk) {
		change_fail(c, PROTO_E_INVALID_ARGUMENT, "instance '%s' names no base image",
			    c->inst.name);
		return;
	}
	if (!strcmp(c->clone.dir, c->inst.dir)) {
		change_fail(c, PROTO_E_INVALID_ARGUMENT, "the clone needs its own folder");
		return;
	}
	qh_path(&c->inst, PROTO_FILE_DISK, src, sizeof(src));
	qh_path(&c->clone, PROTO_FILE_DISK, dst, sizeof(dst));
	if (access(src, F_OK) < 0) {
		change_fail(c, PROTO_E_NOT_FOUND, "instance '%s' has no disk %s", c->inst.name, src);
		return;
	}
	if (access(dst, F_OK) == 0) {
		change_fail(c, PROTO_E_ALREADY_EXISTS, "'%s' already has a disk (%s)", c->clone.name,
			    dst);
		return;
	}
	rc = mkdir_p(c->clone.dir, 0755);
	if (rc < 0) {
		change_fail(c, rc, "cannot create %s: %s", c->clone.dir, strerror(errno));
		return;
	}
	/* A new overlay over the same base holding the source's changes, without
	 * the source's internal snapshots (a copy of the file would carry them). */
	char *argv[] = {"qemu-img", "convert", "-q", "-f", "qcow2", "-O", "qcow2",
			"-B", c->inst.image.disk, "-F", c->inst.image.format, src, dst, NULL};
	struct vmh_run_opts opts = {.timeout_s = 3600};
	rc = vmh_run(argv, &opts, clone_done, c);
	if (rc < 0)
		change_fail(c, rc, "cannot run qemu-img");
}
