/* proto_conn over socketpairs: framing, dispatch, limits, deadlines, closing. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <ev.h>

#include <vmproto/proto.h>

/* ---- fixture: a loop, two ends of a socketpair, and what each end saw ---- */

#define MAX_SEEN 512

struct seen {
	int requests, notifies, closed;
	int closed_err;
	char closed_why[256];
	char method[PROTO_MAX_METHOD + 1];
	uint64_t msgid;
	int64_t x;          /* params.x of the last request or notification */
	int64_t order[MAX_SEEN];
	bool reply_echo;    /* answer requests at once with {x} */
	bool free_in_request, free_in_closed;
};

struct result {
	int calls;
	int err;
	char errmsg[256];
	int64_t x;
	bool result_is_nil;
	struct proto_conn *free_me; /* freed from inside the callback */
};

static struct ev_loop *loop;
static int fds[2];

static void fixture_setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	loop = ev_loop_new(EVFLAG_AUTO);
	cr_assert_not_null(loop);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
}

static void fixture_teardown(void)
{
	ev_loop_destroy(loop);
}

TestSuite(conn, .init = fixture_setup, .fini = fixture_teardown, .timeout = 30);

static void on_request(struct proto_conn *c, void *ud, uint64_t msgid, const char *method,
		       const msgpack_object *params)
{
	struct seen *s = ud;

	s->requests++;
	s->msgid = msgid;
	snprintf(s->method, sizeof(s->method), "%s", method);
	s->x = -1;
	proto_get_int(params, "x", &s->x);
	if (s->requests <= MAX_SEEN)
		s->order[s->requests - 1] = s->x;
	if (s->reply_echo) {
		msgpack_sbuffer sb;
		msgpack_packer pk;

		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 1);
		proto_pack_kv_int(&pk, "x", s->x);
		cr_assert_eq(proto_reply_sb(c, msgid, 0, NULL, &sb), 0);
		msgpack_sbuffer_destroy(&sb);
	}
	if (s->free_in_request)
		proto_conn_free(c);
}

static void on_notify(struct proto_conn *c, void *ud, const char *method,
		      const msgpack_object *params)
{
	struct seen *s = ud;

	s->notifies++;
	snprintf(s->method, sizeof(s->method), "%s", method);
	s->x = -1;
	proto_get_int(params, "x", &s->x);
	if (s->notifies <= MAX_SEEN)
		s->order[s->notifies - 1] = s->x;
}

static void on_closed(struct proto_conn *c, void *ud, int err, const char *why)
{
	struct seen *s = ud;

	s->closed++;
	s->closed_err = err;
	snprintf(s->closed_why, sizeof(s->closed_why), "%s", why ? why : "");
	if (s->free_in_closed)
		proto_conn_free(c);
}

static const struct proto_conn_ops seen_ops = {
	.request = on_request,
	.notify = on_notify,
	.closed = on_closed,
};

static void on_result(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct result *r = ud;

	r->calls++;
	r->err = err;
	snprintf(r->errmsg, sizeof(r->errmsg), "%s", errmsg ? errmsg : "");
	cr_assert_not_null(result);
	r->result_is_nil = result->type == MSGPACK_OBJECT_NIL;
	r->x = -1;
	proto_get_int(result, "x", &r->x);
	if (r->free_me)
		proto_conn_free(r->free_me);
}

/* Run the loop until *flag becomes nonzero, or fail after a few seconds. */
static void run_until(const int *flag)
{
	ev_tstamp end = ev_time() + 5;

	while (!*flag) {
		cr_assert_lt(ev_time(), end, "timed out waiting for the loop");
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
		usleep(1000);
	}
}

/* Run the loop for a short while, for things that must NOT happen. */
static void run_for(double seconds)
{
	ev_tstamp end = ev_time() + seconds;

	while (ev_time() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(1000);
	}
}

static void pack_x(msgpack_sbuffer *sb, int64_t x)
{
	msgpack_packer pk;

	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_int(&pk, "x", x);
}

/* Write all of buf to a blocking-or-not fd, waiting as needed. */
static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			ev_run(loop, EVRUN_NOWAIT);
			continue;
		}
		cr_assert_gt(n, 0, "write: %s", strerror(errno));
		buf += n;
		len -= (size_t)n;
	}
}

/* ---- round trips ---- */

Test(conn, request_gets_its_result)
{
	struct seen sa = {0}, sb_seen = {.reply_echo = true};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], &seen_ops, &sa);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct result r = {0};
	msgpack_sbuffer params;
	uint64_t id = 0;

	pack_x(&params, 42);
	cr_assert_eq(proto_call_sb(a, "instance.start", &params, 5, on_result, &r, &id), 0);
	msgpack_sbuffer_destroy(&params);
	run_until(&r.calls);
	cr_assert_eq(r.err, 0);
	cr_assert_eq(r.x, 42);
	cr_assert_str_eq(sb_seen.method, "instance.start");
	cr_assert_eq(sb_seen.msgid, id);
	cr_assert_eq(proto_conn_pending_bytes(a), 0);
	proto_conn_free(a);
	proto_conn_free(b);
}

static void reply_not_found(struct proto_conn *c, void *ud, uint64_t msgid, const char *method,
			    const msgpack_object *params)
{
	cr_assert_eq(proto_reply(c, msgid, PROTO_E_NOT_FOUND, "no instance named \"web\"", NULL, 0), 0);
}

