/* The instance registry of one scope (scopes/<scope>/instances.yaml). */
#include "vmcommon.h"
#include "yamlio.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <vmproto/proto.h>

/* Far above any real registry; keeps a hostile file from eating memory. */
#define REGISTRY_FILE_MAX (64u << 20)
#define REGISTRY_STRING_MAX (64u << 10)

/* REGISTRY_STATE: an enum proto_state, in the file by its name. */
enum registry_type { REGISTRY_STR, REGISTRY_STATE, REGISTRY_U32, REGISTRY_U64, REGISTRY_BOOL };

/* A value check: 0, or PROTO_E_INVALID_ARGUMENT with why set ("must be ..."). */
typedef int (*registry_check_fn)(const char *value, char *why, size_t whylen);

struct registry_field {
	const char *name;
	enum registry_type type;
	size_t offset;
	/* Needed to run the instance: a record without it was cut short or
	 * written wrong by hand, and is refused rather than loaded with zeros. */
	bool required;
	uint64_t min; /* numbers */
	uint64_t max;
	registry_check_fn check; /* strings; NULL: any text */
	/* A state that is not required: the bool of struct instance_record
	 * that says whether it is set. */
	size_t set_offset;
};

static int registry_check_path(const char *value, char *why, size_t whylen);
static int registry_check_format(const char *value, char *why, size_t whylen);
static int registry_check_sha256(const char *value, char *why, size_t whylen);
static int registry_check_mac(const char *value, char *why, size_t whylen);

#define REGISTRY_STRING(n, req, check) \
	{ #n, REGISTRY_STR, offsetof(struct instance_record, n), req, 0, 0, check, 0 }
#define REGISTRY_STATE_FIELD(n, req, set) \
	{ #n, REGISTRY_STATE, offsetof(struct instance_record, n), req, 0, 0, NULL, set }
#define REGISTRY_NUMBER(n, t, min, max) \
	{ #n, t, offsetof(struct instance_record, n), true, min, max, NULL, 0 }
/* The order here is the order in the file, except that the mounts and
 * networks lists come before the last field (registry_write_record). */
static const struct registry_field registry_fields[] = {
	REGISTRY_STATE_FIELD(state, true, 0),
	REGISTRY_STATE_FIELD(switch_state, false, offsetof(struct instance_record, has_switch_state)),
	REGISTRY_STRING(image, false, NULL),
	REGISTRY_STRING(image_disk, true, registry_check_path),
	REGISTRY_STRING(image_format, true, registry_check_format),
	REGISTRY_STRING(image_kernel, false, registry_check_path),
	REGISTRY_STRING(image_initrd, false, registry_check_path),
	REGISTRY_STRING(image_cmdline, false, NULL),
	REGISTRY_STRING(image_sha256, false, registry_check_sha256),
	REGISTRY_STRING(mac, true, registry_check_mac),
	REGISTRY_STRING(created, false, NULL),
	REGISTRY_NUMBER(cpus, REGISTRY_U32, 1, MAX_CPUS),
	REGISTRY_NUMBER(memory, REGISTRY_U64, MIN_MEMORY, UINT64_MAX),
	REGISTRY_NUMBER(disk, REGISTRY_U64, MIN_DISK, UINT64_MAX),
	/* Always written, required and written last: a file cut anywhere in
	 * its last record lacks it, so it is refused instead of loaded short. */
	{ "deleted", REGISTRY_BOOL, offsetof(struct instance_record, deleted), true, 0, 0, NULL, 0 },
};
#define REGISTRY_N_FIELDS (sizeof(registry_fields) / sizeof(registry_fields[0]))

struct registry_str_field {
	const char *name;
	size_t offset;
};

static const struct registry_str_field registry_mount_fields[] = {
	{ "source", offsetof(struct mount_record, source) },
	{ "target", offsetof(struct mount_record, target) },
	{ "uid_map", offsetof(struct mount_record, uid_map) },
	{ "gid_map", offsetof(struct mount_record, gid_map) },
};
#define REGISTRY_N_MOUNT_FIELDS (sizeof(registry_mount_fields) / sizeof(registry_mount_fields[0]))

static const struct registry_str_field registry_network_fields[] = {
	{ "name", offsetof(struct network_record, name) },
	{ "mode", offsetof(struct network_record, mode) },
	{ "mac", offsetof(struct network_record, mac) },
};
#define REGISTRY_N_NETWORK_FIELDS (sizeof(registry_network_fields) / sizeof(registry_network_fields[0]))

int record_set(char **field, const char *value)
{
	char *copy = NULL;

	if (value) {
		copy = strdup(value);
		if (!copy)
			return PROTO_E_NOMEM;
	}
	free(*field);
	*field = copy;
	return 0;
}

static void registry_mount_free(struct mount_record *m)
{
	free(m->source);
	free(m->target);
	free(m->uid_map);
	free(m->gid_map);
}

void network_records_free(struct network_record *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].mode);
		free(v[i].mac);
	}
	free(v);
}

