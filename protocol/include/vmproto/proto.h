/*
 * libvmproto: MessagePack-RPC framing, error codes, limits and handshake
 * shared by vmctl, vmctld and every driver helper.
 *
 * Wire format (msgpack-rpc):
 *   request       [0, msgid, method, params]
 *   response      [1, msgid, error, result]     error: nil or [code, message]
 *   notification  [2, method, params]
 *
 * This header is public ABI: add, never rename.
 */
#ifndef VMPROTO_PROTO_H
#define VMPROTO_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

struct ev_loop;

#define PROTO_VERSION 1 /* highest protocol version this library speaks */

/* Hard limits. A peer that breaks one gets PROTO_E_PROTOCOL and is dropped. */
#define PROTO_MAX_MESSAGE (4u * 1024 * 1024) /* bytes in one message */
#define PROTO_MAX_DEPTH 16                   /* nesting of arrays/maps */
#define PROTO_MAX_ARRAY 65536                /* elements in one array */
#define PROTO_MAX_MAP 4096                   /* pairs in one map */
#define PROTO_MAX_STRING (1024 * 1024)       /* bytes in one str/bin */
#define PROTO_MAX_METHOD 64                  /* bytes in a method name */
#define PROTO_MAX_INFLIGHT 256               /* requests awaiting a reply, per direction */

/*
 * Error codes. Functions return 0 or one of these (negative). On the wire
 * the code is sent as its positive value: [-(code), message].
 */
enum proto_error {
	PROTO_OK = 0,
	PROTO_E_INVALID_ARGUMENT = -1,
	PROTO_E_NOT_FOUND = -2,
	PROTO_E_ALREADY_EXISTS = -3,
	PROTO_E_UNSUPPORTED = -4,
	PROTO_E_BUSY = -5,
	PROTO_E_TIMEOUT = -6,
	PROTO_E_UNAVAILABLE = -7,
	PROTO_E_DRIVER = -8,
	PROTO_E_PROTOCOL = -9,
	PROTO_E_INTERNAL = -10,
	PROTO_E_INVALID_STATE = -11, /* e.g. "instance is running" */
	PROTO_E_NOMEM = -12,
	PROTO_E_IO = -13,
};
#define PROTO_E_MIN PROTO_E_IO

/* "invalid-argument", "not-found", ... ; "unknown-error" for anything else. */
const char *proto_err_name(int code);
/* A short human sentence fragment: "invalid argument", "not found", ... */
const char *proto_strerror(int code);
/* Inverse of proto_err_name(); PROTO_E_INTERNAL for an unknown name. */
int proto_err_from_name(const char *name);

/* Driver features, as reported by a helper in its hello answer. */
enum proto_feature {
	PROTO_FEAT_NATIVE_MOUNTS = 1u << 0,
	PROTO_FEAT_EXTRA_NETWORKS = 1u << 1,
	PROTO_FEAT_SNAPSHOTS = 1u << 2,
	PROTO_FEAT_CLONE = 1u << 3,
	PROTO_FEAT_SUSPEND = 1u << 4,
	/* Native mounts are added to and removed from a running instance at
	 * once (not only from its next start): claimed by the helper itself
	 * (vmh_ops.extra_features), as no method shows it. */
	PROTO_FEAT_NATIVE_MOUNTS_LIVE = 1u << 5,
	/* instance.exec: a command run by the hypervisor itself, for guests
	 * without SSH. */
	PROTO_FEAT_EXEC = 1u << 6,
};
#define PROTO_FEAT_COUNT 7
/* Wire/user name of one feature bit ("native_mounts", "extra_networks",
 * "snapshots", "clone", "suspend", "native_mounts_live", "exec"); NULL
 * for an unknown bit. */
const char *proto_feature_name(unsigned bit);
/* Human name for messages ("native mounts", "extra networks", ...). */
const char *proto_feature_title(unsigned bit);
/* Parse a wire name back to its bit; 0 if unknown. */
unsigned proto_feature_from_name(const char *name);

/* ---- Instances: limits, names (instance.c), states (state.c), shared files ---- */

/*
 * What an instance may be. The broker checks what a user asks for against
 * these, and the helper SDK checks every instance map against the same ones
 * (vmh_instance_parse), so that the two agree by construction.
 */
