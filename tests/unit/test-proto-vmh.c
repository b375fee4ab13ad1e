/*
 * The helper SDK end to end: a child process runs vmh_main() with a small
 * driver on pipes, and the test talks to it as the broker would.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <ev.h>

#include <vmproto/vmh.h>

/* ---- the driver the child runs ---- */

static char drv_scope_dir[256];

static int drv_init(const char *scope_dir, const msgpack_object *settings, char *why, size_t whylen)
{
	/* The hello's settings are there for the SDK's lookups by now. */
	const char *mode = vmh_setting("test.mode", "ok");

	snprintf(drv_scope_dir, sizeof(drv_scope_dir), "%s", scope_dir);
	if (strcmp(mode, "broken") == 0) {
		snprintf(why, whylen, "no hypervisor on this host");
		return PROTO_E_UNAVAILABLE;
	}
	return 0;
}

/* Answers {state: "running", name, scope_dir} after a progress and a state
 * notification, and prints to stdout on the way. */
static void drv_instance_state(struct vmh_req *req, const msgpack_object *params)
{
	char name[64] = "";
	msgpack_packer *pk;

	printf("stray output from a handler\n");
	fflush(stdout);
	if (proto_get_str(proto_map_get(params, "instance"), "name", name, sizeof(name)) < 0) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "%s needs instance.name", vmh_method(req));
		return;
	}
	vmh_progress(req, 0.5, "halfway");
	vmh_state_changed(name, "stopped", "running");
	pk = vmh_result(req);
	msgpack_pack_map(pk, 3);
	proto_pack_kv_str(pk, "state", "running");
	proto_pack_kv_str(pk, "name", name);
	proto_pack_kv_str(pk, "scope_dir", drv_scope_dir);
	vmh_done(req);
}

/* Answers later, from a timer on the helper's loop. */
static ev_timer drv_timer;
static struct vmh_req *drv_later;

static void drv_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	msgpack_packer *pk = vmh_result(drv_later);

	msgpack_pack_map(pk, 1);
	proto_pack_kv_str(pk, "snapshot", "snap1");
	vmh_done(drv_later);
	drv_later = NULL;
}

static void drv_snapshot_create(struct vmh_req *req, const msgpack_object *params)
{
	drv_later = req;
	ev_timer_init(&drv_timer, drv_timer_cb, 0.05, 0);
	ev_timer_start(vmh_loop(), &drv_timer);
}

/* Notifies params["states"] ("STATE" or "STATE:REASON") in order through
 * the SDK's memory of the states, after remembering params["seen"] if
 * given; answers {dir}. */
static void drv_instance_start(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *states = proto_map_get(params, "states");
	char name[64] = "", dir[512] = "";
	enum proto_state st;

	proto_get_str(proto_map_get(params, "instance"), "name", name, sizeof(name));
	if (proto_get_state(params, "seen", &st) == 0)
		vmh_state_seen(name, st);
	for (uint32_t i = 0; states && states->type == MSGPACK_OBJECT_ARRAY && i < states->via.array.size;
	     i++) {
		char text[96], *reason;

		if (proto_obj_str(&states->via.array.ptr[i], text, sizeof(text)) < 0)
			continue;
		reason = strchr(text, ':');
		if (reason)
			*reason++ = '\0';
		if (proto_state_from_name(text, &st) == 0)
			vmh_state_notify_why(name, st, reason);
	}
	vmh_instance_dir(name, dir, sizeof(dir));
	msgpack_pack_map(vmh_result(req), 1);
	proto_pack_kv_str(vmh_result(req), "dir", dir);
	vmh_done(req);
}

static void drv_fini(void)
{
	fprintf(stderr, "fini ran\n");
}

static const struct vmh_ops drv_ops = {
	.ops_version = VMH_OPS_VERSION,
	.driver = "testdrv",
	.scope = "testscope",
	.version = "9.9.1",
	.init = drv_init,
	.instance_state = drv_instance_state,
	.instance_start = drv_instance_start,
	.snapshot_create = drv_snapshot_create,
	.instance_clone = NULL,
	.fini = drv_fini,
};

