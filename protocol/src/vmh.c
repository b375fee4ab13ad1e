/*
 * The helper SDK: handshake, dispatch of the helper methods to a
 * struct vmh_ops, and the process set-up that keeps fd 1 away from the
 * protocol. One helper process runs one vmh_main(), so the state is global.
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include <vmproto/vmh.h>

/* How long an exiting helper waits for the broker to take its last answer. */
#define VMH_FLUSH_TIMEOUT 5.0

struct vmh_req {
	struct vmh_req *next, **pprev; /* outstanding requests, freed at exit */
	uint64_t msgid;
	char method[PROTO_MAX_METHOD + 1];
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static struct {
	const struct vmh_ops *ops;
	struct ev_loop *loop;
	struct proto_conn *conn;
	bool hello_done;
	char scope_dir[PATH_MAX];
	bool usable;
	char why[256];
	bool quitting;
	int exit_status;
	ev_check quit_check;
	ev_idle quit_idle;
	ev_timer quit_timer;
	struct vmh_req *reqs;
} vmh;

struct vmh_method {
	const char *name;
	size_t offset; /* of the vmh_fn member in struct vmh_ops */
};

#define VMH_METHOD(name, member) {name, offsetof(struct vmh_ops, member)}
static const struct vmh_method vmh_methods[] = {
	VMH_METHOD("instances.list", instances_list),
	VMH_METHOD("networks.list", networks_list),
	VMH_METHOD("instance.create", instance_create),
	VMH_METHOD("instance.start", instance_start),
	VMH_METHOD("instance.stop", instance_stop),
	VMH_METHOD("instance.suspend", instance_suspend),
	VMH_METHOD("instance.restart", instance_restart),
	VMH_METHOD("instance.delete", instance_delete),
	VMH_METHOD("instance.state", instance_state),
	VMH_METHOD("instance.info", instance_info),
	VMH_METHOD("instance.set", instance_set),
	VMH_METHOD("instance.mount", instance_mount),
	VMH_METHOD("instance.umount", instance_umount),
	VMH_METHOD("instance.network.add", instance_network_add),
	VMH_METHOD("snapshot.create", snapshot_create),
	VMH_METHOD("snapshot.list", snapshot_list),
	VMH_METHOD("snapshot.restore", snapshot_restore),
	VMH_METHOD("snapshot.delete", snapshot_delete),
	VMH_METHOD("instance.clone", instance_clone),
	VMH_METHOD("instance.exec", instance_exec),
};

static const struct vmh_method *vmh_method_find(const char *name)
{
	for (size_t i = 0; i < sizeof(vmh_methods) / sizeof(vmh_methods[0]); i++)
		if (strcmp(vmh_methods[i].name, name) == 0)
			return &vmh_methods[i];
	return NULL;
}

static vmh_fn vmh_method_fn(const struct vmh_ops *ops, const struct vmh_method *m)
{
	vmh_fn fn;

	/* A struct of ops_version 1 ends before the members of version 2. */
	if (ops->ops_version < 2 && m->offset >= offsetof(struct vmh_ops, extra_features))
		return NULL;
	memcpy(&fn, (const char *)ops + m->offset, sizeof(fn));
	return fn;
}

unsigned vmh_features(const struct vmh_ops *ops)
{
	unsigned f = 0;

	if (!ops)
		return 0;
	if (ops->instance_mount)
		f |= PROTO_FEAT_NATIVE_MOUNTS;
	if (ops->networks_list)
		f |= PROTO_FEAT_EXTRA_NETWORKS;
	if (ops->snapshot_create)
		f |= PROTO_FEAT_SNAPSHOTS;
	if (ops->instance_clone)
		f |= PROTO_FEAT_CLONE;
	if (ops->instance_suspend)
		f |= PROTO_FEAT_SUSPEND;
	/* Claimed, not derived; meaningless without the methods it is about. */
	if (ops->ops_version >= 2 && (ops->extra_features & PROTO_FEAT_NATIVE_MOUNTS_LIVE) &&
	    ops->instance_mount && ops->instance_umount)
		f |= PROTO_FEAT_NATIVE_MOUNTS_LIVE;
	if (ops->ops_version >= 2 && ops->instance_exec)
		f |= PROTO_FEAT_EXEC;
	return f;
}

struct ev_loop *vmh_loop(void)
{
	return vmh.loop ? vmh.loop : ev_default_loop(0);
}

const char *vmh_scope_dir(void)
{
	return vmh.scope_dir[0] ? vmh.scope_dir : NULL;
}

int vmh_instance_dir(const char *name, char *buf, size_t len)
{
	int n;

	if (!vmh.scope_dir[0])
		return PROTO_E_INVALID_ARGUMENT;
	n = snprintf(buf, len, "%s/instances/%s", vmh.scope_dir, name);
	return n < 0 || (size_t)n >= len ? PROTO_E_INVALID_ARGUMENT : 0;
}

/* ---- logging ---- */

void vmh_log(enum vmh_level level, const char *fmt, ...)
{
	static const char *const names[] = {"debug", "info", "warning", "error"};
	char text[2048];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	n = strlen(text);
	while (n > 0 && text[n - 1] == '\n')
		text[--n] = '\0';
	/* One call, so lines from several sources do not interleave. */
	fprintf(stderr, "%s: %s\n", (unsigned)level < 4 ? names[level] : "info", text);
}

/* ---- leaving ---- */

static bool vmh_flushed(void)
{
	return !proto_conn_is_open(vmh.conn) || proto_conn_pending_bytes(vmh.conn) == 0;
}

static void vmh_quit_check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
	if (vmh_flushed())
		ev_break(loop, EVBREAK_ALL);
}