#define PROTO_NAME_MAX 63                  /* an instance name is an RFC 1123 label */
#define PROTO_CPUS_MAX 1024                /* virtual CPUs: 1 to this */
#define PROTO_MEMORY_MIN (512ull << 20)    /* bytes of memory, at least */
#define PROTO_MEMORY_DEFAULT (1ull << 30)  /* an instance map without memory */
#define PROTO_NETWORKS_MAX 16              /* extra NICs of one instance */
#define PROTO_EXEC_ARGV_MAX 1024           /* words of an instance.exec command */
#define PROTO_EXEC_INPUT_MAX (1u << 20)    /* bytes of its stdin */
#define PROTO_EXEC_OUTPUT_MAX (1u << 20)   /* bytes of its stdout, and of its stderr, kept */
#define PROTO_REASON_MAX 255               /* bytes of a state's reason; longer ones are cut */
#define PROTO_PATH_MAX 4095                /* bytes of a path in an instance map */
#define PROTO_DIR_MAX (PROTO_PATH_MAX - 64) /* of the instance folder: DIR/FILE fits */

/*
 * An instance name: 1 to PROTO_NAME_MAX lower case letters, digits and '-',
 * starting with a letter and not ending with '-'. 0, or
 * PROTO_E_INVALID_ARGUMENT with a sentence for the user in err (upper case
 * letters get the lower case name as a hint).
 */
int proto_check_name(const char *name, char *err, size_t errlen);
/* The same for the n bytes at name (not NUL-terminated, e.g. "NAME:PATH"),
 * whatever their length: one too long is refused as such, shown cut. */
int proto_check_name_n(const char *name, size_t n, char *err, size_t errlen);

/*
 * Instance states (docs/protocol.md, "Instance states"). Code uses the enum;
 * the wire and the user see the names. Helpers report the first eight; the
 * broker adds the last two itself. Add at the end only.
 */
enum proto_state {
	PROTO_STATE_UNKNOWN = 0, /* "unknown" */
	PROTO_STATE_RUNNING,     /* "running" */
	PROTO_STATE_STOPPED,     /* "stopped" */
	PROTO_STATE_SUSPENDED,   /* "suspended" */
	PROTO_STATE_STARTING,    /* "starting" */
	PROTO_STATE_RESTARTING,  /* "restarting" */
	PROTO_STATE_SUSPENDING,  /* "suspending" */
	PROTO_STATE_STOPPING,    /* "stopping" */
	PROTO_STATE_DELETED,     /* "deleted": soft-deleted (broker only) */
	PROTO_STATE_DELAYED_SHUTDOWN, /* "delayed shutdown": a stop --time is pending (broker only) */
};
#define PROTO_STATE_COUNT 10
/* The wire name; "unknown" for a value outside the enum. */
const char *proto_state_name(enum proto_state state);
/* Inverse of proto_state_name() (exact, lower case): 0, or
 * PROTO_E_INVALID_ARGUMENT (*out untouched) for anything else. */
int proto_state_from_name(const char *name, enum proto_state *out);
/* Whether a helper may report state (the broker's own two excluded). */
bool proto_state_from_helper(enum proto_state state);
/* map[key] as a state: 0, PROTO_E_NOT_FOUND (absent or nil), or
 * PROTO_E_INVALID_ARGUMENT (not a state's name). */
int proto_get_state(const msgpack_object *map, const char *key, enum proto_state *out);
/* Pack key and the state's name. */
void proto_pack_kv_state(msgpack_packer *pk, const char *key, enum proto_state state);

/*
 * Files of an instance folder (DIR, the instance map's dir) that the
 * drivers of one scope share, and the broker with them (docs/protocol.md).
 */
#define PROTO_FILE_DISK "disk.qcow2"     /* the qcow2 overlay over image.disk */
#define PROTO_FILE_SEED "cloud-init.iso" /* the NoCloud seed the broker makes */
#define PROTO_FILE_SUSPENDED "suspended" /* the qemu driver's mark of a suspended instance */
#define PROTO_SUSPEND_TAG "vmctl-suspend" /* the internal snapshot of the disk holding that state */

/* Is state the name of a state a helper may report (proto_state_from_name
 * and proto_state_from_helper in one)? Exact, case-sensitive; NULL is not. */
bool proto_state_known(const char *state);

/* ---- Skimming: validate one message in a byte buffer, without allocating ---- */

/*
 * Look at buf[0..len) and decide whether it starts with one complete
 * MessagePack object that respects every limit above.
 * Returns: >0  the byte length of that complete object;
 *           0  not complete yet (need more bytes; nothing wrong so far);
 *          PROTO_E_PROTOCOL  a limit is broken or the bytes are not msgpack
 *          (with why, if not NULL, set to a static description).
 */