/* ---- the child ---- */

struct child {
	pid_t pid;
	int to;   /* its stdin */
	int from; /* its stdout */
	int err;  /* its stderr */
};

static bool print_before_main;

static struct child spawn(const char *arg)
{
	int in[2], out[2], err[2];
	struct child ch;

	cr_assert_eq(pipe(in), 0);
	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(pipe(err), 0);
	ch.pid = fork();
	cr_assert_neq(ch.pid, -1);
	if (ch.pid == 0) {
		char *argv[] = {"vmctl-testdrv-helper", (char *)arg, NULL};

		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(in[0]); close(in[1]);
		close(out[0]); close(out[1]);
		close(err[0]); close(err[1]);
		if (print_before_main)
			printf("buffered before vmh_main\n"); /* stdout is a pipe: not yet written */
		int status = vmh_main(&drv_ops, arg ? 2 : 1, argv);
		fflush(NULL);
		_exit(status);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	ch.to = in[1];
	ch.from = out[0];
	ch.err = err[0];
	return ch;
}

/* Wait for the child to exit; its exit status, or -1 if it had to be killed. */
static int reap(struct child *ch)
{
	ev_tstamp end = ev_time() + 5;
	int status;

	for (;;) {
		pid_t p = waitpid(ch->pid, &status, WNOHANG);

		if (p == ch->pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		if (ev_time() > end) {
			kill(ch->pid, SIGKILL);
			waitpid(ch->pid, &status, 0);
			return -1;
		}
		usleep(2000);
	}
}

/* Everything left on an fd until EOF (the child has exited). */
static char *slurp(int fd)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	ssize_t n;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 2)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = '\0';
	close(fd);
	return buf;
}

/* ---- the broker's side ---- */

#define MAX_NOTES 8

struct broker {
	struct ev_loop *loop;
	struct proto_conn *conn;
	int closed;
	int nnotes;
	char notes[MAX_NOTES][160]; /* "method k=v ..." in arrival order */
	int notes_before_result;
};

struct answer {
	int done;
	int err;
	char errmsg[256];
	struct proto_hello hello;
	int hello_ret;
	char state[32], name[64], scope_dir[256], snapshot[32], dir[512];
	bool is_empty_map;
	struct broker *b;
};

static void on_notify(struct proto_conn *c, void *ud, const char *method, const msgpack_object *params)
{
	struct broker *b = ud;
	char *n;

	if (b->nnotes >= MAX_NOTES)
		return;
	n = b->notes[b->nnotes++];
	if (strcmp(method, "progress") == 0) {
		uint64_t msgid = 0;
		double fraction = -1;
		char text[64] = "";

		proto_get_uint(params, "msgid", &msgid);
		proto_get_double(params, "fraction", &fraction);
		proto_get_str(params, "text", text, sizeof(text));
		snprintf(n, 160, "progress msgid=%llu fraction=%.2f text=%s",
			 (unsigned long long)msgid, fraction, text);
	} else if (strcmp(method, "state") == 0) {
		char name[32] = "", old[32] = "", new[32] = "", reason[64] = "";

		proto_get_str(params, "name", name, sizeof(name));
		proto_get_str(params, "old", old, sizeof(old));
		proto_get_str(params, "new", new, sizeof(new));
		if (proto_get_str(params, "reason", reason, sizeof(reason)) == 0)
			snprintf(n, 160, "state name=%s old=%s new=%s reason=%s", name, old, new,
				 reason);
		else
			snprintf(n, 160, "state name=%s old=%s new=%s", name, old, new);
	} else {
		snprintf(n, 160, "%s", method);
	}
}

static void on_closed(struct proto_conn *c, void *ud, int err, const char *why)
{
	struct broker *b = ud;

	b->closed = err == 0 ? 1 : err;
}

