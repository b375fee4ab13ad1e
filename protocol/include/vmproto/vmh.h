/*
 * The helper SDK: write a vmctl driver helper in C by filling a const
 * struct vmh_ops and calling vmh_main(). A NULL member means the driver
 * lacks that method: the SDK answers it with PROTO_E_UNSUPPORTED, and the
 * feature bits sent in the hello answer are derived from which members are
 * set (see docs/protocol.md).
 *
 * The SDK owns the protocol pipe. The broker starts the helper with the
 * protocol on stdin/stdout; vmh_main() moves them out of the way and points
 * fd 1 at stderr, so a stray printf() can never corrupt the protocol.
 * Log on stderr (vmh_log): the broker forwards it with the helper's name.
 *
 * Public ABI: add members at the end only; bump VMH_OPS_VERSION.
 */
#ifndef VMPROTO_VMH_H
#define VMPROTO_VMH_H

#include <stdarg.h>
#include <vmproto/proto.h>

#define VMH_OPS_VERSION 1

/* One request awaiting its answer. Answer exactly once, with vmh_done() or
 * vmh_fail(), either inside the handler or later from a loop callback. */
struct vmh_req;

/* params: the request's params map (valid only during the handler call). */
typedef void (*vmh_fn)(struct vmh_req *req, const msgpack_object *params);

struct vmh_ops {
	int ops_version; /* VMH_OPS_VERSION */
	const char *driver;  /* "qemu" */
	const char *scope;   /* "qemu" (libvirt uses "qemu" too) */
	const char *version; /* helper version string */

	/*
	 * Called once, when "hello" arrives, before it is answered.
	 * scope_dir: the scope's folder (instances live in scope_dir/instances/NAME).
	 * settings: map of the broker's settings (str -> str), e.g. "local.qemu.accel".
	 * Return 0 if the driver can run on this host; otherwise fill why and
	 * return PROTO_E_UNAVAILABLE: the helper stays up and answers requests
	 * with PROTO_E_UNAVAILABLE and that reason.
	 */
	int (*init)(const char *scope_dir, const msgpack_object *settings, char *why, size_t whylen);

	/* Health: "ping" and "shutdown" are answered by the SDK itself. */

	/* Inventory */
	vmh_fn instances_list; /* "instances.list" */
	vmh_fn networks_list;  /* "networks.list"   (feature: extra_networks) */

	/* Lifecycle */
	vmh_fn instance_create;  /* "instance.create" */
	vmh_fn instance_start;   /* "instance.start" */
	vmh_fn instance_stop;    /* "instance.stop" */
	vmh_fn instance_suspend; /* "instance.suspend"  (feature: suspend) */
	vmh_fn instance_restart; /* "instance.restart" */
	vmh_fn instance_delete;  /* "instance.delete" */
	vmh_fn instance_state;   /* "instance.state" */
	vmh_fn instance_info;    /* "instance.info" */

	/* Changes */
	vmh_fn instance_set;         /* "instance.set" */
	vmh_fn instance_mount;       /* "instance.mount"   (feature: native_mounts) */
	vmh_fn instance_umount;      /* "instance.umount" */
	vmh_fn instance_network_add; /* "instance.network.add" */

	/* Snapshots (feature: snapshots, from snapshot_create) */
	vmh_fn snapshot_create;  /* "snapshot.create" */
	vmh_fn snapshot_list;    /* "snapshot.list" */
	vmh_fn snapshot_restore; /* "snapshot.restore" */
	vmh_fn snapshot_delete;  /* "snapshot.delete" */

	vmh_fn instance_clone; /* "instance.clone"  (feature: clone) */

	/* Called once before the helper exits (on "shutdown" or EOF). May be NULL. */
	void (*fini)(void);
};

/* Run the helper: handshake, dispatch, until the broker closes the pipe or
 * asks for "shutdown". Returns the process exit status. */
int vmh_main(const struct vmh_ops *ops, int argc, char **argv);

/* The helper's libev loop, for timers, child watchers and I/O. */
struct ev_loop *vmh_loop(void);

/* Features derived from ops (enum proto_feature bits). */
unsigned vmh_features(const struct vmh_ops *ops);

/* Pack the result of req here (exactly one object), then call vmh_done(). */
msgpack_packer *vmh_result(struct vmh_req *req);
/* Send the packed result (nil if nothing was packed) and free req. */
void vmh_done(struct vmh_req *req);
/* Send an error and free req. */
void vmh_fail(struct vmh_req *req, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The method name of req ("instance.start"). */
const char *vmh_method(const struct vmh_req *req);

/* Notifications to the broker. */
void vmh_progress(struct vmh_req *req, double fraction, const char *text);
void vmh_state_changed(const char *instance, const char *old_state, const char *new_state);

enum vmh_level { VMH_DEBUG, VMH_INFO, VMH_WARN, VMH_ERROR };
/* One line on stderr: "LEVEL: text". */
void vmh_log(enum vmh_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