Test(conn, error_reply_reaches_caller_with_code_and_message)
{
	static const struct proto_conn_ops ops = {.request = reply_not_found};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &ops, NULL);
	struct result r = {0};

	cr_assert_eq(proto_call(a, "instance.info", NULL, 0, 5, on_result, &r, NULL), 0);
	run_until(&r.calls);
	cr_assert_eq(r.err, PROTO_E_NOT_FOUND);
	cr_assert_str_eq(r.errmsg, "no instance named \"web\"");
	cr_assert(r.result_is_nil);
	proto_conn_free(a);
	proto_conn_free(b);
}

static void reply_nil_result(struct proto_conn *c, void *ud, uint64_t msgid, const char *method,
			     const msgpack_object *params)
{
	cr_assert_eq(proto_reply(c, msgid, 0, NULL, NULL, 0), 0);
}

Test(conn, reply_without_result_is_nil)
{
	static const struct proto_conn_ops ops = {.request = reply_nil_result};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &ops, NULL);
	struct result r = {0};

	cr_assert_eq(proto_call(a, "ping", NULL, 0, 0, on_result, &r, NULL), 0);
	run_until(&r.calls);
	cr_assert_eq(r.err, 0);
	cr_assert(r.result_is_nil);
	proto_conn_free(a);
	proto_conn_free(b);
}

Test(conn, notification_arrives_with_params)
{
	struct seen sb_seen = {0};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	msgpack_sbuffer params;

	pack_x(&params, 7);
	cr_assert_eq(proto_notify_sb(a, "progress", &params), 0);
	msgpack_sbuffer_destroy(&params);
	run_until(&sb_seen.notifies);
	cr_assert_str_eq(sb_seen.method, "progress");
	cr_assert_eq(sb_seen.x, 7);
	cr_assert_eq(sb_seen.requests, 0);
	proto_conn_free(a);
	proto_conn_free(b);
}

Test(conn, notification_without_params_sends_empty_map)
{
	struct seen sb_seen = {0};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);

	cr_assert_eq(proto_notify(a, "state", NULL, 0), 0);
	run_until(&sb_seen.notifies);
	cr_assert_str_eq(sb_seen.method, "state");
	cr_assert_eq(sb_seen.x, -1);
	cr_assert_eq(sb_seen.closed, 0);
	proto_conn_free(a);
	proto_conn_free(b);
}

/* Requests travel both ways on one conn, with separate msgid spaces. */
Test(conn, both_ends_call_each_other)
{
	struct seen sa = {.reply_echo = true}, sb_seen = {.reply_echo = true};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], &seen_ops, &sa);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct result ra = {0}, rb = {0};
	msgpack_sbuffer p1, p2;

	pack_x(&p1, 1);
	pack_x(&p2, 2);
	cr_assert_eq(proto_call_sb(a, "m", &p1, 5, on_result, &ra, NULL), 0);
	cr_assert_eq(proto_call_sb(b, "m", &p2, 5, on_result, &rb, NULL), 0);
	msgpack_sbuffer_destroy(&p1);
	msgpack_sbuffer_destroy(&p2);
	run_until(&ra.calls);
	run_until(&rb.calls);
	cr_assert_eq(ra.x, 1);
	cr_assert_eq(rb.x, 2);
	proto_conn_free(a);
	proto_conn_free(b);
}

/* A request answered later, from outside the request callback. */
Test(conn, reply_after_callback_returns)
{
	struct seen sb_seen = {0};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct result r = {0};
	msgpack_sbuffer res;

	cr_assert_eq(proto_call(a, "slow", NULL, 0, 5, on_result, &r, NULL), 0);
	run_until(&sb_seen.requests);
	run_for(0.02);
	cr_assert_eq(r.calls, 0);
	pack_x(&res, 99);
	cr_assert_eq(proto_reply_sb(b, sb_seen.msgid, 0, NULL, &res), 0);
	/* A second answer to the same request is refused. */
	cr_assert_eq(proto_reply_sb(b, sb_seen.msgid, 0, NULL, &res), PROTO_E_INVALID_ARGUMENT);
	msgpack_sbuffer_destroy(&res);
	run_until(&r.calls);
	cr_assert_eq(r.x, 99);
	proto_conn_free(a);
	proto_conn_free(b);
}

/* ---- streaming ---- */

/* The bytes of request [0, msgid, method, {x: x}]. */
static void pack_request(msgpack_sbuffer *sb, uint64_t msgid, const char *method, int64_t x)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 0);
	msgpack_pack_uint64(&pk, msgid);
	proto_pack_str(&pk, method);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_int(&pk, "x", x);
}

Test(conn, message_split_into_one_byte_writes)
{
	struct seen sb_seen = {0};
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	msgpack_sbuffer sb;

	msgpack_sbuffer_init(&sb);
	pack_request(&sb, 5, "instance.state", 123456789);
	for (size_t i = 0; i < sb.size; i++) {
		write_all(fds[0], sb.data + i, 1);
		run_for(0.002);
		if (i + 1 < sb.size)
			cr_assert_eq(sb_seen.requests, 0, "request delivered after %zu of %zu bytes",
				     i + 1, sb.size);
	}
	run_until(&sb_seen.requests);
	cr_assert_eq(sb_seen.requests, 1);
	cr_assert_eq(sb_seen.msgid, 5);
	cr_assert_str_eq(sb_seen.method, "instance.state");
	cr_assert_eq(sb_seen.x, 123456789);
	msgpack_sbuffer_destroy(&sb);
	proto_conn_free(b);
	close(fds[0]);
}

