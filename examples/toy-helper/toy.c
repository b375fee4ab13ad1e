/*
 * vmctl-toy-helper: the example driver of docs/writing-a-helper.md.
 *
 * Its instances are folders. The broker gives each instance its folder
 * (the instance map's "dir", SCOPE_DIR/instances/NAME); the toy keeps one
 * file there, "toy-state", holding "running" or "stopped":
 *
 *   instance.create   makes the folder and writes "stopped"
 *   instance.start    writes "running"     instance.stop  writes "stopped"
 *   instances.list,   read the file (no file: the instance is unknown,
 *   instance.state,   with a reason)
 *   instance.info
 *   instance.delete   removes the toy's file; the broker removes the folder
 *   instance.exec     runs the command on the host, in the folder (the
 *                     toy's "guest" is the folder), so that the broker's
 *                     launch readiness works without SSH: the toy has no
 *                     sshd, its SSH port refuses, and after 30 s of
 *                     refusals the broker asks through exec instead
 *
 * Everything else (suspend, snapshots, mounts, ...) is left NULL in the ops
 * struct: the SDK answers "unsupported" and leaves the feature out of the
 * hello, so the broker refuses those commands up front.
 *
 * Built in the build tree's examples/ folder, never into libexec/vmctl: a
 * broker offers it only when VMCTL_HELPER_PATH names that folder.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmproto/vmh.h>

#define TOY_STATE_FILE "toy-state"

/* A TCP port on 127.0.0.1 that refuses connections: bound, never listening,
 * held for the helper's lifetime so that nothing else takes it. */
static int toy_refused_fd = -1;
static int toy_refused_port;

static int toy_init(const char *scope_dir, const msgpack_object *settings, char *why,
		    size_t whylen)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);

	toy_refused_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (toy_refused_fd < 0 || bind(toy_refused_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(toy_refused_fd, (struct sockaddr *)&sa, &len) < 0) {
		snprintf(why, whylen, "the toy cannot bind a port on 127.0.0.1: %s", strerror(errno));
		return PROTO_E_UNAVAILABLE;
	}
	toy_refused_port = ntohs(sa.sin_port);
	vmh_log(VMH_INFO, "toy instances live in %s/instances", scope_dir);
	return 0;
}

static void toy_fini(void)
{
	if (toy_refused_fd >= 0)
		close(toy_refused_fd);
	toy_refused_fd = -1;
}

/* The state in DIR/toy-state: running, stopped, or unknown when the file
 * is missing or holds anything else. */
static enum proto_state toy_read_state(const char *dir)
{
	char path[PROTO_PATH_MAX + 1], text[32] = "";
	enum proto_state state = PROTO_STATE_UNKNOWN;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, TOY_STATE_FILE);
	f = fopen(path, "r");
	if (!f)
		return PROTO_STATE_UNKNOWN;
	if (fgets(text, sizeof(text), f))
		text[strcspn(text, "\n")] = '\0';
	fclose(f);
	if (proto_state_from_name(text, &state) < 0 ||
	    (state != PROTO_STATE_RUNNING && state != PROTO_STATE_STOPPED))
		return PROTO_STATE_UNKNOWN;
	return state;
}

/* Write state to DIR/toy-state (through a temporary file, so that a crash
 * leaves the old state or the new one). 0 or a PROTO_E_* code. */
static int toy_write_state(const char *dir, enum proto_state state, char *err, size_t errlen)
{
	char path[PROTO_PATH_MAX + 1], tmp[PROTO_PATH_MAX + 8];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, TOY_STATE_FILE);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		goto out_err;
	if (fprintf(f, "%s\n", proto_state_name(state)) < 0 || fclose(f) != 0) {
		unlink(tmp);
		goto out_err;
	}
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		goto out_err;
	}
	return 0;

out_err:
	snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
	return PROTO_E_IO;
}

static const char *toy_reason(enum proto_state state)
{
	return state == PROTO_STATE_UNKNOWN ? "the toy's state file is missing" : NULL;
}

/* Answer {state} (and the reason, if any) for one instance. */
static void toy_answer_state(struct vmh_req *req, enum proto_state state)
{
	msgpack_packer *pk = vmh_result(req);
	const char *reason = toy_reason(state);

	msgpack_pack_map(pk, reason ? 2 : 1);
	proto_pack_kv_state(pk, "state", state);
	if (reason)
		proto_pack_kv_str(pk, "reason", reason);
	vmh_done(req);
}

