/*
 * The active scope: its folder, its registry, the instance map the helpers
 * receive, and the names some operation is holding.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

/* DATA/scopes/SCOPE/driver: the driver that last had the scope, which
 * `list --all-scopes` shows for a scope that is not active. */
static void scope_note_driver(const char *dir, const char *driver)
{
	char path[4400], text[DRIVER_NAME_MAX + 2], *old = NULL;
	size_t len;
	int rc;

	snprintf(path, sizeof(path), "%s/driver", dir);
	snprintf(text, sizeof(text), "%s\n", driver);
	if (read_file(path, sizeof(text), &old, &len) == 0 && strcmp(old, text) == 0) {
		free(old);
		return;
	}
	free(old);
	rc = atomic_write_file(path, text, strlen(text), 0600);
	if (rc < 0)
		vlog(LOG_WARN_, "cannot write %s: %s", path, proto_strerror(rc));
}

void scope_last_driver(const char *scope, char *buf, size_t len)
{
	char path[4400], *text = NULL;
	size_t n;

	snprintf(path, sizeof(path), "%s/scopes/%s/driver", B->data_dir, scope);
	if (read_file(path, DRIVER_NAME_MAX + 2, &text, &n) == 0) {
		text[strcspn(text, "\n")] = '\0';
		if (driver_name_valid(text)) {
			snprintf(buf, len, "%s", text);
			free(text);
			return;
		}
	}
	free(text);
	/* Never recorded (a scope made before this file was): a scope is
	 * named for the driver that made it. */
	snprintf(buf, len, "%s", scope);
}

int scope_enter(const char *driver, const char *scope, char *err, size_t errlen)
{
	struct registry fresh = {0};
	char path[sizeof(B->registry_path)];
	char dir[sizeof(B->scope_dir)];
	int rc;

	snprintf(dir, sizeof(dir), "%s/scopes/%s", B->data_dir, scope);
	snprintf(path, sizeof(path), "%s/instances.yaml", dir);
	rc = mkdir_p(dir, 0700);
	if (rc < 0) {
		snprintf(err, errlen, "cannot create %s: %s", dir, proto_strerror(rc));
		return rc;
	}
	rc = registry_load_err(path, &fresh, err, errlen);
	if (rc < 0)
		return rc;
	registry_free(&B->reg);
	B->reg = fresh;
	snprintf(B->driver, sizeof(B->driver), "%s", driver);
	snprintf(B->scope, sizeof(B->scope), "%s", scope);
	snprintf(B->scope_dir, sizeof(B->scope_dir), "%s", dir);
	snprintf(B->registry_path, sizeof(B->registry_path), "%s", path);
	B->scope_gen++;
	scope_note_driver(dir, driver);
	vlog(LOG_INFO_, "driver %s, scope %s: %zu instance(s) registered", driver, scope, B->reg.n);
	return 0;
}

int scope_save(void)
{
	int rc = registry_save(B->registry_path, &B->reg);

	if (rc < 0)
		vlog(LOG_ERROR_, "cannot save %s: %s", B->registry_path, proto_strerror(rc));
	return rc;
}

void scope_instance_dir(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/instances/%s", B->scope_dir, name);
}

/* "1000:1000,1001:1001" -> [[1000,1000],[1001,1001]] */
static void scope_pack_idmap(msgpack_packer *pk, const char *map)
{
	size_t n = 0;
	const char *p;

	for (p = map; p && *p; p++)
		if (*p == ':')
			n++;
	msgpack_pack_array(pk, n);
	for (p = map; p && *p && n > 0; n--) {
		char *end;
		long long h = strtoll(p, &end, 10);
		long long g = *end == ':' ? strtoll(end + 1, &end, 10) : 0;

		msgpack_pack_array(pk, 2);
		msgpack_pack_int64(pk, h);
		msgpack_pack_int64(pk, g);
		p = strchr(end, ',');
		if (!p)
			break;
		p++;
	}
}