Test(conn, many_messages_in_one_write)
{
	struct seen sb_seen = {0};
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	msgpack_sbuffer sb;
	const int count = 200;

	msgpack_sbuffer_init(&sb);
	for (int i = 0; i < count; i++)
		pack_request(&sb, (uint64_t)i + 1, "instance.state", i);
	write_all(fds[0], sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	while (sb_seen.requests < count) {
		int before = sb_seen.requests;
		ev_tstamp end = ev_time() + 5;

		while (sb_seen.requests == before && ev_time() < end)
			ev_run(loop, EVRUN_NOWAIT);
		cr_assert_gt(sb_seen.requests, before, "stuck at %d requests", before);
	}
	for (int i = 0; i < count; i++)
		cr_assert_eq(sb_seen.order[i], i, "request %d arrived out of order", i);
	cr_assert_eq(sb_seen.closed, 0);
	proto_conn_free(b);
	close(fds[0]);
}

/* A large message (near the 4 MiB limit) crosses the socket in many reads. */
Test(conn, large_message_round_trip)
{
	struct seen sb_seen = {.reply_echo = true};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct result r = {0};
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char *blob = calloc(1, PROTO_MAX_STRING);

	cr_assert_not_null(blob);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 4);
	proto_pack_kv_int(&pk, "x", 3);
	for (int i = 0; i < 3; i++) {
		char key[8];

		snprintf(key, sizeof(key), "b%d", i);
		proto_pack_str(&pk, key);
		msgpack_pack_bin(&pk, PROTO_MAX_STRING);
		msgpack_pack_bin_body(&pk, blob, PROTO_MAX_STRING);
	}
	cr_assert_eq(proto_call_sb(a, "big", &sb, 10, on_result, &r, NULL), 0);
	msgpack_sbuffer_destroy(&sb);
	free(blob);
	run_until(&r.calls);
	cr_assert_eq(r.err, 0);
	cr_assert_eq(r.x, 3);
	cr_assert_eq(sb_seen.closed, 0);
	proto_conn_free(a);
	proto_conn_free(b);
}

/* ---- limits: the conn drops a peer that breaks one ---- */

/* Write raw bytes at b, expect b to close with PROTO_E_PROTOCOL, and the raw
 * side to see the connection end. */
static void expect_dropped(const char *bytes, size_t len, const char *why_part)
{
	struct seen sb_seen = {0};
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	size_t off = 0;
	ev_tstamp end = ev_time() + 5;
	char buf[256];

	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	while (!sb_seen.closed) {
		cr_assert_lt(ev_time(), end, "the conn did not drop the peer");
		if (off < len) {
			ssize_t n = write(fds[0], bytes + off, len - off);
			if (n > 0)
				off += (size_t)n;
			else
				cr_assert(errno == EAGAIN, "write: %s", strerror(errno));
		}
		ev_run(loop, EVRUN_NOWAIT);
	}
	cr_assert_eq(sb_seen.closed_err, PROTO_E_PROTOCOL, "closed with %d (%s)",
		     sb_seen.closed_err, sb_seen.closed_why);
	cr_assert_not_null(strstr(sb_seen.closed_why, why_part), "why: %s", sb_seen.closed_why);
	cr_assert_not(proto_conn_is_open(b));
	cr_assert_eq(sb_seen.requests + sb_seen.notifies, 0);
	/* The peer sees the end of the connection (after any unread bytes). */
	ssize_t n;
	while ((n = read(fds[0], buf, sizeof(buf))) > 0)
		;
	cr_assert_eq(n, 0, "the dropped peer's socket is still open");
	proto_conn_free(b);
	close(fds[0]);
}

/* Request header [0, 1, "m"] followed by a params object given as bytes. */
static void request_with_params(msgpack_sbuffer *sb)
{
	msgpack_packer pk;

	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint8(&pk, 0);
	msgpack_pack_uint8(&pk, 1);
	proto_pack_str(&pk, "m");
}

Test(conn, message_over_4mib_is_dropped)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	request_with_params(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	/* Five strings of 1 MiB: each within its own limit, too big together. */
	msgpack_pack_map(&pk, 5);
	char *blob = calloc(1, PROTO_MAX_STRING);
	for (int i = 0; i < 5; i++) {
		char key[4] = {'k', (char)('0' + i), 0};
		proto_pack_str(&pk, key);
		msgpack_pack_str(&pk, PROTO_MAX_STRING);
		msgpack_pack_str_body(&pk, blob, PROTO_MAX_STRING);
	}
	free(blob);
	expect_dropped(sb.data, sb.size, "4 MiB");
	msgpack_sbuffer_destroy(&sb);
}

Test(conn, string_over_1mib_is_dropped_before_it_arrives)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	request_with_params(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "s");
	/* Only the header is sent: the length alone breaks the limit. */
	msgpack_pack_str(&pk, PROTO_MAX_STRING + 1);
	expect_dropped(sb.data, sb.size, "1 MiB");
	msgpack_sbuffer_destroy(&sb);
}

