/*
 * For the protocol library's tests: a msgpack object from JSON-like text
 * ({"a": [1, -2, "x", null, true]}), so that instance maps read as they do
 * in docs/protocol.md. Integers, strings without escapes but \" and \\,
 * null, true, false; no floats. Header-only: the tests link vmproto alone.
 */
#ifndef PROTOJSON_H
#define PROTOJSON_H

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <msgpack.h>

struct pj_built {
	msgpack_sbuffer sb;
	msgpack_unpacked up;
	struct pj_built *next;
};

static struct pj_built *pj_list;

static inline void pj_skip(const char **p)
{
	while (isspace((unsigned char)**p))
		(*p)++;
}

static inline void pj_value(msgpack_packer *pk, const char **p);

static inline void pj_string(msgpack_packer *pk, const char **p)
{
	char buf[8192];
	size_t n = 0;

	cr_assert_eq(**p, '"', "protojson: a string must start with \" at %s", *p);
	for ((*p)++; **p && **p != '"'; (*p)++) {
		if (**p == '\\')
			(*p)++;
		cr_assert(n < sizeof(buf) - 1);
		buf[n++] = **p;
	}
	cr_assert_eq(**p, '"', "protojson: unterminated string");
	(*p)++;
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, buf, n);
}

/* The number of elements of the array or map starting at p ('[' or '{'). */
static inline unsigned pj_count(const char *p)
{
	unsigned depth = 0, items = 0;
	bool in_str = false, any = false;

	for (; *p; p++) {
		if (in_str) {
			if (*p == '\\')
				p++;
			else if (*p == '"')
				in_str = false;
			continue;
		}
		if (*p == '"')
			in_str = true;
		if (*p == '[' || *p == '{') {
			any |= depth == 1;
			depth++;
			continue;
		}
		if (*p == ']' || *p == '}') {
			if (--depth == 0)
				break;
			continue;
		}
		if (depth == 1 && !isspace((unsigned char)*p)) {
			any = true;
			if (*p == ',')
				items++;
		}
	}
	return any ? items + 1 : 0;
}

static inline void pj_value(msgpack_packer *pk, const char **p)
{
	pj_skip(p);
	if (**p == '{' || **p == '[') {
		bool map = **p == '{';
		unsigned n = pj_count(*p);

		if (map)
			msgpack_pack_map(pk, n);
		else
			msgpack_pack_array(pk, n);
		(*p)++;
		for (unsigned i = 0; i < n; i++) {
			pj_skip(p);
			if (map) {
				pj_string(pk, p);
				pj_skip(p);
				cr_assert_eq(**p, ':', "protojson: ':' expected at %s", *p);
				(*p)++;
			}
			pj_value(pk, p);
			pj_skip(p);
			if (**p == ',')
				(*p)++;
		}
		pj_skip(p);
		cr_assert(**p == (map ? '}' : ']'), "protojson: end expected at %s", *p);
		(*p)++;
	} else if (**p == '"') {
		pj_string(pk, p);
	} else if (!strncmp(*p, "null", 4)) {
		msgpack_pack_nil(pk);
		*p += 4;
	} else if (!strncmp(*p, "true", 4)) {
		msgpack_pack_true(pk);
		*p += 4;
	} else if (!strncmp(*p, "false", 5)) {
		msgpack_pack_false(pk);
		*p += 5;
	} else {
		char *end;
		long long v = strtoll(*p, &end, 10);

		cr_assert(end != *p, "protojson: a value expected at %s", *p);
		if (**p == '-')
			msgpack_pack_int64(pk, v);
		else
			msgpack_pack_uint64(pk, strtoull(*p, &end, 10));
		*p = end;
	}
}

/* The object for text; it lives until pj_free(). */
static inline const msgpack_object *pj(const char *text)
{
	struct pj_built *b = calloc(1, sizeof(*b));
	msgpack_packer pk;
	size_t off = 0;

	cr_assert_not_null(b);
	msgpack_sbuffer_init(&b->sb);
	msgpack_packer_init(&pk, &b->sb, msgpack_sbuffer_write);
	pj_value(&pk, &text);
	msgpack_unpacked_init(&b->up);
	cr_assert_eq(msgpack_unpack_next(&b->up, b->sb.data, b->sb.size, &off), MSGPACK_UNPACK_SUCCESS);
	b->next = pj_list;
	pj_list = b;
	return &b->up.data;
}

static inline void pj_free(void)
{
	while (pj_list) {
		struct pj_built *b = pj_list;

		pj_list = b->next;
		msgpack_unpacked_destroy(&b->up);
		msgpack_sbuffer_destroy(&b->sb);
		free(b);
	}
}

#endif
