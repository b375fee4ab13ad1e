/*
 * The helper supervisor (core/vmctld/helper.c) on its own: no broker, just a
 * loop, the callbacks of struct helper_ops and a scripted helper (Python, on
 * the real protocol) that does what $SCRIPTED_DIR/script.json tells it per
 * method: "ok", "crash", "crash-once", "hang", "garbage", "badstate",
 * "notify NAME STATE" (a state notification, then the answer), and for
 * hello "refuse"; "driver", "scope" and "features" say what its hello
 * answer names. It appends its pid to $SCRIPTED_DIR/starts and writes the
 * hello params it got to $SCRIPTED_DIR/hello.json.
 *
 * Nothing here is timed: the loop runs until what a test waits for has
 * happened, and Criterion's timeout catches a supervisor that never gets
 * there.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"

#define PYTHON "/usr/bin/python3"

static const char scripted_helper[] =
	"#!" PYTHON "\n"
	"import sys, os, json, signal, msgpack\n"
	"D = os.environ['SCRIPTED_DIR']\n"
	"script = json.load(open(os.path.join(D, 'script.json')))\n"
	"with open(os.path.join(D, 'starts'), 'a') as f:\n"
	"    f.write('%d\\n' % os.getpid())\n"
	"unp = msgpack.Unpacker(raw=False)\n"
	"out = sys.stdout.buffer\n"
	"def send(m):\n"
	"    out.write(msgpack.packb(m))\n"
	"    out.flush()\n"
	"while True:\n"
	"    data = os.read(0, 65536)\n"
	"    if not data:\n"
	"        break\n"
	"    unp.feed(data)\n"
	"    for msg in unp:\n"
	"        if msg[0] != 0:\n"
	"            continue\n"
	"        _, mid, method, params = msg\n"
	"        act = script.get(method, 'ok')\n"
	"        if method == 'hello':\n"
	"            json.dump(params, open(os.path.join(D, 'hello.json'), 'w'))\n"
	"            if act == 'refuse':\n"
	"                send([1, mid, [7, 'speaks only protocol 99'], None])\n"
	"                continue\n"
	"            send([1, mid, None, dict(version=1, driver=script.get('driver', 'toy'),\n"
	"                 scope=script.get('scope', 'toy'), helper_version='1.0', usable=True,\n"
	"                 why='', features=script.get('features', []))])\n"
	"            continue\n"
	"        if method == 'shutdown':\n"
	"            send([1, mid, None, {}])\n"
	"            sys.exit(0)\n"
	"        if act == 'crash-once' and not os.path.exists(os.path.join(D, 'crashed')):\n"
	"            open(os.path.join(D, 'crashed'), 'w').close()\n"
	"            act = 'crash'\n"
	"        if act == 'crash':\n"
	"            os.kill(os.getpid(), signal.SIGKILL)\n"
	"        if act == 'hang':\n"
	"            continue\n"
	"        if act == 'garbage':\n"
	"            out.write(b'\\xc1\\xc1')\n"
	"            out.flush()\n"
	"            continue\n"
	"        if act.startswith('notify '):\n"
	"            _, name, state = act.split(' ')\n"
	"            send([2, 'state', dict(name=name, old='running', new=state)])\n"
	"        res = dict(n=params.get('n', -1) if isinstance(params, dict) else -1)\n"
	"        if act == 'badstate':\n"
	"            res['state'] = 'running\\n; rm -rf ~'\n"
	"        send([1, mid, None, res])\n";

static char dir[256];
static char helper_path[320];
static bool installed = true; /* does find() find it? */
static struct ev_loop *loop;
static struct helper *h;

/* What the callbacks saw. */
static int n_ready;
static int n_state;
static char last_state_name[64], last_state[32];
static int n_stopped;

/* One call's answer. */
struct answer {
	bool done;
	int err;
	char msg[1400];
	int64_t n;
};

static void write_text(const char *name, const char *text, mode_t mode)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_eq(atomic_write_file(path, text, strlen(text), mode), 0, "writing %s", path);
}

