/*
 * The broker's settings as the hello gave them, kept for the helper's life
 * and looked up with defaults, so that no helper parses them by hand.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <vmproto/vmh.h>

struct setting {
	char *key;
	char *value; /* NULL: present but not a string */
};

static struct {
	struct setting *v;
	size_t n;
} settings;

static void settings_clear(void)
{
	for (size_t i = 0; i < settings.n; i++) {
		free(settings.v[i].key);
		free(settings.v[i].value);
	}
	free(settings.v);
	settings.v = NULL;
	settings.n = 0;
}

/* A str object copied, or NULL (not a str, or holding a NUL). */
static char *obj_dup(const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_STR ||
	    (o->via.str.size && memchr(o->via.str.ptr, '\0', o->via.str.size)))
		return NULL;
	return strndup(o->via.str.ptr, o->via.str.size);
}

int vmh_settings_load(const msgpack_object *map)
{
	uint32_t n;

	settings_clear();
	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return 0;
	n = map->via.map.size;
	if (n == 0)
		return 0;
	settings.v = calloc(n, sizeof(*settings.v));
	if (!settings.v)
		return PROTO_E_NOMEM;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		struct setting *s = &settings.v[settings.n];

		s->key = obj_dup(&kv->key);
		if (!s->key)
			continue; /* a key that is no string names no setting */
		settings.n++;
		s->value = obj_dup(&kv->val);
		if (!s->value && kv->val.type == MSGPACK_OBJECT_STR) {
			settings_clear();
			return PROTO_E_NOMEM;
		}
		if (!s->value)
			vmh_log(VMH_WARN, "setting %s is not a string; it counts as not valid", s->key);
	}
	return 0;
}

static const struct setting *settings_find(const char *key)
{
	/* The last one wins, as it would in a map read into a table. */
	for (size_t i = settings.n; key && i > 0; i--)
		if (!strcmp(settings.v[i - 1].key, key))
			return &settings.v[i - 1];
	return NULL;
}

const char *vmh_setting(const char *key, const char *dflt)
{
	const struct setting *s = settings_find(key);

	return s && s->value && s->value[0] ? s->value : dflt;
}

/* The value to check: NULL when unset (the default applies). */
static int setting_text(const char *key, const char **text, char *err, size_t errlen)
{
	const struct setting *s = settings_find(key);

	*text = NULL;
	if (!s)
		return 0;
	if (!s->value) {
		snprintf(err, errlen, "%s is not a string", key);
		return PROTO_E_INVALID_ARGUMENT;
	}
	*text = s->value[0] ? s->value : NULL;
	return 0;
}

int vmh_setting_enum(const char *key, const char *const names[], int dflt, int *out, char *err,
		     size_t errlen)
{
	const char *text;
	size_t used = 0;
	int rc = setting_text(key, &text, err, errlen);

	if (rc < 0)
		return rc;
	if (!text) {
		*out = dflt;
		return 0;
	}
	for (int i = 0; names[i]; i++) {
		if (!strcasecmp(text, names[i])) {
			*out = i;
			return 0;
		}
	}
	/* "KEY is 'V'; use a, b or c" */
	used = (size_t)snprintf(err, errlen, "%s is '%s'; use ", key, text);
	for (int i = 0; names[i] && used < errlen; i++)
		used += (size_t)snprintf(err + used, errlen - used, "%s%s",
					 i == 0 ? "" : names[i + 1] ? ", " : " or ", names[i]);
	return PROTO_E_INVALID_ARGUMENT;
}

int vmh_setting_bool(const char *key, bool dflt, bool *out, char *err, size_t errlen)
{
	static const char *const names[] = {"true", "false", NULL};
	int v;
	int rc = vmh_setting_enum(key, names, dflt ? 0 : 1, &v, err, errlen);

	if (rc == 0)
		*out = v == 0;
	return rc;
}
