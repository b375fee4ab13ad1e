/* Reading the instance map that every instance.* request carries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qh.h"

/* A str value of map[key] copied; NULL if absent. *bad set if present but not a str. */
static char *inst_dup(const msgpack_object *map, const char *key, bool *bad)
{
	const msgpack_object *o = proto_map_get(map, key);

	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return NULL;
	if (o->type != MSGPACK_OBJECT_STR) {
		*bad = true;
		return NULL;
	}
	return strndup(o->via.str.ptr, o->via.str.size);
}

/* Strings that reach qemu's command line or a file name: no control characters. */
static bool inst_clean(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s < 0x20)
			return false;
	return true;
}

static bool inst_mac_ok(const char *mac)
{
	unsigned v[6];
	char tail;

	return mac && strlen(mac) == 17 &&
	       sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		      &tail) == 6;
}

void qh_mount_free(struct qh_mount *m)
{
	free(m->source);
	free(m->target);
	free(m->tag);
	qh_idmap_free(m->idmap);
	memset(m, 0, sizeof(*m));
}

int qh_mount_parse(const msgpack_object *map, struct qh_mount *m, char *err, size_t errlen)
{
	bool bad = false;

	memset(m, 0, sizeof(*m));
	if (!map || map->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "a mount must be a map");
		return PROTO_E_INVALID_ARGUMENT;
	}
	m->source = inst_dup(map, "source", &bad);
	m->target = inst_dup(map, "target", &bad);
	m->tag = inst_dup(map, "tag", &bad);
	if (bad || !m->source || m->source[0] != '/' || !m->tag || !m->tag[0] ||
	    !inst_clean(m->source) || !inst_clean(m->tag)) {
		snprintf(err, errlen, "a mount needs an absolute 'source' and a 'tag'");
		qh_mount_free(m);
		return PROTO_E_INVALID_ARGUMENT;
	}
	/* virtio-9p tags are limited by the guest driver's config space. */
	if (strlen(m->tag) > 31 || strpbrk(m->tag, ",= ")) {
		snprintf(err, errlen, "mount tag '%s' is too long or has ',', '=' or ' '", m->tag);
		qh_mount_free(m);
		return PROTO_E_INVALID_ARGUMENT;
	}
	int rc = qh_idmap_parse(map, &m->idmap, err, errlen);
	if (rc < 0)
		qh_mount_free(m);
	return rc;
}