Test(conn, nesting_deeper_than_16_is_dropped)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	request_with_params(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	/* The message array is level 1, params level 2, ... */
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "deep");
	for (int i = 0; i < 15; i++)
		msgpack_pack_array(&pk, 1);
	msgpack_pack_nil(&pk);
	expect_dropped(sb.data, sb.size, "deeper than 16");
	msgpack_sbuffer_destroy(&sb);
}

Test(conn, array_over_65536_is_dropped)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	request_with_params(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "a");
	msgpack_pack_array(&pk, PROTO_MAX_ARRAY + 1);
	expect_dropped(sb.data, sb.size, "array longer");
	msgpack_sbuffer_destroy(&sb);
}

Test(conn, map_over_4096_is_dropped)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	request_with_params(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, PROTO_MAX_MAP + 1);
	expect_dropped(sb.data, sb.size, "map larger");
	msgpack_sbuffer_destroy(&sb);
}

Test(conn, method_over_64_bytes_is_dropped)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char method[PROTO_MAX_METHOD + 2];

	memset(method, 'm', sizeof(method) - 1);
	method[sizeof(method) - 1] = '\0';
	msgpack_sbuffer_init(&sb);
	pack_request(&sb, 1, method, 0);
	expect_dropped(sb.data, sb.size, "method");
	msgpack_sbuffer_destroy(&sb);
	(void)pk;
}

Test(conn, not_msgpack_rpc_is_dropped)
{
	static const char bytes[] = {(char)0x93, 0x07, 0x01, 0x02}; /* [7, 1, 2] */

	expect_dropped(bytes, sizeof(bytes), "unknown type");
}

Test(conn, byte_0xc1_is_dropped)
{
	static const char bytes[] = {(char)0x94, 0x00, 0x01, (char)0xc1};

	expect_dropped(bytes, sizeof(bytes), "0xc1");
}