static void read_text(const char *name, char *buf, size_t len)
{
	char path[400];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	buf[0] = '\0';
	f = fopen(path, "r");
	if (!f)
		return;
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* How many times the scripted helper was started. */
static int starts(void)
{
	char text[4096];
	int n = 0;

	read_text("starts", text, sizeof(text));
	for (const char *p = text; *p; p++)
		n += *p == '\n';
	return n;
}

static int test_find(const char *driver, char *path, size_t pathlen, char *err, size_t errlen)
{
	if (!installed) {
		snprintf(err, errlen, "no helper for %s in %s", driver, dir);
		return PROTO_E_NOT_FOUND;
	}
	snprintf(path, pathlen, "%s", helper_path);
	return 0;
}

static void test_pack_settings(void *ud, msgpack_packer *pk)
{
	msgpack_pack_map(pk, 1);
	proto_pack_kv_str(pk, "local.toy.flavour", "sweet");
}

static void test_ready(void *ud, struct helper *hh)
{
	cr_assert_eq(hh, h);
	n_ready++;
}

static void test_state(void *ud, struct helper *hh, const char *name, enum proto_state state)
{
	n_state++;
	snprintf(last_state_name, sizeof(last_state_name), "%s", name);
	snprintf(last_state, sizeof(last_state), "%s", proto_state_name(state));
}

static void on_stopped(void *ud)
{
	n_stopped++;
}

static const struct helper_ops test_ops = {
	.find = test_find,
	.pack_settings = test_pack_settings,
	.ready = test_ready,
	.state = test_state,
};

static void on_answer(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct answer *a = ud;
	int64_t n = -1;

	cr_assert(!a->done, "a call was answered twice");
	a->done = true;
	a->err = err;
	snprintf(a->msg, sizeof(a->msg), "%s", errmsg ? errmsg : "");
	if (err == 0 && result)
		proto_get_int(result, "n", &n);
	a->n = n;
}

/* Run the loop until *flag is set (Criterion's timeout ends a hang). */
static void run_until_true(const bool *flag)
{
	while (!*flag)
		ev_run(loop, EVRUN_ONCE);
}

static void run_until_count(const int *count, int want)
{
	while (*count < want)
		ev_run(loop, EVRUN_ONCE);
}

static void run_until_state(enum helper_state st)
{
	while (helper_get_state(h) != st)
		ev_run(loop, EVRUN_ONCE);
}

static void start_helper(const char *script, double deadline_cap)
{
	struct helper_spec spec = {
		.loop = loop,
		.driver = "toy",
		.scope = "toy",
		.scope_dir = "/nowhere/scopes/toy",
		.deadline_cap = deadline_cap,
		.ops = &test_ops,
	};

	write_text("script.json", script, 0644);
	h = helper_new(&spec);
	cr_assert_not_null(h);
}

/* Call method with params {n: n}. */
static void call(const char *method, int64_t n, double deadline, struct answer *a)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	memset(a, 0, sizeof(*a));
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_int(&pk, "n", n);
	cr_assert_not_null(helper_call(h, method, &sb, deadline, on_answer, a));
	msgpack_sbuffer_destroy(&sb);
}

