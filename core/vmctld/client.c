/*
 * The CLI side: the listening socket, one proto_conn per client, and the
 * table of methods. A request is a struct creq that outlives its client: an
 * operation started by a CLI that went away still finishes, and its answer
 * is dropped.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker.h"

struct client {
	struct client *next, *prev;
	struct proto_conn *conn;
	struct creq *reqs;
};

struct creq {
	struct creq *next, *prev;
	struct client *cl;
	uint64_t msgid;
	char method[PROTO_MAX_METHOD + 1];
};

struct method {
	const char *name;
	void (*fn)(struct creq *r, const msgpack_object *params);
	bool needs_scope; /* refused while the driver is being switched */
	/* The params fn reads, "key:type ...", type one of str, int, bool,
	 * size (bytes, or text like "1G") and list: a key given with another
	 * type is refused before fn runs. nil is the same as absent, and keys
	 * not listed are ignored (docs/protocol.md, "CLI <-> broker"). */
	const char *params;
};

#define NAMES_PARAMS "names:list all:bool "
static const struct method methods[] = {
	{"version", op_version, false, "vmctl:str"},
	{"launch", op_launch, true,
	 "image:str name:str cpus:int memory:size disk:size timeout:int cloud_init:str networks:list "
	 "bridged:bool"},
	{"list", op_list, true, "all_scopes:bool"},
	{"info", op_info, true, NAMES_PARAMS},
	{"start", op_start, true, NAMES_PARAMS "timeout:int"},
	{"stop", op_stop_delayed, true, NAMES_PARAMS "force:bool timeout:int time:int cancel:bool"},
	{"restart", op_restart, true, NAMES_PARAMS "timeout:int"},
	{"suspend", op_suspend, true, NAMES_PARAMS "timeout:int"},
	{"delete", op_delete, true, NAMES_PARAMS "purge:bool"},
	{"recover", op_recover, true, NAMES_PARAMS},
	{"purge", op_purge, true, ""},
	{"ssh_info", op_ssh_info, true, "name:str"},
	{"get", op_get_instance, false, "key:str"},
	{"set", op_set_instance, true, "key:str value:str"},
	{"keys", op_keys, false, ""},
	{"networks", op_networks, true, ""},
	{"find", op_find, false, "query:str remote:str"},
	{"snapshot", op_snapshot, true, "name:str snapshot:str comment:str"},
	{"restore", op_restore, true, "name:str snapshot:str destructive:bool"},
	{"snapshot_delete", op_snapshot_delete, true, "name:str snapshot:str"},
	{"snapshots", op_snapshots, true, NAMES_PARAMS},
	{"clone", op_clone, true, "source:str name:str"},
	{"mount", op_mount, true, "source:str name:str path:str type:str uid_map:list gid_map:list"},
	{"umount", op_umount, true, "name:str path:str"},
};
#undef NAMES_PARAMS

enum param_type { PARAM_STR, PARAM_INT, PARAM_BOOL, PARAM_SIZE, PARAM_LIST, PARAM_N_TYPES };

static const struct {
	const char *name; /* in methods[].params */
	const char *what; /* in messages */
} param_types[PARAM_N_TYPES] = {
	[PARAM_STR] = {"str", "a string"},
	[PARAM_INT] = {"int", "a whole number"},
	[PARAM_BOOL] = {"bool", "true or false"},
	[PARAM_SIZE] = {"size", "a size (a number of bytes, or text like 1G)"},
	[PARAM_LIST] = {"list", "a list"},
};

static bool param_fits(enum param_type t, const msgpack_object *v)
{
	switch (v->type) {
	case MSGPACK_OBJECT_STR:
		return t == PARAM_STR || t == PARAM_SIZE;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return t == PARAM_INT || t == PARAM_SIZE;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return t == PARAM_INT;
	case MSGPACK_OBJECT_BOOLEAN:
		return t == PARAM_BOOL;
	case MSGPACK_OBJECT_ARRAY:
		return t == PARAM_LIST;
	default:
		return false;
	}
}

/* What a param of that type must be, for the message; NULL if v is one. */
static const char *param_type_refusal(const char *type, size_t len, const msgpack_object *v)
{
	for (size_t t = 0; t < PARAM_N_TYPES; t++)
		if (strlen(param_types[t].name) == len && !strncmp(param_types[t].name, type, len))
			return param_fits((enum param_type)t, v) ? NULL : param_types[t].what;
	return "of a type this vmctld does not know (a bug)";
}

/* Refuse a params map whose keys are not strings, or in which a key the
 * method reads has the wrong type. 0, or PROTO_E_INVALID_ARGUMENT with err. */
