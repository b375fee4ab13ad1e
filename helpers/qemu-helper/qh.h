/*
 * vmctl-qemu-helper: the qemu driver. Stateless: every request carries the
 * whole instance map, and what a running VM needs to be found again lives in
 * its instance folder (DIR/qemu.pid, DIR/qmp.sock, DIR/ssh-port, ...), so a
 * restarted helper re-attaches to VMs that kept running.
 */
#ifndef QEMU_HELPER_H
#define QEMU_HELPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <vmproto/vmh.h>

#define QH_PATH 4096
#define QH_ERR 1024

/* Files in the instance folder, besides the scope's own PROTO_FILE_* . */
#define QH_PIDFILE "qemu.pid"
#define QH_QMP "qmp.sock"
#define QH_SSH_PORT "ssh-port"
#define QH_CONSOLE "console.log"
#define QH_LOG "qemu.log"
#define QH_SNAPSHOTS "snapshots.json"
#define QH_EFI_VARS "efivars.fd" /* firmware boot only: this instance's UEFI variables */

/* Firmware for images without a kernel; the variable store is copied per instance. */
#define QH_OVMF_CODE "/usr/share/OVMF/OVMF_CODE_4M.fd"
#define QH_OVMF_VARS "/usr/share/OVMF/OVMF_VARS_4M.fd"

/* The instance map of a request is the SDK's struct vmh_instance. */

/* ---- inst.c: what the qemu driver checks on top of vmh_instance_parse() ---- */

/* Parse an instance map. 0 or PROTO_E_INVALID_ARGUMENT with err set. */
int qh_inst_parse(const msgpack_object *map, struct vmh_instance *inst, char *err, size_t errlen);
/* Parse params["instance"]; on failure fails req and returns the error. */
int qh_inst_from_req(struct vmh_req *req, const msgpack_object *params, struct vmh_instance *inst);
/* DIR/file into buf. */
void qh_path(const struct vmh_instance *inst, const char *file, char *buf, size_t len);
/* One mount map (instance.mount's "mount"), with qemu's checks. */
int qh_mount_parse(const msgpack_object *map, struct vmh_mount *m, char *err, size_t errlen);
/* qemu's own rules for a mount: a 9p tag, id maps it can write. */
int qh_mount_check(const struct vmh_mount *m, char *err, size_t errlen);

/* Child processes: vmh_run() and vmh_run_task() of the SDK. */

/* ---- qmp.c ---- */

/* One QMP command over DIR/qmp.sock: greeting, qmp_capabilities, cmd.
 * args may be NULL (it is not consumed). *ret (may be NULL) receives the
 * "return" value (caller decrefs). 0, PROTO_E_UNAVAILABLE (no socket or no
 * answer), PROTO_E_TIMEOUT or PROTO_E_DRIVER (QMP error, message in err). */
int qh_qmp(const char *sock_path, const char *cmd, json_t *args, double timeout_s,
	   json_t **ret, char *err, size_t errlen);
/* human-monitor-command; an HMP error message in the output counts as a failure. */
int qh_hmp(const char *sock_path, const char *line, double timeout_s, char *err, size_t errlen);

/* The accelerator: vmh_accel_*() of the SDK (local.qemu.accel). */

/* ---- vm.c ---- */

/* The live qemu process of inst, or 0. */
pid_t qh_vm_pid(const struct vmh_instance *inst);
/* The instance's state as the helper sees it now. */
enum proto_state qh_vm_state(const struct vmh_instance *inst);
bool qh_vm_suspended(const struct vmh_instance *inst);
/* The SSH port written at start, or 0. */
int qh_vm_ssh_port(const struct vmh_instance *inst);
/* Build the qemu command line. NULL-terminated, free with qh_argv_free. */
char **qh_vm_argv(const struct vmh_instance *inst, enum vmh_accel accel, int ssh_port, bool resume,
		  const int *tap_fds, char *err, size_t errlen);
void qh_argv_free(char **argv);
/* Remove what a stopped qemu leaves behind (pid file, QMP socket). */
void qh_vm_cleanup(const struct vmh_instance *inst);

/* ---- ops.c: the qemu of each instance, watched (claims and states: the SDK's) ---- */

