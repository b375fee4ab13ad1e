/*
 * vmctld, the vmctl broker: one libev loop that owns settings, the instance
 * registry of the active scope, SSH keys and cloud-init seeds, and drives
 * exactly one helper process for the active driver.
 *
 * Nothing here blocks the loop: child processes run under ev_child, helper
 * calls carry deadlines. Prototypes are grouped per file.
 */
#ifndef VMCTLD_BROKER_H
#define VMCTLD_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <ev.h>
#include <msgpack.h>
#include <vmproto/proto.h>

#include "vmcommon.h"

struct image_cache;
struct client;
struct creq;
struct helper;
struct hcall;
struct child;

/* Timeouts, seconds. */
#define BROKER_HELLO_DEADLINE 20.0    /* libvirt's first connection alone takes ~8 s */
#define BROKER_QUEUE_WAIT 10.0        /* a request waits this long for a restarting helper */
#define BROKER_LIST_WAIT 5.0          /* list answers with last known states after this */
#define BROKER_LIST_DEADLINE 30.0     /* ...but the helper is only declared hung after this */
#define BROKER_SHORT_DEADLINE 60.0    /* state, info, suspend, delete, ... */
#define BROKER_CREATE_DEADLINE 600.0  /* disk overlays, domain definitions */
#define BROKER_START_DEADLINE 180.0
#define BROKER_STOP_DEFAULT 60        /* graceful stop before it is forced */
#define BROKER_LAUNCH_DEFAULT 300     /* launch --timeout default */
#define BROKER_CLOUD_INIT_MAX (1024 * 1024) /* bytes of user data fetched from a URL */
#define BROKER_START_DEFAULT 300
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define BACKOFF_RESET_S 30.0          /* up this long: restarted at once, the next quick crash waits 100 ms */

/* What --describe (or the seed's table) says about one driver. */
struct driver_info {
	char driver[DRIVER_NAME_MAX + 1];
	char scope[DRIVER_NAME_MAX + 1];
	char version[64];
	char path[4300]; /* helper binary, "" if not installed */
	unsigned features;
	bool described; /* learned from the helper itself */
	int rank;       /* search-path position of path: lower wins */
};

/* A name some operation holds (launching, deleting, ...). */
struct busy {
	struct busy *next;
	char name[INSTANCE_NAME_MAX + 1];
	const char *what; /* "being launched" */
};

struct broker {
	struct ev_loop *loop;
	char data_dir[4096];
	char sock_path[4200];
	char settings_path[4200];
	char ssh_key[4200];     /* private key path */
	char *ssh_pubkey;       /* one line, no newline; NULL until known */
	char exe_dir[4096];

	struct settings settings;
	char driver[DRIVER_NAME_MAX + 1]; /* active driver */
	char scope[DRIVER_NAME_MAX + 1];  /* its scope */
	char scope_dir[4200];    /* DATA/scopes/SCOPE */
	char registry_path[4300];
	struct registry reg;
	unsigned scope_gen;      /* bumped on every scope change */

	struct helper *helper;   /* the active helper */
	struct image_cache *images;

	struct busy *busy;
	bool switching;          /* a driver switch is in progress */
	char switch_note[160];   /* what it is, for the requests it refuses */
	bool shutting_down;
	int listen_fd;
	ev_io listen_w;
	ev_signal sigterm_w, sigint_w;
	ev_timer exit_timer;
	struct client *clients;
	double deadline_cap;     /* $VMCTL_HELPER_DEADLINE: no helper call waits longer */
};

extern struct broker *B;

/* ---- main.c ---- */
void broker_shutdown(void);

/* ---- util.c (pure: unit-tested) ---- */
/* Next restart delay after a crash: 0 (at once) when the helper had been up
 * for BACKOFF_RESET_S; else BACKOFF_FIRST_MS after prev_ms 0 (no delay
 * before), doubling, capped at BACKOFF_MAX_MS. */
