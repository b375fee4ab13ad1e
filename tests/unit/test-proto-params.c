/* Param getters, packers and the hello answer. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <vmproto/proto.h>

static msgpack_sbuffer sb;
static msgpack_packer pk;
static msgpack_unpacked up;

static void setup(void)
{
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_unpacked_init(&up);
}

static void teardown(void)
{
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
}

static const msgpack_object *decode(void)
{
	size_t off = 0;

	cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
	return &up.data;
}

TestSuite(params, .init = setup, .fini = teardown);

static const msgpack_object *sample(void)
{
	msgpack_pack_map(&pk, 10);
	proto_pack_kv_str(&pk, "name", "web");
	proto_pack_kv_int(&pk, "neg", -5);
	proto_pack_kv_uint(&pk, "memory", 2147483648ull);
	proto_pack_kv_bool(&pk, "force", true);
	proto_pack_kv_double(&pk, "fraction", 0.75);
	proto_pack_str(&pk, "nothing");
	msgpack_pack_nil(&pk);
	proto_pack_str(&pk, "nul");
	msgpack_pack_str(&pk, 3);
	msgpack_pack_str_body(&pk, "a\0b", 3);
	proto_pack_kv_uint(&pk, "huge", UINT64_MAX);
	proto_pack_kv_int(&pk, "whole", 3);
	proto_pack_kv_str(&pk, "empty", "");
	return decode();
}

Test(params, strings)
{
	const msgpack_object *m = sample();
	char buf[8];
	char *dup;

	cr_assert_eq(proto_get_str(m, "name", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "web");
	cr_assert_eq(proto_get_str(m, "empty", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "");
	cr_assert_eq(proto_get_str(m, "absent", buf, sizeof(buf)), PROTO_E_NOT_FOUND);
	cr_assert_eq(proto_get_str(m, "nothing", buf, sizeof(buf)), PROTO_E_NOT_FOUND);
	cr_assert_eq(proto_get_str(m, "neg", buf, sizeof(buf)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(proto_get_str(m, "name", buf, 3), PROTO_E_INVALID_ARGUMENT, "no room for NUL");
	cr_assert_eq(proto_get_str(m, "name", buf, 4), 0);
	cr_assert_eq(proto_get_str(m, "nul", buf, sizeof(buf)), PROTO_E_INVALID_ARGUMENT);
	dup = proto_dup_str(m, "name");
	cr_assert_str_eq(dup, "web");
	free(dup);
	cr_assert_null(proto_dup_str(m, "absent"));
	cr_assert_null(proto_dup_str(m, "memory"));
	cr_assert_null(proto_dup_str(m, "nul"));
	cr_assert(proto_obj_streq(proto_map_get(m, "name"), "web"));
	cr_assert_not(proto_obj_streq(proto_map_get(m, "name"), "we"));
	cr_assert_not(proto_obj_streq(proto_map_get(m, "neg"), "web"));
}

Test(params, integers)
{
	const msgpack_object *m = sample();
	int64_t i;
	uint64_t u;

	cr_assert_eq(proto_get_int(m, "neg", &i), 0);
	cr_assert_eq(i, -5);
	cr_assert_eq(proto_get_int(m, "memory", &i), 0);
	cr_assert_eq(i, 2147483648ll);
	cr_assert_eq(proto_get_int(m, "huge", &i), PROTO_E_INVALID_ARGUMENT, "does not fit int64");
	cr_assert_eq(proto_get_int(m, "name", &i), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(proto_get_int(m, "fraction", &i), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(proto_get_int(m, "absent", &i), PROTO_E_NOT_FOUND);
	cr_assert_eq(proto_get_uint(m, "huge", &u), 0);
	cr_assert_eq(u, UINT64_MAX);
	cr_assert_eq(proto_get_uint(m, "neg", &u), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(proto_get_uint(m, "nothing", &u), PROTO_E_NOT_FOUND);
}

Test(params, bools_and_doubles)
{
	const msgpack_object *m = sample();
	bool b = false;
	double d;

	cr_assert_eq(proto_get_bool(m, "force", &b), 0);
	cr_assert(b);
	cr_assert_eq(proto_get_bool(m, "whole", &b), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(proto_get_bool(m, "absent", &b), PROTO_E_NOT_FOUND);
	cr_assert_eq(proto_get_double(m, "fraction", &d), 0);
	cr_assert_float_eq(d, 0.75, 1e-12);
	cr_assert_eq(proto_get_double(m, "whole", &d), 0, "integers are accepted as doubles");
	cr_assert_float_eq(d, 3.0, 1e-12);
	cr_assert_eq(proto_get_double(m, "neg", &d), 0);
	cr_assert_float_eq(d, -5.0, 1e-12);
	cr_assert_eq(proto_get_double(m, "name", &d), PROTO_E_INVALID_ARGUMENT);
}

Test(params, id_pairs)
{
	const msgpack_object *a;
	uint32_t h = 7, g = 7;

	msgpack_pack_array(&pk, 4);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_uint64(&pk, 1000);
	msgpack_pack_uint64(&pk, UINT32_MAX);
	msgpack_pack_array(&pk, 2); /* too big for an id */
	msgpack_pack_uint64(&pk, 1);
	msgpack_pack_uint64(&pk, (uint64_t)UINT32_MAX + 1);
	msgpack_pack_array(&pk, 2); /* negative */
	msgpack_pack_int64(&pk, -1);
	msgpack_pack_uint64(&pk, 1);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint64(&pk, 1);
	msgpack_pack_uint64(&pk, 2);
	msgpack_pack_uint64(&pk, 3);
	a = decode();
	cr_assert_eq(proto_obj_u32_pair(&a->via.array.ptr[0], &h, &g), 0);
	cr_assert_eq(h, 1000);
	cr_assert_eq(g, UINT32_MAX);
	for (int i = 1; i < 4; i++)
		cr_assert_eq(proto_obj_u32_pair(&a->via.array.ptr[i], &h, &g), PROTO_E_INVALID_ARGUMENT,
			     "element %d", i);
	cr_assert_eq(proto_obj_u32_pair(a, &h, &g), PROTO_E_INVALID_ARGUMENT, "a 4-array is no pair");
	cr_assert_eq(h, 1000, "a refused pair leaves the outputs alone");
}