Test(conn, more_than_256_requests_in_flight_is_dropped)
{
	msgpack_sbuffer sb;

	msgpack_sbuffer_init(&sb);
	for (int i = 0; i <= PROTO_MAX_INFLIGHT; i++)
		pack_request(&sb, (uint64_t)i + 1, "instance.start", i);
	/* seen_ops counts requests, but expect_dropped wants none delivered
	 * before the drop, so check the count with a conn of our own. */
	struct seen sb_seen = {0};
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	write_all(fds[0], sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	ev_tstamp end = ev_time() + 5;
	while (!sb_seen.closed && ev_time() < end)
		ev_run(loop, EVRUN_NOWAIT);
	cr_assert_eq(sb_seen.closed, 1);
	cr_assert_eq(sb_seen.closed_err, PROTO_E_PROTOCOL);
	cr_assert_not_null(strstr(sb_seen.closed_why, "256 requests"), "why: %s", sb_seen.closed_why);
	cr_assert_eq(sb_seen.requests, PROTO_MAX_INFLIGHT);
	proto_conn_free(b);
	close(fds[0]);
}

Test(conn, call_past_256_in_flight_is_busy)
{
	struct seen sb_seen = {0};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	static struct result r[PROTO_MAX_INFLIGHT + 1];

	memset(r, 0, sizeof(r));
	for (int i = 0; i < PROTO_MAX_INFLIGHT; i++)
		cr_assert_eq(proto_call(a, "m", NULL, 0, 0, on_result, &r[i], NULL), 0, "call %d", i);
	cr_assert_eq(proto_call(a, "m", NULL, 0, 0, on_result, &r[PROTO_MAX_INFLIGHT], NULL),
		     PROTO_E_BUSY);
	/* BUSY is local: the conn stays open and the calls stay pending. */
	cr_assert(proto_conn_is_open(a));
	proto_conn_free(b);
	run_for(0.05);
	for (int i = 0; i < PROTO_MAX_INFLIGHT; i++)
		cr_assert_eq(r[i].err, PROTO_E_UNAVAILABLE, "call %d: %d", i, r[i].err);
	cr_assert_eq(r[PROTO_MAX_INFLIGHT].calls, 0);
	proto_conn_free(a);
}

Test(conn, sending_what_the_peer_would_refuse_fails_locally)
{
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct result r = {0};
	char method[PROTO_MAX_METHOD + 2];
	static const char two_objects[] = {(char)0x80, (char)0x80};
	static const char truncated[] = {(char)0x81, (char)0xa1};

	memset(method, 'm', sizeof(method) - 1);
	method[sizeof(method) - 1] = '\0';
	cr_assert_eq(proto_call(a, method, NULL, 0, 0, on_result, &r, NULL), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(proto_call(a, "", NULL, 0, 0, on_result, &r, NULL), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(proto_call(a, "m", two_objects, sizeof(two_objects), 0, on_result, &r, NULL),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(proto_notify(a, "m", truncated, sizeof(truncated)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(proto_conn_pending_bytes(a), 0);
	cr_assert(proto_conn_is_open(a));
	proto_conn_free(a);
	close(fds[1]);
}

/* ---- deadlines, cancelling and closing ---- */

Test(conn, timeout_fires_when_no_answer_comes)
{
	struct seen sb_seen = {0};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct result r = {0};
	ev_tstamp start = ev_time();

	cr_assert_eq(proto_call(a, "instance.stop", NULL, 0, 0.1, on_result, &r, NULL), 0);
	run_until(&r.calls);
	cr_assert_geq(ev_time() - start, 0.09);
	cr_assert_eq(r.err, PROTO_E_TIMEOUT);
	cr_assert_not_null(strstr(r.errmsg, "instance.stop"), "errmsg: %s", r.errmsg);
	/* The late answer is ignored: no second callback, the conn stays up. */
	cr_assert_eq(sb_seen.requests, 1);
	cr_assert_eq(proto_reply(b, sb_seen.msgid, 0, NULL, NULL, 0), 0);
	run_for(0.05);
	cr_assert_eq(r.calls, 1);
	cr_assert(proto_conn_is_open(a));
	proto_conn_free(a);
	proto_conn_free(b);
}

Test(conn, cancelled_call_never_calls_back)
{
	struct seen sb_seen = {.reply_echo = true};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct result r = {0};
	uint64_t id;

	cr_assert_eq(proto_call(a, "m", NULL, 0, 0.05, on_result, &r, &id), 0);
	proto_cancel(a, id);
	run_until(&sb_seen.requests);
	run_for(0.1);
	cr_assert_eq(r.calls, 0);
	cr_assert(proto_conn_is_open(a));
	proto_conn_free(a);
	proto_conn_free(b);
}

Test(conn, close_fails_pending_calls_then_reports_closed)
{
	struct seen sa = {0};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], &seen_ops, &sa);
	struct result r1 = {0}, r2 = {0};

	cr_assert_eq(proto_call(a, "m1", NULL, 0, 5, on_result, &r1, NULL), 0);
	cr_assert_eq(proto_call(a, "m2", NULL, 0, 0, on_result, &r2, NULL), 0);
	proto_conn_close(a, PROTO_E_TIMEOUT, "helper hung");
	cr_assert_eq(r1.calls, 1);
	cr_assert_eq(r1.err, PROTO_E_UNAVAILABLE);
	cr_assert_str_eq(r1.errmsg, "helper hung");
	cr_assert_eq(r2.err, PROTO_E_UNAVAILABLE);
	cr_assert_eq(sa.closed, 1);
	cr_assert_eq(sa.closed_err, PROTO_E_TIMEOUT);
	cr_assert_not(proto_conn_is_open(a));
	cr_assert_eq(proto_call(a, "m3", NULL, 0, 0, on_result, &r1, NULL), PROTO_E_UNAVAILABLE);
	cr_assert_eq(proto_notify(a, "n", NULL, 0), PROTO_E_UNAVAILABLE);
	/* A second close says nothing more. */
	proto_conn_close(a, 0, NULL);
	cr_assert_eq(sa.closed, 1);
	proto_conn_free(a);
	close(fds[1]);
}

Test(conn, peer_eof_fails_pending_calls)
{
	struct seen sa = {0}, sb_seen = {0};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], &seen_ops, &sa);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct result r = {0};

	cr_assert_eq(proto_call(a, "instance.start", NULL, 0, 0, on_result, &r, NULL), 0);
	/* The peer reads the request, then goes away without answering. */
	run_until(&sb_seen.requests);
	proto_conn_free(b);
	run_until(&sa.closed);
	cr_assert_eq(sa.closed_err, 0);
	cr_assert_eq(r.calls, 1);
	cr_assert_eq(r.err, PROTO_E_UNAVAILABLE);
	proto_conn_free(a);
}

Test(conn, eof_in_the_middle_of_a_message_is_a_protocol_error)
{
	struct seen sb_seen = {0};
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	msgpack_sbuffer sb;

	msgpack_sbuffer_init(&sb);
	pack_request(&sb, 1, "m", 1);
	write_all(fds[0], sb.data, sb.size - 1);
	close(fds[0]);
	msgpack_sbuffer_destroy(&sb);
	run_until(&sb_seen.closed);
	cr_assert_eq(sb_seen.closed_err, PROTO_E_PROTOCOL);
	cr_assert_eq(sb_seen.requests, 0);
	proto_conn_free(b);
}

/* ---- freeing from inside callbacks (run under ASan to mean much) ---- */

Test(conn, free_inside_request_callback)
{
	struct seen sb_seen = {.free_in_request = true};
	msgpack_sbuffer sb;

	cr_assert_not_null(proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen));

	msgpack_sbuffer_init(&sb);
	/* Two requests in one write: the second must not reach a freed conn. */
	pack_request(&sb, 1, "m", 1);
	pack_request(&sb, 2, "m", 2);
	write_all(fds[0], sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	run_until(&sb_seen.requests);
	run_for(0.02);
	cr_assert_eq(sb_seen.requests, 1);
	cr_assert_eq(sb_seen.closed, 0);
	close(fds[0]);
}

Test(conn, free_inside_result_callback)
{
	struct seen sb_seen = {.reply_echo = true};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct result r = {.free_me = a};

	cr_assert_eq(proto_call(a, "m", NULL, 0, 5, on_result, &r, NULL), 0);
	run_until(&r.calls);
	run_for(0.02);
	cr_assert_eq(r.calls, 1);
	proto_conn_free(b);
}

Test(conn, free_inside_closed_callback_with_calls_pending)
{
	struct seen sa = {.free_in_closed = true};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], &seen_ops, &sa);
	struct result r = {0};

	cr_assert_eq(proto_call(a, "m", NULL, 0, 0.05, on_result, &r, NULL), 0);
	close(fds[1]);
	run_until(&sa.closed);
	run_for(0.1);
	cr_assert_eq(r.calls, 1);
	cr_assert_eq(r.err, PROTO_E_UNAVAILABLE);
}