unsigned backoff_next_ms(unsigned prev_ms, double uptime_s);
/* "52:54:00:xx:xx:xx" from 3 random bytes. */
void util_format_mac(const unsigned char rnd[3], char *buf, size_t len);
/* A two-word name ("brave-otter") from a random number. */
void util_pick_name(uint32_t rnd, char *buf, size_t len);
/* "2026-11-27T10:00:00Z" */
void util_iso_time(time_t t, char *buf, size_t len);
/* "killed by signal 9", "exited with status 1" for a wait status. */
void util_describe_status(int status, char *buf, size_t len);
/* Parse one --describe output into *d. 0 or PROTO_E_PROTOCOL (no driver
 * line, or a driver or scope that is not a driver name). */
int util_parse_describe(const char *text, struct driver_info *d);
/* Fill buf with random bytes (getrandom, falling back to time+pid). */
void util_random(void *buf, size_t len);
/* Is this a state in which the VM is (or is about to be) running? */
bool util_state_active(enum proto_state state);
/* The states in a helper's answer or state notification (state, old, new,
 * and instances[].state, where present and not nil) are protocol states:
 * 0, or PROTO_E_PROTOCOL with why naming the first that is not, escaped. */
int util_check_states(const msgpack_object *o, char *why, size_t whylen);
/* "local.NAME.cpus" -> name and property ("cpus"/"memory"/"disk"); 0 or
 * PROTO_E_NOT_FOUND if key has not that shape. */
int util_instance_key(const char *key, char *name, size_t namelen, char *prop, size_t proplen);

/* ---- seed.c (texts are pure: unit-tested) ---- */
/* #cloud-config user-data text with our user and key (malloc'd). */
char *seed_user_data(const char *pubkey);
/* The user-data to write: ours alone, or ours and the user's as a MIME
 * multipart when user_text is non-empty. boundary_rnd picks the boundary. */
char *seed_combine(const char *ours, const char *user_text, uint32_t boundary_rnd);
char *seed_meta_data(const char *name, const char *instance_id);
/* network-config (version 2) for an instance with extra networks: the
 * default NIC and each extra one matched by MAC (malloc'd). */
char *seed_network_config(const char *default_mac, const struct network_record *nets, size_t n);
/* Write dir/network-config for rec when it has extra networks (seed_make
 * puts it into the ISO); remove a stale one when it has none. */
int seed_write_network_config(const char *dir, const struct instance_record *rec, char *err,
			      size_t errlen);

/* ---- child.c ---- */
/* status: wait status; out: captured stdout+stderr (NUL-terminated, maybe truncated). */
typedef void (*child_done_fn)(void *ud, int status, const char *out);
/* Run argv asynchronously (cwd may be NULL). kill_after_s > 0 SIGKILLs it
 * after that long. done runs exactly once unless child_cancel() is called.
 * NULL (and err set) if it could not be started. */
struct child *child_run(char *const argv[], const char *cwd, double kill_after_s,
			child_done_fn done, void *ud, char *err, size_t errlen);
/* Kill it and forget it: done will not run. */
void child_cancel(struct child *c);
/* fn runs with all of c's output so far (ud as for done) whenever more
 * arrives while c runs, so that a caller can act on a line before c exits.
 * fn must not free c; it may child_cancel() it. */
typedef void (*child_output_fn)(void *ud, const char *out);
void child_watch_output(struct child *c, child_output_fn fn);
/* child_run of `ssh ubuntu@HOST -p PORT COMMAND` with the broker's key and
 * no host-key or config-file checks (the guests' host keys are new at
 * every launch); connect_timeout_s bounds SSH's connect. */
struct child *child_run_ssh(const char *host, const char *port, int connect_timeout_s,
			    const char *command, double kill_after_s, child_done_fn done, void *ud,
			    char *err, size_t errlen);
/* Blocking variant, only before the loop runs. Returns the wait status or -1. */
int child_run_sync(char *const argv[]);

/* ---- helper.c ---- */
enum helper_state {
	HELPER_MISSING,    /* binary not found */
	HELPER_STARTING,   /* spawned, hello in flight */
	HELPER_READY,
	HELPER_UNUSABLE,   /* hello says it cannot run on this host, or was refused */
	HELPER_RESTARTING, /* died; waiting out the backoff */
	HELPER_STOPPING,   /* shutdown sent */
	HELPER_STOPPED,
};