static const struct proto_conn_ops broker_ops = {.notify = on_notify, .closed = on_closed};

static void on_answer(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct answer *a = ud;

	a->done = 1;
	a->err = err;
	snprintf(a->errmsg, sizeof(a->errmsg), "%s", errmsg ? errmsg : "");
	a->hello_ret = proto_hello_parse(result, &a->hello);
	proto_get_str(result, "state", a->state, sizeof(a->state));
	proto_get_str(result, "name", a->name, sizeof(a->name));
	proto_get_str(result, "scope_dir", a->scope_dir, sizeof(a->scope_dir));
	proto_get_str(result, "snapshot", a->snapshot, sizeof(a->snapshot));
	proto_get_str(result, "dir", a->dir, sizeof(a->dir));
	a->is_empty_map = result->type == MSGPACK_OBJECT_MAP && result->via.map.size == 0;
	if (a->b)
		a->b->notes_before_result = a->b->nnotes;
}

static void broker_open(struct broker *b, struct child *ch)
{
	memset(b, 0, sizeof(*b));
	b->loop = ev_loop_new(EVFLAG_AUTO);
	b->conn = proto_conn_new(b->loop, ch->from, ch->to, &broker_ops, b);
	cr_assert_not_null(b->conn);
}

static void broker_close(struct broker *b)
{
	proto_conn_free(b->conn);
	ev_loop_destroy(b->loop);
}

static void wait_for(struct broker *b, const int *flag)
{
	ev_tstamp end = ev_time() + 5;

	while (!*flag) {
		cr_assert_lt(ev_time(), end, "no answer from the helper");
		ev_run(b->loop, EVRUN_ONCE | EVRUN_NOWAIT);
		usleep(500);
	}
}

/* Call method with params (NULL: {}) and wait for the answer. */
static void call(struct broker *b, const char *method, msgpack_sbuffer *params, struct answer *a)
{
	memset(a, 0, sizeof(*a));
	a->b = b;
	cr_assert_eq(proto_call_sb(b->conn, method, params, 5, on_answer, a, NULL), 0);
	wait_for(b, &a->done);
}

static void hello(struct broker *b, const char *mode, struct answer *a)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	proto_pack_str(&pk, "versions");
	msgpack_pack_array(&pk, 2);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_int(&pk, 7); /* a future version the helper does not speak */
	proto_pack_kv_str(&pk, "scope_dir", "/var/lib/vmctl/scopes/testscope");
	proto_pack_str(&pk, "settings");
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "test.mode", mode);
	call(b, "hello", &sb, a);
	msgpack_sbuffer_destroy(&sb);
}

static void instance_params(msgpack_sbuffer *sb, const char *name)
{
	msgpack_packer pk;

	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "instance");
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "name", name);
}

/* instance.start of the test driver: notify these states for name. */
static void start_params(msgpack_sbuffer *sb, const char *name, const char *seen,
			 const char *const *states, size_t n)
{
	msgpack_packer pk;

	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, seen ? 3 : 2);
	proto_pack_str(&pk, "instance");
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "name", name);
	if (seen)
		proto_pack_kv_str(&pk, "seen", seen);
	proto_pack_str(&pk, "states");
	msgpack_pack_array(&pk, n);
	for (size_t i = 0; i < n; i++)
		proto_pack_str(&pk, states[i]);
}

TestSuite(vmh, .timeout = 30);

Test(vmh, hello_answer_has_identity_and_derived_features)
{
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;

	broker_open(&b, &ch);
	hello(&b, "ok", &a);
	cr_assert_eq(a.err, 0, "hello failed: %s", a.errmsg);
	cr_assert_eq(a.hello_ret, 0);
	cr_assert_eq(a.hello.version, 1);
	cr_assert_str_eq(a.hello.driver, "testdrv");
	cr_assert_str_eq(a.hello.scope, "testscope");
	cr_assert_str_eq(a.hello.helper_version, "9.9.1");
	cr_assert(a.hello.usable);
	/* snapshot_create is set, instance_clone/mount/suspend/networks_list are not. */
	cr_assert_eq(a.hello.features, PROTO_FEAT_SNAPSHOTS);
	broker_close(&b);
	cr_assert_eq(reap(&ch), 0);
	free(slurp(ch.err));
}