Test(conn, free_with_calls_pending_runs_no_callback)
{
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct result r = {0};

	cr_assert_eq(proto_call(a, "m", NULL, 0, 0.02, on_result, &r, NULL), 0);
	proto_conn_free(a);
	run_for(0.1);
	cr_assert_eq(r.calls, 0);
	close(fds[1]);
}

/* ---- output the peer does not read ---- */

Test(conn, queue_past_its_byte_limit_is_busy)
{
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char *blob = calloc(1, PROTO_MAX_STRING);
	int ret = 0, sent = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "b");
	msgpack_pack_bin(&pk, PROTO_MAX_STRING);
	msgpack_pack_bin_body(&pk, blob, PROTO_MAX_STRING);
	free(blob);
	/* The peer (fds[1]) never reads: the queue only grows. */
	while (sent < 1000 && (ret = proto_notify_sb(a, "log", &sb)) == 0)
		sent++;
	msgpack_sbuffer_destroy(&sb);
	cr_assert_eq(ret, PROTO_E_BUSY, "still accepted after %d MiB", sent);
	cr_assert_gt(sent, 16, "refused too early, after %d MiB", sent);
	cr_assert_geq(proto_conn_pending_bytes(a), (size_t)(sent - 1) * PROTO_MAX_STRING / 2);
	cr_assert(proto_conn_is_open(a), "BUSY is local: the conn stays open");
	proto_conn_free(a);
	close(fds[1]);
}

Test(conn, write_to_a_closed_pipe_closes_with_io_error)
{
	int in[2], out[2];
	struct seen sa = {0};
	struct result r = {0};

	close(fds[0]);
	close(fds[1]);
	cr_assert_eq(pipe(in), 0);
	cr_assert_eq(pipe(out), 0);
	close(out[0]); /* nobody will read what we write */
	struct proto_conn *a = proto_conn_new(loop, in[0], out[1], &seen_ops, &sa);
	/* The failure is reported from the loop, not inside the call. */
	cr_assert_eq(proto_call(a, "instance.start", NULL, 0, 0, on_result, &r, NULL), 0);
	cr_assert_eq(sa.closed, 0);
	run_until(&sa.closed);
	cr_assert_eq(sa.closed_err, PROTO_E_IO);
	cr_assert_not_null(strstr(sa.closed_why, "Broken pipe"), "why: %s", sa.closed_why);
	cr_assert_eq(r.err, PROTO_E_UNAVAILABLE);
	proto_conn_free(a);
	close(in[1]);
}

/* ---- calling back into the conn from its callbacks ---- */

static void close_in_request(struct proto_conn *c, void *ud, uint64_t msgid, const char *method,
			     const msgpack_object *params)
{
	struct seen *s = ud;

	s->requests++;
	proto_conn_close(c, PROTO_E_INVALID_ARGUMENT, "refused");
}

Test(conn, close_inside_request_callback)
{
	static const struct proto_conn_ops ops = {.request = close_in_request, .closed = on_closed};
	struct seen sb_seen = {0};
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &ops, &sb_seen);
	msgpack_sbuffer sb;

	msgpack_sbuffer_init(&sb);
	pack_request(&sb, 1, "m", 1);
	pack_request(&sb, 2, "m", 2);
	write_all(fds[0], sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	run_until(&sb_seen.closed);
	run_for(0.02);
	cr_assert_eq(sb_seen.requests, 1);
	cr_assert_eq(sb_seen.closed, 1);
	cr_assert_eq(sb_seen.closed_err, PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(sb_seen.closed_why, "refused");
	proto_conn_free(b);
	close(fds[0]);
}

struct chain {
	struct proto_conn *conn;
	int done;
	int64_t last;
};

static void chain_result(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct chain *ch = ud;
	msgpack_sbuffer sb;

	cr_assert_eq(err, 0, "%s", errmsg);
	cr_assert_eq(proto_get_int(result, "x", &ch->last), 0);
	if (ch->last == 5) {
		ch->done = 1;
		return;
	}
	/* The next call starts from inside this call's result callback. */
	pack_x(&sb, ch->last + 1);
	cr_assert_eq(proto_call_sb(ch->conn, "m", &sb, 5, chain_result, ch, NULL), 0);
	msgpack_sbuffer_destroy(&sb);
}

Test(conn, call_from_inside_a_result_callback)
{
	struct seen sb_seen = {.reply_echo = true};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct chain ch = {.conn = a};
	msgpack_sbuffer sb;

	pack_x(&sb, 1);
	cr_assert_eq(proto_call_sb(a, "m", &sb, 5, chain_result, &ch, NULL), 0);
	msgpack_sbuffer_destroy(&sb);
	run_until(&ch.done);
	cr_assert_eq(ch.last, 5);
	cr_assert_eq(sb_seen.requests, 5);
	proto_conn_free(a);
	proto_conn_free(b);
}

Test(conn, request_without_a_handler_is_answered_unsupported)
{
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], NULL, NULL);
	struct result r = {0};

	cr_assert_eq(proto_call(a, "instance.start", NULL, 0, 5, on_result, &r, NULL), 0);
	run_until(&r.calls);
	cr_assert_eq(r.err, PROTO_E_UNSUPPORTED);
	cr_assert_str_eq(r.errmsg, "instance.start is not supported here");
	proto_conn_free(a);
	proto_conn_free(b);
}