long proto_skim(const char *buf, size_t len, const char **why);

/* ---- Reading params (msgpack_object maps) ---- */

/* Value for key in a map, or NULL if obj is not a map or the key is absent. */
const msgpack_object *proto_map_get(const msgpack_object *map, const char *key);
/* Typed getters: 0, PROTO_E_NOT_FOUND (absent or nil), or
 * PROTO_E_INVALID_ARGUMENT (wrong type / does not fit). */
int proto_get_str(const msgpack_object *map, const char *key, char *buf, size_t bufsz);
int proto_get_int(const msgpack_object *map, const char *key, int64_t *out);
int proto_get_uint(const msgpack_object *map, const char *key, uint64_t *out);
int proto_get_bool(const msgpack_object *map, const char *key, bool *out);
int proto_get_double(const msgpack_object *map, const char *key, double *out);
/* malloc'd NUL-terminated copy of a str value, or NULL (absent / not str). */
char *proto_dup_str(const msgpack_object *map, const char *key);
/* Copy a msgpack str object into buf (NUL-terminated); PROTO_E_INVALID_ARGUMENT
 * if it is not a str or does not fit. */
int proto_obj_str(const msgpack_object *o, char *buf, size_t bufsz);
/* True if the str object equals s. */
bool proto_obj_streq(const msgpack_object *o, const char *s);
/* A two-element array of unsigned 32-bit numbers ([HOST, GUEST] of a mount's
 * id map): 0, or PROTO_E_INVALID_ARGUMENT if o has not that shape. */
int proto_obj_u32_pair(const msgpack_object *o, uint32_t *first, uint32_t *second);

/* ---- Writing params/results ---- */

/* Packer helpers: pack a NUL-terminated string (NULL packs nil). */
void proto_pack_str(msgpack_packer *pk, const char *s);
void proto_pack_kv_str(msgpack_packer *pk, const char *key, const char *val);
void proto_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val);
void proto_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t val);
void proto_pack_kv_bool(msgpack_packer *pk, const char *key, bool val);
void proto_pack_kv_double(msgpack_packer *pk, const char *key, double val);

/* ---- Connections ---- */

/*
 * One peer on a pair of file descriptors (a socket: rfd == wfd), driven by a
 * libev loop. Reads are streamed (a message may arrive in pieces, or several
 * in one read); writes are non-blocking with an unbounded-by-count but
 * byte-limited queue. The conn sets both fds O_NONBLOCK and O_CLOEXEC and
 * closes them when freed.
 */
struct proto_conn;
/* The fds are closed as soon as the conn closes (so the peer sees the end at
 * once), else when it is freed. Writes to a socket never raise SIGPIPE;
 * writes to a pipe do unless the process ignores SIGPIPE (vmh_main() does). */

struct proto_conn_ops {
	/* A request from the peer. Answer with proto_reply(), now or later (copy
	 * whatever you need from params: it lives only during this call). */
	void (*request)(struct proto_conn *c, void *ud, uint64_t msgid,
			const char *method, const msgpack_object *params);
	/* A notification from the peer. */
	void (*notify)(struct proto_conn *c, void *ud, const char *method,
		       const msgpack_object *params);
	/* The connection ended: EOF (err 0), I/O error or protocol violation.
	 * Every pending call has already been answered with PROTO_E_UNAVAILABLE.
	 * No callback follows. The owner still calls proto_conn_free(). */
	void (*closed)(struct proto_conn *c, void *ud, int err, const char *why);
};

/* NULL on allocation failure. ops members may be NULL. */
/* On failure the fds stay the caller's to close. A request arriving while
 * ops->request is NULL is answered PROTO_E_UNSUPPORTED. */
struct proto_conn *proto_conn_new(struct ev_loop *loop, int rfd, int wfd,
				  const struct proto_conn_ops *ops, void *ud);
/* Safe from inside any callback of this conn (freed when it returns).
 * Pending calls are dropped without their callbacks being run. */
void proto_conn_free(struct proto_conn *c);
/* Stop reading/writing, fail pending calls and report closed(err, why). */
void proto_conn_close(struct proto_conn *c, int err, const char *why);
bool proto_conn_is_open(const struct proto_conn *c);
/* Bytes queued but not yet written. */
size_t proto_conn_pending_bytes(const struct proto_conn *c);
/* Change the user data pointer passed to callbacks. */
void proto_conn_set_ud(struct proto_conn *c, void *ud);