/* The conn may hold the last answer until the loop's next turn (it batches
 * what handlers send); the idle watcher looks once it has been written,
 * and leaves the waiting for a slow broker to the check watcher. */
static void vmh_quit_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	if (vmh_flushed())
		ev_break(loop, EVBREAK_ALL);
	else
		ev_idle_stop(loop, w);
}

static void vmh_quit_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	vmh_log(VMH_WARN, "the broker did not read the last answer; exiting anyway");
	ev_break(loop, EVBREAK_ALL);
}

/* Leave the loop once everything queued has been written. */
static void vmh_quit(int status)
{
	if (vmh.quitting)
		return;
	vmh.quitting = true;
	vmh.exit_status = status;
	if (vmh_flushed()) {
		ev_break(vmh.loop, EVBREAK_ALL);
		return;
	}
	ev_check_start(vmh.loop, &vmh.quit_check);
	ev_idle_start(vmh.loop, &vmh.quit_idle);
	ev_timer_start(vmh.loop, &vmh.quit_timer);
}

/* ---- requests ---- */

static void vmh_req_free(struct vmh_req *req)
{
	*req->pprev = req->next;
	if (req->next)
		req->next->pprev = req->pprev;
	msgpack_sbuffer_destroy(&req->sb);
	free(req);
}

static struct vmh_req *vmh_req_new(uint64_t msgid, const char *method)
{
	struct vmh_req *req = calloc(1, sizeof(*req));

	if (!req)
		return NULL;
	req->msgid = msgid;
	snprintf(req->method, sizeof(req->method), "%s", method);
	msgpack_sbuffer_init(&req->sb);
	msgpack_packer_init(&req->pk, &req->sb, msgpack_sbuffer_write);
	req->next = vmh.reqs;
	if (vmh.reqs)
		vmh.reqs->pprev = &req->next;
	req->pprev = &vmh.reqs;
	vmh.reqs = req;
	return req;
}

msgpack_packer *vmh_result(struct vmh_req *req)
{
	return &req->pk;
}

const char *vmh_method(const struct vmh_req *req)
{
	return req->method;
}

void vmh_done(struct vmh_req *req)
{
	int ret;

	if (!req)
		return;
	ret = proto_reply(vmh.conn, req->msgid, 0, NULL, req->sb.size ? req->sb.data : NULL,
			  req->sb.size);
	if (ret == PROTO_E_INVALID_ARGUMENT) {
		vmh_log(VMH_ERROR, "%s: the result packed is not one MessagePack object within "
			"the protocol limits", req->method);
		proto_reply(vmh.conn, req->msgid, PROTO_E_INTERNAL,
			    "the helper produced an invalid result", NULL, 0);
	} else if (ret < 0 && ret != PROTO_E_UNAVAILABLE) {
		vmh_log(VMH_ERROR, "%s: cannot send the answer: %s", req->method,
			proto_strerror(ret));
	}
	vmh_req_free(req);
}