/* Watch an instance whose state changes are worth notifying. */
void qh_watch(const struct vmh_instance *inst);
/* vmh_state_notify(), and a watch on the qemu of an instance now running. */
void qh_notify_state(const struct vmh_instance *inst, enum proto_state state);
/* Forget everything (at exit). */
void qh_ops_free(void);

/* ---- lifecycle.c ---- */

void qh_instances_list(struct vmh_req *req, const msgpack_object *params);
void qh_instance_create(struct vmh_req *req, const msgpack_object *params);
void qh_instance_start(struct vmh_req *req, const msgpack_object *params);
void qh_instance_stop(struct vmh_req *req, const msgpack_object *params);
void qh_instance_suspend(struct vmh_req *req, const msgpack_object *params);
void qh_instance_restart(struct vmh_req *req, const msgpack_object *params);
void qh_instance_delete(struct vmh_req *req, const msgpack_object *params);
void qh_instance_state(struct vmh_req *req, const msgpack_object *params);
void qh_instance_info(struct vmh_req *req, const msgpack_object *params);

/* ---- snapshot.c ---- */

void qh_snapshot_create(struct vmh_req *req, const msgpack_object *params);
void qh_snapshot_list(struct vmh_req *req, const msgpack_object *params);
void qh_snapshot_restore(struct vmh_req *req, const msgpack_object *params);
void qh_snapshot_delete(struct vmh_req *req, const msgpack_object *params);

/* ---- change.c ---- */

void qh_instance_set(struct vmh_req *req, const msgpack_object *params);
void qh_instance_mount(struct vmh_req *req, const msgpack_object *params);
void qh_instance_umount(struct vmh_req *req, const msgpack_object *params);
void qh_instance_network_add(struct vmh_req *req, const msgpack_object *params);
void qh_instance_clone(struct vmh_req *req, const msgpack_object *params);
void qh_networks_list(struct vmh_req *req, const msgpack_object *params);

/* ---- net.c ---- */

/* Open a tap device attached to bridge (root only). fd or PROTO_E_*. */
int qh_tap_open(const char *bridge, char *err, size_t errlen);
bool qh_is_bridge(const char *name);

/* ---- additions: one pidfile read per instance for instances.list ---- */

/* qh_vm_state() for a pid the caller has just read with qh_vm_pid(). */
enum proto_state qh_vm_state_known(const struct vmh_instance *inst, pid_t pid);
/* qh_watch(), returning qh_vm_pid(inst) read on the way. */
pid_t qh_watch_pid(const struct vmh_instance *inst);
/* on: until called with off, files of instances are looked up relative to
 * their parent folder, kept open (for loops over many instances). */
void qh_vm_batch(bool on);

/* ---- idmap.c: id maps of native mounts through idmapped mounts ---- */

#define QH_IDMAPPED "idmapped" /* DIR/idmapped/N: the idmapped view of mount N */
#define QH_IDMAP_MAX 24        /* entries per map: the kernel's map must fit in a page */
#define QH_IDMAP_TIMEOUT 30.0  /* for a task that makes (or tries) idmapped mounts */

/* Whether the mount's maps move any id (needs an idmapped mount). */
bool qh_idmap_active(const struct vmh_mount *m);
/* No id given twice on either side: PROTO_E_INVALID_ARGUMENT with err otherwise. */
int qh_idmap_check(const struct vmh_mount *m, char *err, size_t errlen);
/* Whether this helper may make idmapped mounts (root with CAP_SYS_ADMIN). */
bool qh_idmap_possible(void);
/* Whether any mount of inst has an active map (then qemu shares an idmapped view). */
bool qh_idmap_needed(const struct vmh_instance *inst);

/* The two below wait for a process of their own: call them in a child of
 * the runner (vmh_run_task), never on the loop. */
/* Make (and drop) an idmapped clone of the source: does the host support it? */
int qh_idmap_try(const struct vmh_mount *m, char *err, size_t errlen);
/* DIR/idmapped/i: what qemu shares for mount i when its map is active. */
void qh_idmap_path(const struct vmh_instance *inst, size_t i, char *buf, size_t len);
/* Before qemu starts: drop stale idmapped mounts, make one per active map
 * (all dropped again if one fails). */
int qh_idmap_prepare(const struct vmh_instance *inst, char *err, size_t errlen);
/* Detach the instance's idmapped mounts (only inst->dir and name are used). */
void qh_idmap_release(const struct vmh_instance *inst);

#endif
