/*
 * Commands without SSH: where the guest has no sshd (its SSH port refuses
 * connections) and the driver has the exec feature, `vmctl exec` runs the
 * command through the driver (instance.exec: LXD's exec API for lxd), and
 * launch, start and restart take the guest as ready through it too
 * (ssh-wait.c). The CLI learns that SSH is not up from ssh_info {probe};
 * then it sends exec, which this file answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "readiness.h"

/* How long the SSH port's look may take before the answer. */
#define EXEC_PROBE_WAIT 3.0

void exec_via(char *buf, size_t len)
{
	if (strcmp(B->driver, "lxd") == 0)
		snprintf(buf, len, "LXD's exec API");
	else
		snprintf(buf, len, "the %s driver's exec", B->driver);
}

struct hcall *exec_call(const struct instance_record *rec, const char *command, double timeout_s,
			proto_result_fn cb, void *ud)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct hcall *c;

	scope_pack_instance_params(&sb, rec, 2, &pk);
	proto_pack_str(&pk, "argv");
	msgpack_pack_array(&pk, 3);
	proto_pack_str(&pk, "/bin/sh");
	proto_pack_str(&pk, "-c");
	proto_pack_str(&pk, command);
	proto_pack_kv_int(&pk, "timeout", (int64_t)(timeout_s > 1 ? timeout_s : 1));
	c = helper_call(B->helper, "instance.exec", &sb, timeout_s + 60, cb, ud);
	msgpack_sbuffer_destroy(&sb);
	return c;
}

/* ---- ssh_info {probe}: is SSH up? ---- */

struct ssh_probe {
	struct creq *r;
	char host[64];
	int64_t port;
};

static void ssh_probe_answer(struct creq *r, const char *host, int64_t port, const char *no_ssh)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, no_ssh ? 6 : 5);
	proto_pack_kv_str(&pk, "host", host);
	proto_pack_kv_int(&pk, "port", port);
	proto_pack_kv_str(&pk, "user", "ubuntu");
	proto_pack_kv_str(&pk, "key", B->ssh_key);
	proto_pack_kv_bool(&pk, "ssh", no_ssh == NULL);
	if (no_ssh)
		proto_pack_kv_str(&pk, "why", no_ssh);
	creq_ok(r, &sb);
	msgpack_sbuffer_destroy(&sb);
}

static void ssh_probe_done(void *ud, enum probe_result result)
{
	struct ssh_probe *p = ud;
	char why[128];

	snprintf(why, sizeof(why), "port %d of %s refuses connections", (int)p->port, p->host);
	ssh_probe_answer(p->r, p->host, p->port, result == PROBE_CLOSED ? why : NULL);
	free(p);
}

bool exec_probe_ssh(struct creq *r, const char *host, int64_t port)
{
	struct ssh_probe *p;

	if (!broker_has_feature(PROTO_FEAT_EXEC) || !probe_host_usable(host))
		return false;
	p = calloc(1, sizeof(*p));
	if (!p)
		return false;
	p->r = r;
	p->port = port;
	snprintf(p->host, sizeof(p->host), "%s", host);
	if (!probe_start(host, (int)port, EXEC_PROBE_WAIT, ssh_probe_done, p)) {
		free(p);
		return false;
	}
	return true;
}

/* ---- exec ---- */

struct exec_req {
	struct creq *r;
	unsigned gen;
	char name[INSTANCE_NAME_MAX + 1];
	int64_t timeout;
	msgpack_sbuffer extra; /* the params after {instance}: argv, cwd?, stdin?, timeout */
	uint32_t n_extra;
	struct probe *probe;
};

static void exec_req_free(struct exec_req *x)
{
	msgpack_sbuffer_destroy(&x->extra);
	free(x);
}

static void exec_on_result(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct exec_req *x = ud;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int64_t status;

	if (err < 0) {
		creq_fail(x->r, err, "could not run the command in %s: %s", x->name, errmsg);
		goto out_free;
	}
	if (proto_get_int(result, "status", &status) < 0) {
		creq_fail(x->r, PROTO_E_PROTOCOL, "the %s driver's exec answered no exit status",
			  B->driver);
		goto out_free;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *result);
	creq_ok(x->r, &sb);
	msgpack_sbuffer_destroy(&sb);
out_free:
	exec_req_free(x);
}

static void exec_on_probe(void *ud, enum probe_result result)
{
	struct exec_req *x = ud;
	struct instance_record *rec = x->gen == B->scope_gen ? registry_find(&B->reg, x->name) : NULL;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char via[64];

	x->probe = NULL;
	exec_via(via, sizeof(via));
	if (!rec || rec->deleted) {
		creq_fail(x->r, PROTO_E_NOT_FOUND, "%s was deleted meanwhile", x->name);
		exec_req_free(x);
		return;
	}
	if (result == PROBE_CLOSED)
		vlog(LOG_INFO_, "%s: no SSH (its SSH port refuses connections); running through %s",
		     x->name, via);
	else
		vlog(LOG_INFO_, "%s: no SSH as the client found it (its SSH port %s now); running "
		     "through %s", x->name, result == PROBE_BANNER ? "greets" : "is silent", via);
	scope_pack_instance_params(&sb, rec, x->n_extra, &pk);
	msgpack_sbuffer_write(&sb, x->extra.data, x->extra.size);
	if (!helper_call(B->helper, "instance.exec", &sb, (double)x->timeout + 60, exec_on_result, x)) {
		creq_fail(x->r, PROTO_E_NOMEM, "out of memory");
		exec_req_free(x);
	}
	msgpack_sbuffer_destroy(&sb);
}

