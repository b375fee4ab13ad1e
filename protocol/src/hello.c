/* The helper's answer to "hello" (docs/protocol.md, Handshake). */
#include <string.h>

#include <vmproto/proto.h>

void proto_hello_pack(msgpack_packer *pk, const struct proto_hello *h)
{
	unsigned nfeat = 0;

	for (unsigned i = 0; i < PROTO_FEAT_COUNT; i++)
		if (h->features & (1u << i))
			nfeat++;

	msgpack_pack_map(pk, 7);
	proto_pack_kv_int(pk, "version", h->version);
	proto_pack_kv_str(pk, "driver", h->driver);
	proto_pack_kv_str(pk, "scope", h->scope);
	proto_pack_kv_str(pk, "helper_version", h->helper_version);
	proto_pack_kv_bool(pk, "usable", h->usable);
	proto_pack_kv_str(pk, "why", h->usable ? "" : h->why);
	proto_pack_str(pk, "features");
	msgpack_pack_array(pk, nfeat);
	for (unsigned i = 0; i < PROTO_FEAT_COUNT; i++)
		if (h->features & (1u << i))
			proto_pack_str(pk, proto_feature_name(1u << i));
}

int proto_hello_parse(const msgpack_object *result, struct proto_hello *out)
{
	int64_t version;
	const msgpack_object *feats;

	memset(out, 0, sizeof(*out));
	if (!result || result->type != MSGPACK_OBJECT_MAP)
		return PROTO_E_PROTOCOL;
	if (proto_get_int(result, "version", &version) < 0 || version < 1 || version > 0xffff)
		return PROTO_E_PROTOCOL;
	out->version = (int)version;
	if (proto_get_str(result, "driver", out->driver, sizeof(out->driver)) < 0 ||
	    proto_get_str(result, "scope", out->scope, sizeof(out->scope)) < 0 ||
	    proto_get_bool(result, "usable", &out->usable) < 0)
		return PROTO_E_PROTOCOL;
	/* Optional keys: absent is fine, a wrong type is not. */
	if (proto_get_str(result, "helper_version", out->helper_version,
			  sizeof(out->helper_version)) == PROTO_E_INVALID_ARGUMENT)
		return PROTO_E_PROTOCOL;
	if (proto_get_str(result, "why", out->why, sizeof(out->why)) == PROTO_E_INVALID_ARGUMENT) {
		/* A long reason is still worth showing: keep what fits. */
		const msgpack_object *why = proto_map_get(result, "why");
		if (why->type != MSGPACK_OBJECT_STR)
			return PROTO_E_PROTOCOL;
		size_t n = why->via.str.size < sizeof(out->why) - 1 ? why->via.str.size
								     : sizeof(out->why) - 1;
		memcpy(out->why, why->via.str.ptr, n);
		out->why[n] = '\0';
	}
	feats = proto_map_get(result, "features");
	if (feats && feats->type != MSGPACK_OBJECT_NIL) {
		if (feats->type != MSGPACK_OBJECT_ARRAY)
			return PROTO_E_PROTOCOL;
		for (uint32_t i = 0; i < feats->via.array.size; i++) {
			const msgpack_object *f = &feats->via.array.ptr[i];
			char name[32];

			if (f->type != MSGPACK_OBJECT_STR)
				return PROTO_E_PROTOCOL;
			/* Names from a newer protocol are skipped, not refused. */
			if (proto_obj_str(f, name, sizeof(name)) == 0)
				out->features |= proto_feature_from_name(name);
		}
	}
	return 0;
}
