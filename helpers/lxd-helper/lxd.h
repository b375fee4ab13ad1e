/*
 * vmctl-lxd-helper: the lxd driver, on LXD's REST API over its unix socket.
 *
 * Every LXD call is a blocking libcurl easy call made on a thread of the
 * SDK's (vmh_work); what it learns comes back to the loop's thread, which
 * alone answers the broker and touches the SDK's claims and states.
 */
#ifndef LXD_HELPER_H
#define LXD_HELPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <vmproto/vmh.h>

/* api.c: one LXD response, as its JSON says. */
enum lxd_kind { LXD_SYNC, LXD_ASYNC, LXD_ERROR };

struct lxd_resp {
	long http;          /* HTTP status of the answer */
	enum lxd_kind kind;
	int code;           /* status_code (sync 200, async 100) or error_code (404, ...) */
	char *error;        /* the error's text, or NULL */
	char *operation;    /* an async answer's operation path, or NULL */
	json_t *metadata;   /* owned; NULL when null */
};

/* Parse an answer of LXD's: 0 for a sync or async answer; for an error
 * answer (or JSON that is not one), a PROTO_E_* code (404 not-found, 409
 * already-exists, else driver-error) and "LXD: TEXT (status N)" in err.
 * *r is filled in every case but malformed JSON; free it with lxd_resp_free. */
int lxd_parse(const char *body, size_t len, long http, struct lxd_resp *r, char *err,
	      size_t errlen);
void lxd_resp_free(struct lxd_resp *r);
/* The outcome of a finished background operation (the metadata of
 * /1.0/operations/ID/wait): 0 when it succeeded, PROTO_E_TIMEOUT while it
 * still runs, else PROTO_E_DRIVER with LXD's reason in err. */
int lxd_operation_result(const json_t *op, char *err, size_t errlen);
/* A status of LXD's ("Running", "Stopped", "Frozen", ...) as a protocol state. */
enum proto_state lxd_state_of(const char *status);
/* The IPv4 addresses (global scope) of an instance state's network map,
 * eth0's first: at most max, each in out[i]. */
size_t lxd_state_ipv4(const json_t *state, char out[][64], size_t max);

/* The transport: a request on the socket, awaited (also its operation, when
 * LXD answers async). body is JSON text or NULL; upload a file sent as the
 * body (an image), or NULL. timeout_s bounds the whole call. */
int lxd_call(const char *socket_path, const char *method, const char *path, const char *body,
	     const char *upload, double timeout_s, struct lxd_resp *r, char *err, size_t errlen);
int lxd_sync(const char *socket_path, const char *method, const char *path, const char *body,
	     const char *upload, double timeout_s, struct lxd_resp *r, char *err, size_t errlen);
/* A split image (LXD's "metadata" tarball and rootfs) as multipart/form-data. */
struct lxd_split {
	const void *metadata; /* the metadata tarball's bytes */
	size_t metadata_len;
	const char *rootfs;      /* a file */
	const char *rootfs_part; /* "rootfs.img" (a VM's qcow2) or "rootfs" */
};
/* POST path with split, awaited as lxd_sync. */
int lxd_sync_split(const char *socket_path, const char *path, const struct lxd_split *split,
		   double timeout_s, struct lxd_resp *r, char *err, size_t errlen);

/* vmimage.c: a qcow2 disk as LXD's split VM image. */
#define LXD_VM_ALIAS_PREFIX "vmctl-vm-" /* + the qcow2's sha256: the imported image */
/* metadata.yaml of a VM image: architecture (LXD's name, "x86_64"),
 * creation_date, properties (description, the qcow2's sha256). The length
 * written, or -1 when it does not fit. */
int lxd_vm_metadata_yaml(const char *arch, long long created, const char *description,
			 const char *sha256, char *buf, size_t len);
/* A ustar archive of one regular file name (mode 0644, mtime) with data:
 * *out (malloc'd, *outlen bytes, a multiple of 512), 0 or PROTO_E_NOMEM. */
int lxd_tar_one(const char *name, const void *data, size_t len, long long mtime,
		unsigned char **out, size_t *outlen);
/* The VM image of qcow2 (its sha256 given) in LXD: found by its alias
 * LXD_VM_ALIAS_PREFIX SHA256, else built and imported once, and aliased.
 * Its fingerprint into fp. 0, or a PROTO_E_* code with the reason. */
int lxd_vm_image_ensure(const char *socket_path, const char *qcow2, const char *sha256,
			const char *arch, double timeout_s, char fp[65], char *err, size_t errlen);
/* The sha256 of a file, in hex. */
int lxd_sha256_file(const char *path, char hex[65], char *err, size_t errlen);

/* A request whose answer is not LXD's JSON (a file, an exec's recorded
 * output): body (body_len bytes, or NULL) sent as octet-stream with the
 * extra headers (NULL-terminated, or NULL). The answer's first max bytes
 * go to *out (malloc'd, NUL-terminated; out may be NULL to drop it),
 * *truncated when there was more. An error answer gives its code and
 * LXD's message, as lxd_call. */
int lxd_raw(const char *socket_path, const char *method, const char *path, const void *body,
	    size_t body_len, const char *const *headers, size_t max, double timeout_s, char **out,
	    size_t *out_len, bool *truncated, char *err, size_t errlen);