void vmh_fail(struct vmh_req *req, int err, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	if (!req)
		return;
	if (err >= 0)
		err = PROTO_E_INTERNAL;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
	} else {
		snprintf(text, sizeof(text), "%s", proto_strerror(err));
	}
	proto_reply(vmh.conn, req->msgid, err, text, NULL, 0);
	vmh_req_free(req);
}

void vmh_progress(struct vmh_req *req, double fraction, const char *text)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (!req || !proto_conn_is_open(vmh.conn))
		return;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	proto_pack_kv_uint(&pk, "msgid", req->msgid);
	proto_pack_kv_double(&pk, "fraction", fraction);
	proto_pack_kv_str(&pk, "text", text ? text : "");
	proto_notify_sb(vmh.conn, "progress", &sb);
	msgpack_sbuffer_destroy(&sb);
}

void vmh_state_changed(const char *instance, const char *old_state, const char *new_state)
{
	vmh_state_changed_why(instance, old_state, new_state, NULL);
}

void vmh_state_changed_why(const char *instance, const char *old_state, const char *new_state,
			   const char *reason)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	bool why = reason && reason[0];

	if (!instance || !proto_conn_is_open(vmh.conn))
		return;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, why ? 4 : 3);
	proto_pack_kv_str(&pk, "name", instance);
	proto_pack_kv_str(&pk, "old", old_state ? old_state : "unknown");
	proto_pack_kv_str(&pk, "new", new_state ? new_state : "unknown");
	if (why) {
		size_t n = strnlen(reason, PROTO_REASON_MAX);

		proto_pack_str(&pk, "reason");
		msgpack_pack_str(&pk, n);
		msgpack_pack_str_body(&pk, reason, n);
	}
	proto_notify_sb(vmh.conn, "state", &sb);
	msgpack_sbuffer_destroy(&sb);
}

/* ---- dispatch ---- */

static void vmh_reply_empty_map(uint64_t msgid)
{
	static const char empty_map = (char)0x80;

	proto_reply(vmh.conn, msgid, 0, NULL, &empty_map, 1);
}

static void vmh_hello(uint64_t msgid, const msgpack_object *params)
{
	static const msgpack_object empty_settings = {.type = MSGPACK_OBJECT_MAP};
	const msgpack_object *versions = proto_map_get(params, "versions");
	const msgpack_object *settings = proto_map_get(params, "settings");
	char *scope_dir = vmh.scope_dir;
	struct proto_hello h = {0};
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int version = 0;

	if (versions && versions->type == MSGPACK_OBJECT_ARRAY)
		for (uint32_t i = 0; i < versions->via.array.size; i++) {
			const msgpack_object *v = &versions->via.array.ptr[i];

			if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
			    v->via.u64 <= PROTO_VERSION && (int)v->via.u64 > version)
				version = (int)v->via.u64;
		}
	if (version == 0) {
		vmh_log(VMH_ERROR, "hello: no protocol version in common (this helper speaks 1 to %d)",
			PROTO_VERSION);
		proto_reply(vmh.conn, msgid, PROTO_E_UNSUPPORTED,
			    "no protocol version in common with the helper", NULL, 0);
		vmh_quit(1);
		return;
	}
	if (proto_get_str(params, "scope_dir", scope_dir, sizeof(vmh.scope_dir)) < 0 ||
	    !scope_dir[0]) {
		scope_dir[0] = '\0';
		vmh_log(VMH_ERROR, "hello: scope_dir is missing or not a path");
		proto_reply(vmh.conn, msgid, PROTO_E_INVALID_ARGUMENT,
			    "hello needs scope_dir, the scope's folder", NULL, 0);
		vmh_quit(1);
		return;
	}
	if (!settings || settings->type != MSGPACK_OBJECT_MAP)
		settings = &empty_settings;
	if (vmh_settings_load(settings) < 0) {
		proto_reply(vmh.conn, msgid, PROTO_E_NOMEM, "out of memory", NULL, 0);
		vmh_quit(1);
		return;
	}

	vmh.usable = true;
	if (vmh.ops->init) {
		int ret = vmh.ops->init(scope_dir, settings, vmh.why, sizeof(vmh.why));

		if (ret < 0) {
			vmh.usable = false;
			if (!vmh.why[0])
				snprintf(vmh.why, sizeof(vmh.why), "the %s driver cannot run here: %s",
					 vmh.ops->driver, proto_strerror(ret));
			vmh_log(VMH_WARN, "not usable on this host: %s", vmh.why);
		}
	}
	vmh.hello_done = true;

	h.version = version;
	snprintf(h.driver, sizeof(h.driver), "%s", vmh.ops->driver);
	snprintf(h.scope, sizeof(h.scope), "%s", vmh.ops->scope ? vmh.ops->scope : vmh.ops->driver);
	snprintf(h.helper_version, sizeof(h.helper_version), "%s",
		 vmh.ops->version ? vmh.ops->version : "");
	h.usable = vmh.usable;
	snprintf(h.why, sizeof(h.why), "%s", vmh.usable ? "" : vmh.why);
	h.features = vmh_features(vmh.ops);

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	proto_hello_pack(&pk, &h);
	proto_reply_sb(vmh.conn, msgid, 0, NULL, &sb);
	msgpack_sbuffer_destroy(&sb);
}