static void setup(void)
{
	if (access(PYTHON, X_OK) != 0 || system(PYTHON " -c 'import msgpack' 2>/dev/null") != 0)
		cr_skip_test("needs " PYTHON " with msgpack (python3-msgpack)");
	snprintf(dir, sizeof(dir), "/tmp/test-broker-helper.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(helper_path, sizeof(helper_path), "%s/vmctl-toy-helper", dir);
	write_text("vmctl-toy-helper", scripted_helper, 0755);
	setenv("SCRIPTED_DIR", dir, 1);
	loop = ev_default_loop(0);
	cr_assert_not_null(loop);
}

static void teardown(void)
{
	if (h) {
		n_stopped = 0;
		helper_stop(h, on_stopped, NULL);
		run_until_count(&n_stopped, 1);
		helper_free(h);
		h = NULL;
	}
	helper_errpipes_free();
	if (dir[0] && getenv("KEEP_TEST_DATA") == NULL)
		remove_tree(dir);
}

TestSuite(broker_helper, .init = setup, .fini = teardown, .timeout = 60);

Test(broker_helper, hello_carries_the_scope_folder_and_settings_and_makes_it_ready)
{
	char hello[4096];

	start_helper("{\"features\": [\"suspend\", \"clone\"]}", 0);
	cr_assert_eq(helper_get_state(h), HELPER_STARTING);
	run_until_count(&n_ready, 1);
	cr_assert_eq(helper_get_state(h), HELPER_READY);
	cr_assert_str_eq(helper_state_name(helper_get_state(h)), "ready");
	cr_assert_not_null(helper_hello(h));
	cr_assert_str_eq(helper_hello(h)->driver, "toy");
	cr_assert_eq(helper_hello(h)->features, PROTO_FEAT_SUSPEND | PROTO_FEAT_CLONE);
	read_text("hello.json", hello, sizeof(hello));
	cr_assert(strstr(hello, "\"scope_dir\": \"/nowhere/scopes/toy\""), "hello: %s", hello);
	cr_assert(strstr(hello, "\"local.toy.flavour\": \"sweet\""), "hello: %s", hello);
	cr_assert_str_eq(helper_why(h), "");
}

Test(broker_helper, calls_made_before_hello_wait_for_it_and_are_answered)
{
	struct answer a;

	start_helper("{}", 0);
	call("instance.info", 7, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, 0, "%s", a.msg);
	cr_assert_eq(a.n, 7);
	cr_assert_eq(n_ready, 1);
}

Test(broker_helper, calls_past_the_in_flight_limit_wait_their_turn)
{
	enum { N = PROTO_MAX_INFLIGHT + 44 };
	static struct answer a[N];
	int answered = 0;

	start_helper("{}", 0);
	run_until_count(&n_ready, 1);
	for (int i = 0; i < N; i++)
		call("instance.info", i, 30, &a[i]);
	while (answered < N) {
		ev_run(loop, EVRUN_ONCE);
		answered = 0;
		for (int i = 0; i < N; i++)
			answered += a[i].done;
	}
	for (int i = 0; i < N; i++) {
		cr_assert_eq(a[i].err, 0, "call %d: %s", i, a[i].msg);
		cr_assert_eq(a[i].n, i, "call %d got the answer of %lld", i, (long long)a[i].n);
	}
	cr_assert_eq(starts(), 1);
}

Test(broker_helper, a_crash_answers_the_call_and_the_helper_is_restarted)
{
	struct answer a;

	start_helper("{\"instance.start\": \"crash-once\"}", 0);
	run_until_count(&n_ready, 1);
	call("instance.start", 1, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, PROTO_E_UNAVAILABLE);
	cr_assert_str_eq(a.msg, "the toy helper crashed (killed by signal 9) during instance.start; "
				"it has been restarted");
	/* Back after its backoff, and the ready callback says so again. */
	run_until_count(&n_ready, 2);
	cr_assert_eq(starts(), 2);
	call("instance.start", 2, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, 0, "%s", a.msg);
}

Test(broker_helper, a_call_past_its_deadline_kills_the_helper)
{
	struct answer a;

	start_helper("{\"instance.stop\": \"hang\"}", 1);
	run_until_count(&n_ready, 1);
	call("instance.stop", 1, 120, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, PROTO_E_TIMEOUT);
	cr_assert_str_eq(a.msg, "the toy helper did not answer instance.stop within 1 s; it has been "
				"killed and restarted");
	run_until_count(&n_ready, 2);
	cr_assert_eq(starts(), 2);
}

Test(broker_helper, bytes_that_are_not_the_protocol_kill_the_helper)
{
	struct answer a;

	start_helper("{\"instance.info\": \"garbage\"}", 0);
	run_until_count(&n_ready, 1);
	call("instance.info", 1, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, PROTO_E_UNAVAILABLE);
	cr_assert(strstr(a.msg, "the toy helper broke the protocol (") &&
			  strstr(a.msg, "and was killed during instance.info"),
		  "%s", a.msg);
	run_until_count(&n_ready, 2);
}

Test(broker_helper, an_answer_with_a_state_outside_the_protocol_kills_the_helper)
{
	struct answer a;

	start_helper("{\"instance.start\": \"badstate\"}", 0);
	run_until_count(&n_ready, 1);
	call("instance.start", 1, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, PROTO_E_UNAVAILABLE);
	cr_assert(strstr(a.msg, "broke the protocol (state \"running\\n; rm -rf ~\" is not an instance "
				"state) and was killed during instance.start"),
		  "%s", a.msg);
}

Test(broker_helper, a_state_notification_reaches_the_state_callback)
{
	struct answer a;

	start_helper("{\"instance.stop\": \"notify web stopped\"}", 0);
	run_until_count(&n_ready, 1);
	call("instance.stop", 1, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, 0, "%s", a.msg);
	cr_assert_eq(n_state, 1);
	cr_assert_str_eq(last_state_name, "web");
	cr_assert_str_eq(last_state, "stopped");
}

Test(broker_helper, a_notification_with_a_state_outside_the_protocol_is_not_passed_on)
{
	struct answer a;

	start_helper("{\"instance.stop\": \"notify web exploded\"}", 0);
	run_until_count(&n_ready, 1);
	call("instance.stop", 1, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, PROTO_E_UNAVAILABLE);
	cr_assert(strstr(a.msg, "broke the protocol (new \"exploded\" is not an instance state, in a "
				"state notification)"),
		  "%s", a.msg);
	cr_assert_eq(n_state, 0, "the state callback got %s %s", last_state_name, last_state);
}

Test(broker_helper, a_refused_handshake_is_not_restarted_and_calls_fail_at_once)
{
	struct answer a;

	start_helper("{\"hello\": \"refuse\"}", 0);
	run_until_state(HELPER_UNUSABLE);
	cr_assert_null(helper_hello(h));
	cr_assert(strstr(helper_why(h), "refused the handshake: speaks only protocol 99; it is not "
					"used until that file is replaced"),
		  "%s", helper_why(h));
	for (int i = 0; i < 3; i++) {
		call("instance.info", i, 30, &a);
		run_until_true(&a.done);
		cr_assert_eq(a.err, PROTO_E_UNAVAILABLE);
		cr_assert_str_eq(a.msg, helper_why(h));
	}
	cr_assert_eq(starts(), 1);
	cr_assert_eq(n_ready, 0);
}

Test(broker_helper, a_hello_naming_another_scope_makes_the_helper_unusable)
{
	struct answer a;

	start_helper("{\"scope\": \"qemu\"}", 0);
	run_until_state(HELPER_UNUSABLE);
	cr_assert(strstr(helper_why(h), "says it is driver toy with scope qemu; expected driver toy "
					"with scope toy"),
		  "%s", helper_why(h));
	call("instance.info", 1, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, PROTO_E_UNAVAILABLE);
	cr_assert_str_eq(a.msg, helper_why(h));
	cr_assert_eq(n_ready, 0);
}

Test(broker_helper, a_missing_helper_is_looked_for_again_at_the_next_call)
{
	struct answer a;
	char why[400];

	installed = false;
	start_helper("{}", 0);
	cr_assert_eq(helper_get_state(h), HELPER_MISSING);
	call("instance.info", 1, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, PROTO_E_UNAVAILABLE);
	snprintf(why, sizeof(why), "no helper for toy in %s", dir);
	cr_assert_str_eq(a.msg, why);
	cr_assert_eq(starts(), 0);
	installed = true;
	call("instance.info", 2, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, 0, "%s", a.msg);
	cr_assert_eq(a.n, 2);
	cr_assert_eq(n_ready, 1);
}

Test(broker_helper, stop_shuts_the_helper_down_and_later_calls_fail)
{
	struct answer a;

	start_helper("{}", 0);
	run_until_count(&n_ready, 1);
	helper_stop(h, on_stopped, NULL);
	run_until_count(&n_stopped, 1);
	cr_assert_eq(helper_get_state(h), HELPER_STOPPED);
	call("instance.info", 1, 30, &a);
	run_until_true(&a.done);
	cr_assert_eq(a.err, PROTO_E_UNAVAILABLE);
	cr_assert_str_eq(a.msg, "the toy helper is shutting down");
	cr_assert_eq(starts(), 1, "it was started again");
}