/* What a helper supervisor asks of whoever made it. */
struct helper_ops {
	/* Where vmctl-DRIVER-helper is: 0 with path, or < 0 with a sentence
	 * saying where it was looked for. Asked by helper_new(), and again by
	 * a call to a helper that was missing (it may have been installed). */
	int (*find)(const char *driver, char *path, size_t pathlen, char *err, size_t errlen);
	/* Pack the settings map of hello (NULL: an empty one). */
	void (*pack_settings)(void *ud, msgpack_packer *pk);
	/* After every successful hello: at start-up and after each restart. */
	void (*ready)(void *ud, struct helper *h);
	/* A state notification with protocol states: the helper says NAME is
	 * now STATE. */
	void (*state)(void *ud, struct helper *h, const char *name, enum proto_state state);
};

/* What helper_new() needs; it keeps copies of the strings. */
struct helper_spec {
	struct ev_loop *loop;
	const char *driver;    /* "qemu" */
	const char *scope;     /* what its hello must say */
	const char *scope_dir; /* sent in hello */
	double deadline_cap;   /* > 0: no call waits longer ($VMCTL_HELPER_DEADLINE) */
	/* A probe (vmctl drivers, a switch's pre-check): never restarted; when
	 * it dies, or fails to start, it is HELPER_UNUSABLE and helper_why()
	 * says what it died of. */
	bool once;
	const struct helper_ops *ops;
	void *ud;              /* for ops */
};

/* Create and spawn the helper of spec->driver (never NULL except on ENOMEM;
 * a missing binary gives state HELPER_MISSING). It uses nothing of the
 * broker but what spec gives it. */
struct helper *helper_new(const struct helper_spec *spec);
enum helper_state helper_get_state(const struct helper *h);
/* The hello answer of the helper, while it holds: in READY, and in UNUSABLE
 * unless the handshake was refused; else NULL. */
const struct proto_hello *helper_hello(const struct helper *h);
/* Why the helper cannot serve requests now ("" when it can). */
const char *helper_why(const struct helper *h);
/* "ready", "unusable", ... (for version). */
const char *helper_state_name(enum helper_state st);
/* What is wrong with the helper, for a user: helper_why(), or what it
 * died of while it restarts; "" when nothing is. */
void helper_describe_problem(const struct helper *h, char *buf, size_t len);
/* Ask the helper to shut down; done runs once it has exited (or was killed). */
void helper_stop(struct helper *h, void (*done)(void *ud), void *ud);
void helper_free(struct helper *h);
/* Close the stderr readers of dead helpers (at exit). */
void helper_errpipes_free(void);
/* Call method on the active helper. While it restarts the call waits (up to
 * BROKER_QUEUE_WAIT); a crash answers it with a sentence saying what
 * happened. cb runs exactly once, never before this returns. NULL (and cb
 * never runs) when h is NULL or memory runs out. */
struct hcall *helper_call(struct helper *h, const char *method, const msgpack_sbuffer *params,
			  double deadline_s, proto_result_fn cb, void *ud);
/* The reason h gave beside the state of instance name (its "reason" key,
 * in a state notification or an answer): kept until it says another state
 * without one, cut to one line of PROTO_REASON_MAX bytes. reason: the
 * answer's value (NULL, nil or "" forget it). */
void helper_reason_set(struct helper *h, const char *name, const msgpack_object *reason);
/* "" when there is none. */
const char *helper_reason(const struct helper *h, const char *name);

/* ---- drivers.c ---- */
/* Find vmctl-DRIVER-helper; 0 with path, or PROTO_E_NOT_FOUND with a
 * sentence naming where it was looked for. */
int helper_find(const char *driver, char *path, size_t pathlen, char *err, size_t errlen);
/* The drivers whose helpers are installed: "libvirt, qemu" ("" if none). */
void drivers_installed(char *buf, size_t len);
/* Run the helper of driver with --describe; what it says is kept (for
 * driver_info_get()) and handed to done, which runs once, later. 0, or
 * PROTO_E_NOT_FOUND with err saying why it could not be run (done will not
 * run). done gets err < 0 and a sentence when the helper's answer is not a
 * description of driver. */
typedef void (*driver_described_fn)(void *ud, int err, const char *errmsg,
				    const struct driver_info *d);