void record_free(struct instance_record *rec)
{
	if (!rec)
		return;
	free(rec->name);
	for (size_t i = 0; i < REGISTRY_N_FIELDS; i++)
		if (registry_fields[i].type == REGISTRY_STR)
			free(*(char **)((char *)rec + registry_fields[i].offset));
	for (size_t i = 0; i < rec->n_mounts; i++)
		registry_mount_free(&rec->mounts[i]);
	free(rec->mounts);
	for (size_t i = 0; i < rec->n_classic_mounts; i++)
		registry_mount_free(&rec->classic_mounts[i]);
	free(rec->classic_mounts);
	network_records_free(rec->networks, rec->n_networks);
	memset(rec, 0, sizeof(*rec));
}

struct instance_record *registry_find(struct registry *r, const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->v[i].name, name))
			return &r->v[i];
	return NULL;
}

struct instance_record *registry_add(struct registry *r, const char *name)
{
	struct instance_record *rec;
	char *copy;

	if (!name)
		return NULL;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct instance_record *grown = realloc(r->v, cap * sizeof(*grown));

		if (!grown)
			return NULL;
		r->v = grown;
		r->cap = cap;
	}
	copy = strdup(name);
	if (!copy)
		return NULL;
	rec = &r->v[r->n++];
	memset(rec, 0, sizeof(*rec));
	rec->name = copy;
	return rec;
}

int registry_remove(struct registry *r, const char *name)
{
	struct instance_record *rec = registry_find(r, name);
	size_t i;

	if (!rec)
		return PROTO_E_NOT_FOUND;
	i = (size_t)(rec - r->v);
	record_free(rec);
	memmove(&r->v[i], &r->v[i + 1], (r->n - i - 1) * sizeof(*r->v));
	r->n--;
	return 0;
}

