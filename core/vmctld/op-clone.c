/*
 * clone: a stopped instance is copied into a new one with its own record,
 * folder, MAC addresses (the default NIC's and each extra network's) and
 * cloud-init seed (a new instance-id, so the guest takes the new hostname
 * and configures its NICs by their new MACs). The helper copies the disk.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"

struct clone_req {
	struct creq *r;
	unsigned gen;
	char src[INSTANCE_NAME_MAX + 1];
	char dst[INSTANCE_NAME_MAX + 1];
	char dir[4400];
	bool recorded;
};

static void clone_free(struct clone_req *c)
{
	busy_remove(c->src);
	busy_remove(c->dst);
	free(c);
}

/* Undo the record and folder so the name can be used again. */
static void clone_fail(struct clone_req *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void clone_fail(struct clone_req *c, int err, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->recorded && c->gen == B->scope_gen) {
		remove_tree(c->dir);
		registry_remove(&B->reg, c->dst);
		scope_save();
	}
	creq_fail(c->r, err, "%s", msg);
	clone_free(c);
}

static bool clone_name_taken(const char *name)
{
	char dir[4400];

	scope_instance_dir(name, dir, sizeof(dir));
	return registry_find(&B->reg, name) || busy_find(name) || access(dir, F_OK) == 0;
}

static void clone_on_cloned(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct clone_req *c = ud;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (err < 0) {
		clone_fail(c, err, "could not clone %s: %s", c->src, errmsg);
		return;
	}
	vlog(LOG_INFO_, "cloned %s into %s", c->src, c->dst);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "name", c->dst);
	creq_ok(c->r, &sb);
	msgpack_sbuffer_destroy(&sb);
	clone_free(c);
}

static void clone_on_seed(void *ud, int err, const char *errmsg)
{
	struct clone_req *c = ud;
	struct instance_record *src, *dst;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (err < 0) {
		clone_fail(c, err, "%s", errmsg);
		return;
	}
	src = c->gen == B->scope_gen ? registry_find(&B->reg, c->src) : NULL;
	dst = c->gen == B->scope_gen ? registry_find(&B->reg, c->dst) : NULL;
	if (!src || !dst) {
		clone_fail(c, PROTO_E_NOT_FOUND, "%s vanished while it was being cloned", c->src);
		return;
	}
	creq_progress(c->r, -1, "Copying the disk of %s", c->src);
	scope_pack_instance_params(&sb, src, 1, &pk);
	proto_pack_str(&pk, "clone");
	scope_pack_instance(&pk, dst);
	if (!helper_call(B->helper, "instance.clone", &sb, BROKER_CREATE_DEADLINE, clone_on_cloned, c))
		clone_fail(c, PROTO_E_NOMEM, "out of memory");
	msgpack_sbuffer_destroy(&sb);
}

static void clone_on_keys(void *ud, int err, const char *errmsg)
{
	struct clone_req *c = ud;
	struct instance_record *dst;
	char msg[1024];

	if (err < 0) {
		clone_fail(c, err, "%s", errmsg);
		return;
	}
	dst = c->gen == B->scope_gen ? registry_find(&B->reg, c->dst) : NULL;
	if (!dst) {
		clone_fail(c, PROTO_E_NOT_FOUND, "%s vanished while it was being created", c->dst);
		return;
	}
	/* The user's own cloud-init ran in the source already; the clone's seed
	 * brings the new identity and the broker's key. */
	if (seed_write_network_config(c->dir, dst, msg, sizeof(msg)) < 0 ||
	    seed_make(c->dir, c->dst, B->ssh_pubkey, NULL, clone_on_seed, c, msg, sizeof(msg)) < 0)
		clone_fail(c, PROTO_E_IO, "%s", msg);
}

/* The clone's record: the source's specs, image, mounts and networks, its
 * own MACs. */