int driver_describe(const char *driver, driver_described_fn done, void *ud, char *err,
		    size_t errlen);
/* The same, waiting for the answer: only before the loop runs. */
int driver_describe_now(const char *driver, struct driver_info *d, char *err, size_t errlen);
/* Run every installed helper with --describe (in the background). */
void helper_describe_all(void);
void drivers_free(void);
/* What is known of a driver: what its helper said, else the seed's table;
 * NULL for a driver neither knows. */
const struct driver_info *driver_info_get(const char *driver);
/* The scope of driver as driver_info_get() knows it, else the driver's own
 * name. */
void driver_scope(const char *driver, char *buf, size_t len);
/* "snapshots are not supported by the libvirt driver; drivers that have
 * them: qemu, hyperv, virtualbox" */
void driver_refusal(unsigned feature, const char *driver, char *buf, size_t len);
/* The active helper has feature (from hello; driver_info_get() before it). */
bool broker_has_feature(unsigned feature);
/* The seed's drivers in its order, then those of the other helpers found
 * (vmctl-NAME-helper), by name: how many were put in names. */
size_t drivers_known(char (*names)[DRIVER_NAME_MAX + 1], size_t max);
/* What one hello of a driver's helper says. */
struct driver_probe_result {
	/* driver; scope, version and features as its helper says them
	 * (hello's, else --describe's; the seed's scope and no features when
	 * it could not say); path "" when not found. */
	struct driver_info info;
	bool found;   /* a helper of that name is installed */
	bool hello;   /* it answered hello (info.features, version from it) */
	bool usable;  /* ...and can run on this host */
	char why[1400]; /* when not usable: why not, for a user */
};
typedef void (*driver_probed_fn)(void *ud, const struct driver_probe_result *res);
/* Find the helper of driver, run it with --describe, then start it once
 * (never restarted) for its hello, and shut it down: done runs once, always
 * later, with what was learned. The active helper is left alone. */
void driver_probe(const char *driver, driver_probed_fn done, void *ud);

/* ---- scope.c ---- */
/* Make driver the active driver: load the registry of scope. */
int scope_enter(const char *driver, const char *scope, char *err, size_t errlen);
/* The driver that last had scope active (its name when never recorded). */
void scope_last_driver(const char *scope, char *buf, size_t len);
int scope_save(void);
/* DATA/scopes/SCOPE/instances/NAME */
void scope_instance_dir(const char *name, char *buf, size_t len);
/* Pack the instance map of docs/protocol.md. */
void scope_pack_instance(msgpack_packer *pk, const struct instance_record *rec);
/* Params {instance: MAP} (+ extra pairs packed by the caller: n_extra). */
void scope_pack_instance_params(msgpack_sbuffer *sb, const struct instance_record *rec,
				size_t n_extra, msgpack_packer *pk_out);
struct busy *busy_find(const char *name);
int busy_add(const char *name, const char *what);
void busy_remove(const char *name);
/* Update rec->state; true if it changed. */
bool scope_set_state(struct instance_record *rec, enum proto_state state);
/* Shown state: "deleted" for soft-deleted records. */
enum proto_state scope_shown_state(const struct instance_record *rec);

/* ---- auth.c: who may use the broker; local.passphrase ---- */
/* root, the broker's user, the group "vmctl", or a uid that authenticated. */
bool auth_peer_trusted(int fd, uid_t *uid);
/* May a peer not trusted call it (authenticate, version)? */
bool auth_method_open(const char *method);
bool auth_passphrase_set(void);
/* A yescrypt hash of passphrase into out. */
int auth_hash(const char *passphrase, char *out, size_t len, char *err, size_t errlen);
/* The passphrase was changed or removed: nobody stays authenticated. */
void auth_forget_all(void);
void op_authenticate(struct creq *r, const msgpack_object *p);

/* ---- client.c ---- */
int client_listen(char *err, size_t errlen);
/* Open the socket to every local user when a passphrase is set, else to
 * the broker's user only. */
