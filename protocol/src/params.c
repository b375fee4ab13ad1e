/* Reading params maps and packing results. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vmproto/proto.h>

const msgpack_object *proto_map_get(const msgpack_object *map, const char *key)
{
	if (!map || !key || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];

		if (proto_obj_streq(&kv->key, key))
			return &kv->val;
	}
	return NULL;
}

/* The value for key, or NULL when it is absent or nil (both mean "not given"). */
static const msgpack_object *params_lookup(const msgpack_object *map, const char *key)
{
	const msgpack_object *o = proto_map_get(map, key);

	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return NULL;
	return o;
}

int proto_obj_str(const msgpack_object *o, char *buf, size_t bufsz)
{
	if (!o || o->type != MSGPACK_OBJECT_STR || !buf)
		return PROTO_E_INVALID_ARGUMENT;
	uint32_t n = o->via.str.size;
	/* An embedded NUL would silently shorten a name or a path. */
	if ((size_t)n >= bufsz || (n > 0 && memchr(o->via.str.ptr, '\0', n)))
		return PROTO_E_INVALID_ARGUMENT;
	if (n > 0)
		memcpy(buf, o->via.str.ptr, n);
	buf[n] = '\0';
	return 0;
}

bool proto_obj_streq(const msgpack_object *o, const char *s)
{
	if (!o || !s || o->type != MSGPACK_OBJECT_STR)
		return false;
	size_t n = strlen(s);
	return o->via.str.size == n && (n == 0 || memcmp(o->via.str.ptr, s, n) == 0);
}

int proto_get_str(const msgpack_object *map, const char *key, char *buf, size_t bufsz)
{
	const msgpack_object *o = params_lookup(map, key);

	if (!o)
		return PROTO_E_NOT_FOUND;
	return proto_obj_str(o, buf, bufsz);
}

int proto_get_int(const msgpack_object *map, const char *key, int64_t *out)
{
	const msgpack_object *o = params_lookup(map, key);

	if (!o)
		return PROTO_E_NOT_FOUND;
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*out = o->via.i64;
		return 0;
	}
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
		*out = (int64_t)o->via.u64;
		return 0;
	}
	return PROTO_E_INVALID_ARGUMENT;
}

int proto_get_uint(const msgpack_object *map, const char *key, uint64_t *out)
{
	const msgpack_object *o = params_lookup(map, key);

	if (!o)
		return PROTO_E_NOT_FOUND;
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return PROTO_E_INVALID_ARGUMENT;
	*out = o->via.u64;
	return 0;
}

int proto_get_bool(const msgpack_object *map, const char *key, bool *out)
{
	const msgpack_object *o = params_lookup(map, key);

	if (!o)
		return PROTO_E_NOT_FOUND;
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return PROTO_E_INVALID_ARGUMENT;
	*out = o->via.boolean;
	return 0;
}

int proto_obj_u32_pair(const msgpack_object *o, uint32_t *first, uint32_t *second)
{
	const msgpack_object *e;

	if (!o || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2)
		return PROTO_E_INVALID_ARGUMENT;
	e = o->via.array.ptr;
	if (e[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || e[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
	    e[0].via.u64 > UINT32_MAX || e[1].via.u64 > UINT32_MAX)
		return PROTO_E_INVALID_ARGUMENT;
	*first = (uint32_t)e[0].via.u64;
	*second = (uint32_t)e[1].via.u64;
	return 0;
}

int proto_get_double(const msgpack_object *map, const char *key, double *out)
{
	const msgpack_object *o = params_lookup(map, key);

	if (!o)
		return PROTO_E_NOT_FOUND;
	switch (o->type) {
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		*out = o->via.f64;
		return 0;
	/* Many packers write 1.0 as 1: accept integers. */
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		*out = (double)o->via.u64;
		return 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		*out = (double)o->via.i64;
		return 0;
	default:
		return PROTO_E_INVALID_ARGUMENT;
	}
}

char *proto_dup_str(const msgpack_object *map, const char *key)
{
	const msgpack_object *o = params_lookup(map, key);

	if (!o || o->type != MSGPACK_OBJECT_STR)
		return NULL;
	uint32_t n = o->via.str.size;
	if (n > 0 && memchr(o->via.str.ptr, '\0', n))
		return NULL;
	char *s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	if (n > 0)
		memcpy(s, o->via.str.ptr, n);
	s[n] = '\0';
	return s;
}

void proto_pack_str(msgpack_packer *pk, const char *s)
{
	if (!s) {
		msgpack_pack_nil(pk);
		return;
	}
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void proto_pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
	proto_pack_str(pk, key);
	proto_pack_str(pk, val);
}

void proto_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val)
{
	proto_pack_str(pk, key);
	msgpack_pack_int64(pk, val);
}

void proto_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t val)
{
	proto_pack_str(pk, key);
	msgpack_pack_uint64(pk, val);
}

void proto_pack_kv_bool(msgpack_packer *pk, const char *key, bool val)
{
	proto_pack_str(pk, key);
	if (val)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
}

void proto_pack_kv_double(msgpack_packer *pk, const char *key, double val)
{
	proto_pack_str(pk, key);
	msgpack_pack_double(pk, val);
}