/* exec.c: instance.exec through LXD's exec API (record-output). */
#define LXD_EXEC_TIMEOUT 3600 /* s, when the request gives none */
#define LXD_EXEC_IO 60.0      /* s, each call around the command itself */
struct lxd_exec {
	const char *name; /* the instance (not owned) */
	char **argv;
	size_t argc;
	json_t *env;  /* {NAME: VALUE} or NULL */
	char *cwd;    /* or NULL */
	char *input;  /* stdin, when has_input */
	size_t input_len;
	bool has_input;
	int64_t timeout;
	/* the outcome */
	int status;
	char *out[2]; /* stdout, stderr (malloc'd or NULL) */
	size_t out_len[2];
	bool out_cut[2]; /* more than PROTO_EXEC_OUTPUT_MAX bytes */
};
/* The params of instance.exec ({argv, env?, cwd?, stdin?, timeout?}),
 * checked and copied: 0, or PROTO_E_INVALID_ARGUMENT / PROTO_E_NOMEM with
 * the reason and nothing to free. */
int lxd_exec_parse(const msgpack_object *params, struct lxd_exec *x, char *err, size_t errlen);
void lxd_exec_free(struct lxd_exec *x);
/* The JSON of POST /1.0/instances/NAME/exec (malloc'd); with stdin_path,
 * the command reads that file as its standard input. NULL if out of memory. */
char *lxd_exec_body(const struct lxd_exec *x, const char *stdin_path);
/* The finished exec operation (the metadata of its /wait): 0 with the
 * command's status and the paths of its recorded stdout and stderr ("" if
 * none); a command LXD could not run (not found) is status 127 with LXD's
 * reason in note. PROTO_E_TIMEOUT while it runs, else LXD's error. */
int lxd_exec_outcome(const json_t *op, int *status, char paths[2][256], char *note, size_t notelen,
		     char *err, size_t errlen);
/* Run x in its instance (blocking: on a work thread), filling its outcome;
 * the recorded outputs and the pushed stdin are deleted afterwards. */
int lxd_exec_run(const char *socket_path, struct lxd_exec *x, char *err, size_t errlen);
/* {status, stdout, stderr, stdout_truncated, stderr_truncated} */
void lxd_exec_pack(msgpack_packer *pk, const struct lxd_exec *x);

/* mounts.c: native mounts as disk devices, their id maps as raw.idmap. */
#define LXD_MOUNT_DEVICE_PREFIX "vmctl-mount-"
/* The disk device of the mount at guest path target. */
void lxd_mount_device_name(const char *target, char *buf, size_t len);
/* The raw.idmap text ("uid H G\ngid H G") of the mounts' uid_map and
 * gid_map, each pair once; "" when none. PROTO_E_INVALID_ARGUMENT with the
 * reason when two pairs contradict (LXD maps ids container-wide). */
int lxd_mounts_idmap(const struct vmh_mount *const *mounts, size_t n, char *buf, size_t len,
		     char *err, size_t errlen);
/* Whether every line of wanted is a line of current. */
bool lxd_idmap_covers(const char *current, const char *wanted);
/* 1 if file (/etc/subuid) has a line user:START:COUNT covering id, 0 if
 * not (or no file), -errno when it cannot be read. */
int lxd_subid_allows(const char *file, const char *user, uint32_t id);
/* Every host id of the mounts' maps allowed to root by subuid / subgid:
 * 0, or PROTO_E_INVALID_ARGUMENT saying which line to add. */
int lxd_mounts_check_ids(const struct vmh_mount *const *mounts, size_t n, const char *subuid,
			 const char *subgid, char *err, size_t errlen);
/* Make the vmctl-mount-* disk devices of devices (an instance's "devices"
 * object) exactly the mounts'; true if it changed. */
bool lxd_mounts_apply(json_t *devices, const struct vmh_mount *const *mounts, size_t n);

/* events.c: LXD's /1.0/events?type=lifecycle websocket, on the loop. */
struct lxd_ws_frame {
	bool fin;
	int opcode; /* 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong */
	const unsigned char *payload;
	size_t len;
};
/* One websocket frame at buf (unmasked in place if masked): its length,
 * 0 while incomplete, -1 if it is not one this client reads. */
long lxd_ws_frame(const unsigned char *buf, size_t len, struct lxd_ws_frame *f);
/* A masked control frame (payload at most 125 bytes) into out: its length,
 * 0 if it does not fit. */
size_t lxd_ws_pack(unsigned char *out, size_t cap, int opcode, const void *payload, size_t len,
		   const unsigned char mask[4]);
/* A lifecycle event about an instance: 0 with its name and action
 * ("instance-stopped"), -1 for any other message. */
int lxd_event_parse(const char *text, size_t len, char *name, size_t namelen, char *action,
		    size_t actionlen);
/* name changed (action); name NULL: the stream (re)connected, anything may have. */
typedef void (*lxd_event_fn)(const char *name, const char *action);
void lxd_events_start(const char *socket_path, lxd_event_fn changed);
bool lxd_events_connected(void);
void lxd_events_stop(void);

/* ops.c */
int lxd_init(const char *scope_dir, const msgpack_object *settings, char *why, size_t whylen);
void lxd_fini(void);
void lxd_instances_list(struct vmh_req *req, const msgpack_object *params);
void lxd_networks_list(struct vmh_req *req, const msgpack_object *params);
void lxd_instance_create(struct vmh_req *req, const msgpack_object *params);
void lxd_instance_start(struct vmh_req *req, const msgpack_object *params);
void lxd_instance_stop(struct vmh_req *req, const msgpack_object *params);
void lxd_instance_restart(struct vmh_req *req, const msgpack_object *params);
void lxd_instance_delete(struct vmh_req *req, const msgpack_object *params);
void lxd_instance_state(struct vmh_req *req, const msgpack_object *params);
void lxd_instance_info(struct vmh_req *req, const msgpack_object *params);
void lxd_instance_mount(struct vmh_req *req, const msgpack_object *params);
void lxd_instance_umount(struct vmh_req *req, const msgpack_object *params);
void lxd_instance_exec(struct vmh_req *req, const msgpack_object *params);

#endif