static int params_check(const struct method *m, const msgpack_object *params, char *err, size_t errlen)
{
	if (!params || params->type != MSGPACK_OBJECT_MAP)
		return 0;
	for (uint32_t i = 0; i < params->via.map.size; i++) {
		const msgpack_object *key = &params->via.map.ptr[i].key;
		const msgpack_object *val = &params->via.map.ptr[i].val;
		const char *p = m->params;

		if (key->type != MSGPACK_OBJECT_STR) {
			snprintf(err, errlen, "the param names of %s must be strings", m->name);
			return PROTO_E_INVALID_ARGUMENT;
		}
		if (val->type == MSGPACK_OBJECT_NIL)
			continue;
		while (*p) {
			size_t klen = strcspn(p, ": "), tlen;
			const char *type, *want;

			if (p[klen] != ':')
				break; /* not "key:type": a bug in the table, caught by the tests */
			type = p + klen + 1;
			tlen = strcspn(type, " ");
			if (key->via.str.size == klen && !memcmp(key->via.str.ptr, p, klen)) {
				want = param_type_refusal(type, tlen, val);
				if (want) {
					snprintf(err, errlen, "%.*s of %s must be %s", (int)klen, p, m->name,
						 want);
					return PROTO_E_INVALID_ARGUMENT;
				}
				break;
			}
			p = type + tlen;
			p += strspn(p, " ");
		}
	}
	return 0;
}

static void creq_unlink(struct creq *r)
{
	if (r->cl) {
		if (r->prev)
			r->prev->next = r->next;
		else
			r->cl->reqs = r->next;
		if (r->next)
			r->next->prev = r->prev;
	}
	r->next = r->prev = NULL;
	r->cl = NULL;
}

void creq_ok(struct creq *r, const msgpack_sbuffer *result)
{
	if (r->cl && r->cl->conn) {
		if (result)
			proto_reply_sb(r->cl->conn, r->msgid, 0, NULL, result);
		else
			proto_reply(r->cl->conn, r->msgid, 0, NULL, "\x80", 1);
	}
	creq_unlink(r);
	free(r);
}

void creq_fail(struct creq *r, int err, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vlog(LOG_INFO_, "%s failed: %s", r->method, msg);
	if (r->cl && r->cl->conn)
		proto_reply(r->cl->conn, r->msgid, err < 0 ? err : PROTO_E_INTERNAL, msg, NULL, 0);
	creq_unlink(r);
	free(r);
}

static void creq_notify_text(struct creq *r, const char *method, const char *text, bool with_fraction,
			     double fraction)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (!r || !r->cl || !r->cl->conn)
		return;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, with_fraction ? 2 : 1);
	proto_pack_kv_str(&pk, "text", text);
	if (with_fraction)
		proto_pack_kv_double(&pk, "fraction", fraction);
	proto_notify_sb(r->cl->conn, method, &sb);
	msgpack_sbuffer_destroy(&sb);
}

void creq_progress(struct creq *r, double fraction, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	creq_notify_text(r, "progress", text, true, fraction);
}

void creq_warning(struct creq *r, const char *fmt, ...)
{
	char text[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	vlog(LOG_WARN_, "%s", text);
	creq_notify_text(r, "warning", text, false, 0);
}

void names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int names_push(char ***names, size_t *n, const char *name)
{
	char **grown;

	for (size_t i = 0; i < *n; i++)
		if (strcmp((*names)[i], name) == 0)
			return 0;
	grown = realloc(*names, (*n + 1) * sizeof(*grown));
	if (!grown)
		return PROTO_E_NOMEM;
	*names = grown;
	grown[*n] = strdup(name);
	if (!grown[*n])
		return PROTO_E_NOMEM;
	(*n)++;
	return 0;
}

int creq_names(struct creq *r, const msgpack_object *params, bool include_deleted, char ***names,
	       size_t *n)
{
	const msgpack_object *list = proto_map_get(params, "names");
	bool all = false;
	char unknown[1024] = "";
	size_t n_unknown = 0;
	int rc = 0;

	*names = NULL;
	*n = 0;
	proto_get_bool(params, "all", &all);
	if (all) {
		for (size_t i = 0; i < B->reg.n && rc == 0; i++)
			if (include_deleted || !B->reg.v[i].deleted)
				rc = names_push(names, n, B->reg.v[i].name);
		goto out_check;
	}
	if (!list || list->type == MSGPACK_OBJECT_NIL || list->type != MSGPACK_OBJECT_ARRAY ||
	    list->via.array.size == 0) {
		if (list && list->type != MSGPACK_OBJECT_NIL && list->type != MSGPACK_OBJECT_ARRAY) {
			creq_fail(r, PROTO_E_INVALID_ARGUMENT, "names must be a list of instance names");
			return PROTO_E_INVALID_ARGUMENT;
		}
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "name an instance, or use --all");
		return PROTO_E_INVALID_ARGUMENT;
	}
	for (uint32_t i = 0; i < list->via.array.size && rc == 0; i++) {
		char name[256];

		if (proto_obj_str(&list->via.array.ptr[i], name, sizeof(name)) < 0) {
			names_free(*names, *n);
			creq_fail(r, PROTO_E_INVALID_ARGUMENT, "instance names must be strings");
			return PROTO_E_INVALID_ARGUMENT;
		}
		if (!registry_find(&B->reg, name)) {
			size_t used = strlen(unknown);

			snprintf(unknown + used, sizeof(unknown) - used, "%s\"%s\"", used ? ", " : "",
				 name);
			n_unknown++;
			continue;
		}
		rc = names_push(names, n, name);
	}
	if (n_unknown) {
		names_free(*names, *n);
		*names = NULL;
		*n = 0;
		if (n_unknown == 1)
			creq_fail(r, PROTO_E_NOT_FOUND, "instance %s does not exist (driver %s, scope %s)",
				  unknown, B->driver, B->scope);
		else
			creq_fail(r, PROTO_E_NOT_FOUND,
				  "instances %s do not exist (driver %s, scope %s)", unknown, B->driver,
				  B->scope);
		return PROTO_E_NOT_FOUND;
	}
out_check:
	if (rc < 0) {
		names_free(*names, *n);
		*names = NULL;
		*n = 0;
		creq_fail(r, rc, "out of memory");
	}
	return rc;
}

