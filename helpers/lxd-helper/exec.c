/*
 * instance.exec: a command run by LXD itself (POST /1.0/instances/NAME/exec),
 * for images without sshd. Not interactive: LXD records stdout and stderr
 * in the instance's log folder (record-output), the helper awaits the
 * operation, reads its return code and both logs (each bounded), and
 * deletes the logs. Standard input, when there is some, is pushed as a
 * file into the container first and redirected there by sh. Blocking:
 * lxd_exec_run() runs on a work thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lxd.h"

void lxd_exec_free(struct lxd_exec *x)
{
	for (size_t i = 0; i < x->argc; i++)
		free(x->argv[i]);
	free(x->argv);
	json_decref(x->env);
	free(x->cwd);
	free(x->input);
	free(x->out[0]);
	free(x->out[1]);
	memset(x, 0, sizeof(*x));
}

/* A str of at most max bytes without NUL, copied. */
static char *dup_obj_str(const msgpack_object *o, size_t max)
{
	char *s;

	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > max ||
	    memchr(o->via.str.ptr, '\0', o->via.str.size))
		return NULL;
	s = malloc(o->via.str.size + 1);
	if (s) {
		memcpy(s, o->via.str.ptr, o->via.str.size);
		s[o->via.str.size] = '\0';
	}
	return s;
}