Test(vmh, null_member_answers_unsupported_naming_the_driver)
{
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;
	msgpack_sbuffer sb;

	broker_open(&b, &ch);
	hello(&b, "ok", &a);
	instance_params(&sb, "web");
	call(&b, "instance.clone", &sb, &a);
	msgpack_sbuffer_destroy(&sb);
	cr_assert_eq(a.err, PROTO_E_UNSUPPORTED);
	cr_assert_str_eq(a.errmsg, "instance.clone is not supported by the testdrv driver");
	call(&b, "instance.teleport", NULL, &a);
	cr_assert_eq(a.err, PROTO_E_UNSUPPORTED);
	cr_assert_not_null(strstr(a.errmsg, "instance.teleport"), "errmsg: %s", a.errmsg);
	cr_assert(proto_conn_is_open(b.conn));
	broker_close(&b);
	cr_assert_eq(reap(&ch), 0);
	free(slurp(ch.err));
}

Test(vmh, handler_result_notifications_and_stray_stdout)
{
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;
	msgpack_sbuffer sb;
	uint64_t msgid;
	char expect[160];

	broker_open(&b, &ch);
	hello(&b, "ok", &a);
	instance_params(&sb, "web");
	memset(&a, 0, sizeof(a));
	a.b = &b;
	cr_assert_eq(proto_call_sb(b.conn, "instance.state", &sb, 5, on_answer, &a, &msgid), 0);
	msgpack_sbuffer_destroy(&sb);
	wait_for(&b, &a.done);
	cr_assert_eq(a.err, 0, "instance.state failed: %s", a.errmsg);
	cr_assert_str_eq(a.state, "running");
	cr_assert_str_eq(a.name, "web");
	cr_assert_str_eq(a.scope_dir, "/var/lib/vmctl/scopes/testscope");
	/* Both notifications came before the answer, in order. */
	cr_assert_eq(b.notes_before_result, 2);
	snprintf(expect, sizeof(expect), "progress msgid=%llu fraction=0.50 text=halfway",
		 (unsigned long long)msgid);
	cr_assert_str_eq(b.notes[0], expect);
	cr_assert_str_eq(b.notes[1], "state name=web old=stopped new=running");
	/* The printf went to stderr and the protocol survived it. */
	call(&b, "ping", NULL, &a);
	cr_assert_eq(a.err, 0);
	cr_assert(a.is_empty_map);
	cr_assert_eq(b.closed, 0);
	broker_close(&b);
	cr_assert_eq(reap(&ch), 0);
	char *err = slurp(ch.err);
	cr_assert_not_null(strstr(err, "stray output from a handler"), "stderr: %s", err);
	free(err);
}

Test(vmh, handler_may_answer_later_from_the_loop)
{
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;
	msgpack_sbuffer sb;

	broker_open(&b, &ch);
	hello(&b, "ok", &a);
	instance_params(&sb, "web");
	call(&b, "snapshot.create", &sb, &a);
	msgpack_sbuffer_destroy(&sb);
	cr_assert_eq(a.err, 0, "snapshot.create failed: %s", a.errmsg);
	cr_assert_str_eq(a.snapshot, "snap1");
	broker_close(&b);
	cr_assert_eq(reap(&ch), 0);
	free(slurp(ch.err));
}

