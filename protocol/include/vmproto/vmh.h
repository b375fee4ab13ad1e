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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vmproto/proto.h>

#define VMH_OPS_VERSION 2

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
	 * settings: map of the broker's settings (str -> str), e.g. "local.qemu.accel";
	 * vmh_setting() and its typed siblings look them up with defaults.
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

	/* ---- ops_version 2 ---- */

	/* Feature bits that no member shows, which the driver claims:
	 * PROTO_FEAT_NATIVE_MOUNTS_LIVE (with instance_mount and
	 * instance_umount). Other bits are ignored: they follow the members. */
	unsigned extra_features;

	/* "instance.exec" (feature: exec): run a command in the instance
	 * without SSH, through the hypervisor (docs/protocol.md). */
	vmh_fn instance_exec;
};

/* Run the helper: handshake, dispatch, until the broker closes the pipe or
 * asks for "shutdown". Returns the process exit status. */
int vmh_main(const struct vmh_ops *ops, int argc, char **argv);

/* The helper's libev loop, for timers, child watchers and I/O. */
struct ev_loop *vmh_loop(void);

/* Features derived from ops (enum proto_feature bits), with the
 * extra_features it may claim. */
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
/* The same with a one-line reason (why the state is what it is: "LXD has
 * no instance x"), or NULL for none. */
void vmh_state_changed_why(const char *instance, const char *old_state, const char *new_state,
			   const char *reason);

