/*
 * get / set / keys, for every key: the global settings, where setting
 * local.driver switches drivers and setting a key of the active driver
 * restarts its helper (switch.c); an instance's local.NAME.cpus|memory|disk
 * (changed by op-resize.c); a snapshot's local.NAME.SNAPSHOT.name|comment
 * (op-snapshot.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "image.h"

int config_load(char *err, size_t errlen)
{
	snprintf(B->settings_path, sizeof(B->settings_path), "%s/settings.yaml", B->data_dir);
	return settings_load_err(B->settings_path, &B->settings, err, errlen);
}

static bool config_known_key(const char *key)
{
	const char *const *keys = settings_known_keys();

	for (size_t i = 0; keys && keys[i]; i++)
		if (strcmp(keys[i], key) == 0)
			return true;
	return false;
}

static void config_reply_value(struct creq *r, const char *value)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "value", value);
	creq_ok(r, &sb);
	msgpack_sbuffer_destroy(&sb);
}

void op_get(struct creq *r, const msgpack_object *p)
{
	char key[256], name[INSTANCE_NAME_MAX + 1], snap[64], prop[16], value[64];
	const char *v;

	if (proto_get_str(p, "key", key, sizeof(key)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "get needs a key (vmctl get --keys lists them)");
		return;
	}
	if (strcmp(key, "local.driver") == 0) {
		config_reply_value(r, B->driver);
		return;
	}
	if (strcmp(key, "local.passphrase") == 0) {
		/* Only whether there is one: the hash stays in settings.yaml. */
		config_reply_value(r, auth_passphrase_set() ? "set" : "");
		return;
	}
	if (config_known_key(key)) {
		v = settings_get(&B->settings, key);
		config_reply_value(r, v ? v : "");
		return;
	}
	if (util_instance_key(key, name, sizeof(name), prop, sizeof(prop)) == 0) {
		struct instance_record *rec = registry_find(&B->reg, name);

		if (!rec) {
			creq_fail(r, PROTO_E_NOT_FOUND, "instance \"%s\" does not exist (driver %s, scope %s)",
				  name, B->driver, B->scope);
			return;
		}
		if (strcmp(prop, "cpus") == 0)
			snprintf(value, sizeof(value), "%u", rec->cpus);
		else
			format_size(strcmp(prop, "memory") == 0 ? rec->memory : rec->disk, value,
				    sizeof(value));
		config_reply_value(r, value);
		return;
	}
	if (snapshot_setting_key(key, name, sizeof(name), snap, sizeof(snap), prop, sizeof(prop)) == 0) {
		snapshot_setting_get(r, name, snap, prop);
		return;
	}
	creq_fail(r, PROTO_E_INVALID_ARGUMENT, "unknown setting %s (vmctl get --keys lists them)", key);
}

void op_keys(struct creq *r, const msgpack_object *p)
{
	const char *const *keys = settings_known_keys();
	static const char *const props[] = {"cpus", "disk", "memory"};
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n = 0, live = 0;

	for (size_t i = 0; keys && keys[i]; i++)
		n++;
	for (size_t i = 0; i < B->reg.n; i++)
		if (!B->reg.v[i].deleted)
			live++;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "keys");
	msgpack_pack_array(&pk, n + 3 * live);
	for (size_t i = 0; i < n; i++)
		proto_pack_str(&pk, keys[i]);
	for (size_t i = 0; i < B->reg.n; i++) {
		if (B->reg.v[i].deleted)
			continue;
		for (size_t j = 0; j < 3; j++) {
			char key[128];

			snprintf(key, sizeof(key), "local.%s.%s", B->reg.v[i].name, props[j]);
			proto_pack_str(&pk, key);
		}
	}
	creq_ok(r, &sb);
	msgpack_sbuffer_destroy(&sb);
}

/* "local.qemu.accel" while qemu is active: the helper got its settings in
 * hello, so it must be restarted to see the new value. */
static bool config_is_driver_key(const char *key)
{
	size_t n = strlen(B->driver);

	return strncmp(key, "local.", 6) == 0 && strncmp(key + 6, B->driver, n) == 0 &&
	       key[6 + n] == '.';
}

void op_set(struct creq *r, const msgpack_object *p)
{
	char key[256], value[4096], err[1024], name[INSTANCE_NAME_MAX + 1], snap[64], prop[16];
	int rc;

	if (proto_get_str(p, "key", key, sizeof(key)) < 0 ||
	    proto_get_str(p, "value", value, sizeof(value)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "set needs a key and a value (KEY=VALUE)");
		return;
	}
	if (strcmp(key, "local.driver") == 0) {
		switch_driver(r, value);
		return;
	}
	if (!config_known_key(key)) {
		if (util_instance_key(key, name, sizeof(name), prop, sizeof(prop)) == 0) {
			resize_set(r, name, prop, value);
			return;
		}
		if (snapshot_setting_key(key, name, sizeof(name), snap, sizeof(snap), prop,
					 sizeof(prop)) == 0) {
			snapshot_setting_set(r, name, snap, prop);
			return;
		}
	}
	if (strcmp(key, "local.passphrase") == 0 && value[0] != '\0') {
		char hash[256];

		rc = auth_hash(value, hash, sizeof(hash), err, sizeof(err));
		explicit_bzero(value, sizeof(value));
		if (rc < 0) {
			creq_fail(r, rc, "%s", err);
			return;
		}
		snprintf(value, sizeof(value), "%s", hash);
	}
	/* Refused with what settings_set() says of an unknown key. */
	rc = settings_set(&B->settings, key, value, err, sizeof(err));
	if (rc < 0) {
		creq_fail(r, rc, "%s", err);
		return;
	}
	rc = settings_save(B->settings_path, &B->settings);
	if (rc < 0) {
		creq_fail(r, rc, "could not save %s: %s", B->settings_path, proto_strerror(rc));
		return;
	}
	if (strcmp(key, "local.image.mirror") == 0)
		image_cache_set_mirror(B->images, value);
	if (strcmp(key, "local.passphrase") == 0) {
		/* A new passphrase (or none): who gave the old one is let in no more. */
		auth_forget_all();
		client_socket_mode();
	}
	if (config_is_driver_key(key)) {
		switch_restart_helper(r, key);
		return;
	}
	creq_ok(r, NULL);
}