/*
 * What one peer may make a conn hold, for a server whose peers it does not
 * trust to be quick (vmctld's clients). A conn has no limits until this is
 * called; each field left 0 (or NULL) stays off. A broken limit closes the
 * conn: closed() gets PROTO_E_TIMEOUT for the deadlines, PROTO_E_BUSY for
 * the budget, and a sentence saying which.
 */
struct proto_budget {
	size_t used; /* bytes of incomplete messages the conns sharing it hold */
	size_t max;  /* a conn whose incomplete message would take used past this is closed */
};
struct proto_conn_limits {
	double message_s;   /* a message must be whole this long after its first byte */
	double idle_s;      /* closed after this long without a byte either way while
			       no request (the peer's or ours) awaits its answer */
	size_t max_output;  /* the peer is not read while more than this is queued for it */
	struct proto_budget *budget; /* shared by several conns; outlives them */
};
/* The limits are copied. */
void proto_conn_set_limits(struct proto_conn *c, const struct proto_conn_limits *limits);
/* Bytes held of a message not yet complete (0 between messages). */
size_t proto_conn_partial_bytes(const struct proto_conn *c);

/*
 * Reply to a call: err 0 with a result, or err < 0 with a message.
 * result/len: one already-packed msgpack object (NULL packs nil).
 */
typedef void (*proto_result_fn)(void *ud, int err, const char *errmsg,
				const msgpack_object *result);
/* In a proto_result_fn: errmsg is NULL when err is 0; result is never NULL
 * (a nil object when err < 0) and lives only during the call. */

/*
 * Send a request. params/len: one packed msgpack object (NULL packs an empty
 * map). timeout_s <= 0 means no deadline. On success returns 0 and stores the
 * msgid in *msgid_out (may be NULL); cb runs exactly once later (reply,
 * PROTO_E_TIMEOUT, or PROTO_E_UNAVAILABLE when the conn closes) unless the
 * call is cancelled. Returns PROTO_E_BUSY past PROTO_MAX_INFLIGHT,
 * PROTO_E_UNAVAILABLE if closed.
 */
int proto_call(struct proto_conn *c, const char *method, const char *params,
	       size_t len, double timeout_s, proto_result_fn cb, void *ud,
	       uint64_t *msgid_out);
/* proto_call also returns PROTO_E_INVALID_ARGUMENT for a method name that is
 * empty or longer than PROTO_MAX_METHOD, params that are not exactly one
 * object within the limits, or a NULL cb: nothing is sent then. */
/* Forget a pending call: its callback will not run. */
void proto_cancel(struct proto_conn *c, uint64_t msgid);
int proto_reply(struct proto_conn *c, uint64_t msgid, int err, const char *errmsg,
		const char *result, size_t len);
/* proto_reply returns PROTO_E_INVALID_ARGUMENT when msgid is not a request
 * of the peer still awaiting its answer (e.g. answered twice), or the result
 * is not one object within the limits; errmsg NULL sends proto_strerror(err). */
int proto_notify(struct proto_conn *c, const char *method, const char *params, size_t len);

/* Convenience: the same with an sbuffer (NULL allowed). */
int proto_call_sb(struct proto_conn *c, const char *method, const msgpack_sbuffer *params,
		  double timeout_s, proto_result_fn cb, void *ud, uint64_t *msgid_out);
int proto_reply_sb(struct proto_conn *c, uint64_t msgid, int err, const char *errmsg,
		   const msgpack_sbuffer *result);
int proto_notify_sb(struct proto_conn *c, const char *method, const msgpack_sbuffer *params);

/* ---- Handshake ---- */

/* What a helper says about itself in its answer to "hello". */
struct proto_hello {
	int version;           /* protocol version chosen */
	char driver[32];       /* "qemu", "libvirt", ... */
	char scope[32];        /* "qemu", "lxd", ... */
	char helper_version[64];
	bool usable;           /* can it run on this host? */
	char why[256];         /* if not usable: why not */
	unsigned features;     /* enum proto_feature bits */
};
/* Parse a hello result map. 0 or PROTO_E_PROTOCOL. */
int proto_hello_parse(const msgpack_object *result, struct proto_hello *out);
/* Pack a hello result map from *h. */
void proto_hello_pack(msgpack_packer *pk, const struct proto_hello *h);

#endif