int lxd_exec_parse(const msgpack_object *params, struct lxd_exec *x, char *err, size_t errlen)
{
	const msgpack_object *argv = proto_map_get(params, "argv");
	const msgpack_object *env = proto_map_get(params, "env");
	const msgpack_object *cwd = proto_map_get(params, "cwd");
	const msgpack_object *in = proto_map_get(params, "stdin");

	memset(x, 0, sizeof(*x));
	if (!argv || argv->type != MSGPACK_OBJECT_ARRAY || argv->via.array.size == 0 ||
	    argv->via.array.size > PROTO_EXEC_ARGV_MAX) {
		snprintf(err, errlen, "instance.exec needs 'argv', a list of 1 to %d strings",
			 PROTO_EXEC_ARGV_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	x->argv = calloc(argv->via.array.size, sizeof(*x->argv));
	if (!x->argv)
		goto out_nomem;
	for (uint32_t i = 0; i < argv->via.array.size; i++) {
		x->argv[i] = dup_obj_str(&argv->via.array.ptr[i], PROTO_MAX_STRING);
		if (!x->argv[i]) {
			snprintf(err, errlen, "argv[%u] of instance.exec is not a string without NUL", i);
			lxd_exec_free(x);
			return PROTO_E_INVALID_ARGUMENT;
		}
		x->argc++;
	}
	if (env && env->type != MSGPACK_OBJECT_NIL) {
		if (env->type != MSGPACK_OBJECT_MAP) {
			snprintf(err, errlen, "'env' of instance.exec must be a map of strings");
			lxd_exec_free(x);
			return PROTO_E_INVALID_ARGUMENT;
		}
		x->env = json_object();
		if (!x->env)
			goto out_nomem;
		for (uint32_t i = 0; i < env->via.map.size; i++) {
			char *k = dup_obj_str(&env->via.map.ptr[i].key, 4096);
			char *v = dup_obj_str(&env->via.map.ptr[i].val, PROTO_MAX_STRING);

			if (!k || !v || !k[0] || strchr(k, '=')) {
				free(k);
				free(v);
				snprintf(err, errlen, "'env' of instance.exec must map names (without '=') "
					 "to strings");
				lxd_exec_free(x);
				return PROTO_E_INVALID_ARGUMENT;
			}
			json_object_set_new(x->env, k, json_string(v));
			free(k);
			free(v);
		}
	}
	if (cwd && cwd->type != MSGPACK_OBJECT_NIL &&
	    !(cwd->type == MSGPACK_OBJECT_STR && cwd->via.str.size == 0)) {
		x->cwd = dup_obj_str(cwd, PROTO_PATH_MAX);
		if (!x->cwd || x->cwd[0] != '/') {
			snprintf(err, errlen, "'cwd' of instance.exec must be an absolute path");
			lxd_exec_free(x);
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	if (in && in->type != MSGPACK_OBJECT_NIL) {
		if ((in->type != MSGPACK_OBJECT_BIN && in->type != MSGPACK_OBJECT_STR) ||
		    in->via.bin.size > PROTO_EXEC_INPUT_MAX) {
			snprintf(err, errlen, "'stdin' of instance.exec must be bytes, at most %u",
				 PROTO_EXEC_INPUT_MAX);
			lxd_exec_free(x);
			return PROTO_E_INVALID_ARGUMENT;
		}
		x->input = malloc(in->via.bin.size + 1);
		if (!x->input)
			goto out_nomem;
		memcpy(x->input, in->via.bin.ptr, in->via.bin.size);
		x->input_len = in->via.bin.size;
		x->has_input = true;
	}
	if (proto_get_int(params, "timeout", &x->timeout) < 0 || x->timeout <= 0)
		x->timeout = LXD_EXEC_TIMEOUT;
	return 0;

out_nomem:
	lxd_exec_free(x);
	snprintf(err, errlen, "out of memory");
	return PROTO_E_NOMEM;
}

char *lxd_exec_body(const struct lxd_exec *x, const char *stdin_path)
{
	json_t *cmd = json_array(), *env = x->env ? json_incref(x->env) : json_object(), *req;
	char *body;

	if (!cmd || !env) {
		json_decref(cmd);
		json_decref(env);
		return NULL;
	}
	if (stdin_path) {
		/* sh reads the pushed file as the command's stdin; the command
		 * itself is still exec'd with its own argv. */
		json_array_append_new(cmd, json_string("/bin/sh"));
		json_array_append_new(cmd, json_string("-c"));
		json_array_append_new(cmd, json_string("f=$1; shift; exec \"$@\" <\"$f\""));
		json_array_append_new(cmd, json_string("sh"));
		json_array_append_new(cmd, json_string(stdin_path));
	}
	for (size_t i = 0; i < x->argc; i++)
		json_array_append_new(cmd, json_string(x->argv[i]));
	req = json_pack("{s:o, s:o, s:b, s:b, s:b}", "command", cmd, "environment", env,
			"wait-for-websocket", 0, "record-output", 1, "interactive", 0);
	if (req && x->cwd)
		json_object_set_new(req, "cwd", json_string(x->cwd));
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	return body;
}

int lxd_exec_outcome(const json_t *op, int *status, char paths[2][256], char *note, size_t notelen,
		     char *err, size_t errlen)
{
	const json_t *meta = json_object_get(op, "metadata");
	const json_t *ret = json_object_get(meta, "return");
	const json_t *output = json_object_get(meta, "output");
	json_int_t code = json_integer_value(json_object_get(op, "status_code"));
	const char *why = json_string_value(json_object_get(op, "err"));
	static const char *const fds[2] = { "1", "2" };
	int rc;

	note[0] = '\0';
	for (int i = 0; i < 2; i++) {
		const char *p = json_string_value(json_object_get(output, fds[i]));

		snprintf(paths[i], 256, "%s", p && strlen(p) < 256 ? p : "");
	}
	rc = lxd_operation_result(op, err, errlen);
	if (rc == PROTO_E_TIMEOUT)
		return rc;
	/* A command that could not be run fails the operation but still has
	 * a return code (127 for one not found): it is the command's status. */
	if (!json_is_integer(ret)) {
		if (rc == 0) {
			snprintf(err, errlen, "LXD's exec operation has no return code");
			rc = PROTO_E_DRIVER;
		}
		return rc;
	}
	*status = (int)json_integer_value(ret);
	if (code != 200 && why && why[0])
		snprintf(note, notelen, "%s", why);
	return 0;
}

/* Read one recorded output into x->out[i] and delete it. */
static void fetch_output(const char *socket_path, struct lxd_exec *x, int i, const char *path)
{
	struct lxd_resp r;
	char err[512];

	if (!path[0])
		return;
	if (lxd_raw(socket_path, "GET", path, NULL, 0, NULL, PROTO_EXEC_OUTPUT_MAX, LXD_EXEC_IO,
		    &x->out[i], &x->out_len[i], &x->out_cut[i], err, sizeof(err)) < 0)
		vmh_log(VMH_WARN, "%s: could not read the exec's %s: %s", x->name,
			i == 0 ? "stdout" : "stderr", err);
	if (lxd_call(socket_path, "DELETE", path, NULL, NULL, LXD_EXEC_IO, &r, err, sizeof(err)) < 0)
		vmh_log(VMH_WARN, "%s: could not delete LXD's %s: %s", x->name, path, err);
	lxd_resp_free(&r);
}

/* Put LXD's reason (a command not found) on stderr when it said nothing. */
static void note_on_stderr(struct lxd_exec *x, const char *note)
{
	char *s;
	int n;

	if (!note[0] || x->out_len[1] > 0)
		return;
	n = asprintf(&s, "%s: %s (LXD)\n", x->argv[0], note);
	if (n < 0)
		return;
	free(x->out[1]);
	x->out[1] = s;
	x->out_len[1] = (size_t)n;
}

int lxd_exec_run(const char *socket_path, struct lxd_exec *x, char *err, size_t errlen)
{
	static const char *const file_headers[] = { "X-LXD-type: file", "X-LXD-mode: 0600",
						    "X-LXD-uid: 0", "X-LXD-gid: 0", NULL };
	char path[512], input_path[64] = "", file_api[600], wait_path[512], paths[2][256], note[256];
	struct lxd_resp r = { 0 }, op = { 0 };
	unsigned char rnd[8];
	char *body = NULL;
	int rc;

	if (x->has_input) {
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
			unsigned long t = (unsigned long)time(NULL) ^ (unsigned long)getpid();

			memcpy(rnd, &t, sizeof(rnd) < sizeof(t) ? sizeof(rnd) : sizeof(t));
		}
		snprintf(input_path, sizeof(input_path), "/tmp/.vmctl-exec-stdin-");
		for (size_t i = 0; i < sizeof(rnd); i++)
			snprintf(input_path + strlen(input_path), 3, "%02x", rnd[i]);
		snprintf(file_api, sizeof(file_api), "/1.0/instances/%s/files?path=%s", x->name,
			 input_path);
		rc = lxd_raw(socket_path, "POST", file_api, x->input ? x->input : "", x->input_len,
			     file_headers, 0, LXD_EXEC_IO, NULL, NULL, NULL, err, errlen);
		if (rc < 0)
			return rc;
	}
	body = lxd_exec_body(x, x->has_input ? input_path : NULL);
	if (!body) {
		snprintf(err, errlen, "out of memory");
		rc = PROTO_E_NOMEM;
		goto out_input;
	}
	snprintf(path, sizeof(path), "/1.0/instances/%s/exec", x->name);
	rc = lxd_call(socket_path, "POST", path, body, NULL, LXD_EXEC_IO, &r, err, errlen);
	if (rc == 0 && r.kind != LXD_ASYNC) {
		snprintf(err, errlen, "LXD answered the exec of %s without an operation", x->name);
		rc = PROTO_E_DRIVER;
	}
	if (rc < 0)
		goto out_free;
	snprintf(wait_path, sizeof(wait_path), "%s/wait?timeout=%lld", r.operation,
		 (long long)x->timeout);
	rc = lxd_call(socket_path, "GET", wait_path, NULL, NULL, (double)x->timeout + LXD_EXEC_IO, &op,
		      err, errlen);
	if (rc == 0)
		rc = lxd_exec_outcome(op.metadata, &x->status, paths, note, sizeof(note), err, errlen);
	if (rc == PROTO_E_TIMEOUT)
		snprintf(err, errlen, "the command did not end within %lld s (it may still run in %s)",
			 (long long)x->timeout, x->name);
	if (rc < 0)
		goto out_free;
	fetch_output(socket_path, x, 0, paths[0]);
	fetch_output(socket_path, x, 1, paths[1]);
	note_on_stderr(x, note);
out_free:
	lxd_resp_free(&op);
	lxd_resp_free(&r);
	free(body);
out_input:
	if (input_path[0]) {
		char why[256];

		/* sh has read it (or never will): it goes, whatever happened. */
		if (lxd_call(socket_path, "DELETE", file_api, NULL, NULL, LXD_EXEC_IO, &op, why,
			     sizeof(why)) < 0 && op.code != 404)
			vmh_log(VMH_WARN, "%s: could not delete %s: %s", x->name, input_path, why);
		lxd_resp_free(&op);
	}
	return rc;
}

void lxd_exec_pack(msgpack_packer *pk, const struct lxd_exec *x)
{
	static const char *const keys[2] = { "stdout", "stderr" };
	static const char *const cut[2] = { "stdout_truncated", "stderr_truncated" };

	msgpack_pack_map(pk, 5);
	proto_pack_str(pk, "status");
	msgpack_pack_int(pk, x->status);
	for (int i = 0; i < 2; i++) {
		proto_pack_str(pk, keys[i]);
		msgpack_pack_bin(pk, x->out_len[i]);
		msgpack_pack_bin_body(pk, x->out[i] ? x->out[i] : "", x->out_len[i]);
	}
	for (int i = 0; i < 2; i++)
		proto_pack_kv_bool(pk, cut[i], x->out_cut[i]);
}