static void vmh_on_request(struct proto_conn *c, void *ud, uint64_t msgid, const char *method,
			   const msgpack_object *params)
{
	const struct vmh_method *m;
	struct vmh_req *req;
	vmh_fn fn;

	if (vmh.quitting) {
		proto_reply(c, msgid, PROTO_E_UNAVAILABLE, "the helper is shutting down", NULL, 0);
		return;
	}
	if (!vmh.hello_done) {
		if (strcmp(method, "hello") == 0) {
			vmh_hello(msgid, params);
			return;
		}
		vmh_log(VMH_ERROR, "the first request must be hello, not %s", method);
		proto_reply(c, msgid, PROTO_E_PROTOCOL, "the first request must be hello", NULL, 0);
		vmh_quit(1);
		return;
	}
	if (strcmp(method, "ping") == 0) {
		vmh_reply_empty_map(msgid);
		return;
	}
	if (strcmp(method, "shutdown") == 0) {
		vmh_reply_empty_map(msgid);
		vmh_quit(0);
		return;
	}
	if (strcmp(method, "hello") == 0) {
		proto_reply(c, msgid, PROTO_E_INVALID_STATE, "hello was already answered", NULL, 0);
		return;
	}
	if (!vmh.usable) {
		proto_reply(c, msgid, PROTO_E_UNAVAILABLE, vmh.why, NULL, 0);
		return;
	}
	m = vmh_method_find(method);
	if (!m) {
		char text[PROTO_MAX_METHOD + 64];

		snprintf(text, sizeof(text), "unknown method %s", method);
		proto_reply(c, msgid, PROTO_E_UNSUPPORTED, text, NULL, 0);
		return;
	}
	fn = vmh_method_fn(vmh.ops, m);
	if (!fn) {
		char text[PROTO_MAX_METHOD + 96];

		snprintf(text, sizeof(text), "%s is not supported by the %s driver", method,
			 vmh.ops->driver);
		proto_reply(c, msgid, PROTO_E_UNSUPPORTED, text, NULL, 0);
		return;
	}
	req = vmh_req_new(msgid, method);
	if (!req) {
		proto_reply(c, msgid, PROTO_E_NOMEM, "out of memory", NULL, 0);
		return;
	}
	fn(req, params);
}

static void vmh_on_closed(struct proto_conn *c, void *ud, int err, const char *why)
{
	if (err == 0) {
		vmh_quit(0);
		return;
	}
	vmh_log(VMH_ERROR, "protocol connection lost: %s", why);
	vmh_quit(1);
}

/* The broker sends no notifications today; later ones are ignored. */
static void vmh_on_notify(struct proto_conn *c, void *ud, const char *method,
			  const msgpack_object *params)
{
	if (vmh.hello_done || vmh.quitting)
		return;
	vmh_log(VMH_ERROR, "the first message must be the hello request, not a %s notification",
		method);
	vmh_quit(1);
}

static const struct proto_conn_ops vmh_conn_ops = {
	.request = vmh_on_request,
	.notify = vmh_on_notify,
	.closed = vmh_on_closed,
};

/* ---- process set-up ---- */

