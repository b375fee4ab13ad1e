/*
 * set local.NAME.cpus|memory|disk: change a stopped instance (the disk only
 * grows). config.c hands these keys here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

struct resize_req {
	struct creq *r;
	unsigned gen;
	char name[INSTANCE_NAME_MAX + 1];
	char prop[16];
	uint64_t value;
};

static void resize_on_set(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct resize_req *z = ud;
	struct instance_record *rec =
		z->gen == B->scope_gen ? registry_find(&B->reg, z->name) : NULL;
	int rc = 0;

	busy_remove(z->name);
	if (err < 0) {
		creq_fail(z->r, err, "could not change the %s of %s: %s", z->prop, z->name, errmsg);
		goto out_free;
	}
	if (rec) {
		if (strcmp(z->prop, "cpus") == 0)
			rec->cpus = (uint32_t)z->value;
		else if (strcmp(z->prop, "memory") == 0)
			rec->memory = z->value;
		else
			rec->disk = z->value;
		rc = scope_save();
	}
	if (rc < 0)
		creq_fail(z->r, rc, "the %s of %s changed, but %s could not be saved", z->prop, z->name,
			  B->registry_path);
	else
		creq_ok(z->r, NULL);
	vlog(LOG_INFO_, "%s: %s set to %llu", z->name, z->prop, (unsigned long long)z->value);
out_free:
	free(z);
}

/* The new value of prop from text; 0, or r answered. */
static int resize_parse(struct creq *r, const struct instance_record *rec, const char *prop,
			const char *text, uint64_t *out)
{
	char err[256], cur[32], min[32];

	if (strcmp(prop, "cpus") == 0) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(text, &end, 10);
		if (text[0] < '0' || text[0] > '9' || *end || errno || v < 1 || v > 1024) {
			creq_fail(r, PROTO_E_INVALID_ARGUMENT, "cpus must be a number from 1 to 1024, not "
				  "\"%s\"", text);
			return PROTO_E_INVALID_ARGUMENT;
		}
		*out = v;
		return 0;
	}
	if (parse_size(text, out, err, sizeof(err)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "%s: %s", prop, err);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (strcmp(prop, "memory") == 0 && *out < MIN_MEMORY) {
		format_size(MIN_MEMORY, min, sizeof(min));
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "memory must be at least %s", min);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (strcmp(prop, "disk") == 0 && *out < rec->disk) {
		format_size(rec->disk, cur, sizeof(cur));
		creq_fail(r, PROTO_E_INVALID_ARGUMENT,
			  "the disk of %s can only grow; it is %s already", rec->name, cur);
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

void resize_set(struct creq *r, const char *name, const char *prop, const char *text)
{
	struct instance_record *rec = opx_instance(r, name);
	struct resize_req *z;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint64_t value;

	if (!rec || resize_parse(r, rec, prop, text, &value) < 0)
		return;
	if (opx_refuse_unless_stopped(r, rec, "changing its cpus, memory or disk"))
		return;
	z = calloc(1, sizeof(*z));
	if (!z || busy_add(name, "being changed") < 0) {
		free(z);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	z->r = r;
	z->gen = B->scope_gen;
	z->value = value;
	snprintf(z->name, sizeof(z->name), "%s", name);
	snprintf(z->prop, sizeof(z->prop), "%s", prop);
	scope_pack_instance_params(&sb, rec, 2, &pk);
	proto_pack_kv_str(&pk, "key", prop);
	proto_pack_str(&pk, "value");
	msgpack_pack_uint64(&pk, value);
	if (!helper_call(B->helper, "instance.set", &sb, BROKER_CREATE_DEADLINE, resize_on_set, z)) {
		busy_remove(name);
		free(z);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
	}
	msgpack_sbuffer_destroy(&sb);
}
