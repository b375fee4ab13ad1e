/* LXD's event stream: websocket frames and lifecycle events (recorded from
 * LXD 5.0.2's /1.0/events?type=lifecycle). */
#include <string.h>

#include <criterion/criterion.h>

#include "lxd.h"

static const char STOPPED[] =
	"{\"location\":\"none\",\"metadata\":{\"action\":\"instance-stopped\",\"requestor\":"
	"{\"address\":\"@\",\"protocol\":\"unix\",\"username\":\"root\"},\"source\":"
	"\"/1.0/instances/c1\"},\"project\":\"default\",\"timestamp\":"
	"\"2026-12-04T20:17:43.349325068Z\",\"type\":\"lifecycle\"}";

static const char SNAPSHOT_CREATED[] =
	"{\"metadata\":{\"action\":\"instance-snapshot-created\",\"source\":"
	"\"/1.0/instances/c1/snapshots/snap0\"},\"type\":\"lifecycle\"}";

static const char IMAGE_CREATED[] =
	"{\"metadata\":{\"action\":\"image-created\",\"source\":\"/1.0/images/2902\"},"
	"\"type\":\"lifecycle\"}";

TestSuite(lxd_events, .timeout = 10);

Test(lxd_events, a_lifecycle_event_names_the_instance_and_the_action)
{
	char name[64], action[64];

	cr_assert_eq(lxd_event_parse(STOPPED, strlen(STOPPED), name, sizeof(name), action,
				     sizeof(action)), 0);
	cr_expect_str_eq(name, "c1");
	cr_expect_str_eq(action, "instance-stopped");
	cr_assert_eq(lxd_event_parse(SNAPSHOT_CREATED, strlen(SNAPSHOT_CREATED), name, sizeof(name),
				     action, sizeof(action)), 0);
	cr_expect_str_eq(name, "c1");
	cr_expect_eq(lxd_event_parse(IMAGE_CREATED, strlen(IMAGE_CREATED), name, sizeof(name), action,
				     sizeof(action)), -1);
	cr_expect_eq(lxd_event_parse("not json", 8, name, sizeof(name), action, sizeof(action)), -1);
}

Test(lxd_events, a_text_frame_is_read_whole_and_not_before)
{
	unsigned char buf[300];
	struct lxd_ws_frame f;

	buf[0] = 0x81; /* FIN, text */
	buf[1] = 5;
	memcpy(buf + 2, "hello", 5);
	cr_expect_eq(lxd_ws_frame(buf, 1, &f), 0);
	cr_expect_eq(lxd_ws_frame(buf, 6, &f), 0);
	cr_assert_eq(lxd_ws_frame(buf, 7, &f), 7);
	cr_expect(f.fin);
	cr_expect_eq(f.opcode, 1);
	cr_expect_eq(f.len, 5);
	cr_expect_eq(memcmp(f.payload, "hello", 5), 0);
}

Test(lxd_events, a_longer_frame_has_a_16_bit_length)
{
	unsigned char buf[4 + 200];
	struct lxd_ws_frame f;

	buf[0] = 0x01; /* text, more to come */
	buf[1] = 126;
	buf[2] = 0;
	buf[3] = 200;
	memset(buf + 4, 'x', 200);
	cr_expect_eq(lxd_ws_frame(buf, 3, &f), 0);
	cr_expect_eq(lxd_ws_frame(buf, 100, &f), 0);
	cr_assert_eq(lxd_ws_frame(buf, sizeof(buf), &f), (long)sizeof(buf));
	cr_expect_not(f.fin);
	cr_expect_eq(f.len, 200);
}

Test(lxd_events, a_masked_frame_is_unmasked_and_a_reserved_bit_refused)
{
	static const unsigned char mask[4] = { 1, 2, 3, 4 };
	unsigned char buf[64];
	struct lxd_ws_frame f;
	size_t n = lxd_ws_pack(buf, sizeof(buf), 0xA, "ping!", 5, mask);

	cr_assert_eq(n, 11);
	cr_expect_eq(buf[0], 0x8A);
	cr_expect_eq(buf[1], 0x80 | 5);
	cr_assert_eq(lxd_ws_frame(buf, n, &f), 11);
	cr_expect_eq(f.opcode, 0xA);
	cr_expect_eq(memcmp(f.payload, "ping!", 5), 0);
	buf[0] = 0xC1; /* RSV1: an extension nobody negotiated */
	cr_expect_eq(lxd_ws_frame(buf, n, &f), -1);
	cr_expect_eq(lxd_ws_pack(buf, sizeof(buf), 0xA, buf, 126, mask), 0);
}