Test(vmh, handler_error_reaches_the_broker)
{
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;

	broker_open(&b, &ch);
	hello(&b, "ok", &a);
	call(&b, "instance.state", NULL, &a);
	cr_assert_eq(a.err, PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(a.errmsg, "instance.state needs instance.name");
	broker_close(&b);
	cr_assert_eq(reap(&ch), 0);
	free(slurp(ch.err));
}

Test(vmh, unusable_driver_answers_unavailable_but_pings)
{
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;
	msgpack_sbuffer sb;

	broker_open(&b, &ch);
	hello(&b, "broken", &a);
	cr_assert_eq(a.err, 0);
	cr_assert_not(a.hello.usable);
	cr_assert_str_eq(a.hello.why, "no hypervisor on this host");
	instance_params(&sb, "web");
	call(&b, "instance.state", &sb, &a);
	msgpack_sbuffer_destroy(&sb);
	cr_assert_eq(a.err, PROTO_E_UNAVAILABLE);
	cr_assert_str_eq(a.errmsg, "no hypervisor on this host");
	call(&b, "instance.clone", NULL, &a);
	cr_assert_eq(a.err, PROTO_E_UNAVAILABLE);
	call(&b, "ping", NULL, &a);
	cr_assert_eq(a.err, 0);
	broker_close(&b);
	cr_assert_eq(reap(&ch), 0);
	free(slurp(ch.err));
}

Test(vmh, shutdown_answers_then_runs_fini_and_exits_0)
{
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;

	broker_open(&b, &ch);
	hello(&b, "ok", &a);
	call(&b, "shutdown", NULL, &a);
	cr_assert_eq(a.err, 0);
	cr_assert(a.is_empty_map);
	wait_for(&b, &b.closed);
	cr_assert_eq(b.closed, 1, "closed with %d", b.closed);
	cr_assert_eq(reap(&ch), 0);
	char *err = slurp(ch.err);
	cr_assert_not_null(strstr(err, "fini ran"), "stderr: %s", err);
	free(err);
	broker_close(&b);
}

Test(vmh, eof_runs_fini_and_exits_0)
{
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;

	broker_open(&b, &ch);
	hello(&b, "ok", &a);
	broker_close(&b);
	cr_assert_eq(reap(&ch), 0);
	char *err = slurp(ch.err);
	cr_assert_not_null(strstr(err, "fini ran"), "stderr: %s", err);
	free(err);
}

Test(vmh, first_request_other_than_hello_exits_1)
{
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;

	broker_open(&b, &ch);
	call(&b, "ping", NULL, &a);
	cr_assert_eq(a.err, PROTO_E_PROTOCOL, "err %d: %s", a.err, a.errmsg);
	cr_assert_eq(reap(&ch), 1);
	char *err = slurp(ch.err);
	cr_assert_not_null(strstr(err, "the first request must be hello, not ping"), "stderr: %s", err);
	free(err);
	broker_close(&b);
}

Test(vmh, hello_without_common_version_is_refused)
{
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	broker_open(&b, &ch);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_pack_str(&pk, "versions");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_int(&pk, 2);
	proto_pack_kv_str(&pk, "scope_dir", "/tmp");
	call(&b, "hello", &sb, &a);
	msgpack_sbuffer_destroy(&sb);
	cr_assert_eq(a.err, PROTO_E_UNSUPPORTED);
	cr_assert_eq(reap(&ch), 1);
	free(slurp(ch.err));
	broker_close(&b);
}

Test(vmh, describe_prints_identity_without_handshake)
{
	struct child ch = spawn("--describe");

	close(ch.to);
	char *out = slurp(ch.from);
	cr_assert_eq(reap(&ch), 0);
	cr_assert_str_eq(out, "driver testdrv\n"
			      "scope testscope\n"
			      "version 9.9.1\n"
			      "features snapshots\n");
	free(out);
	free(slurp(ch.err));
}

Test(vmh, unknown_argument_prints_usage_and_exits_2)
{
	struct child ch = spawn("--frobnicate");

	close(ch.to);
	char *out = slurp(ch.from);
	cr_assert_eq(reap(&ch), 2);
	cr_assert_str_eq(out, "");
	char *err = slurp(ch.err);
	cr_assert_not_null(strstr(err, "usage: vmctl-testdrv-helper [--describe]"), "stderr: %s", err);
	free(err);
	free(out);
}

Test(vmh, features_follow_the_ops_members)
{
	static const struct vmh_ops none = {.ops_version = VMH_OPS_VERSION, .driver = "x"};
	static const struct vmh_ops all = {
		.ops_version = VMH_OPS_VERSION,
		.driver = "x",
		.instance_mount = drv_instance_state,
		.networks_list = drv_instance_state,
		.snapshot_create = drv_instance_state,
		.instance_clone = drv_instance_state,
		.instance_suspend = drv_instance_state,
	};
	static const struct vmh_ops mounts = {
		.ops_version = VMH_OPS_VERSION, .driver = "x", .instance_mount = drv_instance_state};
	static const struct vmh_ops suspend = {
		.ops_version = VMH_OPS_VERSION, .driver = "x", .instance_suspend = drv_instance_state};

	cr_assert_eq(vmh_features(&none), 0);
	cr_assert_eq(vmh_features(&all), PROTO_FEAT_NATIVE_MOUNTS | PROTO_FEAT_EXTRA_NETWORKS |
						 PROTO_FEAT_SNAPSHOTS | PROTO_FEAT_CLONE |
						 PROTO_FEAT_SUSPEND);
	cr_assert_eq(vmh_features(&mounts), PROTO_FEAT_NATIVE_MOUNTS);
	cr_assert_eq(vmh_features(&suspend), PROTO_FEAT_SUSPEND);
}

Test(vmh, live_mounts_are_claimed_only_with_the_mount_methods)
{
	static const struct vmh_ops live = {
		.ops_version = VMH_OPS_VERSION,
		.driver = "x",
		.instance_mount = drv_instance_state,
		.instance_umount = drv_instance_state,
		.extra_features = PROTO_FEAT_NATIVE_MOUNTS_LIVE | PROTO_FEAT_SNAPSHOTS,
	};
	static const struct vmh_ops no_methods = {
		.ops_version = VMH_OPS_VERSION,
		.driver = "x",
		.extra_features = PROTO_FEAT_NATIVE_MOUNTS_LIVE,
	};

	/* A claimed bit that a member stands for is not taken from the claim. */
	cr_assert_eq(vmh_features(&live), PROTO_FEAT_NATIVE_MOUNTS | PROTO_FEAT_NATIVE_MOUNTS_LIVE);
	cr_assert_eq(vmh_features(&no_methods), 0);
	static const struct vmh_ops exec = {
		.ops_version = VMH_OPS_VERSION, .driver = "x", .instance_exec = drv_instance_state};
	cr_assert_eq(vmh_features(&exec), PROTO_FEAT_EXEC);
	cr_assert_str_eq(proto_feature_name(PROTO_FEAT_EXEC), "exec");
	cr_assert_str_eq(proto_feature_name(PROTO_FEAT_NATIVE_MOUNTS_LIVE), "native_mounts_live");
	cr_assert_eq(proto_feature_from_name("native_mounts_live"), PROTO_FEAT_NATIVE_MOUNTS_LIVE);
}

Test(vmh, notification_before_hello_exits_1)
{
	struct child ch = spawn(NULL);
	struct broker b;

	broker_open(&b, &ch);
	cr_assert_eq(proto_notify(b.conn, "state", NULL, 0), 0);
	cr_assert_eq(reap(&ch), 1);
	char *err = slurp(ch.err);
	cr_assert_not_null(strstr(err, "must be the hello request, not a state notification"),
			   "stderr: %s", err);
	free(err);
	broker_close(&b);
}

/* Bytes that are not the protocol make the helper exit 1 after fini. */
Test(vmh, garbage_on_stdin_exits_1)
{
	struct child ch = spawn(NULL);
	static const char garbage[] = "hello\n";

	cr_assert_eq(write(ch.to, garbage, sizeof(garbage) - 1), (ssize_t)sizeof(garbage) - 1);
	cr_assert_eq(reap(&ch), 1);
	char *err = slurp(ch.err);
	cr_assert_not_null(strstr(err, "protocol connection lost"), "stderr: %s", err);
	cr_assert_not_null(strstr(err, "fini ran"), "stderr: %s", err);
	free(err);
	close(ch.to);
	close(ch.from);
}

Test(vmh, output_buffered_before_vmh_main_goes_to_stderr)
{
	struct child ch;
	struct broker b;
	struct answer a;

	print_before_main = true;
	ch = spawn(NULL);
	broker_open(&b, &ch);
	hello(&b, "ok", &a);
	cr_assert_eq(a.err, 0, "hello failed: %s", a.errmsg);
	cr_assert_str_eq(a.hello.driver, "testdrv");
	broker_close(&b);
	cr_assert_eq(reap(&ch), 0);
	char *err = slurp(ch.err);
	cr_assert_not_null(strstr(err, "buffered before vmh_main"), "stderr: %s", err);
	free(err);
}

Test(vmh, state_notifications_say_only_what_changed_with_the_right_old)
{
	static const char *const first[] = {"starting", "starting", "running"};
	static const char *const second[] = {"running", "stopped"};
	static const char *const third[] = {"stopped", "running"};
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;
	msgpack_sbuffer sb;

	broker_open(&b, &ch);
	hello(&b, "ok", &a);
	start_params(&sb, "web", NULL, first, 3);
	call(&b, "instance.start", &sb, &a);
	msgpack_sbuffer_destroy(&sb);
	cr_assert_eq(a.err, 0, "%s", a.errmsg);
	cr_assert_str_eq(a.dir, "/var/lib/vmctl/scopes/testscope/instances/web");
	start_params(&sb, "web", NULL, second, 2);
	call(&b, "instance.start", &sb, &a);
	msgpack_sbuffer_destroy(&sb);
	/* Seen in an answer: the broker knows, so only the change after it is told. */
	start_params(&sb, "db", "stopped", third, 2);
	call(&b, "instance.start", &sb, &a);
	msgpack_sbuffer_destroy(&sb);
	cr_assert_eq(b.nnotes, 4, "notes: %d", b.nnotes);
	cr_expect_str_eq(b.notes[0], "state name=web old=unknown new=starting");
	cr_expect_str_eq(b.notes[1], "state name=web old=starting new=running");
	cr_expect_str_eq(b.notes[2], "state name=web old=running new=stopped");
	cr_expect_str_eq(b.notes[3], "state name=db old=stopped new=running");
	broker_close(&b);
	cr_assert_eq(reap(&ch), 0);
	free(slurp(ch.err));
}

Test(vmh, a_new_reason_is_told_even_when_the_state_stays)
{
	static const char *const states[] = {
		"stopped", "unknown:gone", "unknown:gone", "unknown:away", "unknown", "running",
	};
	struct child ch = spawn(NULL);
	struct broker b;
	struct answer a;
	msgpack_sbuffer sb;

	broker_open(&b, &ch);
	hello(&b, "ok", &a);
	start_params(&sb, "web", NULL, states, sizeof(states) / sizeof(states[0]));
	call(&b, "instance.start", &sb, &a);
	msgpack_sbuffer_destroy(&sb);
	cr_assert_eq(a.err, 0, "%s", a.errmsg);
	cr_assert_eq(b.nnotes, 5, "notes: %d", b.nnotes);
	cr_expect_str_eq(b.notes[0], "state name=web old=unknown new=stopped");
	cr_expect_str_eq(b.notes[1], "state name=web old=stopped new=unknown reason=gone");
	cr_expect_str_eq(b.notes[2], "state name=web old=unknown new=unknown reason=away");
	cr_expect_str_eq(b.notes[3], "state name=web old=unknown new=unknown");
	cr_expect_str_eq(b.notes[4], "state name=web old=unknown new=running");
	broker_close(&b);
	cr_assert_eq(reap(&ch), 0);
	free(slurp(ch.err));
}
