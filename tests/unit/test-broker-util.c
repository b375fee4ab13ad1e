/*
 * The broker's pure helpers: restart backoff, MAC and name formats, wait
 * status sentences, --describe parsing, instance setting keys.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "broker.h"

Test(broker_backoff, a_quick_crash_waits_100ms_then_doubles_to_5s)
{
	/* Died before or soon after it was ready: a crash loop, maybe. */
	unsigned ms = backoff_next_ms(0, 0);

	cr_assert_eq(ms, 100);
	ms = backoff_next_ms(ms, 1.0);
	cr_assert_eq(ms, 200);
	ms = backoff_next_ms(ms, 1.0);
	cr_assert_eq(ms, 400);
	for (int i = 0; i < 20; i++)
		ms = backoff_next_ms(ms, 0.5);
	cr_assert_eq(ms, 5000, "backoff must stop at 5 s, got %u ms", ms);
	cr_assert_eq(backoff_next_ms(0, 29.9), 100, "a first crash 29.9 s after start waits 100 ms");
}

Test(broker_backoff, after_30s_up_restarts_at_once)
{
	cr_assert_eq(backoff_next_ms(0, 30.0), 0, "a first crash after a long uptime waits for nothing");
	cr_assert_eq(backoff_next_ms(5000, 29.0), 5000);
	cr_assert_eq(backoff_next_ms(5000, 30.0), 0);
	cr_assert_eq(backoff_next_ms(400, 3600.0), 0);
	/* Crashing again soon after that immediate restart: the doubling starts. */
	cr_assert_eq(backoff_next_ms(backoff_next_ms(5000, 30.0), 2.0), 100);
}

Test(broker_util, mac_is_qemu_local_prefix)
{
	unsigned char rnd[3] = {0xab, 0x01, 0xff};
	char mac[32];

	util_format_mac(rnd, mac, sizeof(mac));
	cr_assert_str_eq(mac, "52:54:00:ab:01:ff");
}

Test(broker_util, picked_names_are_valid_instance_names)
{
	for (uint32_t r = 0; r < 5000; r += 7) {
		char name[64], err[256];

		util_pick_name(r * 2654435761u, name, sizeof(name));
		cr_assert(validate_instance_name(name, err, sizeof(err)) == 0, "%s: %s", name, err);
		cr_assert_not_null(strchr(name, '-'), "%s is not two words", name);
	}
}

Test(broker_util, describes_wait_status)
{
	char buf[64];

	util_describe_status(9, buf, sizeof(buf)); /* WIFSIGNALED, signal 9 */
	cr_assert_str_eq(buf, "killed by signal 9");
	util_describe_status(1 << 8, buf, sizeof(buf));
	cr_assert_str_eq(buf, "exited with status 1");
}

Test(broker_util, parses_describe_output)
{
	struct driver_info d;

	cr_assert_eq(util_parse_describe("driver libvirt\nscope qemu\nversion 0.1.0\n"
					 "features suspend,snapshots\n",
					 &d),
		     0);
	cr_assert_str_eq(d.driver, "libvirt");
	cr_assert_str_eq(d.scope, "qemu");
	cr_assert_str_eq(d.version, "0.1.0");
	cr_assert_eq(d.features, PROTO_FEAT_SUSPEND | PROTO_FEAT_SNAPSHOTS);
	cr_assert(d.described);
}

/* The names become folder and file names: DATA/scopes/SCOPE. */
Test(broker_util, describe_naming_a_scope_that_is_no_name_is_refused)
{
	struct driver_info d;

	cr_assert_eq(util_parse_describe("driver toy\nscope ../../etc\n", &d), PROTO_E_PROTOCOL);
	cr_assert_eq(util_parse_describe("driver Toy\nscope toy\n", &d), PROTO_E_PROTOCOL);
	cr_assert_eq(util_parse_describe("scope toy\n", &d), PROTO_E_PROTOCOL);
	cr_assert_eq(util_parse_describe("driver toy\n", &d), 0);
	cr_assert_str_eq(d.scope, "toy", "the scope defaults to the driver's name");
}

Test(broker_util, describe_without_features_has_none)
{
	struct driver_info d;

	cr_assert_eq(util_parse_describe("driver lxd\nscope lxd\nversion 1\nfeatures\n", &d), 0);
	cr_assert_eq(d.features, 0);
}

Test(broker_util, describe_without_driver_is_refused)
{
	struct driver_info d;

	cr_assert_eq(util_parse_describe("hello world\n", &d), PROTO_E_PROTOCOL);
	cr_assert_eq(util_parse_describe("", &d), PROTO_E_PROTOCOL);
}