static int vmh_describe(const struct vmh_ops *ops)
{
	unsigned features = vmh_features(ops);
	const char *sep = " ";

	printf("driver %s\n", ops->driver);
	printf("scope %s\n", ops->scope ? ops->scope : ops->driver);
	printf("version %s\n", ops->version ? ops->version : "");
	printf("features");
	for (unsigned i = 0; i < PROTO_FEAT_COUNT; i++)
		if (features & (1u << i)) {
			printf("%s%s", sep, proto_feature_name(1u << i));
			sep = ",";
		}
	printf("\n");
	return fflush(stdout) == 0 ? 0 : 1;
}

/*
 * Keep the protocol on private descriptors, send fd 1 to stderr so stray
 * output cannot corrupt it, and give children /dev/null as stdin so they
 * cannot swallow requests.
 */
static int vmh_take_pipes(int *in, int *out)
{
	int null_fd;

	*in = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
	if (*in < 0)
		goto out_err;
	*out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
	if (*out < 0)
		goto out_close_in;
	/* No fflush(stdout) first: output buffered before now goes to stderr too. */
	if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
		goto out_close_out;
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null_fd < 0)
		goto out_close_out;
	if (dup2(null_fd, STDIN_FILENO) < 0) {
		close(null_fd);
		goto out_close_out;
	}
	close(null_fd);
	return 0;

out_close_out:
	close(*out);
out_close_in:
	close(*in);
out_err:
	vmh_log(VMH_ERROR, "cannot set up the protocol pipes: %m");
	return -1;
}

static bool vmh_ops_ok(const struct vmh_ops *ops)
{
	if (!ops) {
		fprintf(stderr, "error: vmh_main: no driver ops\n");
		return false;
	}
	if (ops->ops_version < 1 || ops->ops_version > VMH_OPS_VERSION) {
		fprintf(stderr, "error: vmh_main: ops_version %d is not supported (1 to %d)\n",
			ops->ops_version, VMH_OPS_VERSION);
		return false;
	}
	if (!ops->driver || !ops->driver[0]) {
		fprintf(stderr, "error: vmh_main: the ops struct has no driver name\n");
		return false;
	}
	return true;
}

int vmh_main(const struct vmh_ops *ops, int argc, char **argv)
{
	const char *prog = argc > 0 && argv[0] ? argv[0] : "helper";
	int in, out;

	if (!vmh_ops_ok(ops))
		return 1;
	if (argc > 1) {
		if (strcmp(argv[1], "--describe") == 0 && argc == 2)
			return vmh_describe(ops);
		fprintf(stderr,
			"usage: %s [--describe]\n"
			"A vmctl driver helper: vmctld runs it with the helper protocol on "
			"stdin/stdout.\n--describe prints its driver, scope, version and features.\n",
			prog);
		return 2;
	}
	if (isatty(STDIN_FILENO))
		vmh_log(VMH_INFO, "%s speaks the vmctl helper protocol on stdin/stdout and is "
			"started by vmctld; try --describe", prog);
	if (vmh_take_pipes(&in, &out) < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);

	vmh.ops = ops;
	vmh.loop = ev_default_loop(0);
	if (!vmh.loop) {
		vmh_log(VMH_ERROR, "cannot create the event loop");
		close(in);
		close(out);
		return 1;
	}
	vmh.conn = proto_conn_new(vmh.loop, in, out, &vmh_conn_ops, NULL);
	if (!vmh.conn) {
		vmh_log(VMH_ERROR, "cannot set up the protocol connection");
		close(in);
		close(out);
		return 1;
	}
	ev_check_init(&vmh.quit_check, vmh_quit_check_cb);
	ev_idle_init(&vmh.quit_idle, vmh_quit_idle_cb);
	ev_timer_init(&vmh.quit_timer, vmh_quit_timer_cb, VMH_FLUSH_TIMEOUT, 0);

	ev_run(vmh.loop, 0);

	if (ops->fini)
		ops->fini();
	ev_check_stop(vmh.loop, &vmh.quit_check);
	ev_idle_stop(vmh.loop, &vmh.quit_idle);
	ev_timer_stop(vmh.loop, &vmh.quit_timer);
	while (vmh.reqs)
		vmh_req_free(vmh.reqs);
	vmh_track_reset();
	vmh_settings_load(NULL);
	proto_conn_free(vmh.conn);
	vmh.conn = NULL;
	return vmh.exit_status;
}
