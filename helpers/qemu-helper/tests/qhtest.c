/* Helpers of the qemu driver's unit tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qhtest.h"
#include "vmcommon.h"

struct built {
	msgpack_sbuffer sb; /* strings in u point into it */
	msgpack_unpacked u;
	struct built *next;
};

static struct built *built;

static void pack_json(msgpack_packer *pk, const json_t *j)
{
	const char *key;
	json_t *v;
	size_t i;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		msgpack_pack_map(pk, json_object_size(j));
		json_object_foreach((json_t *)j, key, v) {
			proto_pack_str(pk, key);
			pack_json(pk, v);
		}
		break;
	case JSON_ARRAY:
		msgpack_pack_array(pk, json_array_size(j));
		json_array_foreach(j, i, v)
			pack_json(pk, v);
		break;
	case JSON_STRING:
		proto_pack_str(pk, json_string_value(j));
		break;
	case JSON_INTEGER:
		msgpack_pack_int64(pk, json_integer_value(j));
		break;
	case JSON_REAL:
		msgpack_pack_double(pk, json_real_value(j));
		break;
	case JSON_TRUE:
		msgpack_pack_true(pk);
		break;
	case JSON_FALSE:
		msgpack_pack_false(pk);
		break;
	case JSON_NULL:
		msgpack_pack_nil(pk);
		break;
	}
}

const msgpack_object *qhtest_obj(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
	msgpack_packer pk;
	struct built *b = calloc(1, sizeof(*b));

	if (!j) {
		fprintf(stderr, "qhtest_obj: bad JSON: %s\n", jerr.text);
		abort();
	}
	msgpack_sbuffer_init(&b->sb);
	msgpack_packer_init(&pk, &b->sb, msgpack_sbuffer_write);
	pack_json(&pk, j);
	json_decref(j);
	msgpack_unpacked_init(&b->u);
	msgpack_unpack_next(&b->u, b->sb.data, b->sb.size, NULL);
	b->next = built;
	built = b;
	return &b->u.data;
}

void qhtest_free(void)
{
	while (built) {
		struct built *b = built;

		built = b->next;
		msgpack_unpacked_destroy(&b->u);
		msgpack_sbuffer_destroy(&b->sb);
		free(b);
	}
}

char *qhtest_tmpdir(void)
{
	char *dir = strdup("/tmp/qhtest-XXXXXX");

	if (!mkdtemp(dir))
		abort();
	return dir;
}

void qhtest_rmdir(char *dir)
{
	remove_tree(dir);
	free(dir);
}

int qhtest_has_pair(char **argv, const char *opt, const char *value)
{
	for (size_t i = 0; argv[i] && argv[i + 1]; i++)
		if (!strcmp(argv[i], opt) && !strcmp(argv[i + 1], value))
			return 1;
	return 0;
}

int qhtest_has(char **argv, const char *arg)
{
	for (size_t i = 0; argv[i]; i++)
		if (!strcmp(argv[i], arg))
			return 1;
	return 0;
}