static void exec_on_info(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct exec_req *x = ud;
	enum proto_state state = PROTO_STATE_UNKNOWN;
	char host[64] = "";
	int64_t port = 22;

	if (err < 0) {
		creq_fail(x->r, err, "could not ask about %s: %s", x->name, errmsg);
		exec_req_free(x);
		return;
	}
	proto_get_state(result, "state", &state);
	if (state != PROTO_STATE_RUNNING) {
		creq_fail(x->r, PROTO_E_INVALID_STATE,
			  "%s is not running (it is %s); start it with: vmctl start %s", x->name,
			  proto_state_name(state), x->name);
		exec_req_free(x);
		return;
	}
	proto_get_str(result, "ssh_host", host, sizeof(host));
	proto_get_int(result, "ssh_port", &port);
	/* The look at the port is for the log: it says why SSH is not used. */
	x->probe = probe_host_usable(host) ? probe_start(host, (int)port, EXEC_PROBE_WAIT,
							 exec_on_probe, x)
					   : NULL;
	if (!x->probe)
		exec_on_probe(x, PROBE_SILENT);
}

void op_exec(struct creq *r, const msgpack_object *p)
{
	const msgpack_object *argv = proto_map_get(p, "argv");
	const msgpack_object *in = proto_map_get(p, "stdin");
	char name[INSTANCE_NAME_MAX + 1] = "", cwd[PROTO_PATH_MAX + 1] = "";
	struct instance_record *rec;
	struct exec_req *x;
	msgpack_packer pk;
	msgpack_sbuffer sb;

	if (proto_get_str(p, "name", name, sizeof(name)) < 0 || !name[0]) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "exec needs an instance name");
		return;
	}
	if (!argv || argv->type != MSGPACK_OBJECT_ARRAY || argv->via.array.size == 0 ||
	    argv->via.array.size > PROTO_EXEC_ARGV_MAX) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "exec needs argv, a list of 1 to %d strings",
			  PROTO_EXEC_ARGV_MAX);
		return;
	}
	for (uint32_t i = 0; i < argv->via.array.size; i++) {
		if (argv->via.array.ptr[i].type != MSGPACK_OBJECT_STR) {
			creq_fail(r, PROTO_E_INVALID_ARGUMENT, "argv of exec must be strings");
			return;
		}
	}
	if (proto_get_str(p, "cwd", cwd, sizeof(cwd)) == PROTO_E_INVALID_ARGUMENT ||
	    (cwd[0] && cwd[0] != '/')) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "cwd of exec must be an absolute path");
		return;
	}
	if (in && in->type != MSGPACK_OBJECT_NIL && in->via.bin.size > PROTO_EXEC_INPUT_MAX) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "the standard input of exec is larger than %u "
			  "bytes", PROTO_EXEC_INPUT_MAX);
		return;
	}
	if (opx_refuse_feature(r, PROTO_FEAT_EXEC))
		return;
	rec = opx_record(r, name);
	if (!rec)
		return;
	x = calloc(1, sizeof(*x));
	if (!x) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	x->r = r;
	x->gen = B->scope_gen;
	snprintf(x->name, sizeof(x->name), "%s", name);
	if (proto_get_int(p, "timeout", &x->timeout) < 0 || x->timeout <= 0 ||
	    x->timeout > BROKER_EXEC_DEADLINE)
		x->timeout = BROKER_EXEC_DEADLINE;
	msgpack_sbuffer_init(&x->extra);
	msgpack_packer_init(&pk, &x->extra, msgpack_sbuffer_write);
	proto_pack_str(&pk, "argv");
	msgpack_pack_object(&pk, *argv);
	proto_pack_kv_int(&pk, "timeout", x->timeout);
	x->n_extra = 2;
	if (cwd[0]) {
		proto_pack_kv_str(&pk, "cwd", cwd);
		x->n_extra++;
	}
	if (in && (in->type == MSGPACK_OBJECT_BIN || in->type == MSGPACK_OBJECT_STR)) {
		proto_pack_str(&pk, "stdin");
		msgpack_pack_bin(&pk, in->via.bin.size);
		msgpack_pack_bin_body(&pk, in->via.bin.ptr, in->via.bin.size);
		x->n_extra++;
	}
	scope_pack_instance_params(&sb, rec, 0, &pk);
	if (!helper_call(B->helper, "instance.info", &sb, BROKER_SHORT_DEADLINE, exec_on_info, x)) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		exec_req_free(x);
	}
	msgpack_sbuffer_destroy(&sb);
}