void registry_free(struct registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		record_free(&r->v[i]);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* ---- loading ---- */

struct registry_seen {
	const char *name; /* points into the registry */
	size_t index; /* keeps the sort stable */
};

static int registry_take_string(struct yio_reader *rd, const char *what, char **field)
{
	size_t len = rd->ev.data.scalar.length;

	if (len > REGISTRY_STRING_MAX)
		return yio_fail(rd, "%s is longer than %u bytes", what, REGISTRY_STRING_MAX);
	if (strlen(yio_scalar(rd)) != len)
		return yio_fail(rd, "%s contains a NUL character", what);
	if (yio_scalar_is_null(rd))
		return record_set(field, NULL) < 0 ? yio_fail(rd, "out of memory") : 0;
	return record_set(field, yio_scalar(rd)) < 0 ? yio_fail(rd, "out of memory") : 0;
}

static int registry_take_number(struct yio_reader *rd, const struct registry_field *f, uint64_t *out)
{
	const char *text = yio_scalar(rd);
	char *end;
	unsigned long long v;

	if (*text < '0' || *text > '9')
		goto out_invalid;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (*end || errno == ERANGE || v < f->min || v > f->max)
		goto out_invalid;
	*out = v;
	return 0;

out_invalid:
	return yio_fail(rd, "%s must be a whole number from %" PRIu64 " to %" PRIu64 ", not \"%.40s\"",
			f->name, f->min, f->max, text);
}

/* A state a helper may report: the broker's own two (deleted, delayed
 * shutdown) are kept in other fields and never stored here. */
static int registry_check_state(const char *value, enum proto_state *out, char *why, size_t whylen)
{
	if (proto_state_from_name(value, out) == 0 && proto_state_from_helper(*out))
		return 0;
	snprintf(why, whylen, "must be one of running, stopped, suspended, starting, restarting, "
			      "suspending, stopping, unknown");
	return PROTO_E_INVALID_ARGUMENT;
}

static int registry_check_path(const char *value, char *why, size_t whylen)
{
	if (value[0] == '/' && !strpbrk(value, "\n\r"))
		return 0;
	snprintf(why, whylen, "must be an absolute path");
	return PROTO_E_INVALID_ARGUMENT;
}

static int registry_check_format(const char *value, char *why, size_t whylen)
{
	if (!strcmp(value, "qcow2") || !strcmp(value, "raw") || !strcmp(value, "lxd"))
		return 0;
	snprintf(why, whylen, "must be qcow2, raw or lxd");
	return PROTO_E_INVALID_ARGUMENT;
}

static int registry_check_sha256(const char *value, char *why, size_t whylen)
{
	size_t n = strspn(value, "0123456789abcdef");

	if (n == 64 && value[n] == '\0')
		return 0;
	snprintf(why, whylen, "must be 64 lower-case hex digits");
	return PROTO_E_INVALID_ARGUMENT;
}

static int registry_check_mac(const char *value, char *why, size_t whylen)
{
	char msg[256];

	if (validate_mac(value, msg, sizeof(msg)) == 0)
		return 0;
	snprintf(why, whylen, "must be a unicast MAC address like 52:54:00:12:34:56");
	return PROTO_E_INVALID_ARGUMENT;
}

static int registry_take_state(struct yio_reader *rd, struct instance_record *rec,
			       const struct registry_field *f)
{
	enum proto_state *at = (enum proto_state *)((char *)rec + f->offset);
	char *name = NULL, why[160], shown[200];
	int rc;

	if ((rc = registry_take_string(rd, f->name, &name)) < 0)
		return rc;
	if (!name && f->required)
		return yio_fail(rd, "%s of instance \"%s\" must not be empty", f->name, rec->name);
	if (!name) {
		*(bool *)((char *)rec + f->set_offset) = false;
		return 0;
	}
	if (registry_check_state(name, at, why, sizeof(why)) < 0) {
		shown_text(name, strlen(name), shown, sizeof(shown));
		free(name);
		return yio_fail(rd, "%s of instance \"%s\" %s, not \"%s\"", f->name, rec->name, why, shown);
	}
	free(name);
	if (!f->required)
		*(bool *)((char *)rec + f->set_offset) = true;
	return 0;
}

static int registry_take_field(struct yio_reader *rd, struct instance_record *rec,
			       const struct registry_field *f)
{
	void *at = (char *)rec + f->offset;
	char why[160], shown[200];
	uint64_t v = 0;
	int rc;

	if (!yio_is_scalar(rd))
		return yio_fail(rd, "%s of instance \"%s\" must be a single value, not a list or mapping", f->name,
				rec->name);
	switch (f->type) {
	case REGISTRY_STR:
		if ((rc = registry_take_string(rd, f->name, (char **)at)) < 0)
			return rc;
		if (!*(char **)at && f->required)
			return yio_fail(rd, "%s of instance \"%s\" must not be empty", f->name, rec->name);
		if (*(char **)at && f->check && f->check(*(char **)at, why, sizeof(why)) < 0) {
			shown_text(*(char **)at, strlen(*(char **)at), shown, sizeof(shown));
			return yio_fail(rd, "%s of instance \"%s\" %s, not \"%s\"", f->name, rec->name, why,
					shown);
		}
		return 0;
	case REGISTRY_STATE:
		return registry_take_state(rd, rec, f);
	case REGISTRY_U32:
		if ((rc = registry_take_number(rd, f, &v)) < 0)
			return rc;
		*(uint32_t *)at = (uint32_t)v;
		return 0;
	case REGISTRY_U64:
		if ((rc = registry_take_number(rd, f, &v)) < 0)
			return rc;
		*(uint64_t *)at = v;
		return 0;
	case REGISTRY_BOOL:
		if (!strcasecmp(yio_scalar(rd), "true"))
			*(bool *)at = true;
		else if (!strcasecmp(yio_scalar(rd), "false"))
			*(bool *)at = false;
		else
			return yio_fail(rd, "%s must be true or false, not \"%.40s\"", f->name, yio_scalar(rd));
		return 0;
	}
	return yio_fail(rd, "internal error: unknown field type");
}

/* A list of records made of strings only (mounts, networks). */
struct registry_list {
	const char *what;    /* "mount": in messages, "mounts" for the list */
	const char *allowed; /* the field names, for messages */
	const struct registry_str_field *fields;
	size_t n_fields;
	size_t size;         /* of one element */
	size_t v_off, n_off; /* of the array and its count in struct instance_record */
	unsigned bit;        /* in the parser's set of lists seen */
	/* Checks a complete element; NULL when any set of fields will do. */
	int (*check)(struct yio_reader *rd, const struct instance_record *rec, void *elem);
};

/* A new zeroed element at the end of *v; capacity is implied: it doubles
 * whenever the count reaches a power of two. */
static void *registry_list_grow(void **v, size_t *n, size_t size)
{
	char *grown;

	if ((*n & (*n - 1)) == 0) {
		size_t cap = *n ? *n * 2 : 1;

		grown = realloc(*v, cap * size);
		if (!grown)
			return NULL;
		*v = grown;
	}
	grown = (char *)*v + (*n)++ * size;
	memset(grown, 0, size);
	return grown;
}

static int registry_parse_element(struct yio_reader *rd, const struct instance_record *rec,
				  const struct registry_list *l, void *elem)
{
	unsigned seen = 0;
	int rc;

	for (;;) {
		size_t i;

		if ((rc = yio_next(rd)) < 0)
			return rc;
		if (rd->ev.type == YAML_MAPPING_END_EVENT)
			break;
		if (!yio_is_scalar(rd))
			return yio_fail(rd, "%s keys must be plain text", l->what);
		for (i = 0; i < l->n_fields; i++)
			if (!strcmp(yio_scalar(rd), l->fields[i].name))
				break;
		if (i == l->n_fields)
			return yio_fail(rd, "unknown %s field \"%.40s\" (allowed: %s)", l->what,
					yio_scalar(rd), l->allowed);
		if (seen & (1u << i))
			return yio_fail(rd, "%s field %s is given twice", l->what, l->fields[i].name);
		seen |= 1u << i;
		if ((rc = yio_next(rd)) < 0)
			return rc;
		if (!yio_is_scalar(rd))
			return yio_fail(rd, "%s field %s must be a single value", l->what, l->fields[i].name);
		rc = registry_take_string(rd, l->fields[i].name,
					  (char **)((char *)elem + l->fields[i].offset));
		if (rc < 0)
			return rc;
	}
	return l->check ? l->check(rd, rec, elem) : 0;
}

/* The array pointer is read and written with memcpy: it is a struct
 * mount_record * (or network_record *), not a void *. */
static int registry_parse_list(struct yio_reader *rd, struct instance_record *rec,
			       const struct registry_list *l)
{
	size_t *n = (size_t *)((char *)rec + l->n_off);
	void *v, *elem;
	int rc;

	if (yio_is_scalar(rd) && yio_scalar_is_null(rd))
		return 0;
	if (rd->ev.type != YAML_SEQUENCE_START_EVENT)
		return yio_fail(rd, "%ss of instance \"%s\" must be a list", l->what, rec->name);
	for (;;) {
		if ((rc = yio_next(rd)) < 0)
			return rc;
		if (rd->ev.type == YAML_SEQUENCE_END_EVENT)
			return 0;
		if (rd->ev.type != YAML_MAPPING_START_EVENT)
			return yio_fail(rd, "each %s of instance \"%s\" must be a mapping (%s)", l->what,
					rec->name, l->allowed);
		memcpy(&v, (char *)rec + l->v_off, sizeof(v));
		elem = registry_list_grow(&v, n, l->size);
		memcpy((char *)rec + l->v_off, &v, sizeof(v));
		if (!elem)
			return yio_fail(rd, "out of memory");
		if ((rc = registry_parse_element(rd, rec, l, elem)) < 0)
			return rc;
	}
}

/* "H:G,H:G": pairs of decimal ids. */
static bool registry_idmap_ok(const char *map)
{
	const char *p = map;

	for (;;) {
		size_t h = strspn(p, "0123456789"), g;

		if (h == 0 || h > 10 || p[h] != ':')
			return false;
		p += h + 1;
		g = strspn(p, "0123456789");
		if (g == 0 || g > 10)
			return false;
		p += g;
		if (*p == '\0')
			return true;
		if (*p++ != ',')
			return false;
	}
}

static int registry_check_mount(struct yio_reader *rd, const struct instance_record *rec, void *elem)
{
	const struct mount_record *m = elem;
	char why[64], shown[200];

	if (!m->source || !m->target)
		return yio_fail(rd, "a mount of instance \"%s\" needs a source and a target", rec->name);
	if (registry_check_path(m->source, why, sizeof(why)) < 0 ||
	    registry_check_path(m->target, why, sizeof(why)) < 0) {
		const char *bad = m->source[0] == '/' ? m->target : m->source;

		shown_text(bad, strlen(bad), shown, sizeof(shown));
		return yio_fail(rd, "mount paths of instance \"%s\" must be absolute, not \"%s\"", rec->name,
				shown);
	}
	if ((m->uid_map && !registry_idmap_ok(m->uid_map)) || (m->gid_map && !registry_idmap_ok(m->gid_map))) {
		const char *bad = m->uid_map && !registry_idmap_ok(m->uid_map) ? m->uid_map : m->gid_map;

		shown_text(bad, strlen(bad), shown, sizeof(shown));
		return yio_fail(rd, "id maps of instance \"%s\" must be HOST:GUEST pairs like 1000:1000,0:0, "
				"not \"%s\"", rec->name, shown);
	}
	return 0;
}

static int registry_check_network(struct yio_reader *rd, const struct instance_record *rec, void *elem)
{
	const struct network_record *net = elem;
	char why[160], shown[200];

	/* A NIC the broker cannot name or address would only fail at start. */
	if (!net->name || !net->mac)
		return yio_fail(rd, "a network of instance \"%s\" needs a name and a mac", rec->name);
	if (net->mode && strcmp(net->mode, "auto") != 0 && strcmp(net->mode, "manual") != 0)
		return yio_fail(rd, "network mode of instance \"%s\" must be auto or manual, not \"%.40s\"",
				rec->name, net->mode);
	if (registry_check_mac(net->mac, why, sizeof(why)) < 0) {
		shown_text(net->mac, strlen(net->mac), shown, sizeof(shown));
		return yio_fail(rd, "network mac of instance \"%s\" %s, not \"%s\"", rec->name, why, shown);
	}
	return 0;
}

static const struct registry_list registry_lists[] = {
	{ "mount", "source, target, uid_map, gid_map", registry_mount_fields,
	  REGISTRY_N_MOUNT_FIELDS, sizeof(struct mount_record),
	  offsetof(struct instance_record, mounts), offsetof(struct instance_record, n_mounts), 1u,
	  registry_check_mount },
	{ "network", "name, mode, mac", registry_network_fields,
	  REGISTRY_N_NETWORK_FIELDS, sizeof(struct network_record),
	  offsetof(struct instance_record, networks), offsetof(struct instance_record, n_networks), 2u,
	  registry_check_network },
	{ "classic_mount", "source, target, uid_map, gid_map", registry_mount_fields,
	  REGISTRY_N_MOUNT_FIELDS, sizeof(struct mount_record),
	  offsetof(struct instance_record, classic_mounts),
	  offsetof(struct instance_record, n_classic_mounts), 4u, registry_check_mount },
};

/* "mounts" -> the mount list's description; NULL if key names no list. */
static const struct registry_list *registry_list_named(const char *key)
{
	size_t len = strlen(key);

	for (size_t i = 0; i < sizeof(registry_lists) / sizeof(registry_lists[0]); i++)
		if (len == strlen(registry_lists[i].what) + 1 && key[len - 1] == 's' &&
		    !strncmp(key, registry_lists[i].what, len - 1))
			return &registry_lists[i];
	return NULL;
}

/* At the end of a record: every required field was given. */
static int registry_check_required(struct yio_reader *rd, const struct instance_record *rec, uint32_t seen)
{
	char missing[256] = "";
	size_t used = 0, n = 0;

	for (size_t i = 0; i < REGISTRY_N_FIELDS; i++) {
		if (!registry_fields[i].required || (seen & (1u << i)))
			continue;
		n++;
		if (used < sizeof(missing))
			used += (size_t)snprintf(missing + used, sizeof(missing) - used, "%s%s",
						 used ? ", " : "", registry_fields[i].name);
	}
	if (n == 0)
		return 0;
	return yio_fail(rd, "instance \"%s\" has no %s (the file may have been cut short or edited by hand)",
			rec->name, missing);
}

/* At the event after the instance's name. */
static int registry_parse_record(struct yio_reader *rd, struct instance_record *rec)
{
	uint32_t seen = 0;
	unsigned seen_lists = 0;
	const struct registry_list *l;
	int rc;

	if (yio_is_scalar(rd) && yio_scalar_is_null(rd))
		return registry_check_required(rd, rec, 0);
	if (rd->ev.type != YAML_MAPPING_START_EVENT)
		return yio_fail(rd, "instance \"%s\" must be a mapping of fields", rec->name);

	for (;;) {
		const char *key;
		size_t i;

		if ((rc = yio_next(rd)) < 0)
			return rc;
		if (rd->ev.type == YAML_MAPPING_END_EVENT)
			return registry_check_required(rd, rec, seen);
		if (!yio_is_scalar(rd))
			return yio_fail(rd, "field names of instance \"%s\" must be plain text", rec->name);
		key = yio_scalar(rd);
		if ((l = registry_list_named(key)) != NULL) {
			if (seen_lists & l->bit)
				return yio_fail(rd, "%ss of instance \"%s\" are given twice", l->what, rec->name);
			seen_lists |= l->bit;
			if ((rc = yio_next(rd)) < 0 || (rc = registry_parse_list(rd, rec, l)) < 0)
				return rc;
			continue;
		}
		for (i = 0; i < REGISTRY_N_FIELDS; i++)
			if (!strcmp(key, registry_fields[i].name))
				break;
		if (i == REGISTRY_N_FIELDS)
			return yio_fail(rd, "unknown field \"%.40s\" in instance \"%s\"", key, rec->name);
		if (seen & (1u << i))
			return yio_fail(rd, "field %s of instance \"%s\" is given twice", registry_fields[i].name,
					rec->name);
		seen |= 1u << i;
		if ((rc = yio_next(rd)) < 0 || (rc = registry_take_field(rd, rec, &registry_fields[i])) < 0)
			return rc;
	}
}

static int registry_compare_seen(const void *a, const void *b)
{
	const struct registry_seen *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Sorting finds repeats in n log n, so a huge hostile file cannot stall the broker. */
static int registry_check_unique(struct registry *r, const char *path, char *err, size_t errlen)
{
	struct registry_seen *seen;

	if (r->n < 2)
		return 0;
	seen = malloc(r->n * sizeof(*seen));
	if (!seen) {
		snprintf(err, errlen, "%s: out of memory", path);
		return PROTO_E_NOMEM;
	}
	for (size_t i = 0; i < r->n; i++) {
		seen[i].name = r->v[i].name;
		seen[i].index = i;
	}
	qsort(seen, r->n, sizeof(*seen), registry_compare_seen);
	for (size_t i = 1; i < r->n; i++) {
		if (!strcmp(seen[i - 1].name, seen[i].name)) {
			snprintf(err, errlen, "%s: instance \"%s\" is listed twice", path, seen[i].name);
			free(seen);
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	free(seen);
	return 0;
}

static int registry_parse_instances(struct yio_reader *rd, struct registry *r)
{
	char msg[256];
	int rc;

	if (yio_is_scalar(rd) && yio_scalar_is_null(rd))
		return 0;
	if (rd->ev.type != YAML_MAPPING_START_EVENT)
		return yio_fail(rd, "\"instances\" must be a mapping of instance names");
	for (;;) {
		struct instance_record *rec;

		if ((rc = yio_next(rd)) < 0)
			return rc;
		if (rd->ev.type == YAML_MAPPING_END_EVENT)
			return 0;
		if (!yio_is_scalar(rd))
			return yio_fail(rd, "instance names must be plain text");
		if (validate_instance_name(yio_scalar(rd), msg, sizeof(msg)) < 0)
			return yio_fail(rd, "%s", msg);
		rec = registry_add(r, yio_scalar(rd));
		if (!rec)
			return yio_fail(rd, "out of memory");
		if ((rc = yio_next(rd)) < 0 || (rc = registry_parse_record(rd, rec)) < 0)
			return rc;
	}
}

static int registry_parse(struct yio_reader *rd, struct registry *r)
{
	bool empty, seen_instances = false;
	int rc;

	if ((rc = yio_begin(rd, &empty)) < 0 || empty)
		return rc;
	if (yio_is_scalar(rd) && yio_scalar_is_null(rd))
		return yio_end(rd);
	if (rd->ev.type != YAML_MAPPING_START_EVENT)
		return yio_fail(rd, "the registry must be a mapping with the key \"instances\"");
	for (;;) {
		if ((rc = yio_next(rd)) < 0)
			return rc;
		if (rd->ev.type == YAML_MAPPING_END_EVENT)
			break;
		if (!yio_is_scalar(rd) || strcmp(yio_scalar(rd), "instances") != 0)
			return yio_fail(rd, "unknown key%s%.40s%s (the registry holds only \"instances\")",
					yio_is_scalar(rd) ? " \"" : "", yio_is_scalar(rd) ? yio_scalar(rd) : "",
					yio_is_scalar(rd) ? "\"" : "");
		if (seen_instances)
			return yio_fail(rd, "\"instances\" is given twice");
		seen_instances = true;
		if ((rc = yio_next(rd)) < 0 || (rc = registry_parse_instances(rd, r)) < 0)
			return rc;
	}
	return yio_end(rd);
}

int registry_load_err(const char *path, struct registry *r, char *err, size_t errlen)
{
	struct yio_reader reader;
	char *text;
	size_t len;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = read_file(path, REGISTRY_FILE_MAX, &text, &len);
	if (rc == PROTO_E_NOT_FOUND)
		return 0;
	if (rc == PROTO_E_INVALID_ARGUMENT) {
		snprintf(err, errlen, "%s: the file is larger than %u bytes", path, REGISTRY_FILE_MAX);
		goto out_refused;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot read: %m", path);
		goto out_refused;
	}
	rc = yio_reader_open(&reader, text, len, path, err, errlen);
	if (rc < 0)
		goto out_free_text;
	rc = registry_parse(&reader, r);
	yio_reader_close(&reader);
	if (rc == 0)
		rc = registry_check_unique(r, path, err, errlen);
out_free_text:
	free(text);
	if (rc == 0)
		return 0;
out_refused:
	registry_free(r);
	r->refused = true;
	return rc;
}

int registry_load(const char *path, struct registry *r)
{
	char err[768];
	int rc = registry_load_err(path, r, err, sizeof(err));

	if (rc < 0)
		vlog(LOG_ERROR_, "%s", err);
	return rc;
}

/* ---- saving ---- */

/* "mounts: [{source: ..., ...}, ...]"; nothing when the list is empty. */
static void registry_write_list(struct yio_writer *w, const struct instance_record *rec,
				const struct registry_list *l)
{
	const char *v;
	char key[32];
	size_t n;

	memcpy(&v, (const char *)rec + l->v_off, sizeof(v));
	memcpy(&n, (const char *)rec + l->n_off, sizeof(n));
	if (n == 0)
		return;
	snprintf(key, sizeof(key), "%ss", l->what);
	yio_plain(w, key);
	yio_seq_start(w);
	for (size_t i = 0; i < n; i++, v += l->size) {
		yio_map_start(w);
		for (size_t j = 0; j < l->n_fields; j++) {
			const char *text = *(char *const *)(v + l->fields[j].offset);

			if (!text)
				continue;
			yio_plain(w, l->fields[j].name);
			yio_string(w, text);
		}
		yio_map_end(w);
	}
	yio_seq_end(w);
}

static void registry_write_field(struct yio_writer *w, const struct instance_record *rec,
				 const struct registry_field *f)
{
	const void *at = (const char *)rec + f->offset;
	char number[24];

	switch (f->type) {
	case REGISTRY_STR:
		if (!*(char *const *)at)
			return;
		yio_plain(w, f->name);
		yio_string(w, *(char *const *)at);
		break;
	case REGISTRY_STATE:
		if (!f->required && !*(const bool *)((const char *)rec + f->set_offset))
			return;
		yio_plain(w, f->name);
		yio_string(w, proto_state_name(*(const enum proto_state *)at));
		break;
	case REGISTRY_U32:
		snprintf(number, sizeof(number), "%" PRIu32, *(const uint32_t *)at);
		yio_plain(w, f->name);
		yio_plain(w, number);
		break;
	case REGISTRY_U64:
		snprintf(number, sizeof(number), "%" PRIu64, *(const uint64_t *)at);
		yio_plain(w, f->name);
		yio_plain(w, number);
		break;
	case REGISTRY_BOOL:
		yio_plain(w, f->name);
		yio_plain(w, *(const bool *)at ? "true" : "false");
		break;
	}
}

static void registry_write_record(struct yio_writer *w, const struct instance_record *rec)
{
	yio_map_start(w);
	for (size_t i = 0; i + 1 < REGISTRY_N_FIELDS; i++)
		registry_write_field(w, rec, &registry_fields[i]);
	for (size_t l = 0; l < sizeof(registry_lists) / sizeof(registry_lists[0]); l++)
		registry_write_list(w, rec, &registry_lists[l]);
	/* Last, after the lists: see registry_fields. */
	registry_write_field(w, rec, &registry_fields[REGISTRY_N_FIELDS - 1]);
	yio_map_end(w);
}

int registry_save(const char *path, const struct registry *r)
{
	struct yio_writer w;
	const char *data;
	size_t len;
	int rc;

	if (r->refused)
		return PROTO_E_INVALID_STATE;
	rc = yio_writer_open(&w);
	if (rc < 0)
		goto out_close;
	yio_map_start(&w);
	yio_plain(&w, "instances");
	yio_map_start(&w);
	for (size_t i = 0; i < r->n; i++) {
		yio_string(&w, r->v[i].name);
		registry_write_record(&w, &r->v[i]);
	}
	yio_map_end(&w);
	yio_map_end(&w);
	rc = yio_writer_finish(&w, &data, &len);
	if (rc < 0)
		goto out_close;
	rc = atomic_write_file(path, data, len, 0600);
out_close:
	yio_writer_close(&w);
	return rc;
}
