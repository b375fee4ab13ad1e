/*
 * proto_skim: walk the MessagePack headers of one message and enforce every
 * limit before a decoder allocates anything for it. Only headers are read;
 * payloads of str/bin/ext are skipped by length.
 */
#include <string.h>

#include "internal.h"

/* Big-endian readers; the caller has checked the bytes are there. */
static uint32_t be16(const unsigned char *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

enum skim_kind { SKIM_SCALAR, SKIM_BLOB, SKIM_ARRAY, SKIM_MAP };

/* One object header: its kind, header size, and the length field it carries
 * (payload bytes for SKIM_BLOB, element count for containers). */
struct skim_header {
	enum skim_kind kind;
	size_t size;
	size_t len_bytes; /* width of the length field, 0 if the length is in the first byte */
	size_t len_offset;
	uint32_t len;
};

/* Fill h from the first byte; returns false for the one byte msgpack never uses. */
static bool skim_classify(unsigned char b, struct skim_header *h)
{
	memset(h, 0, sizeof(*h));
	h->kind = SKIM_SCALAR;
	h->size = 1;
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return true;
	if (b <= 0x8f) {
		h->kind = SKIM_MAP;
		h->len = b & 0x0f;
		return true;
	}
	if (b <= 0x9f) {
		h->kind = SKIM_ARRAY;
		h->len = b & 0x0f;
		return true;
	}
	if (b <= 0xbf) {
		h->kind = SKIM_BLOB;
		h->len = b & 0x1f;
		return true;
	}
	switch (b) {
	case 0xc4: case 0xc5: case 0xc6: /* bin 8/16/32 */
		h->kind = SKIM_BLOB;
		h->len_offset = 1;
		h->len_bytes = (size_t)1 << (b - 0xc4);
		h->size = 1 + h->len_bytes;
		return true;
	case 0xc7: case 0xc8: case 0xc9: /* ext 8/16/32: length, then a type byte */
		h->kind = SKIM_BLOB;
		h->len_offset = 1;
		h->len_bytes = (size_t)1 << (b - 0xc7);
		h->size = 2 + h->len_bytes;
		return true;
	case 0xca: h->size = 5; return true; /* float 32 */
	case 0xcb: h->size = 9; return true; /* float 64 */
	case 0xcc: case 0xd0: h->size = 2; return true;
	case 0xcd: case 0xd1: h->size = 3; return true;
	case 0xce: case 0xd2: h->size = 5; return true;
	case 0xcf: case 0xd3: h->size = 9; return true;
	case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: /* fixext 1..16 */
		h->kind = SKIM_BLOB;
		h->size = 2;
		h->len = 1u << (b - 0xd4);
		return true;
	case 0xd9: case 0xda: case 0xdb: /* str 8/16/32 */
		h->kind = SKIM_BLOB;
		h->len_offset = 1;
		h->len_bytes = (size_t)1 << (b - 0xd9);
		h->size = 1 + h->len_bytes;
		return true;
	case 0xdc: case 0xdd: /* array 16/32 */
		h->kind = SKIM_ARRAY;
		h->len_offset = 1;
		h->len_bytes = b == 0xdc ? 2 : 4;
		h->size = 1 + h->len_bytes;
		return true;
	case 0xde: case 0xdf: /* map 16/32 */
		h->kind = SKIM_MAP;
		h->len_offset = 1;
		h->len_bytes = b == 0xde ? 2 : 4;
		h->size = 1 + h->len_bytes;
		return true;
	default: /* 0xc1 */
		return false;
	}
}

void skim_reset(struct skim_state *st)
{
	memset(st, 0, sizeof(*st));
	st->left[0] = 1;
}

static long skim_fail(const char **why, const char *text)
{
	if (why)
		*why = text;
	return PROTO_E_PROTOCOL;
}

long skim_resume(struct skim_state *st, const char *buf, size_t len, const char **why)
{
	const unsigned char *p = (const unsigned char *)buf;

	while (st->depth > 0 || st->left[0] > 0) {
		struct skim_header h;
		size_t pos = st->pos;

		if (pos >= len)
			return 0;
		if (!skim_classify(p[pos], &h))
			return skim_fail(why, "invalid MessagePack byte 0xc1");
		if (pos + h.size > PROTO_MAX_MESSAGE)
			return skim_fail(why, "message larger than 4 MiB");
		if (pos + h.size > len)
			return 0;
		if (h.len_bytes == 1)
			h.len = p[pos + h.len_offset];
		else if (h.len_bytes == 2)
			h.len = be16(p + pos + h.len_offset);
		else if (h.len_bytes == 4)
			h.len = be32(p + pos + h.len_offset);

		size_t end = pos + h.size;
		switch (h.kind) {
		case SKIM_SCALAR:
			break;
		case SKIM_BLOB:
			if (h.len > PROTO_MAX_STRING)
				return skim_fail(why, "string or binary longer than 1 MiB");
			end += h.len;
			if (end > PROTO_MAX_MESSAGE)
				return skim_fail(why, "message larger than 4 MiB");
			if (end > len)
				return 0;
			break;
		case SKIM_ARRAY:
			if (h.len > PROTO_MAX_ARRAY)
				return skim_fail(why, "array longer than 65536 elements");
			break;
		case SKIM_MAP:
			if (h.len > PROTO_MAX_MAP)
				return skim_fail(why, "map larger than 4096 pairs");
			break;
		}
		if ((h.kind == SKIM_ARRAY || h.kind == SKIM_MAP) && st->depth + 1 > PROTO_MAX_DEPTH)
			return skim_fail(why, "arrays and maps nested deeper than 16");

		/* The object is complete: commit it. */
		st->pos = end;
		st->left[st->depth]--;
		if (h.kind == SKIM_ARRAY && h.len > 0) {
			st->depth++;
			st->left[st->depth] = h.len;
		} else if (h.kind == SKIM_MAP && h.len > 0) {
			st->depth++;
			st->left[st->depth] = 2 * h.len;
		}
		while (st->depth > 0 && st->left[st->depth] == 0)
			st->depth--;
	}
	return (long)st->pos;
}

long proto_skim(const char *buf, size_t len, const char **why)
{
	struct skim_state st;

	skim_reset(&st);
	return skim_resume(&st, buf, len, why);
}