static int clone_record(struct clone_req *c)
{
	struct instance_record *src, *dst;
	unsigned char rnd[3];
	char mac[32], created[32];
	int rc = mkdir_p(c->dir, 0700);

	if (rc < 0)
		return rc;
	dst = registry_add(&B->reg, c->dst);
	if (!dst)
		return PROTO_E_NOMEM;
	c->recorded = true;
	/* registry_add may have moved the records. */
	src = registry_find(&B->reg, c->src);
	if (!src)
		return PROTO_E_NOT_FOUND;
	if (networks_copy_new_macs(&dst->networks, src->networks, src->n_networks, src->mac) < 0)
		return PROTO_E_NOMEM;
	dst->n_networks = src->n_networks;
	do {
		util_random(rnd, sizeof(rnd));
		util_format_mac(rnd, mac, sizeof(mac));
	} while (networks_mac_taken(dst->networks, dst->n_networks, mac) ||
		 (src->mac && !strcmp(src->mac, mac)));
	util_iso_time(time(NULL), created, sizeof(created));
	dst->cpus = src->cpus;
	dst->memory = src->memory;
	dst->disk = src->disk;
	dst->state = PROTO_STATE_STOPPED;
	if (record_set(&dst->image, src->image) < 0 ||
	    record_set(&dst->image_disk, src->image_disk) < 0 ||
	    record_set(&dst->image_format, src->image_format) < 0 ||
	    record_set(&dst->image_kernel, src->image_kernel) < 0 ||
	    record_set(&dst->image_initrd, src->image_initrd) < 0 ||
	    record_set(&dst->image_cmdline, src->image_cmdline) < 0 ||
	    record_set(&dst->image_sha256, src->image_sha256) < 0 || record_set(&dst->mac, mac) < 0 ||
	    record_set(&dst->created, created) < 0 || mount_records_copy(dst, src) < 0)
		return PROTO_E_NOMEM;
	return scope_save();
}

void op_clone(struct creq *r, const msgpack_object *p)
{
	char src[INSTANCE_NAME_MAX + 1] = "", dst[INSTANCE_NAME_MAX + 2] = "", err[512];
	struct instance_record *rec;
	struct clone_req *c;
	int rc;

	if (opx_refuse_feature(r, PROTO_FEAT_CLONE))
		return;
	if (proto_get_str(p, "source", src, sizeof(src)) == PROTO_E_INVALID_ARGUMENT) {
		creq_fail(r, PROTO_E_NOT_FOUND, "no such instance (the name is too long)");
		return;
	}
	rec = opx_instance(r, src);
	if (!rec || opx_refuse_unless_stopped(r, rec, "cloning"))
		return;
	rc = proto_get_str(p, "name", dst, sizeof(dst));
	if (rc == PROTO_E_INVALID_ARGUMENT || strlen(dst) > INSTANCE_NAME_MAX) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "the clone's name is too long (at most %d "
			  "characters)", INSTANCE_NAME_MAX);
		return;
	}
	if (dst[0]) {
		if (validate_instance_name(dst, err, sizeof(err)) < 0) {
			creq_fail(r, PROTO_E_INVALID_ARGUMENT, "%s", err);
			return;
		}
		if (clone_name_taken(dst)) {
			creq_fail(r, PROTO_E_ALREADY_EXISTS, "an instance named %s already exists", dst);
			return;
		}
	} else {
		for (unsigned n = 1;; n++) {
			if (snprintf(dst, sizeof(dst), "%s-clone%u", src, n) > INSTANCE_NAME_MAX) {
				creq_fail(r, PROTO_E_INVALID_ARGUMENT,
					  "%s-clone%u would be longer than %d characters; give the clone a "
					  "name with --name", src, n, INSTANCE_NAME_MAX);
				return;
			}
			if (!clone_name_taken(dst))
				break;
		}
	}
	c = calloc(1, sizeof(*c));
	if (!c || busy_add(src, "being cloned") < 0) {
		free(c);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	c->r = r;
	c->gen = B->scope_gen;
	snprintf(c->src, sizeof(c->src), "%s", src);
	snprintf(c->dst, sizeof(c->dst), "%.63s", dst);
	if (busy_add(dst, "being created as a clone") < 0) {
		busy_remove(src);
		free(c);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	scope_instance_dir(dst, c->dir, sizeof(c->dir));
	creq_progress(r, -1, "Cloning %s into %s", src, dst);
	rc = clone_record(c);
	if (rc < 0) {
		clone_fail(c, rc, "could not record %s in %s: %s", dst, B->registry_path,
			   proto_strerror(rc));
		return;
	}
	keys_ensure(clone_on_keys, c);
}