void scope_pack_instance(msgpack_packer *pk, const struct instance_record *rec)
{
	char dir[4400], seed[4500];
	size_t n_image = 2;

	scope_instance_dir(rec->name, dir, sizeof(dir));
	snprintf(seed, sizeof(seed), "%s/cloud-init.iso", dir);
	msgpack_pack_map(pk, rec->n_mounts ? 10 : 9);
	proto_pack_kv_str(pk, "name", rec->name);
	proto_pack_kv_str(pk, "dir", dir);
	proto_pack_kv_uint(pk, "cpus", rec->cpus);
	proto_pack_kv_uint(pk, "memory", rec->memory);
	proto_pack_kv_uint(pk, "disk", rec->disk);
	proto_pack_kv_str(pk, "mac", rec->mac ? rec->mac : "");
	proto_pack_str(pk, "image");
	n_image += rec->image_kernel != NULL;
	n_image += rec->image_initrd != NULL;
	n_image += rec->image_cmdline != NULL;
	msgpack_pack_map(pk, n_image);
	proto_pack_kv_str(pk, "disk", rec->image_disk ? rec->image_disk : "");
	proto_pack_kv_str(pk, "format", rec->image_format ? rec->image_format : "qcow2");
	if (rec->image_kernel)
		proto_pack_kv_str(pk, "kernel", rec->image_kernel);
	if (rec->image_initrd)
		proto_pack_kv_str(pk, "initrd", rec->image_initrd);
	if (rec->image_cmdline)
		proto_pack_kv_str(pk, "cmdline", rec->image_cmdline);
	proto_pack_kv_str(pk, "seed", seed);
	proto_pack_str(pk, "networks");
	msgpack_pack_array(pk, rec->n_networks);
	for (size_t i = 0; i < rec->n_networks; i++) {
		const struct network_record *net = &rec->networks[i];

		msgpack_pack_map(pk, 3);
		proto_pack_kv_str(pk, "name", net->name ? net->name : "");
		proto_pack_kv_str(pk, "mode", net->mode ? net->mode : "auto");
		proto_pack_kv_str(pk, "mac", net->mac ? net->mac : "");
	}
	if (rec->n_mounts) {
		proto_pack_str(pk, "mounts");
		msgpack_pack_array(pk, rec->n_mounts);
		for (size_t i = 0; i < rec->n_mounts; i++) {
			const struct mount_record *m = &rec->mounts[i];
			char tag[32];

			snprintf(tag, sizeof(tag), "vmctl%zu", i);
			msgpack_pack_map(pk, 5);
			proto_pack_kv_str(pk, "source", m->source);
			proto_pack_kv_str(pk, "target", m->target);
			proto_pack_kv_str(pk, "tag", tag);
			proto_pack_str(pk, "uid_map");
			scope_pack_idmap(pk, m->uid_map);
			proto_pack_str(pk, "gid_map");
			scope_pack_idmap(pk, m->gid_map);
		}
	}
}

void scope_pack_instance_params(msgpack_sbuffer *sb, const struct instance_record *rec,
				size_t n_extra, msgpack_packer *pk_out)
{
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(pk_out, sb, msgpack_sbuffer_write);
	msgpack_pack_map(pk_out, 1 + n_extra);
	proto_pack_str(pk_out, "instance");
	scope_pack_instance(pk_out, rec);
}

struct busy *busy_find(const char *name)
{
	for (struct busy *b = B->busy; b; b = b->next)
		if (strcmp(b->name, name) == 0)
			return b;
	return NULL;
}

int busy_add(const char *name, const char *what)
{
	struct busy *b = calloc(1, sizeof(*b));

	if (!b)
		return PROTO_E_NOMEM;
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->what = what;
	b->next = B->busy;
	B->busy = b;
	return 0;
}

void busy_remove(const char *name)
{
	for (struct busy **pp = &B->busy; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, name) == 0) {
			struct busy *b = *pp;

			*pp = b->next;
			free(b);
			return;
		}
	}
}

bool scope_set_state(struct instance_record *rec, enum proto_state state)
{
	/* helper.c refuses other states; this keeps any from the file. */
	if (!proto_state_from_helper(state) || rec->state == state)
		return false;
	rec->state = state;
	return true;
}

enum proto_state scope_shown_state(const struct instance_record *rec)
{
	if (rec->deleted)
		return PROTO_STATE_DELETED;
	return rec->state;
}
