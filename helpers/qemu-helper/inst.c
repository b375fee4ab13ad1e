/*
 * The instance map that every instance.* request carries: the SDK parses
 * and checks it (vmh_instance_parse); what is left here is qemu's own.
 */
#include <stdio.h>
#include <string.h>

#include "qh.h"

/* virtio-9p tags are limited by the guest driver's config space. */
#define QH_TAG_MAX 31

int qh_mount_check(const struct vmh_mount *m, char *err, size_t errlen)
{
	if (!m->tag) {
		snprintf(err, errlen, "the mount of %s needs a 'tag'", m->source);
		return PROTO_E_INVALID_ARGUMENT;
	}
	/* ',' and '=' would end qemu's -virtfs option, ' ' the guest's mount options. */
	if (strlen(m->tag) > QH_TAG_MAX || strpbrk(m->tag, ",= ")) {
		snprintf(err, errlen, "mount tag '%s' is longer than %d or has ',', '=' or ' '",
			 m->tag, QH_TAG_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (m->n_uid_map > QH_IDMAP_MAX || m->n_gid_map > QH_IDMAP_MAX) {
		snprintf(err, errlen, "'%s' has %zu entries; at most %d are supported",
			 m->n_uid_map > QH_IDMAP_MAX ? "uid_map" : "gid_map",
			 m->n_uid_map > QH_IDMAP_MAX ? m->n_uid_map : m->n_gid_map, QH_IDMAP_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

int qh_mount_parse(const msgpack_object *map, struct vmh_mount *m, char *err, size_t errlen)
{
	int rc = vmh_mount_parse(map, m, err, errlen);

	if (rc == 0 && (rc = qh_mount_check(m, err, errlen)) < 0)
		vmh_mount_free(m);
	return rc;
}

static int qh_inst_check(const struct vmh_instance *inst, char *err, size_t errlen)
{
	for (size_t i = 0; i < inst->n_mounts; i++) {
		int rc = qh_mount_check(&inst->mounts[i], err, errlen);

		if (rc < 0)
			return rc;
	}
	/* They reach -netdev bridge,br=NAME unescaped. */
	for (size_t i = 0; i < inst->n_networks; i++) {
		if (strpbrk(inst->networks[i].name, ",=")) {
			snprintf(err, errlen, "network name '%s' has ',' or '='",
				 inst->networks[i].name);
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	return 0;
}

int qh_inst_parse(const msgpack_object *map, struct vmh_instance *inst, char *err, size_t errlen)
{
	int rc = vmh_instance_parse(map, inst, err, errlen);

	if (rc == 0 && (rc = qh_inst_check(inst, err, errlen)) < 0)
		vmh_instance_free(inst);
	return rc;
}

int qh_inst_from_req(struct vmh_req *req, const msgpack_object *params, struct vmh_instance *inst)
{
	char err[QH_ERR];
	int rc = vmh_instance_from_req(req, params, "instance", inst);

	if (rc < 0)
		return rc;
	rc = qh_inst_check(inst, err, sizeof(err));
	if (rc < 0) {
		vmh_fail(req, rc, "%s", err);
		vmh_instance_free(inst);
		return rc;
	}
	qh_watch(inst);
	return 0;
}

void qh_path(const struct vmh_instance *inst, const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", inst->dir, file);
}