Test(conn, error_reply_without_message_gets_the_standard_text)
{
	static const char reply[] = {(char)0x94, 0x01, 0x01, (char)0x92, 0x05, (char)0xc0,
				     (char)0xc0}; /* [1, 1, [5, nil], nil] */
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct result r = {0};
	uint64_t id;

	cr_assert_eq(proto_call(a, "m", NULL, 0, 5, on_result, &r, &id), 0);
	cr_assert_eq(id, 1);
	write_all(fds[1], reply, sizeof(reply));
	run_until(&r.calls);
	cr_assert_eq(r.err, PROTO_E_BUSY);
	cr_assert_str_eq(r.errmsg, "busy");
	proto_conn_free(a);
	close(fds[1]);
}

Test(conn, free_inside_timeout_callback)
{
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct result r1 = {.free_me = a}, r2 = {0};

	cr_assert_eq(proto_call(a, "first", NULL, 0, 0.05, on_result, &r1, NULL), 0);
	cr_assert_eq(proto_call(a, "second", NULL, 0, 0.2, on_result, &r2, NULL), 0);
	run_until(&r1.calls);
	cr_assert_eq(r1.err, PROTO_E_TIMEOUT);
	run_for(0.3);
	cr_assert_eq(r2.calls, 0, "a call of a freed conn called back");
	close(fds[1]);
}

static void free_in_notify(struct proto_conn *c, void *ud, const char *method,
			   const msgpack_object *params)
{
	(*(int *)ud)++;
	proto_conn_free(c);
}

Test(conn, free_inside_notify_callback)
{
	static const struct proto_conn_ops ops = {.notify = free_in_notify};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	int notified = 0;

	cr_assert_not_null(proto_conn_new(loop, fds[1], fds[1], &ops, &notified));
	cr_assert_eq(proto_notify(a, "one", NULL, 0), 0);
	cr_assert_eq(proto_notify(a, "two", NULL, 0), 0);
	run_until(&notified);
	run_for(0.02);
	cr_assert_eq(notified, 1);
	proto_conn_free(a);
}

/* ---- proto_conn_set_limits: what one peer may make a conn hold ---- */

/* A request [0, 1, "m", {"s": STR}] whose string is len bytes. */
static void request_with_string(msgpack_sbuffer *sb, size_t len)
{
	msgpack_packer pk;
	char *blob = calloc(1, len ? len : 1);

	cr_assert_not_null(blob);
	request_with_params(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "s");
	msgpack_pack_str(&pk, len);
	msgpack_pack_str_body(&pk, blob, len);
	free(blob);
}

/* Write what the socket takes now; the offset reached. */
static size_t write_some(int fd, const char *buf, size_t off, size_t len)
{
	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	return off;
}

Test(conn, an_incomplete_message_is_dropped_at_its_deadline)
{
	struct seen sb_seen = {0};
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct proto_conn_limits lim = {.message_s = 1};
	msgpack_sbuffer sb;

	proto_conn_set_limits(b, &lim);
	request_with_string(&sb, 1000);
	write_all(fds[0], sb.data, sb.size - 10);
	run_for(0.1);
	cr_assert_eq(sb_seen.closed, 0, "dropped before the deadline");
	cr_assert_eq(proto_conn_partial_bytes(b), sb.size - 10);
	run_until(&sb_seen.closed);
	cr_assert_eq(sb_seen.closed_err, PROTO_E_TIMEOUT);
	cr_assert(strstr(sb_seen.closed_why, "not complete 1 s after its first byte"), "why: %s",
		  sb_seen.closed_why);
	cr_assert_eq(sb_seen.requests, 0);
	msgpack_sbuffer_destroy(&sb);
	proto_conn_free(b);
	close(fds[0]);
}

Test(conn, a_message_completed_before_its_deadline_is_delivered)
{
	struct seen sb_seen = {0};
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct proto_conn_limits lim = {.message_s = 3};
	msgpack_sbuffer sb;

	proto_conn_set_limits(b, &lim);
	request_with_string(&sb, 1000);
	for (int i = 0; i < 2; i++) {
		/* The deadline counts from each message's first byte. */
		write_all(fds[0], sb.data, sb.size / 2);
		run_for(0.3);
		write_all(fds[0], sb.data + sb.size / 2, sb.size - sb.size / 2);
		run_until(&sb_seen.requests);
		sb_seen.requests = 0;
		proto_reply(b, 1, 0, NULL, NULL, 0);
	}
	cr_assert_eq(sb_seen.closed, 0, "closed: %s", sb_seen.closed_why);
	cr_assert_eq(proto_conn_partial_bytes(b), 0);
	msgpack_sbuffer_destroy(&sb);
	proto_conn_free(b);
	close(fds[0]);
}