static void client_on_request(struct proto_conn *conn, void *ud, uint64_t msgid,
			      const char *method, const msgpack_object *params)
{
	struct client *cl = ud;
	struct creq *r = calloc(1, sizeof(*r));
	const struct method *m = NULL;
	char why[256];

	if (!r) {
		proto_reply(conn, msgid, PROTO_E_NOMEM, "out of memory", NULL, 0);
		return;
	}
	r->cl = cl;
	r->msgid = msgid;
	snprintf(r->method, sizeof(r->method), "%s", method);
	r->next = cl->reqs;
	if (cl->reqs)
		cl->reqs->prev = r;
	cl->reqs = r;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(methods[i].name, method) == 0)
			m = &methods[i];
	if (!m) {
		creq_fail(r, PROTO_E_UNSUPPORTED, "this vmctld (%s) does not know the method %s",
			  VMCTL_VERSION, method);
		return;
	}
	if (params && params->type != MSGPACK_OBJECT_MAP && params->type != MSGPACK_OBJECT_NIL) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "the params of %s must be a map", method);
		return;
	}
	if (params_check(m, params, why, sizeof(why)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "%s", why);
		return;
	}
	if (B->shutting_down) {
		creq_fail(r, PROTO_E_UNAVAILABLE, "vmctld is shutting down");
		return;
	}
	if (m->needs_scope && B->switching) {
		creq_fail(r, PROTO_E_BUSY, "%s; try again in a moment", B->switch_note);
		return;
	}
	vlog(LOG_DEBUG_, "request %s", method);
	m->fn(r, params);
}

static void client_free(struct client *cl)
{
	while (cl->reqs)
		creq_unlink(cl->reqs);
	if (cl->prev)
		cl->prev->next = cl->next;
	else if (B->clients == cl)
		B->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	proto_conn_free(cl->conn);
	free(cl);
}

static void client_on_closed(struct proto_conn *conn, void *ud, int err, const char *why)
{
	struct client *cl = ud;

	if (err < 0)
		vlog(LOG_INFO_, "client dropped: %s", why ? why : proto_strerror(err));
	client_free(cl);
}

static const struct proto_conn_ops client_ops = {
	.request = client_on_request,
	.closed = client_on_closed,
};

static void client_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct client *cl;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				vlog(LOG_WARN_, "accept: %s", strerror(errno));
			return;
		}
		cl = calloc(1, sizeof(*cl));
		if (!cl) {
			close(fd);
			continue;
		}
		cl->conn = proto_conn_new(loop, fd, fd, &client_ops, cl);
		if (!cl->conn) {
			close(fd);
			free(cl);
			continue;
		}
		cl->next = B->clients;
		if (B->clients)
			B->clients->prev = cl;
		B->clients = cl;
	}
}

int client_listen(char *err, size_t errlen)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(B->sock_path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "the socket path %s is too long (at most %zu bytes); "
			 "set VMCTL_DATA to a shorter folder", B->sock_path, sizeof(addr.sun_path) - 1);
		return PROTO_E_INVALID_ARGUMENT;
	}
	memcpy(addr.sun_path, B->sock_path, strlen(B->sock_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return PROTO_E_IO;
	}
	/* Only the lock holder gets here, so a socket file left behind is stale. */
	if (unlink(B->sock_path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove the stale socket %s: %s", B->sock_path,
			 strerror(errno));
		goto out_close;
	}
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", B->sock_path, strerror(errno));
		goto out_close;
	}
	if (chmod(B->sock_path, 0600) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", B->sock_path, strerror(errno));
		goto out_close;
	}
	B->listen_fd = fd;
	ev_io_init(&B->listen_w, client_on_accept, fd, EV_READ);
	ev_io_start(B->loop, &B->listen_w);
	return 0;

out_close:
	close(fd);
	return PROTO_E_IO;
}

void client_close_all(void)
{
	if (B->listen_fd >= 0) {
		ev_io_stop(B->loop, &B->listen_w);
		close(B->listen_fd);
		B->listen_fd = -1;
	}
	while (B->clients)
		client_free(B->clients);
}
