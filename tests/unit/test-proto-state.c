/* Instance states: the enum and the names the wire and the user see. */
#include <string.h>

#include <criterion/criterion.h>

#include <vmproto/proto.h>

#include "protojson.h"

/* docs/protocol.md, "Instance states", in the enum's order. */
static const char *const documented[] = {
	"unknown",  "running",    "stopped",  "suspended",        "starting",
	"restarting", "suspending", "stopping", "deleted", "delayed shutdown",
};

TestSuite(state, .fini = pj_free);

Test(state, every_state_has_its_documented_name_and_back)
{
	cr_assert_eq(sizeof(documented) / sizeof(documented[0]), PROTO_STATE_COUNT);
	for (unsigned i = 0; i < PROTO_STATE_COUNT; i++) {
		enum proto_state back = PROTO_STATE_COUNT;

		cr_expect_str_eq(proto_state_name((enum proto_state)i), documented[i]);
		cr_expect_eq(proto_state_from_name(documented[i], &back), 0, "%s", documented[i]);
		cr_expect_eq(back, (enum proto_state)i, "%s", documented[i]);
	}
}

Test(state, a_value_outside_the_enum_is_named_unknown)
{
	cr_expect_str_eq(proto_state_name((enum proto_state)PROTO_STATE_COUNT), "unknown");
	cr_expect_str_eq(proto_state_name((enum proto_state)-1), "unknown");
}

Test(state, names_are_exact_and_others_are_refused)
{
	static const char *const bad[] = {"Running", "RUNNING", "run", "running ", "", "delayed",
					  "delayed_shutdown", "paused"};
	enum proto_state s = PROTO_STATE_STOPPED;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(proto_state_from_name(bad[i], &s), PROTO_E_INVALID_ARGUMENT, "%s", bad[i]);
		cr_expect_eq(s, PROTO_STATE_STOPPED, "a refused name leaves the output alone");
	}
	cr_expect_eq(proto_state_from_name(NULL, &s), PROTO_E_INVALID_ARGUMENT);
}

Test(state, helpers_report_all_but_the_brokers_two)
{
	for (unsigned i = 0; i < PROTO_STATE_COUNT; i++)
		cr_expect_eq(proto_state_from_helper((enum proto_state)i),
			     i != PROTO_STATE_DELETED && i != PROTO_STATE_DELAYED_SHUTDOWN, "%s",
			     documented[i]);
	cr_expect_not(proto_state_from_helper((enum proto_state)PROTO_STATE_COUNT));
}

Test(state, read_from_and_packed_into_a_map)
{
	const msgpack_object *m = pj("{\"state\": \"suspended\", \"bad\": \"asleep\", \"num\": 3}");
	enum proto_state s = PROTO_STATE_UNKNOWN;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked up;
	size_t off = 0;

	cr_expect_eq(proto_get_state(m, "state", &s), 0);
	cr_expect_eq(s, PROTO_STATE_SUSPENDED);
	cr_expect_eq(proto_get_state(m, "bad", &s), PROTO_E_INVALID_ARGUMENT);
	cr_expect_eq(proto_get_state(m, "num", &s), PROTO_E_INVALID_ARGUMENT);
	cr_expect_eq(proto_get_state(m, "none", &s), PROTO_E_NOT_FOUND);

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_state(&pk, "state", PROTO_STATE_DELAYED_SHUTDOWN);
	msgpack_unpacked_init(&up);
	cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
	cr_expect(proto_obj_streq(proto_map_get(&up.data, "state"), "delayed shutdown"));
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
}