Test(conn, an_idle_peer_is_dropped)
{
	struct seen sb_seen = {0};
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct proto_conn_limits lim = {.idle_s = 0.3};

	proto_conn_set_limits(b, &lim);
	run_until(&sb_seen.closed);
	cr_assert_eq(sb_seen.closed_err, PROTO_E_TIMEOUT);
	cr_assert_str_eq(sb_seen.closed_why, "idle for 0.3 s");
	proto_conn_free(b);
	close(fds[0]);
}

Test(conn, a_peer_awaiting_an_answer_is_not_idle)
{
	struct seen sb_seen = {0};
	struct proto_conn *a = proto_conn_new(loop, fds[0], fds[0], NULL, NULL);
	struct proto_conn *b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	struct proto_conn_limits lim = {.idle_s = 0.2};
	struct result r = {0};

	proto_conn_set_limits(b, &lim);
	cr_assert_eq(proto_call(a, "slow", NULL, 0, 0, on_result, &r, NULL), 0);
	run_until(&sb_seen.requests);
	run_for(0.6);
	cr_assert_eq(sb_seen.closed, 0, "dropped while its request was being worked on");
	cr_assert_eq(proto_reply(b, sb_seen.msgid, 0, NULL, NULL, 0), 0);
	run_until(&r.calls);
	cr_assert_eq(r.err, 0);
	/* Answered: idle from now on. */
	run_until(&sb_seen.closed);
	cr_assert_eq(sb_seen.closed_err, PROTO_E_TIMEOUT);
	proto_conn_free(a);
	proto_conn_free(b);
}

Test(conn, incomplete_messages_share_one_budget)
{
	int fds2[2];
	struct proto_budget budget = {.max = 100000};
	struct proto_conn_limits lim = {.budget = &budget};
	struct seen s1 = {0}, s2 = {0};
	struct proto_conn *b1, *b2;
	msgpack_sbuffer big, small;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds2), 0);
	b1 = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &s1);
	b2 = proto_conn_new(loop, fds2[1], fds2[1], &seen_ops, &s2);
	proto_conn_set_limits(b1, &lim);
	proto_conn_set_limits(b2, &lim);
	request_with_string(&big, 70000);
	request_with_string(&small, 40000);
	write_all(fds[0], big.data, big.size - 1);
	run_for(0.1);
	cr_assert_eq(budget.used, big.size - 1);
	/* The second peer's incomplete message does not fit beside the first. */
	fcntl(fds2[0], F_SETFL, O_NONBLOCK);
	write_some(fds2[0], small.data, 0, small.size - 1);
	run_until(&s2.closed);
	cr_assert_eq(s2.closed_err, PROTO_E_BUSY);
	cr_assert(strstr(s2.closed_why, "100000 bytes"), "why: %s", s2.closed_why);
	cr_assert_eq(s1.closed, 0);
	cr_assert_eq(budget.used, big.size - 1);
	/* A complete message holds nothing once delivered. */
	write_all(fds[0], big.data + big.size - 1, 1);
	run_until(&s1.requests);
	cr_assert_eq(budget.used, 0);
	write_all(fds[0], big.data, 100);
	run_for(0.05);
	cr_assert_eq(budget.used, 100);
	proto_conn_free(b1);
	cr_assert_eq(budget.used, 0, "a freed conn gives its bytes back");
	proto_conn_free(b2);
	msgpack_sbuffer_destroy(&big);
	msgpack_sbuffer_destroy(&small);
	close(fds[0]);
	close(fds2[0]);
}

Test(conn, a_peer_that_leaves_its_answers_unread_is_not_read)
{
	struct seen sb_seen = {.reply_echo = true};
	struct proto_conn *b;
	struct proto_conn_limits lim = {.max_output = 4096};
	msgpack_sbuffer req;
	int small = 4096;
	size_t off = 0, total;
	char *many, buf[65536];
	int count = 20000;

	/* Small kernel buffers, so that answers queue up in the conn. */
	setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	b = proto_conn_new(loop, fds[1], fds[1], &seen_ops, &sb_seen);
	proto_conn_set_limits(b, &lim);
	request_with_string(&req, 200);
	total = req.size * (size_t)count;
	many = malloc(total);
	cr_assert_not_null(many);
	for (int i = 0; i < count; i++) {
		/* msgid 1 each time: answered before the next one is read */
		memcpy(many + (size_t)i * req.size, req.data, req.size);
	}
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	for (int round = 0; round < 200 && off < total; round++) {
		off = write_some(fds[0], many, off, total);
		run_for(0.005);
	}
	cr_assert_lt(off, total, "the conn read everything though its answers were not read");
	cr_assert_lt(proto_conn_pending_bytes(b), 4096 + 65536, "%zu pending, %d read", proto_conn_pending_bytes(b), sb_seen.requests);
	cr_assert_eq(sb_seen.closed, 0);
	/* Reading the answers lets it read the rest. */
	for (ev_tstamp end = ev_time() + 10; sb_seen.requests < count;) {
		cr_assert_lt(ev_time(), end, "only %d of %d requests read", sb_seen.requests, count);
		while (read(fds[0], buf, sizeof(buf)) > 0)
			;
		off = write_some(fds[0], many, off, total);
		ev_run(loop, EVRUN_NOWAIT);
	}
	cr_assert_eq(sb_seen.closed, 0);
	free(many);
	msgpack_sbuffer_destroy(&req);
	proto_conn_free(b);
	close(fds[0]);
}