void client_socket_mode(void);
/* The uid of the request's client. */
uid_t creq_peer_uid(const struct creq *r);
/* Let the request's client in (it gave the passphrase). */
void creq_trust(struct creq *r);
void client_close_all(void);
/* Answer a request (once). result may be NULL ({}). */
void creq_ok(struct creq *r, const msgpack_sbuffer *result);
void creq_fail(struct creq *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void creq_progress(struct creq *r, double fraction, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void creq_warning(struct creq *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The names a request addresses ({names, all}), all known in the active
 * scope. Fills a malloc'd array of malloc'd names. 0, or the error has been
 * answered. include_deleted: `all` includes deleted instances. */
int creq_names(struct creq *r, const msgpack_object *params, bool include_deleted, char ***names,
	       size_t *n);
void names_free(char **names, size_t n);

/* ---- ops.c: CLI methods ---- */
void op_version(struct creq *r, const msgpack_object *p);
void op_list(struct creq *r, const msgpack_object *p);
void op_info(struct creq *r, const msgpack_object *p);
void op_start(struct creq *r, const msgpack_object *p);
void op_stop(struct creq *r, const msgpack_object *p);
void op_restart(struct creq *r, const msgpack_object *p);
void op_suspend(struct creq *r, const msgpack_object *p);
void op_delete(struct creq *r, const msgpack_object *p);
void op_recover(struct creq *r, const msgpack_object *p);
void op_purge(struct creq *r, const msgpack_object *p);
void op_ssh_info(struct creq *r, const msgpack_object *p);
void op_networks(struct creq *r, const msgpack_object *p);
void op_find(struct creq *r, const msgpack_object *p);
/* Reconcile record states with one instances.list call (no client). */
void ops_reconcile(void);
/* Start every instance whose switch_state says it was running. */
void ops_restore_switched(void);

/* ---- seed-iso.c ---- */
typedef void (*seed_done_fn)(void *ud, int err, const char *errmsg);
/* Write user-data (ours, with pubkey, and user_cloud_init's) and meta-data
 * into dir and run genisoimage to make dir/cloud-init.iso. done runs exactly
 * once, later. */
int seed_make(const char *dir, const char *name, const char *pubkey, const char *user_cloud_init,
	      seed_done_fn done, void *ud, char *err, size_t errlen);

/* ---- launch.c ---- */
void op_launch(struct creq *r, const msgpack_object *p);
/* A launch of name holds the name. */
bool launch_active(const char *name);
/* Cancel the launch of name (for stop --force and delete, named by `by`):
 * the waiting launch is answered with an error, and then(ud) runs once it has
 * let go of the name (at once while it waits for SSH; after the step in
 * flight otherwise). A launch that had not created its VM yet is undone, so
 * then may find no record. false, and then never runs, when no launch of
 * name is in progress or one is already being cancelled. */
bool launch_cancel(const char *name, const char *by, void (*then)(void *ud), void *ud);

/* ---- ssh-wait.c ---- */
typedef void (*ssh_wait_fn)(void *ud, int err, const char *errmsg);
struct ssh_wait;
/* Probe ssh to NAME until it answers (and, with cloud_init, until cloud-init
 * is done), giving up at deadline (ev_now based); timeout_s is the timeout
 * the user gave, for the message. progress_r may be NULL. */
struct ssh_wait *ssh_wait_start(const char *name, const char *host, int port, bool cloud_init,
				ev_tstamp deadline, double timeout_s, struct creq *progress_r,
				ssh_wait_fn done, void *ud);
void ssh_wait_cancel(struct ssh_wait *w);
/* The helper says NAME is now STATE: a wait for a VM that stopped (or was
 * suspended) ends at once with PROTO_E_INVALID_STATE and a sentence saying so. */
void ssh_wait_state_changed(const char *name, enum proto_state state);

/* ---- keys.c ---- */
/* Before the loop runs: load the key pair DATA/ssh/id_ed25519 into B when it
 * exists; else *later says it is to be made (keys_ensure()) once the broker
 * listens, ssh-keygen taking a good part of a second. */
int keys_init(bool *later, char *err, size_t errlen);
/* Make sure DATA/ssh/id_ed25519 exists (ssh-keygen) and B->ssh_pubkey is
 * loaded; done runs once, at once when it is. */
void keys_ensure(void (*done)(void *ud, int err, const char *errmsg), void *ud);

/* ---- switch.c ---- */
/* At start-up, after config_load(): enter the scope of the driver the
 * settings name (or of this host's default driver). */
int switch_init(char *err, size_t errlen);
/* Make B->helper the helper of the active driver. */
void switch_start_helper(void);
/* set local.driver=VALUE: switch to that driver (r is answered). */
void switch_driver(struct creq *r, const char *value);
/* key, a setting of the active driver, was changed: restart its helper,
 * which reads its settings in hello only (r is answered). */
void switch_restart_helper(struct creq *r, const char *key);

/* ---- config.c ---- */
/* Load DATA/settings.yaml into B->settings (at start-up). */
int config_load(char *err, size_t errlen);
/* get and set of every key: settings, instance sizes, snapshot names. */
void op_get(struct creq *r, const msgpack_object *p);
void op_set(struct creq *r, const msgpack_object *p);
void op_keys(struct creq *r, const msgpack_object *p);

/* ---- op-common.c: shared by the op-*.c operations ---- */
/* Answer r with the driver refusal of docs/protocol.md if the active driver
 * lacks feature; true if it did. */
bool opx_refuse_feature(struct creq *r, unsigned feature);
/* The live record of name, or NULL with r answered (unknown, deleted, busy,
 * folder missing). */
/* The record of an instance that exists and is not deleted; else r is
 * answered (not found, or deleted: recover it first) and NULL returned. */
struct instance_record *opx_record(struct creq *r, const char *name);
struct instance_record *opx_instance(struct creq *r, const char *name);
/* Answer r and return true unless rec is recorded as stopped; what: "a snapshot". */
bool opx_refuse_unless_stopped(struct creq *r, const struct instance_record *rec, const char *what);
/* helper_call with params {instance}. */
struct hcall *opx_call(const struct instance_record *rec, const char *method, double deadline,
		       proto_result_fn cb, void *ud);

/* ---- op-drivers.c ---- */
/* drivers: {drivers: [{driver, helper, usable, why, active, scope, version,
 * features, native_mounts, extra_networks, snapshots, clone, suspend}]}. */
void op_drivers(struct creq *r, const msgpack_object *p);

/* ---- op-snapshot.c ---- */
void op_snapshot(struct creq *r, const msgpack_object *p);
void op_restore(struct creq *r, const msgpack_object *p);
void op_snapshot_delete(struct creq *r, const msgpack_object *p);
void op_snapshots(struct creq *r, const msgpack_object *p);
/* "local.NAME.SNAP.name|comment" -> parts; 0 or PROTO_E_NOT_FOUND. */
int snapshot_setting_key(const char *key, char *name, size_t namelen, char *snap, size_t snaplen,
			 char *prop, size_t proplen);
void snapshot_setting_get(struct creq *r, const char *name, const char *snap, const char *prop);
void snapshot_setting_set(struct creq *r, const char *name, const char *snap, const char *prop);

/* ---- op-clone.c ---- */
void op_clone(struct creq *r, const msgpack_object *p);

/* ---- op-exec.c ---- */
#define BROKER_EXEC_DEADLINE 3600 /* s: the longest a command without SSH may run */
/* "LXD's exec API", or "the DRIVER driver's exec", for the log. */
void exec_via(char *buf, size_t len);
/* instance.exec of `/bin/sh -c command` in rec, bounded by timeout_s; cb
 * gets the helper's answer {status, stdout, stderr, ...}. NULL when out of
 * memory (cb never runs). */
struct hcall *exec_call(const struct instance_record *rec, const char *command, double timeout_s,
			proto_result_fn cb, void *ud);
/* ssh_info {probe}: when the driver has exec, look at SSH on host:port and
 * answer r with the ssh_info map and ssh (false, with why, when the port
 * refuses connections). false when there is nothing to look at (r is then
 * the caller's to answer). */
bool exec_probe_ssh(struct creq *r, const char *host, int64_t port);
void op_exec(struct creq *r, const msgpack_object *p);

/* ---- op-mount.c ---- */
typedef void (*mount_done_fn)(void *ud, int err, const char *errmsg);
void op_mount(struct creq *r, const msgpack_object *p);
void op_umount(struct creq *r, const msgpack_object *p);
int mount_record_add(struct instance_record *rec, const char *source, const char *target,
		     const char *uid_map, const char *gid_map);
/* The same on the record's classic mounts (classic_mounts). */
int classic_record_add(struct instance_record *rec, const char *source, const char *target,
		       const char *uid_map, const char *gid_map);
/* The mounts of launch params {mounts: [{source, target?, type?, uid_map?,
 * gid_map?}]} checked and added to into's lists (classic by default). 0, or
 * a negative code with err saying why. */
int mount_launch_params(const msgpack_object *p, struct instance_record *into, char *err,
			size_t errlen);
/* rec's mounts become from's (from is left without mounts). */
void mount_records_replace(struct instance_record *rec, struct instance_record *from);
int mount_records_copy(struct instance_record *dst, const struct instance_record *src);
/* Pack "mounts": [{source, target, type, uid_map, gid_map}] for info. */
void mount_pack_info(msgpack_packer *pk, const struct instance_record *rec);
/* After a start: mount the instance's native mounts inside the guest over
 * SSH. false (done will not run) when it has none; else done runs once. */
bool mount_activate(const char *name, mount_done_fn done, void *ud);
/* Before a suspend: unmount them in the guest (QEMU refuses to save a VM
 * whose 9p mounts are in use); same contract as mount_activate. */
bool mount_deactivate(const char *name, mount_done_fn done, void *ud);
/* [[H,G]...] -> "H:G,H:G" ("" for none or nil); PROTO_E_INVALID_ARGUMENT if malformed. */
int mount_idmap_text(const msgpack_object *arr, char *buf, size_t len);

/* ---- classic-script.c (pure: unit-tested) ---- */
/* What the guest's half of a classic mount says on stderr once the folder is
 * mounted, and the exit statuses that say it cannot be. */
#define CLASSIC_MOUNTED_MARK "VMCTL-CLASSIC-MOUNTED"
#define CLASSIC_EXIT_NO_SSHFS 100
#define CLASSIC_EXIT_NO_FUSE 101
#define CLASSIC_EXIT_SETUP 102
/* The shell script ssh runs in the guest: check for sshfs and /dev/fuse,
 * clear a stale mount at target, write the id maps ("H:G,H:G", may be NULL)
 * for idmap=file and exec `sshfs :SOURCE TARGET -o slave` on the channel
 * (malloc'd; NULL when out of memory). Paths are mount_path_ok ones. */
char *classic_guest_script(const char *source, const char *target, const char *uid_map,
			   const char *gid_map);
/* A sentence for a guest half that ended with status and said stderr_text. */
void classic_describe_exit(int status, const char *stderr_text, char *buf, size_t len);
/*
 * The guest speaks SFTP to sftp-server, which would serve any path the
 * broker's user may open. This Landlock ruleset (vmh_landlock_prepare)
 * limits it to source, plus what sftp-server needs to run: its program and
 * the shared libraries (read and execute), /dev/null, ld.so.cache,
 * localtime and the user and group names (read).
 */
int classic_sftp_ruleset(const char *sftp, const char *source, char *why, size_t whylen);

/* ---- classic.c ---- */
/* Establish the classic mounts of a running instance (only the one at target
 * unless it is NULL): host sftp-server and guest sshfs over ssh, supervised.
 * false (done will not run) when it has none; else done runs once, when each
 * is mounted or has failed (err < 0 and a sentence for all that failed). */
bool classic_establish(const char *name, const char *target, mount_done_fn done, void *ud);
/* Unmount target in the guest and end its processes; done runs once they
 * are reaped. false (done will not run) when no session runs there. */
bool classic_unmount(const char *name, const char *target, mount_done_fn done, void *ud);
/* End the session at target, if any, without waiting. */
void classic_forget(const char *name, const char *target);
/* The instance stopped, was suspended or deleted: end its sessions. */
void classic_instance_down(const char *name);
/* After the broker started (or the helper came back): establish the mounts of
 * every running instance that are not up. */
void classic_resume_all(void);
/* At exit: kill every session's processes. */
void classic_stop_all(void);
/* "active", "failed: ...", ... for info. */
const char *classic_status(const char *name, const char *target, char *buf, size_t len);

/* ---- op-stop-delay.c ---- */
/* The part of a stop request that is this file's: with time (minutes) or
 * cancel, r is answered and true returned; a plain stop drops the delayed
 * stops of the instances it addresses and gets false (op_stop goes on). */
bool stop_delay_request(struct creq *r, const msgpack_object *p);
/* "delayed shutdown" for a running instance with a pending delayed stop. */
enum proto_state stop_delay_shown_state(const char *name, enum proto_state state);
/* After scope_enter() (switch.c): drop the timers of the scope left (its file keeps
 * them) and arm those of SCOPE_DIR/delayed-stops; overdue ones fire at once. */
void stop_delay_scope_entered(void);
/* Drop the pending delayed stop of name (delete calls it), saying so in the log. */
void stop_delay_forget(const char *name);

/* ---- op-resize.c ---- */
/* set local.NAME.PROP=TEXT, PROP one of cpus, memory, disk (r is answered). */
void resize_set(struct creq *r, const char *name, const char *prop, const char *text);

/* ---- ops.c (shared) ---- */
/* Records of the scopes that are not active, read from disk: n registries
 * and their scope names, all owned by the caller. Returns how many scopes'
 * registries could not be loaded (why, if not NULL, says what was wrong
 * with the first); those scopes are left out. */
int list_other_scopes(struct registry **out, char ***scopes, size_t *n, char *why, size_t whylen);

/* ---- networks.c (pure: unit-tested) ---- */
#define BROKER_MAX_NETWORKS 16 /* extra NICs: the qemu helper passes one tap fd each, 16 at most */
#define NETWORK_NAME_MAX 15    /* a host interface name (IFNAMSIZ - 1) */
/* The extra networks of launch params {networks: [{name, mode?, mac?}], bridged?}:
 * checked, "bridged" (and bridged: true) resolved to bridged_setting, mode
 * "auto" by default, missing MACs generated. *out is malloc'd (NULL when none). */
int networks_from_params(const msgpack_object *p, const char *bridged_setting,
			 struct network_record **out, size_t *n_out, char *err, size_t errlen);
/* Copies of src[0..n) with new MACs, none equal to one of src nor to avoid_mac
 * (a clone's NICs). */
int networks_copy_new_macs(struct network_record **out, const struct network_record *src, size_t n,
			   const char *avoid_mac);
/* Does one of v[0..n) have this MAC (any case)? */
bool networks_mac_taken(const struct network_record *v, size_t n, const char *mac);
/* The IPv4 addresses in the output of `ip -4 address` (with or without -o),
 * in order, without prefix lengths. */
int networks_parse_guest_ipv4(const char *out, char ***addrs, size_t *n);
void networks_addrs_free(char **addrs, size_t n);

/* ---- op-addresses.c ---- */
typedef void (*addresses_done_fn)(void *ud);
/* For info of a running instance with extra networks: ask the guest over SSH
 * (host:port) for its IPv4 addresses, within a few seconds, and replace the
 * packed array in ipv4 with them. On any failure ipv4 is left as it was (the
 * helper's answer). false (done will not run) when there is nothing to ask;
 * else done runs once, later. */
bool addresses_refresh(const struct instance_record *rec, const char *host, int64_t port,
		       msgpack_sbuffer *ipv4, addresses_done_fn done, void *ud);

/* ---- orphan.c ---- */
/* Folders under SCOPE_DIR/instances named like an instance that reg has no
 * record of, sorted; *names is the caller's (names_free). */
int orphans_find(const char *scope_dir, const struct registry *reg, char ***names, size_t *n);
/* Add a record for NAME, a folder of the active scope without one, from what
 * the folder holds (the base image and size its disk.qcow2 names; cpus,
 * memory and MAC are new) and save the registry. 0 with note saying what
 * was guessed, or a negative code with note saying why not. */
int orphan_rebuild(const char *name, char *note, size_t notelen);

/* ---- prune.c ---- */
/* Remove cached images unused for local.image.prune-after, now and then
 * every few hours; images any instance of any scope uses are kept. */
void prune_start(void);
void prune_stop(void);

#endif