static int inst_parse_mounts(const msgpack_object *map, struct qh_inst *inst, char *err,
			     size_t errlen)
{
	const msgpack_object *arr = proto_map_get(map, "mounts");

	if (!arr || arr->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (arr->type != MSGPACK_OBJECT_ARRAY) {
		snprintf(err, errlen, "'mounts' must be an array");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (arr->via.array.size == 0)
		return 0;
	inst->mounts = calloc(arr->via.array.size, sizeof(*inst->mounts));
	if (!inst->mounts)
		return PROTO_E_NOMEM;
	for (uint32_t i = 0; i < arr->via.array.size; i++) {
		int rc = qh_mount_parse(&arr->via.array.ptr[i], &inst->mounts[i], err, errlen);

		if (rc < 0)
			return rc;
		inst->n_mounts++;
	}
	return 0;
}

static int inst_parse_nets(const msgpack_object *map, struct qh_inst *inst, char *err,
			   size_t errlen)
{
	const msgpack_object *arr = proto_map_get(map, "networks");

	if (!arr || arr->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (arr->type != MSGPACK_OBJECT_ARRAY) {
		snprintf(err, errlen, "'networks' must be an array");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (arr->via.array.size == 0)
		return 0;
	inst->nets = calloc(arr->via.array.size, sizeof(*inst->nets));
	if (!inst->nets)
		return PROTO_E_NOMEM;
	for (uint32_t i = 0; i < arr->via.array.size; i++) {
		const msgpack_object *n = &arr->via.array.ptr[i];
		struct qh_net *net = &inst->nets[i];
		bool bad = n->type != MSGPACK_OBJECT_MAP;

		inst->n_nets++;
		if (!bad) {
			net->name = inst_dup(n, "name", &bad);
			net->mode = inst_dup(n, "mode", &bad);
			net->mac = inst_dup(n, "mac", &bad);
		}
		if (bad || !net->name || !net->name[0] || strlen(net->name) >= 16 ||
		    strpbrk(net->name, ",=/ ") || !inst_mac_ok(net->mac)) {
			snprintf(err, errlen,
				 "an extra network needs an interface 'name' and a 'mac' "
				 "like 52:54:00:12:34:56");
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	return 0;
}

static int inst_parse_image(const msgpack_object *map, struct qh_inst *inst, char *err,
			    size_t errlen)
{
	const msgpack_object *img = proto_map_get(map, "image");
	bool bad = false;

	if (!img || img->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "the instance has no 'image' map");
		return PROTO_E_INVALID_ARGUMENT;
	}
	inst->image_disk = inst_dup(img, "disk", &bad);
	inst->image_format = inst_dup(img, "format", &bad);
	inst->image_kernel = inst_dup(img, "kernel", &bad);
	inst->image_initrd = inst_dup(img, "initrd", &bad);
	inst->image_cmdline = inst_dup(img, "cmdline", &bad);
	if (bad) {
		snprintf(err, errlen, "the image's disk, format, kernel, initrd and cmdline must be strings");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!inst->image_disk || inst->image_disk[0] != '/' || !inst_clean(inst->image_disk)) {
		snprintf(err, errlen, "the image needs an absolute 'disk' path");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!inst->image_format)
		inst->image_format = strdup("qcow2");
	if (!inst->image_format)
		return PROTO_E_NOMEM;
	if (strcmp(inst->image_format, "qcow2") && strcmp(inst->image_format, "raw")) {
		snprintf(err, errlen, "image format '%s' is neither qcow2 nor raw", inst->image_format);
		return PROTO_E_INVALID_ARGUMENT;
	}
	/* Empty strings mean "not set", as absent keys do. */
	if (inst->image_kernel && !inst->image_kernel[0]) {
		free(inst->image_kernel);
		inst->image_kernel = NULL;
	}
	if (inst->image_initrd && !inst->image_initrd[0]) {
		free(inst->image_initrd);
		inst->image_initrd = NULL;
	}
	if ((inst->image_kernel && (inst->image_kernel[0] != '/' || !inst_clean(inst->image_kernel))) ||
	    (inst->image_initrd && (inst->image_initrd[0] != '/' || !inst_clean(inst->image_initrd)))) {
		snprintf(err, errlen, "the image's kernel and initrd must be absolute paths");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (inst->image_initrd && !inst->image_kernel) {
		snprintf(err, errlen, "the image has an initrd but no kernel");
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

int qh_inst_parse(const msgpack_object *map, struct qh_inst *inst, char *err, size_t errlen)
{
	bool bad = false;
	int64_t cpus = 0;
	uint64_t memory = 0, disk = 0;
	int rc;

	memset(inst, 0, sizeof(*inst));
	if (!map || map->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "the request has no 'instance' map");
		return PROTO_E_INVALID_ARGUMENT;
	}
	inst->name = inst_dup(map, "name", &bad);
	inst->dir = inst_dup(map, "dir", &bad);
	inst->mac = inst_dup(map, "mac", &bad);
	inst->seed = inst_dup(map, "seed", &bad);
	rc = PROTO_E_INVALID_ARGUMENT;
	if (bad || !inst->name || !inst->name[0] || strlen(inst->name) > 63 ||
	    strpbrk(inst->name, ",=/ ") || !inst_clean(inst->name)) {
		snprintf(err, errlen, "the instance needs a 'name' (a host name label)");
		goto fail;
	}
	/* qemu changes to / when it daemonizes: every path must be absolute. */
	if (!inst->dir || inst->dir[0] != '/' || !inst_clean(inst->dir) ||
	    strlen(inst->dir) > QH_PATH - 64) {
		snprintf(err, errlen, "instance '%s' needs an absolute 'dir'", inst->name);
		goto fail;
	}
	if (inst->mac && !inst_mac_ok(inst->mac)) {
		snprintf(err, errlen, "instance '%s': mac '%s' is not like 52:54:00:12:34:56",
			 inst->name, inst->mac);
		goto fail;
	}
	if (inst->seed && !inst->seed[0]) {
		free(inst->seed);
		inst->seed = NULL;
	}
	if (inst->seed && (inst->seed[0] != '/' || !inst_clean(inst->seed))) {
		snprintf(err, errlen, "instance '%s': 'seed' must be an absolute path", inst->name);
		goto fail;
	}
	if ((proto_map_get(map, "cpus") && proto_get_int(map, "cpus", &cpus) < 0) ||
	    (proto_map_get(map, "memory") && proto_get_uint(map, "memory", &memory) < 0) ||
	    (proto_map_get(map, "disk") && proto_get_uint(map, "disk", &disk) < 0)) {
		snprintf(err, errlen, "instance '%s': cpus, memory and disk must be integers", inst->name);
		goto fail;
	}
	if (cpus < 0 || cpus > 1024) {
		snprintf(err, errlen, "instance '%s': %lld cpus is out of range", inst->name,
			 (long long)cpus);
		goto fail;
	}
	inst->cpus = cpus ? cpus : 1;
	inst->memory = memory ? memory : 1ull << 30;
	inst->disk = disk;
	rc = inst_parse_image(map, inst, err, errlen);
	if (rc < 0)
		goto fail;
	rc = inst_parse_mounts(map, inst, err, errlen);
	if (rc < 0)
		goto fail;
	rc = inst_parse_nets(map, inst, err, errlen);
	if (rc < 0)
		goto fail;
	return 0;
fail:
	if (rc == PROTO_E_NOMEM)
		snprintf(err, errlen, "out of memory");
	qh_inst_free(inst);
	return rc;
}

int qh_inst_from_req(struct vmh_req *req, const msgpack_object *params, struct qh_inst *inst)
{
	char err[QH_ERR];
	int rc = qh_inst_parse(proto_map_get(params, "instance"), inst, err, sizeof(err));

	if (rc < 0) {
		vmh_fail(req, rc, "%s", err);
		return rc;
	}
	qh_watch(inst);
	return 0;
}

void qh_inst_free(struct qh_inst *inst)
{
	free(inst->name);
	free(inst->dir);
	free(inst->mac);
	free(inst->seed);
	free(inst->image_disk);
	free(inst->image_format);
	free(inst->image_kernel);
	free(inst->image_initrd);
	free(inst->image_cmdline);
	for (size_t i = 0; i < inst->n_mounts; i++)
		qh_mount_free(&inst->mounts[i]);
	free(inst->mounts);
	for (size_t i = 0; i < inst->n_nets; i++) {
		free(inst->nets[i].name);
		free(inst->nets[i].mode);
		free(inst->nets[i].mac);
	}
	free(inst->nets);
	memset(inst, 0, sizeof(*inst));
}

void qh_path(const struct qh_inst *inst, const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", inst->dir, file);
}

json_t *qh_mounts_json(const struct qh_inst *inst)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < inst->n_mounts; i++)
		json_array_append_new(arr, json_pack("{s:s, s:s?, s:s}", "source",
						     inst->mounts[i].source, "target",
						     inst->mounts[i].target, "tag", inst->mounts[i].tag));
	return arr;
}