static void toy_instances_list(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *arr = proto_map_get(params, "instances");
	uint32_t n = arr && arr->type == MSGPACK_OBJECT_ARRAY ? arr->via.array.size : 0;
	msgpack_packer *pk = vmh_result(req);

	/* One entry per instance the broker gave: it knows the names and
	 * folders, the toy knows the states. */
	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "instances");
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *o = &arr->via.array.ptr[i];
		char name[PROTO_NAME_MAX + 1] = "", dir[PROTO_PATH_MAX + 1] = "";
		enum proto_state state;
		const char *reason;

		proto_get_str(o, "name", name, sizeof(name));
		proto_get_str(o, "dir", dir, sizeof(dir));
		state = dir[0] ? toy_read_state(dir) : PROTO_STATE_UNKNOWN;
		reason = toy_reason(state);
		vmh_state_seen(name, state);
		msgpack_pack_map(pk, reason ? 3 : 2);
		proto_pack_kv_str(pk, "name", name);
		proto_pack_kv_state(pk, "state", state);
		if (reason)
			proto_pack_kv_str(pk, "reason", reason);
	}
	vmh_done(req);
}

static void toy_instance_create(struct vmh_req *req, const msgpack_object *params)
{
	struct vmh_instance inst;
	char err[256];
	int ret;

	if (vmh_instance_from_req(req, params, "instance", &inst) < 0)
		return;
	if (mkdir(inst.dir, 0700) < 0 && errno != EEXIST) {
		vmh_fail(req, PROTO_E_IO, "cannot make %s: %s", inst.dir, strerror(errno));
		goto out_free;
	}
	ret = toy_write_state(inst.dir, PROTO_STATE_STOPPED, err, sizeof(err));
	if (ret < 0) {
		vmh_fail(req, ret, "%s", err);
		goto out_free;
	}
	vmh_state_seen(inst.name, PROTO_STATE_STOPPED);
	msgpack_pack_map(vmh_result(req), 0);
	vmh_done(req);
out_free:
	vmh_instance_free(&inst);
}

/* Start and stop: write the new state, tell the broker, answer it. */
static void toy_set_state(struct vmh_req *req, const msgpack_object *params,
			  enum proto_state state)
{
	struct vmh_instance inst;
	char err[256];
	int ret;

	if (vmh_instance_from_req(req, params, "instance", &inst) < 0)
		return;
	if (toy_read_state(inst.dir) == PROTO_STATE_UNKNOWN) {
		vmh_fail(req, PROTO_E_NOT_FOUND, "the toy has no instance %s (no %s/%s)", inst.name,
			 inst.dir, TOY_STATE_FILE);
		goto out_free;
	}
	ret = toy_write_state(inst.dir, state, err, sizeof(err));
	if (ret < 0) {
		vmh_fail(req, ret, "%s", err);
		goto out_free;
	}
	vmh_state_notify(inst.name, state);
	toy_answer_state(req, state);
out_free:
	vmh_instance_free(&inst);
}

static void toy_instance_start(struct vmh_req *req, const msgpack_object *params)
{
	toy_set_state(req, params, PROTO_STATE_RUNNING);
}

static void toy_instance_stop(struct vmh_req *req, const msgpack_object *params)
{
	toy_set_state(req, params, PROTO_STATE_STOPPED);
}

static void toy_instance_restart(struct vmh_req *req, const msgpack_object *params)
{
	toy_set_state(req, params, PROTO_STATE_RUNNING);
}

static void toy_instance_state(struct vmh_req *req, const msgpack_object *params)
{
	struct vmh_instance inst;

	if (vmh_instance_from_req(req, params, "instance", &inst) < 0)
		return;
	toy_answer_state(req, toy_read_state(inst.dir));
	vmh_instance_free(&inst);
}

static void toy_instance_info(struct vmh_req *req, const msgpack_object *params)
{
	struct vmh_instance inst;
	enum proto_state state;
	const char *reason;
	msgpack_packer *pk;

	if (vmh_instance_from_req(req, params, "instance", &inst) < 0)
		return;
	state = toy_read_state(inst.dir);
	reason = toy_reason(state);
	pk = vmh_result(req);
	msgpack_pack_map(pk, reason ? 6 : 5);
	proto_pack_kv_state(pk, "state", state);
	/* No sshd: a port that refuses, so the broker turns to instance.exec. */
	proto_pack_kv_str(pk, "ssh_host", "127.0.0.1");
	proto_pack_kv_int(pk, "ssh_port", toy_refused_port);
	proto_pack_str(pk, "ipv4");
	msgpack_pack_array(pk, 0);
	proto_pack_kv_int(pk, "pid", 0);
	if (reason)
		proto_pack_kv_str(pk, "reason", reason);
	vmh_done(req);
	vmh_instance_free(&inst);
}

static void toy_instance_delete(struct vmh_req *req, const msgpack_object *params)
{
	struct vmh_instance inst;
	char path[PROTO_PATH_MAX + 1];

	if (vmh_instance_from_req(req, params, "instance", &inst) < 0)
		return;
	/* The folder is the broker's to remove (docs/protocol.md); the toy
	 * removes only what it made there. */
	snprintf(path, sizeof(path), "%s/%s", inst.dir, TOY_STATE_FILE);
	if (unlink(path) < 0 && errno != ENOENT) {
		vmh_fail(req, PROTO_E_IO, "cannot remove %s: %s", path, strerror(errno));
		goto out_free;
	}
	vmh_state_forget(inst.name);
	msgpack_pack_map(vmh_result(req), 0);
	vmh_done(req);
out_free:
	vmh_instance_free(&inst);
}

