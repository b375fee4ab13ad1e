/*
 * The CLI side: the listening socket, one proto_conn per client, and the
 * table of methods. A request is a struct creq that outlives its client: an
 * operation started by a CLI that went away still finishes, and its answer
 * is dropped.
 *
 * No client, however slow or hostile, may make the broker spin or hold its
 * memory and file descriptors: see the limits below (docs/broker.md,
 * "Limits on clients").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker.h"

#define CLIENT_MAX 1024         /* connections at once... */
#define CLIENT_MAX_PER_UID 256  /* ...and from one user (the peer's SO_PEERCRED uid) */
#define CLIENT_FD_HEADROOM 32   /* descriptors kept from clients for helpers, children, downloads */
#define CLIENT_IDLE_S 60.0      /* dropped after this long without traffic and no request in flight */
#define CLIENT_MESSAGE_S 15.0   /* a request must arrive whole this long after its first byte */
#define CLIENT_TURNED_AWAY_S 2.0 /* a client over its user's cap may send one request this long */
#define CLIENT_MAX_OUTPUT PROTO_MAX_MESSAGE /* not read while more than this is queued for it */
#define CLIENT_INPUT_BUDGET (16u * 1024 * 1024) /* incomplete requests of all clients together */
#define ACCEPT_BATCH 64         /* accepted per wake-up, so a burst cannot starve the loop */
#define ACCEPT_BACKOFF_FIRST 0.05 /* accept failing (no descriptor left): pause this long... */
#define ACCEPT_BACKOFF_MAX 2.0    /* ...doubling up to this */
#define CLIENT_WARN_BURST 5       /* warnings about refused clients per CLIENT_WARN_WINDOW */
#define CLIENT_WARN_WINDOW 10.0

struct client {
	struct client *next, *prev;
	struct proto_conn *conn;
	struct creq *reqs;
	uid_t uid;
	bool turned_away; /* over its user's cap: its request gets an error, then it is closed */
	bool trusted;     /* auth_peer_trusted(), or it authenticated since */
};

/* The listening side's state. */
static struct {
	unsigned n;       /* clients connected */
	unsigned max;     /* CLIENT_MAX, fewer under a low RLIMIT_NOFILE */
	bool full;        /* the accept watcher waits for a client to leave */
	int reserve_fd;   /* given up to turn a client away when no descriptor is left */
	double backoff_s; /* the pause after the last failed accept, 0 after a good one */
	ev_timer backoff_w;
	struct proto_budget budget;
	struct proto_conn_limits limits, turned_away_limits;
	struct log_ratelimit warn_rl;
} acc = {.reserve_fd = -1};

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
	 * size (bytes, or text like "1G"), list and bin (bytes, or a str): a
	 * key given with another type is refused before fn runs. nil is the same as absent, and keys
	 * not listed are ignored (docs/protocol.md, "CLI <-> broker"). */
	const char *params;
};

#define NAMES_PARAMS "names:list all:bool "
static const struct method methods[] = {
	{"version", op_version, false, "vmctl:str"},
	{"launch", op_launch, true,
	 "image:str name:str cpus:int memory:size disk:size timeout:int cloud_init:str networks:list "
	 "bridged:bool cloud_init_url:str mounts:list"},
	{"list", op_list, true, "all_scopes:bool"},
	{"info", op_info, true, NAMES_PARAMS},
	{"start", op_start, true, NAMES_PARAMS "timeout:int"},
	{"stop", op_stop, true, NAMES_PARAMS "force:bool timeout:int time:int cancel:bool"},
	{"restart", op_restart, true, NAMES_PARAMS "timeout:int"},
	{"suspend", op_suspend, true, NAMES_PARAMS "timeout:int"},
	{"delete", op_delete, true, NAMES_PARAMS "purge:bool"},
	{"recover", op_recover, true, NAMES_PARAMS},
	{"purge", op_purge, true, ""},
	{"ssh_info", op_ssh_info, true, "name:str probe:bool"},
	{"exec", op_exec, true, "name:str argv:list cwd:str stdin:bin timeout:int"},
	{"get", op_get, false, "key:str"},
	{"set", op_set, true, "key:str value:str"},
	{"keys", op_keys, false, ""},
	{"networks", op_networks, true, ""},
	{"drivers", op_drivers, false, ""},
	{"find", op_find, false, "query:str remote:str force_update:bool show_unsupported:bool"},
	{"snapshot", op_snapshot, true, "name:str snapshot:str comment:str"},
	{"restore", op_restore, true, "name:str snapshot:str destructive:bool"},
	{"snapshot_delete", op_snapshot_delete, true, "name:str snapshot:str"},
	{"snapshots", op_snapshots, true, NAMES_PARAMS},
	{"clone", op_clone, true, "source:str name:str"},
	{"mount", op_mount, true, "source:str name:str path:str type:str uid_map:list gid_map:list"},
	{"umount", op_umount, true, "name:str path:str"},
	{"authenticate", op_authenticate, false, "passphrase:str"},
};
#undef NAMES_PARAMS