Test(params, map_get_on_non_maps)
{
	char buf[8];

	msgpack_pack_array(&pk, 1);
	proto_pack_str(&pk, "name");
	const msgpack_object *a = decode();
	cr_assert_null(proto_map_get(a, "name"));
	cr_assert_null(proto_map_get(NULL, "name"));
	cr_assert_eq(proto_get_str(a, "name", buf, sizeof(buf)), PROTO_E_NOT_FOUND);
	cr_assert_eq(proto_obj_str(a, buf, sizeof(buf)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(proto_obj_str(&a->via.array.ptr[0], buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "name");
}

Test(params, pack_str_null_is_nil)
{
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "why", NULL);
	const msgpack_object *m = decode();
	cr_assert_eq(proto_map_get(m, "why")->type, MSGPACK_OBJECT_NIL);
}

TestSuite(hello, .init = setup, .fini = teardown);

Test(hello, pack_then_parse_round_trips)
{
	struct proto_hello in = {
		.version = 1,
		.driver = "qemu",
		.scope = "qemu",
		.helper_version = "0.1.0",
		.usable = false,
		.why = "KVM is not usable: /dev/kvm cannot run guests",
		.features = PROTO_FEAT_NATIVE_MOUNTS | PROTO_FEAT_SNAPSHOTS | PROTO_FEAT_SUSPEND,
	};
	struct proto_hello out;

	proto_hello_pack(&pk, &in);
	cr_assert_eq(proto_skim(sb.data, sb.size, NULL), (long)sb.size);
	cr_assert_eq(proto_hello_parse(decode(), &out), 0);
	cr_assert_eq(out.version, 1);
	cr_assert_str_eq(out.driver, "qemu");
	cr_assert_str_eq(out.scope, "qemu");
	cr_assert_str_eq(out.helper_version, "0.1.0");
	cr_assert_not(out.usable);
	cr_assert_str_eq(out.why, in.why);
	cr_assert_eq(out.features, in.features);
}

Test(hello, features_are_sent_as_names)
{
	struct proto_hello in = {.version = 1, .driver = "d", .scope = "s", .usable = true,
				 .features = PROTO_FEAT_CLONE | PROTO_FEAT_EXTRA_NETWORKS};

	proto_hello_pack(&pk, &in);
	const msgpack_object *m = decode();
	const msgpack_object *f = proto_map_get(m, "features");
	cr_assert_eq(f->type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(f->via.array.size, 2);
	cr_assert(proto_obj_streq(&f->via.array.ptr[0], "extra_networks"));
	cr_assert(proto_obj_streq(&f->via.array.ptr[1], "clone"));
}

Test(hello, unknown_feature_names_are_ignored)
{
	struct proto_hello out;

	msgpack_pack_map(&pk, 5);
	proto_pack_kv_int(&pk, "version", 1);
	proto_pack_kv_str(&pk, "driver", "future");
	proto_pack_kv_str(&pk, "scope", "future");
	proto_pack_kv_bool(&pk, "usable", true);
	proto_pack_str(&pk, "features");
	msgpack_pack_array(&pk, 2);
	proto_pack_str(&pk, "time_travel");
	proto_pack_str(&pk, "snapshots");
	cr_assert_eq(proto_hello_parse(decode(), &out), 0);
	cr_assert_eq(out.features, PROTO_FEAT_SNAPSHOTS);
	cr_assert_str_eq(out.helper_version, "");
}

Test(hello, missing_or_wrong_keys_are_protocol_errors)
{
	struct proto_hello out;

	msgpack_pack_map(&pk, 3);
	proto_pack_kv_int(&pk, "version", 1);
	proto_pack_kv_str(&pk, "driver", "qemu");
	proto_pack_kv_str(&pk, "usable", "yes");
	cr_assert_eq(proto_hello_parse(decode(), &out), PROTO_E_PROTOCOL);
}

Test(hello, not_a_map_is_a_protocol_error)
{
	struct proto_hello out;

	msgpack_pack_nil(&pk);
	cr_assert_eq(proto_hello_parse(decode(), &out), PROTO_E_PROTOCOL);
}