/* ---- instance.exec: the command runs on the host, in the folder ---- */

struct toy_exec {
	struct vmh_req *req;
	char **argv; /* env -C DIR ARGV..., NULL-terminated */
	size_t argc;
};

static void toy_exec_free(struct toy_exec *x)
{
	for (size_t i = 0; i < x->argc; i++)
		free(x->argv[i]);
	free(x->argv);
	free(x);
}

static void toy_exec_done(void *ud, const struct vmh_run_result *r)
{
	struct toy_exec *x = ud;
	msgpack_packer *pk;
	size_t n = r->output ? strlen(r->output) : 0;

	if (r->timed_out) {
		vmh_fail(x->req, PROTO_E_TIMEOUT, "the command did not end in time");
		goto out_free;
	}
	pk = vmh_result(x->req);
	msgpack_pack_map(pk, 5);
	/* 128 + the signal, as a shell reports a command a signal killed. */
	proto_pack_kv_int(pk, "status", r->status >= 0 ? r->status : 128 + r->signal);
	/* vmh_run captures stdout and stderr together: all of it is stdout. */
	proto_pack_str(pk, "stdout");
	msgpack_pack_bin(pk, n + (n ? 1 : 0));
	msgpack_pack_bin_body(pk, r->output, n);
	if (n)
		msgpack_pack_bin_body(pk, "\n", 1);
	proto_pack_str(pk, "stderr");
	msgpack_pack_bin(pk, 0);
	proto_pack_kv_bool(pk, "stdout_truncated", false);
	proto_pack_kv_bool(pk, "stderr_truncated", false);
	vmh_done(x->req);
out_free:
	toy_exec_free(x);
}

static void toy_instance_exec(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *argv = proto_map_get(params, "argv");
	struct vmh_run_opts opts = {.timeout_s = 60};
	struct vmh_instance inst;
	struct toy_exec *x = NULL;
	int64_t timeout;
	int ret;

	if (vmh_instance_from_req(req, params, "instance", &inst) < 0)
		return;
	if (!argv || argv->type != MSGPACK_OBJECT_ARRAY || argv->via.array.size == 0 ||
	    argv->via.array.size > PROTO_EXEC_ARGV_MAX) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "argv must be 1 to %d strings",
			 PROTO_EXEC_ARGV_MAX);
		goto out_free_inst;
	}
	if (proto_map_get(params, "stdin")) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "the toy driver's exec takes no stdin");
		goto out_free_inst;
	}
	if (toy_read_state(inst.dir) != PROTO_STATE_RUNNING) {
		vmh_fail(req, PROTO_E_INVALID_STATE, "%s is not running", inst.name);
		goto out_free_inst;
	}
	if (proto_get_int(params, "timeout", &timeout) == 0 && timeout > 0)
		opts.timeout_s = (double)timeout;

	x = calloc(1, sizeof(*x));
	if (!x || !(x->argv = calloc(argv->via.array.size + 4, sizeof(char *))))
		goto out_nomem;
	x->req = req;
	if (!(x->argv[x->argc++] = strdup("env")) || !(x->argv[x->argc++] = strdup("-C")) ||
	    !(x->argv[x->argc++] = strdup(inst.dir)))
		goto out_nomem;
	for (uint32_t i = 0; i < argv->via.array.size; i++) {
		const msgpack_object *a = &argv->via.array.ptr[i];

		if (a->type != MSGPACK_OBJECT_STR || memchr(a->via.str.ptr, '\0', a->via.str.size)) {
			vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "argv must be strings");
			goto out_free_exec;
		}
		if (!(x->argv[x->argc] = strndup(a->via.str.ptr, a->via.str.size)))
			goto out_nomem;
		x->argc++;
	}
	ret = vmh_run(x->argv, &opts, toy_exec_done, x);
	if (ret < 0) {
		vmh_fail(req, ret, "cannot run %s", x->argv[3]);
		goto out_free_exec;
	}
	vmh_instance_free(&inst);
	return;

out_nomem:
	vmh_fail(req, PROTO_E_NOMEM, "out of memory");
out_free_exec:
	if (x)
		toy_exec_free(x);
out_free_inst:
	vmh_instance_free(&inst);
}

static const struct vmh_ops toy_ops = {
	.ops_version = VMH_OPS_VERSION,
	.driver = "toy",
	.scope = "toy",
	.version = "1.0",
	.init = toy_init,
	.fini = toy_fini,
	.instances_list = toy_instances_list,
	.instance_create = toy_instance_create,
	.instance_start = toy_instance_start,
	.instance_stop = toy_instance_stop,
	.instance_restart = toy_instance_restart,
	.instance_delete = toy_instance_delete,
	.instance_state = toy_instance_state,
	.instance_info = toy_instance_info,
	.instance_exec = toy_instance_exec,
};

int main(int argc, char **argv)
{
	return vmh_main(&toy_ops, argc, argv);
}