Test(broker_util, instance_keys)
{
	char name[64], prop[16];

	cr_assert_eq(util_instance_key("local.web.cpus", name, sizeof(name), prop, sizeof(prop)), 0);
	cr_assert_str_eq(name, "web");
	cr_assert_str_eq(prop, "cpus");
	cr_assert_eq(util_instance_key("local.db-1.memory", name, sizeof(name), prop, sizeof(prop)), 0);
	cr_assert_str_eq(name, "db-1");
	cr_assert_str_eq(prop, "memory");
	cr_assert_eq(util_instance_key("local.driver", name, sizeof(name), prop, sizeof(prop)),
		     PROTO_E_NOT_FOUND);
	cr_assert_eq(util_instance_key("local.image.mirror", name, sizeof(name), prop, sizeof(prop)),
		     PROTO_E_NOT_FOUND);
	cr_assert_eq(util_instance_key("local.a.b.disk", name, sizeof(name), prop, sizeof(prop)),
		     PROTO_E_NOT_FOUND);
	cr_assert_eq(util_instance_key("client.web.cpus", name, sizeof(name), prop, sizeof(prop)),
		     PROTO_E_NOT_FOUND);
}

Test(broker_util, active_states)
{
	cr_assert(util_state_active(PROTO_STATE_RUNNING));
	cr_assert(util_state_active(PROTO_STATE_STARTING));
	cr_assert(util_state_active(PROTO_STATE_RESTARTING));
	cr_assert_not(util_state_active(PROTO_STATE_STOPPED));
	cr_assert_not(util_state_active(PROTO_STATE_SUSPENDED));
	cr_assert_not(util_state_active(PROTO_STATE_UNKNOWN));
}

/* ---- states a helper reports ---- */

static msgpack_unpacked unpacked;
static msgpack_sbuffer packed; /* the strings of unpacked point into it */
static char why[256];

static const msgpack_object *unpack(msgpack_sbuffer *sb)
{
	msgpack_unpacked_destroy(&unpacked);
	msgpack_sbuffer_destroy(&packed);
	packed = *sb;
	msgpack_unpacked_init(&unpacked);
	cr_assert_eq(msgpack_unpack_next(&unpacked, packed.data, packed.size, NULL), MSGPACK_UNPACK_SUCCESS);
	return &unpacked.data;
}

/* A map {key: value} where value is a string, or an int when text is NULL. */
static const msgpack_object *one_pair(const char *key, const char *text, size_t len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, key);
	if (text) {
		msgpack_pack_str(&pk, len);
		msgpack_pack_str_body(&pk, text, len);
	} else {
		msgpack_pack_int(&pk, 7);
	}
	return unpack(&sb);
}

static const msgpack_object *listed(const char *state)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "instances");
	msgpack_pack_array(&pk, 2);
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_str(&pk, "name", "a");
	proto_pack_kv_str(&pk, "state", "running");
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_str(&pk, "name", "b");
	proto_pack_kv_str(&pk, "state", state);
	return unpack(&sb);
}

Test(broker_states, protocol_states_and_absent_ones_pass)
{
	cr_assert_eq(util_check_states(one_pair("state", "suspended", 9), why, sizeof(why)), 0);
	cr_assert_eq(util_check_states(one_pair("new", "stopping", 8), why, sizeof(why)), 0);
	cr_assert_eq(util_check_states(one_pair("ssh_port", NULL, 0), why, sizeof(why)), 0);
	cr_assert_eq(util_check_states(listed("stopped"), why, sizeof(why)), 0);
	cr_assert_eq(util_check_states(NULL, why, sizeof(why)), 0);
	msgpack_unpacked_destroy(&unpacked);
	msgpack_sbuffer_destroy(&packed);
}

Test(broker_states, anything_else_is_a_protocol_violation)
{
	cr_assert_eq(util_check_states(one_pair("state", "running\n; rm", 12), why, sizeof(why)), PROTO_E_PROTOCOL);
	cr_assert_str_eq(why, "state \"running\\n; rm\" is not an instance state");
	cr_assert_eq(util_check_states(one_pair("new", "exploded", 8), why, sizeof(why)), PROTO_E_PROTOCOL);
	cr_assert_str_eq(why, "new \"exploded\" is not an instance state");
	cr_assert_eq(util_check_states(one_pair("old", "run\0ning", 8), why, sizeof(why)), PROTO_E_PROTOCOL);
	cr_assert_str_eq(why, "old \"run\\x00ning\" is not an instance state");
	cr_assert_eq(util_check_states(one_pair("state", NULL, 0), why, sizeof(why)), PROTO_E_PROTOCOL);
	cr_assert_str_eq(why, "state is not a string");
	cr_assert_eq(util_check_states(listed("Running"), why, sizeof(why)), PROTO_E_PROTOCOL);
	cr_assert_str_eq(why, "instances: state \"Running\" is not an instance state");
	msgpack_unpacked_destroy(&unpacked);
	msgpack_sbuffer_destroy(&packed);
}