enum param_type { PARAM_STR, PARAM_INT, PARAM_BOOL, PARAM_SIZE, PARAM_LIST, PARAM_BIN, PARAM_N_TYPES };

static const struct {
	const char *name; /* in methods[].params */
	const char *what; /* in messages */
} param_types[PARAM_N_TYPES] = {
	[PARAM_STR] = {"str", "a string"},
	[PARAM_INT] = {"int", "a whole number"},
	[PARAM_BOOL] = {"bool", "true or false"},
	[PARAM_SIZE] = {"size", "a size (a number of bytes, or text like 1G)"},
	[PARAM_LIST] = {"list", "a list"},
	[PARAM_BIN] = {"bin", "bytes"},
};

static bool param_fits(enum param_type t, const msgpack_object *v)
{
	switch (v->type) {
	case MSGPACK_OBJECT_STR:
		return t == PARAM_STR || t == PARAM_SIZE || t == PARAM_BIN;
	case MSGPACK_OBJECT_BIN:
		return t == PARAM_BIN;
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
		const msgpack_object *o = &list->via.array.ptr[i];
		char name[INSTANCE_NAME_MAX + 1], err[256];

		if (o->type != MSGPACK_OBJECT_STR) {
			names_free(*names, *n);
			creq_fail(r, PROTO_E_INVALID_ARGUMENT, "instance names must be strings");
			return PROTO_E_INVALID_ARGUMENT;
		}
		/* Say what is wrong with a name rather than that it is unknown. */
		if (validate_instance_name_n(o->via.str.ptr, o->via.str.size, err, sizeof(err)) < 0) {
			names_free(*names, *n);
			creq_fail(r, PROTO_E_INVALID_ARGUMENT, "%s", err);
			return PROTO_E_INVALID_ARGUMENT;
		}
		proto_obj_str(o, name, sizeof(name));
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
	struct creq *r;
	const struct method *m = NULL;
	char why[256];

	if (cl->turned_away) {
		proto_reply(conn, msgid, PROTO_E_BUSY,
			    "vmctld turned this connection away: your user has too many "
			    "connections to it already; try again once some have ended",
			    NULL, 0);
		proto_conn_close(conn, 0, "turned away");
		return;
	}
	r = calloc(1, sizeof(*r));
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
	if (!cl->trusted && !auth_method_open(method)) {
		creq_fail(r, PROTO_E_UNAVAILABLE,
			  "this broker serves root, its own user and the group vmctl only%s",
			  auth_passphrase_set() ? "; give its passphrase with 'vmctl authenticate' "
						  "to be let in"
						: "");
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

/* ---- accepting, within limits ---- */

static void accept_resume(void)
{
	if (B->listen_fd >= 0 && !B->shutting_down && !acc.full && !ev_is_active(&acc.backoff_w))
		ev_io_start(B->loop, &B->listen_w);
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
	acc.n--;
	if (acc.full && acc.n < acc.max) {
		acc.full = false;
		accept_resume();
	}
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

/* A warning about clients turned away: a few per window, then a count. */
static void client_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void client_warn(const char *fmt, ...)
{
	char text[512];
	unsigned long more;
	va_list ap;

	if (!log_ratelimit_allow(&acc.warn_rl, ev_now(B->loop)))
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	more = log_ratelimit_take(&acc.warn_rl);
	if (more > 0)
		vlog(LOG_WARN_, "%s (%lu similar warnings left out before this one)", text, more);
	else
		vlog(LOG_WARN_, "%s", text);
}

/* Tell a client why it is turned away (vmctl prints a warning), and close. */
static void client_refuse(int fd, const char *why)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint8(&pk, 2);
	proto_pack_str(&pk, "warning");
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "text", why);
	if (sb.data) {
		/* Best effort: failing that, the closed connection says enough. */
		ssize_t n = send(fd, sb.data, sb.size, MSG_NOSIGNAL | MSG_DONTWAIT);

		(void)n;
	}
	msgpack_sbuffer_destroy(&sb);
	close(fd);
}

uid_t creq_peer_uid(const struct creq *r)
{
	return r->cl ? r->cl->uid : (uid_t)-1;
}

void creq_trust(struct creq *r)
{
	if (r->cl)
		r->cl->trusted = true;
}

void client_socket_mode(void)
{
	mode_t mode = auth_passphrase_set() ? 0666 : 0600;

	if (chmod(B->sock_path, mode) < 0)
		vlog(LOG_WARN_, "cannot set the mode of %s to %03o: %s", B->sock_path,
		     (unsigned)mode, strerror(errno));
}

static void client_add(struct ev_loop *loop, int fd)
{
	uid_t uid;
	bool trusted = auth_peer_trusted(fd, &uid);
	unsigned same = 0;
	struct client *cl;

	for (cl = B->clients; cl; cl = cl->next)
		same += cl->uid == uid && !cl->turned_away;
	cl = calloc(1, sizeof(*cl));
	if (!cl) {
		close(fd);
		return;
	}
	cl->uid = uid;
	cl->trusted = trusted;
	cl->conn = proto_conn_new(loop, fd, fd, &client_ops, cl);
	if (!cl->conn) {
		close(fd);
		free(cl);
		return;
	}
	/* Over the cap, it is kept just long enough to be told why. */
	cl->turned_away = same >= CLIENT_MAX_PER_UID;
	if (cl->turned_away)
		client_warn("turning away a client of uid %d: it has %u connections already, the "
			    "most one user may have", (int)uid, same);
	proto_conn_set_limits(cl->conn, cl->turned_away ? &acc.turned_away_limits : &acc.limits);
	cl->next = B->clients;
	if (B->clients)
		B->clients->prev = cl;
	B->clients = cl;
	acc.n++;
}

/*
 * accept() failed for want of a descriptor (or memory). The pending client
 * would make the watcher fire again at once, for ever: turn it away with
 * the reserve descriptor, and pause accepting a while.
 */
static void accept_failed(struct ev_loop *loop, int e)
{
	if ((e == EMFILE || e == ENFILE) && acc.reserve_fd >= 0) {
		int fd;

		close(acc.reserve_fd);
		fd = accept4(B->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0)
			client_refuse(fd, "vmctld turned this connection away: it has no file "
					  "descriptor left; try again in a moment");
		acc.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	acc.backoff_s = acc.backoff_s > 0 ? acc.backoff_s * 2 : ACCEPT_BACKOFF_FIRST;
	if (acc.backoff_s > ACCEPT_BACKOFF_MAX)
		acc.backoff_s = ACCEPT_BACKOFF_MAX;
	client_warn("accept: %s (%u clients connected); not accepting for %g s", strerror(e),
		    acc.n, acc.backoff_s);
	ev_io_stop(loop, &B->listen_w);
	ev_timer_set(&acc.backoff_w, acc.backoff_s, 0);
	ev_timer_start(loop, &acc.backoff_w);
}

static void accept_on_backoff(struct ev_loop *loop, ev_timer *w, int revents)
{
	accept_resume();
}

static void client_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	for (unsigned i = 0; i < ACCEPT_BATCH; i++) {
		int fd;

		if (acc.n >= acc.max) {
			/* New clients wait in the listen backlog until one leaves. */
			acc.full = true;
			ev_io_stop(loop, w);
			client_warn("%u clients connected, the most this vmctld serves at once; "
				    "new connections wait until one leaves", acc.n);
			return;
		}
		fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			if (errno == ECONNABORTED || errno == EPROTO)
				continue;
			accept_failed(loop, errno);
			return;
		}
		acc.backoff_s = 0;
		client_add(loop, fd);
	}
}

/* Clients the descriptors allow, keeping CLIENT_FD_HEADROOM for the rest. */
static unsigned client_max_for_fds(void)
{
	struct rlimit rl;
	rlim_t room;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return CLIENT_MAX;
	room = rl.rlim_cur > 2 * CLIENT_FD_HEADROOM ? rl.rlim_cur - CLIENT_FD_HEADROOM
						     : rl.rlim_cur / 2;
	return room < CLIENT_MAX ? (unsigned)room : CLIENT_MAX;
}

/* CLIENT_IDLE_S and CLIENT_MESSAGE_S, or $VMCTL_CLIENT_DEADLINE if lower. */
static void client_limits_init(void)
{
	const char *cap_env = getenv("VMCTL_CLIENT_DEADLINE");
	double cap = cap_env ? strtod(cap_env, NULL) : 0;

	acc.max = client_max_for_fds();
	acc.budget.max = CLIENT_INPUT_BUDGET;
	acc.limits.idle_s = CLIENT_IDLE_S;
	acc.limits.message_s = CLIENT_MESSAGE_S;
	if (cap > 0 && cap < acc.limits.idle_s)
		acc.limits.idle_s = cap;
	if (cap > 0 && cap < acc.limits.message_s)
		acc.limits.message_s = cap;
	acc.limits.max_output = CLIENT_MAX_OUTPUT;
	acc.limits.budget = &acc.budget;
	acc.turned_away_limits = acc.limits;
	acc.turned_away_limits.idle_s = CLIENT_TURNED_AWAY_S;
	acc.turned_away_limits.message_s = CLIENT_TURNED_AWAY_S;
	acc.warn_rl.interval_s = CLIENT_WARN_WINDOW;
	acc.warn_rl.burst = CLIENT_WARN_BURST;
	ev_init(&acc.backoff_w, accept_on_backoff);
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
	if (chmod(B->sock_path, auth_passphrase_set() ? 0666 : 0600) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", B->sock_path, strerror(errno));
		goto out_close;
	}
	B->listen_fd = fd;
	client_limits_init();
	acc.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	vlog(LOG_INFO_, "serving at most %u clients (%d per user); idle ones are dropped after "
	     "%g s, unfinished requests after %g s", acc.max, CLIENT_MAX_PER_UID, acc.limits.idle_s,
	     acc.limits.message_s);
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
		ev_timer_stop(B->loop, &acc.backoff_w);
		close(B->listen_fd);
		B->listen_fd = -1;
	}
	if (acc.reserve_fd >= 0) {
		close(acc.reserve_fd);
		acc.reserve_fd = -1;
	}
	while (B->clients)
		client_free(B->clients);
}