enum vmh_level { VMH_DEBUG, VMH_INFO, VMH_WARN, VMH_ERROR };
/* One line on stderr: "LEVEL: text". */
void vmh_log(enum vmh_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Settings (settings.c) ---- */

/*
 * The broker's settings (local.qemu.accel, ...) as the hello gave them,
 * kept from before init() until the helper exits. A key that is absent or
 * "" has the default the caller gives; a value that is not a string is not
 * valid (vmh_setting() gives the default, the typed lookups an error).
 */
const char *vmh_setting(const char *key, const char *dflt);
/* One of names (NULL-terminated), in any case: *out is its index, dflt when
 * unset. PROTO_E_INVALID_ARGUMENT and "KEY is 'V'; use a, b or c" in err
 * for anything else. */
int vmh_setting_enum(const char *key, const char *const names[], int dflt, int *out, char *err,
		     size_t errlen);
/* "true" or "false", in any case (the broker stores them so). */
int vmh_setting_bool(const char *key, bool dflt, bool *out, char *err, size_t errlen);
/* Replace the settings with map's (NULL: none). vmh_main() does it with the
 * hello's; tests and other mains may call it. 0 or PROTO_E_NOMEM. */
int vmh_settings_load(const msgpack_object *map);

/* ---- The instance map (instance.c) ---- */

/*
 * The instance map every instance.* request carries (docs/protocol.md, "The
 * instance map"), parsed and checked once for every helper: the types, the
 * limits of proto.h (PROTO_CPUS_MAX, PROTO_MEMORY_MIN, ...), the name rule
 * (proto_check_name), absolute paths without control characters, MAC
 * addresses. A helper checks only what is its own on top (a 9p tag's form,
 * what its hypervisor can do). Optional strings are NULL when absent or "".
 */
struct vmh_idpair {
	uint32_t host, guest;
};

struct vmh_mount {
	char *source; /* absolute host folder */
	char *target; /* guest path, or NULL */
	char *tag;    /* or NULL */
	struct vmh_idpair *uid_map, *gid_map; /* [HOST, GUEST] pairs; NULL when none */
	size_t n_uid_map, n_gid_map;
};

struct vmh_network {
	char *name; /* host interface */
	char *mode; /* "auto" or "manual" */
	char *mac;
};

struct vmh_image {
	char *disk;    /* absolute path of the base image, or NULL */
	char *format;  /* "qcow2" or "raw" */
	char *kernel;  /* NULL: the image boots itself */
	char *initrd;  /* NULL, or with a kernel */
	char *cmdline; /* NULL, or for the kernel */
};

struct vmh_instance {
	char *name;
	char *dir;  /* absolute, at most PROTO_DIR_MAX bytes */
	char *mac;  /* of the default NIC, or NULL */
	char *seed; /* NULL: none */
	unsigned cpus;   /* 1 to PROTO_CPUS_MAX; 1 when absent or 0 */
	uint64_t memory; /* bytes, at least PROTO_MEMORY_MIN; PROTO_MEMORY_DEFAULT when absent or 0 */
	uint64_t disk;   /* bytes; 0: the image's own size */
	struct vmh_image image;
	struct vmh_mount *mounts;
	size_t n_mounts;
	struct vmh_network *networks; /* at most PROTO_NETWORKS_MAX */
	size_t n_networks;
};

/* Parse and check an instance map into *inst (a copy: it outlives the
 * request). 0, or PROTO_E_INVALID_ARGUMENT / PROTO_E_NOMEM with a sentence
 * in err and nothing to free. */
int vmh_instance_parse(const msgpack_object *map, struct vmh_instance *inst, char *err,
		       size_t errlen);
/* vmh_instance_parse() of params[key] ("instance", "clone"); on failure req
 * is failed with the reason (after "KEY: " but for "instance") and the code
 * is returned. */
int vmh_instance_from_req(struct vmh_req *req, const msgpack_object *params, const char *key,
			  struct vmh_instance *inst);
void vmh_instance_free(struct vmh_instance *inst);
/* One mount map ({source, target, tag, uid_map, gid_map}), as in "mounts"
 * and the "mount" of instance.mount. */
int vmh_mount_parse(const msgpack_object *map, struct vmh_mount *m, char *err, size_t errlen);
void vmh_mount_free(struct vmh_mount *m);
/* DIR/file into buf: 0, or PROTO_E_INVALID_ARGUMENT when it does not fit. */
int vmh_instance_file(const struct vmh_instance *inst, const char *file, char *buf, size_t len);

/* The scope folder the hello named (NULL before it). */
const char *vmh_scope_dir(void);
/* SCOPE_DIR/instances/NAME, the folder the broker gives instance NAME:
 * 0, or PROTO_E_INVALID_ARGUMENT when it does not fit (or before hello). */
int vmh_instance_dir(const char *name, char *buf, size_t len);

/* ---- What the SDK keeps per instance (track.c); on the loop's thread only ---- */

/*
 * Operations in progress. A helper claims an instance by name for the
 * length of an operation, with the transient state the instance shows
 * meanwhile (starting, stopping, ...; or stopped for a change made to a
 * stopped instance); a second claim is refused until the first is released.
 */
/* 0; PROTO_E_BUSY with "instance 'NAME' is busy STATE" in err; PROTO_E_NOMEM. */
int vmh_busy_claim(const char *name, enum proto_state state, char *err, size_t errlen);
void vmh_busy_release(const char *name);
/* Whether an operation holds name, and (state may be NULL) its state. */
bool vmh_busy(const char *name, enum proto_state *state);

/*
 * State notifications. The SDK remembers the state each instance was last
 * told (or seen) to be in, so that a helper says only what changed and the
 * broker gets the right "old".
 */
/* Tell the broker name is now in state: {name, old, new} when state differs
 * from the remembered one ("unknown" if none), which it becomes. */
void vmh_state_notify(const char *name, enum proto_state state);
/* The same with the reason of the state (NULL: none). The SDK remembers it
 * too: a notification goes when the state or the reason changed. */
void vmh_state_notify_why(const char *name, enum proto_state state, const char *reason);
/* Remember state as the broker's view, without telling it (a state the
 * broker read in an answer, or the one found before the helper acted). */
void vmh_state_seen(const char *name, enum proto_state state);
/* The same with the reason the broker read beside it (NULL: none). */
void vmh_state_seen_why(const char *name, enum proto_state state, const char *reason);
/* The remembered state, if there is one (then true; state may be NULL). */
bool vmh_state_last(const char *name, enum proto_state *state);
/* Forget name's state (the instance is deleted). */
void vmh_state_forget(const char *name);
/* fn for every instance with a remembered state; fn may notify or forget
 * that instance's state, but no other. */
void vmh_state_each(void (*fn)(void *ud, const char *name, enum proto_state state), void *ud);
/* Forget every claim and state (vmh_main() does when the helper leaves). */
void vmh_track_reset(void);

/* ---- Child processes (run.c) ---- */

#define VMH_MAX_KEEP_FDS 16 /* fds a child may be handed */

struct vmh_run_result {
	int status;     /* exit status 0-255; -1 if killed by a signal or not started */
	int signal;     /* the signal that killed it, or 0 */
	bool timed_out; /* killed because the deadline passed */
	const char *output; /* stdout+stderr (captured mode), NUL-terminated, trimmed */
};
typedef void (*vmh_run_cb)(void *ud, const struct vmh_run_result *r);

struct vmh_run_opts {
	const char *log_path; /* stdout+stderr go to this file (truncated) instead of being captured */
	bool new_session;     /* setsid() in the child */
	double timeout_s;     /* <= 0: none */
	const int *keep_fds;  /* passed to the child as fds 3, 4, ... */
	size_t n_keep_fds;    /* at most VMH_MAX_KEEP_FDS */
};

/* Run argv[0] (searched in PATH) without blocking the loop; cb runs exactly
 * once, from the loop, when the child has exited. The child gets stdin from
 * /dev/null and no fd of the helper's but keep_fds. 0 or a PROTO_E_* code
 * (then cb never runs). */
int vmh_run(char *const argv[], const struct vmh_run_opts *opts, vmh_run_cb cb, void *ud);
/* Run fn(arg) in a forked child so that a blocking conversation does not
 * stall the loop. fn returns 0 or a PROTO_E_* code and writes its message
 * to err; cb gets status = -code and output = err. */
typedef int (*vmh_task_fn)(void *arg, char *err, size_t errlen);
int vmh_run_task(vmh_task_fn fn, void *arg, double timeout_s, vmh_run_cb cb, void *ud);
/* Before the loop serves requests (init, a hello probe) only: run argv
 * (searched in PATH), stdin /dev/null, and wait for it, at most timeout_s
 * (then it is killed). Its stdout and stderr together, NUL-terminated, at
 * most outlen - 1 bytes, in out. The exit status, or -1 when it could not
 * start, was killed or died of a signal. */
int vmh_run_wait(char *const argv[], double timeout_s, char *out, size_t outlen);
/* The PROTO_E_* code a task's result stands for: 0 when fn returned 0, its
 * own code, PROTO_E_TIMEOUT past the deadline, PROTO_E_DRIVER if it died. */
int vmh_task_code(const struct vmh_run_result *r);
/* Join argv into one line for logs. */
void vmh_argv_str(char *const argv[], char *buf, size_t len);

/* ---- Blocking work on threads (work.c) ---- */

/*
 * Run work(arg) on a new thread, then done(arg) on the loop's thread once
 * it has returned: for a blocking conversation (a REST call, a library
 * without an event interface) that must not stall the loop. work must not
 * call the SDK (answers, notifications, claims, states); done may. The loop
 * keeps running while work is pending. 0, or PROTO_E_NOMEM / PROTO_E_BUSY
 * (no thread could be made; then neither function runs).
 */
int vmh_work(void (*work)(void *arg), void (*done)(void *arg), void *arg);

/* ---- The accelerator of QEMU-based drivers (accel.c) ---- */

/*
 * Does KVM run guests here? /dev/kvm existing proves nothing (a nested or
 * half-working KVM aborts or crawls, and libvirt's capabilities can still
 * offer it), so "auto" answers KVM only after a tiny guest really ran under
 * it. One answer per helper, kept in SCOPE_DIR/accel-probe for the next.
 */
enum vmh_accel { VMH_ACCEL_TCG, VMH_ACCEL_KVM };
const char *vmh_accel_name(enum vmh_accel a); /* "tcg", "kvm" */
/* The setting key (for messages, e.g. "local.qemu.accel") and its value
 * ("auto", "kvm", "tcg"; NULL or "" = auto). PROTO_E_INVALID_ARGUMENT and a
 * sentence in err otherwise. */
int vmh_accel_configure(const char *key, const char *value, char *err, size_t errlen);
/* vmh_accel_configure() with the value of the setting key (vmh_setting_enum). */
int vmh_accel_configure_setting(const char *key, char *err, size_t errlen);
/* Where the probe's answer is cached (the scope folder); NULL: nowhere. */
void vmh_accel_cache_in(const char *dir);
/* Start the probe (once) if the answer is not known yet. */
void vmh_accel_prepare(void);
/* cb(ud, chosen) once the answer is known: at once, or from the loop. */
typedef void (*vmh_accel_cb)(void *ud, enum vmh_accel chosen);
void vmh_accel_when_ready(vmh_accel_cb cb, void *ud);
/* The answer, if known (then true): the accelerator and why it was chosen. */
bool vmh_accel_chosen(enum vmh_accel *chosen, const char **why);
/* The setting's key and value as given to vmh_accel_configure(). */
const char *vmh_accel_setting(void);
/* Outside the loop (a diagnostic command): does accel ("kvm", "tcg") run a
 * test guest? 0 if it does, else PROTO_E_UNAVAILABLE; why says what happened. */
int vmh_accel_probe_sync(const char *accel, char *why, size_t whylen);
/* For tests and unusual installs: the KVM device and the QEMU program the
 * probe uses (NULL keeps "/dev/kvm", "qemu-system-x86_64"). Call before
 * anything else of this section; it forgets any answer already known. */
void vmh_accel_use(const char *kvm_device, const char *qemu_program);

/* ---- File-system confinement with Landlock (landlock.c) ---- */
/*
 * Limits a process that is about to exec (or the calling process) to the
 * paths of its rules, with the kernel's Landlock: unprivileged, inherited
 * by children, and never undone. Prepared before fork (it opens the paths),
 * enforced in the child with async-signal-safe calls only.
 */
enum vmh_landlock_access {
	VMH_LANDLOCK_READ = 1,	/* read files, list folders */
	VMH_LANDLOCK_EXEC = 2,	/* execute files (libraries are read) */
	VMH_LANDLOCK_WRITE = 4, /* write, make, remove, rename inside */
};
struct vmh_landlock_rule {
	const char *path;	/* a folder (and all below it) or one file */
	unsigned access;	/* enum vmh_landlock_access bits */
	bool optional;		/* a path that does not exist is skipped */
};
/* The kernel's Landlock ABI version, 0 when it has none (then *why says so). */
int vmh_landlock_abi(const char **why);
/* A ruleset fd (close it after enforcing; O_CLOEXEC), or -1 with a sentence
 * in why (no Landlock, a required path missing, ...). */
int vmh_landlock_prepare(const struct vmh_landlock_rule *rules, size_t n, char *why, size_t whylen);
/* Async-signal-safe: no_new_privs, then restrict the calling thread (and so
 * what it execs) to the ruleset. 0, or -1 with errno. */
int vmh_landlock_enforce(int ruleset_fd);

#endif
