/*
 * The instance map (docs/protocol.md): the name rule the broker and the
 * helpers share, and the one parser every helper gets.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmproto/vmh.h>

/* Names in messages are cut here so a hostile megabyte never reaches a log. */
#define NAME_SHOWN_MAX 80
#define IFNAME_MAX 15 /* IFNAMSIZ - 1 */

/* ---- names ---- */

static void name_describe_char(unsigned char c, char *buf, size_t len)
{
	if (isprint(c) && c != ' ')
		snprintf(buf, len, "'%c'", c);
	else if (c == ' ')
		snprintf(buf, len, "a space");
	else
		snprintf(buf, len, "byte 0x%02x", c);
}

int proto_check_name_n(const char *name, size_t n, char *err, size_t errlen)
{
	int shown = n > NAME_SHOWN_MAX ? NAME_SHOWN_MAX : (int)n;
	const char *more = n > NAME_SHOWN_MAX ? "..." : "";
	char what[32];

	if (!name || n == 0) {
		snprintf(err, errlen, "instance name must not be empty");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (n > PROTO_NAME_MAX) {
		snprintf(err, errlen,
			 "invalid instance name \"%.*s%s\": names are at most %d characters long "
			 "(this one has %zu)",
			 shown, name, more, PROTO_NAME_MAX, n);
		return PROTO_E_INVALID_ARGUMENT;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c >= 'A' && c <= 'Z' && !memchr(name, '\0', n)) {
			char lower[PROTO_NAME_MAX + 1];

			for (size_t j = 0; j < n; j++)
				lower[j] = (char)tolower((unsigned char)name[j]);
			lower[n] = '\0';
			snprintf(err, errlen,
				 "invalid instance name \"%.*s\": upper case letters are not allowed "
				 "(try \"%s\")",
				 (int)n, name, lower);
			return PROTO_E_INVALID_ARGUMENT;
		}
		if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-') {
			name_describe_char(c, what, sizeof(what));
			snprintf(err, errlen,
				 "invalid instance name \"%.*s\": %s is not allowed; names may contain "
				 "only lower case letters, digits and hyphens",
				 c ? shown : (int)i, name, what);
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	if (!(name[0] >= 'a' && name[0] <= 'z')) {
		snprintf(err, errlen, "invalid instance name \"%.*s\": names must start with a letter",
			 (int)n, name);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (name[n - 1] == '-') {
		snprintf(err, errlen, "invalid instance name \"%.*s\": names must not end with a hyphen",
			 (int)n, name);
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

int proto_check_name(const char *name, char *err, size_t errlen)
{
	return proto_check_name_n(name, name ? strlen(name) : 0, err, errlen);
}

/* ---- reading the map ---- */

/*
 * map[key] copied into *out: NULL when absent, nil or "" (all mean "not
 * set"). PROTO_E_INVALID_ARGUMENT when it is not a string or holds a NUL
 * (which would silently shorten a path), PROTO_E_NOMEM.
 */
static int map_str(const msgpack_object *map, const char *key, char **out)
{
	const msgpack_object *o = proto_map_get(map, key);
	uint32_t n;

	*out = NULL;
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (o->type != MSGPACK_OBJECT_STR)
		return PROTO_E_INVALID_ARGUMENT;
	n = o->via.str.size;
	if (n == 0)
		return 0;
	if (memchr(o->via.str.ptr, '\0', n))
		return PROTO_E_INVALID_ARGUMENT;
	*out = strndup(o->via.str.ptr, n);
	return *out ? 0 : PROTO_E_NOMEM;
}

/* map[key] as a count: *out stays as it is when absent, nil or 0. */
static int map_count(const msgpack_object *map, const char *key, uint64_t *out)
{
	uint64_t v;
	int rc = proto_get_uint(map, key, &v);

	if (rc == PROTO_E_NOT_FOUND)
		return 0;
	if (rc < 0)
		return rc;
	if (v)
		*out = v;
	return 0;
}

/* Strings that reach a command line, a file name or XML: no control characters. */
static bool str_clean(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* An absolute path that fits, or NULL (when optional). */
static bool path_ok(const char *p, size_t max)
{
	return !p || (p[0] == '/' && strlen(p) <= max && str_clean(p));
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Six hex pairs joined by ':', unicast (the first octet's low bit clear). */
static bool mac_ok(const char *mac)
{
	if (!mac || strlen(mac) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? mac[i] != ':' : hexval(mac[i]) < 0)
			return false;
	}
	return (hexval(mac[1]) & 1) == 0;
}

/* A Linux interface name: 1-15 bytes, no '/', ':' or white space, not . or .. */
static bool ifname_ok(const char *name)
{
	if (!name || strlen(name) > IFNAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (const char *p = name; *p; p++)
		if (*p == '/' || *p == ':' || isspace((unsigned char)*p) || (unsigned char)*p < 0x20)
			return false;
	return true;
}

/* "uid_map"/"gid_map" of a mount: [[HOST, GUEST]...], ids up to 2^32 - 2
 * ((uid_t)-1 is no id). */
static int idmap_parse(const msgpack_object *mount, const char *key, struct vmh_idpair **out,
		       size_t *n, char *err, size_t errlen)
{
	const msgpack_object *arr = proto_map_get(mount, key);
	uint32_t size;

	*out = NULL;
	*n = 0;
	if (!arr || arr->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (arr->type != MSGPACK_OBJECT_ARRAY)
		goto out_bad;
	size = arr->via.array.size;
	if (size == 0)
		return 0;
	*out = calloc(size, sizeof(**out));
	if (!*out) {
		snprintf(err, errlen, "out of memory");
		return PROTO_E_NOMEM;
	}
	for (uint32_t i = 0; i < size; i++) {
		struct vmh_idpair *p = &(*out)[i];

		if (proto_obj_u32_pair(&arr->via.array.ptr[i], &p->host, &p->guest) < 0)
			goto out_free;
		if (p->host == UINT32_MAX || p->guest == UINT32_MAX) {
			snprintf(err, errlen, "'%s': ids go from 0 to %u", key, UINT32_MAX - 1);
			free(*out);
			*out = NULL;
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	*n = size;
	return 0;
out_free:
	free(*out);
	*out = NULL;
out_bad:
	snprintf(err, errlen, "'%s' must be a list of [HOST, GUEST]", key);
	return PROTO_E_INVALID_ARGUMENT;
}

void vmh_mount_free(struct vmh_mount *m)
{
	free(m->source);
	free(m->target);
	free(m->tag);
	free(m->uid_map);
	free(m->gid_map);
	memset(m, 0, sizeof(*m));
}

int vmh_mount_parse(const msgpack_object *map, struct vmh_mount *m, char *err, size_t errlen)
{
	int rc;

	memset(m, 0, sizeof(*m));
	if (!map || map->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "a mount must be a map");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if ((rc = map_str(map, "source", &m->source)) < 0 ||
	    (rc = map_str(map, "target", &m->target)) < 0 || (rc = map_str(map, "tag", &m->tag)) < 0) {
		if (rc == PROTO_E_NOMEM)
			goto out_nomem;
		snprintf(err, errlen, "a mount's source, target and tag must be strings");
		goto out_free;
	}
	rc = PROTO_E_INVALID_ARGUMENT;
	if (!m->source || !path_ok(m->source, PROTO_PATH_MAX)) {
		snprintf(err, errlen, "a mount needs an absolute 'source' folder");
		goto out_free;
	}
	if (!str_clean(m->target) || !str_clean(m->tag)) {
		snprintf(err, errlen, "the mount of %s has control characters in its target or tag",
			 m->source);
		goto out_free;
	}
	rc = idmap_parse(map, "uid_map", &m->uid_map, &m->n_uid_map, err, errlen);
	if (rc == 0)
		rc = idmap_parse(map, "gid_map", &m->gid_map, &m->n_gid_map, err, errlen);
	if (rc < 0)
		goto out_free;
	return 0;
out_nomem:
	snprintf(err, errlen, "out of memory");
out_free:
	vmh_mount_free(m);
	return rc;
}

/* An array member of the map: NULL (and 0) when absent or nil. */
static int map_array(const msgpack_object *map, const char *key, const msgpack_object **arr,
		     char *err, size_t errlen)
{
	const msgpack_object *o = proto_map_get(map, key);

	*arr = NULL;
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (o->type != MSGPACK_OBJECT_ARRAY) {
		snprintf(err, errlen, "'%s' must be an array", key);
		return PROTO_E_INVALID_ARGUMENT;
	}
	*arr = o;
	return 0;
}

static int inst_parse_mounts(const msgpack_object *map, struct vmh_instance *inst, char *err,
			     size_t errlen)
{
	const msgpack_object *arr;
	int rc = map_array(map, "mounts", &arr, err, errlen);

	if (rc < 0 || !arr || arr->via.array.size == 0)
		return rc;
	inst->mounts = calloc(arr->via.array.size, sizeof(*inst->mounts));
	if (!inst->mounts)
		return PROTO_E_NOMEM;
	for (uint32_t i = 0; i < arr->via.array.size; i++) {
		rc = vmh_mount_parse(&arr->via.array.ptr[i], &inst->mounts[i], err, errlen);
		if (rc < 0)
			return rc;
		inst->n_mounts++;
	}
	return 0;
}

static int inst_parse_networks(const msgpack_object *map, struct vmh_instance *inst, char *err,
			       size_t errlen)
{
	const msgpack_object *arr;
	int rc = map_array(map, "networks", &arr, err, errlen);

	if (rc < 0 || !arr || arr->via.array.size == 0)
		return rc;
	if (arr->via.array.size > PROTO_NETWORKS_MAX) {
		snprintf(err, errlen, "instance '%s' has %u extra networks; at most %d are possible",
			 inst->name, arr->via.array.size, PROTO_NETWORKS_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	inst->networks = calloc(arr->via.array.size, sizeof(*inst->networks));
	if (!inst->networks)
		return PROTO_E_NOMEM;
	for (uint32_t i = 0; i < arr->via.array.size; i++) {
		const msgpack_object *n = &arr->via.array.ptr[i];
		struct vmh_network *net = &inst->networks[i];

		inst->n_networks++;
		rc = n->type == MSGPACK_OBJECT_MAP ? 0 : PROTO_E_INVALID_ARGUMENT;
		if (rc == 0 && (rc = map_str(n, "name", &net->name)) == 0 &&
		    (rc = map_str(n, "mode", &net->mode)) == 0)
			rc = map_str(n, "mac", &net->mac);
		if (rc == 0 && !net->mode && !(net->mode = strdup("auto")))
			rc = PROTO_E_NOMEM;
		if (rc == PROTO_E_NOMEM)
			return rc;
		if (rc < 0 || !net->name || !ifname_ok(net->name) || !mac_ok(net->mac)) {
			snprintf(err, errlen,
				 "an extra network needs an interface 'name' and a 'mac' like "
				 "52:54:00:12:34:56");
			return PROTO_E_INVALID_ARGUMENT;
		}
		if (strcmp(net->mode, "auto") && strcmp(net->mode, "manual")) {
			snprintf(err, errlen, "the mode of network %s is '%s', neither auto nor manual",
				 net->name, net->mode);
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	return 0;
}

static int inst_parse_image(const msgpack_object *map, struct vmh_instance *inst, char *err,
			    size_t errlen)
{
	const msgpack_object *img = proto_map_get(map, "image");
	struct vmh_image *im = &inst->image;
	int rc;

	if (!img || img->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "instance '%s' has no 'image' map", inst->name);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if ((rc = map_str(img, "disk", &im->disk)) < 0 ||
	    (rc = map_str(img, "format", &im->format)) < 0 ||
	    (rc = map_str(img, "kernel", &im->kernel)) < 0 ||
	    (rc = map_str(img, "initrd", &im->initrd)) < 0 ||
	    (rc = map_str(img, "cmdline", &im->cmdline)) < 0) {
		if (rc == PROTO_E_INVALID_ARGUMENT)
			snprintf(err, errlen,
				 "the image's disk, format, kernel, initrd and cmdline must be strings");
		return rc;
	}
	if (!path_ok(im->disk, PROTO_PATH_MAX)) {
		snprintf(err, errlen, "the image's 'disk' must be an absolute path");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!im->format && !(im->format = strdup("qcow2")))
		return PROTO_E_NOMEM;
	if (strcmp(im->format, "qcow2") && strcmp(im->format, "raw") && strcmp(im->format, "lxd")) {
		snprintf(err, errlen, "image format '%s' is not qcow2, raw or lxd", im->format);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!path_ok(im->kernel, PROTO_PATH_MAX) || !path_ok(im->initrd, PROTO_PATH_MAX)) {
		snprintf(err, errlen, "the image's kernel and initrd must be absolute paths");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (im->initrd && !im->kernel) {
		snprintf(err, errlen, "the image has an initrd but no kernel");
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

/* name, dir, mac, seed, cpus, memory, disk. */
static int inst_parse_top(const msgpack_object *map, struct vmh_instance *inst, char *err,
			  size_t errlen)
{
	uint64_t cpus = 1;
	int rc;

	rc = map_str(map, "name", &inst->name);
	if (rc == PROTO_E_NOMEM)
		return rc;
	if (rc < 0 || !inst->name) {
		snprintf(err, errlen, "the instance map needs a 'name'");
		return PROTO_E_INVALID_ARGUMENT;
	}
	rc = proto_check_name(inst->name, err, errlen);
	if (rc < 0)
		return rc;
	if ((rc = map_str(map, "dir", &inst->dir)) < 0 || (rc = map_str(map, "mac", &inst->mac)) < 0 ||
	    (rc = map_str(map, "seed", &inst->seed)) < 0) {
		if (rc == PROTO_E_INVALID_ARGUMENT)
			snprintf(err, errlen, "instance '%s': dir, mac and seed must be strings",
				 inst->name);
		return rc;
	}
	/* A daemonized qemu changes to /: every path must be absolute. */
	if (!inst->dir || !path_ok(inst->dir, PROTO_DIR_MAX)) {
		snprintf(err, errlen, "instance '%s' needs an absolute 'dir' of at most %d bytes",
			 inst->name, PROTO_DIR_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (inst->mac && !mac_ok(inst->mac)) {
		snprintf(err, errlen, "instance '%s': mac '%s' is not a unicast MAC like 52:54:00:12:34:56",
			 inst->name, str_clean(inst->mac) ? inst->mac : "?");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!path_ok(inst->seed, PROTO_PATH_MAX)) {
		snprintf(err, errlen, "instance '%s': 'seed' must be an absolute path", inst->name);
		return PROTO_E_INVALID_ARGUMENT;
	}
	inst->memory = PROTO_MEMORY_DEFAULT;
	if (map_count(map, "cpus", &cpus) < 0 || map_count(map, "memory", &inst->memory) < 0 ||
	    map_count(map, "disk", &inst->disk) < 0) {
		snprintf(err, errlen, "instance '%s': cpus, memory and disk must be whole numbers "
			 "(memory and disk in bytes)", inst->name);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (cpus > PROTO_CPUS_MAX) {
		snprintf(err, errlen, "instance '%s': %llu cpus is out of range (1 to %d)", inst->name,
			 (unsigned long long)cpus, PROTO_CPUS_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	inst->cpus = (unsigned)cpus;
	if (inst->memory < PROTO_MEMORY_MIN) {
		snprintf(err, errlen, "instance '%s': %llu bytes of memory is below the minimum of %llu "
			 "MiB", inst->name, (unsigned long long)inst->memory,
			 (unsigned long long)(PROTO_MEMORY_MIN >> 20));
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

int vmh_instance_parse(const msgpack_object *map, struct vmh_instance *inst, char *err,
		       size_t errlen)
{
	int rc;

	memset(inst, 0, sizeof(*inst));
	if (!map || map->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "the request has no instance map");
		return PROTO_E_INVALID_ARGUMENT;
	}
	rc = inst_parse_top(map, inst, err, errlen);
	if (rc == 0)
		rc = inst_parse_image(map, inst, err, errlen);
	if (rc == 0)
		rc = inst_parse_mounts(map, inst, err, errlen);
	if (rc == 0)
		rc = inst_parse_networks(map, inst, err, errlen);
	if (rc < 0) {
		if (rc == PROTO_E_NOMEM)
			snprintf(err, errlen, "out of memory");
		vmh_instance_free(inst);
	}
	return rc;
}

int vmh_instance_from_req(struct vmh_req *req, const msgpack_object *params, const char *key,
			  struct vmh_instance *inst)
{
	char err[1024];
	int rc = vmh_instance_parse(proto_map_get(params, key), inst, err, sizeof(err));

	if (rc < 0 && !strcmp(key, "instance"))
		vmh_fail(req, rc, "%s", err);
	else if (rc < 0)
		vmh_fail(req, rc, "%s: %s", key, err);
	return rc;
}

void vmh_instance_free(struct vmh_instance *inst)
{
	free(inst->name);
	free(inst->dir);
	free(inst->mac);
	free(inst->seed);
	free(inst->image.disk);
	free(inst->image.format);
	free(inst->image.kernel);
	free(inst->image.initrd);
	free(inst->image.cmdline);
	for (size_t i = 0; i < inst->n_mounts; i++)
		vmh_mount_free(&inst->mounts[i]);
	free(inst->mounts);
	for (size_t i = 0; i < inst->n_networks; i++) {
		free(inst->networks[i].name);
		free(inst->networks[i].mode);
		free(inst->networks[i].mac);
	}
	free(inst->networks);
	memset(inst, 0, sizeof(*inst));
}

int vmh_instance_file(const struct vmh_instance *inst, const char *file, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", inst->dir, file);

	return n < 0 || (size_t)n >= len ? PROTO_E_INVALID_ARGUMENT : 0;
}
