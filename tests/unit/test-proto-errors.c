/* The error, feature and instance state tables. */
#include <string.h>

#include <criterion/criterion.h>

#include <vmproto/proto.h>

/* The names are ABI (docs/protocol.md, Error codes). */
static const struct {
	int code;
	const char *name;
} documented[] = {
	{PROTO_E_INVALID_ARGUMENT, "invalid-argument"},
	{PROTO_E_NOT_FOUND, "not-found"},
	{PROTO_E_ALREADY_EXISTS, "already-exists"},
	{PROTO_E_UNSUPPORTED, "unsupported"},
	{PROTO_E_BUSY, "busy"},
	{PROTO_E_TIMEOUT, "timeout"},
	{PROTO_E_UNAVAILABLE, "unavailable"},
	{PROTO_E_DRIVER, "driver-error"},
	{PROTO_E_PROTOCOL, "protocol-error"},
	{PROTO_E_INTERNAL, "internal"},
	{PROTO_E_INVALID_STATE, "invalid-state"},
	{PROTO_E_NOMEM, "no-memory"},
	{PROTO_E_IO, "io-error"},
};

Test(errors, documented_names_and_codes)
{
	for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++) {
		cr_assert_str_eq(proto_err_name(documented[i].code), documented[i].name);
		cr_assert_eq(proto_err_from_name(documented[i].name), documented[i].code);
	}
}

Test(errors, every_code_round_trips_and_has_text)
{
	for (int code = PROTO_E_MIN; code < 0; code++) {
		const char *name = proto_err_name(code);

		cr_assert_str_neq(name, "unknown-error", "code %d has no name", code);
		cr_assert_eq(proto_err_from_name(name), code);
		cr_assert_str_neq(proto_strerror(code), "unknown error", "code %d has no text", code);
	}
}

Test(errors, unknown_code_and_name)
{
	cr_assert_str_eq(proto_err_name(PROTO_E_MIN - 1), "unknown-error");
	cr_assert_str_eq(proto_err_name(42), "unknown-error");
	cr_assert_str_eq(proto_strerror(-1000), "unknown error");
	cr_assert_eq(proto_err_from_name("no-such-error"), PROTO_E_INTERNAL);
	cr_assert_eq(proto_err_from_name(NULL), PROTO_E_INTERNAL);
}

Test(errors, human_texts)
{
	cr_assert_str_eq(proto_strerror(PROTO_E_NOT_FOUND), "not found");
	cr_assert_str_eq(proto_strerror(PROTO_E_INVALID_ARGUMENT), "invalid argument");
	cr_assert_str_eq(proto_strerror(PROTO_E_TIMEOUT), "timed out");
}

Test(features, names_round_trip)
{
	unsigned all = 0;

	for (unsigned i = 0; i < PROTO_FEAT_COUNT; i++) {
		unsigned bit = 1u << i;
		const char *name = proto_feature_name(bit);

		cr_assert_not_null(name, "feature bit %u has no name", bit);
		cr_assert_not_null(proto_feature_title(bit));
		cr_assert_eq(proto_feature_from_name(name), bit);
		all |= bit;
	}
	cr_assert_eq(all, PROTO_FEAT_NATIVE_MOUNTS | PROTO_FEAT_EXTRA_NETWORKS |
			  PROTO_FEAT_SNAPSHOTS | PROTO_FEAT_CLONE | PROTO_FEAT_SUSPEND |
			  PROTO_FEAT_NATIVE_MOUNTS_LIVE | PROTO_FEAT_EXEC);
}

Test(features, documented_names)
{
	cr_assert_str_eq(proto_feature_name(PROTO_FEAT_NATIVE_MOUNTS), "native_mounts");
	cr_assert_str_eq(proto_feature_name(PROTO_FEAT_EXTRA_NETWORKS), "extra_networks");
	cr_assert_str_eq(proto_feature_name(PROTO_FEAT_SNAPSHOTS), "snapshots");
	cr_assert_str_eq(proto_feature_name(PROTO_FEAT_CLONE), "clone");
	cr_assert_str_eq(proto_feature_name(PROTO_FEAT_SUSPEND), "suspend");
	cr_assert_str_eq(proto_feature_title(PROTO_FEAT_NATIVE_MOUNTS), "native mounts");
	cr_assert_str_eq(proto_feature_title(PROTO_FEAT_EXTRA_NETWORKS), "extra networks");
}

Test(features, unknown)
{
	cr_assert_null(proto_feature_name(1u << PROTO_FEAT_COUNT));
	cr_assert_null(proto_feature_name(0));
	cr_assert_null(proto_feature_title(3)); /* two bits at once */
	cr_assert_eq(proto_feature_from_name("teleport"), 0);
	cr_assert_eq(proto_feature_from_name(NULL), 0);
}

Test(states, the_documented_states_are_known)
{
	static const char *const documented_states[] = {
		"running", "stopped", "suspended", "starting", "restarting", "suspending", "stopping", "unknown",
	};

	for (size_t i = 0; i < sizeof(documented_states) / sizeof(documented_states[0]); i++)
		cr_assert(proto_state_known(documented_states[i]), "%s", documented_states[i]);
}

Test(states, anything_else_is_not)
{
	cr_assert_not(proto_state_known(NULL));
	cr_assert_not(proto_state_known(""));
	cr_assert_not(proto_state_known("exploded"));
	cr_assert_not(proto_state_known("Running"));
	cr_assert_not(proto_state_known("running\n; rm"));
	cr_assert_not(proto_state_known("running "));
	/* The broker's own words are not the helper's to say. */
	cr_assert_not(proto_state_known("deleted"));
	cr_assert_not(proto_state_known("delayed shutdown"));
}
