/*
 * vmctl-vbox-helper: the virtualbox driver, on VBoxManage.
 *
 * Every VirtualBox action is one VBoxManage command line, an argument
 * vector (never a shell string), run with the SDK's vmh_run so that the
 * loop never waits. What VBoxManage prints is parsed by parse.c; the
 * command lines are built by cmd.c, both free of I/O so that the unit
 * tests can check them; os-posix.c is what differs between host systems.
 */
#ifndef VBOX_HELPER_H
#define VBOX_HELPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmproto/vmh.h>

/* The oldest VBoxManage the driver speaks (showvminfo's machine-readable
 * keys, createmedium --diffparent, the 6.1 modifyvm options). */
#define VBOX_MIN_MAJOR 6
#define VBOX_MIN_MINOR 1

/* Names the driver gives things inside VirtualBox. */
#define VBOX_SSH_RULE "vmctl-ssh"   /* the NAT port forward of NIC 1 */
#define VBOX_CONTROLLER "SATA"      /* the storage controller: disk on port 0, seed on 1 */
#define VBOX_DISK_FILE "disk.vdi"   /* the instance's differencing disk, in its folder */
#define VBOX_SNAP_FILE "vbox-snapshots.json" /* specs at snapshot time, in its folder */

/* ---- parse.c: what VBoxManage prints ---- */

/* One "key=value" line of showvminfo --machinereadable (or of snapshot
 * list --machinereadable): the value unquoted ("..." with \" and \\). */
struct vbox_kv {
	char *key, *value;
};
struct vbox_kvs {
	struct vbox_kv *v;
	size_t n;
};
/* Lines without '=' (7.0 prints "Encryption:     disabled") are skipped.
 * 0 or PROTO_E_NOMEM. */
int vbox_kvs_parse(const char *text, struct vbox_kvs *out);
void vbox_kvs_free(struct vbox_kvs *kvs);
/* The value of key, or NULL. */
const char *vbox_kvs_get(const struct vbox_kvs *kvs, const char *key);

/* A VMState value ("running", "poweroff", "saved", "aborted", ...). */
enum proto_state vbox_state_of(const char *vmstate);
/* The host port of the NAT forward named rule ("Forwarding(N)="rule,tcp,
 * 127.0.0.1,PORT,,22""), or 0 when there is none. */
int vbox_forward_port(const struct vbox_kvs *info, const char *rule);

/* The IPv4 addresses of guestproperty enumerate's /VirtualBox/GuestInfo/
 * Net/N/V4/IP, by N: both the 7.x format ("/VirtualBox/... = 'V' @ TIME")
 * and the older one ("Name: /VirtualBox/..., value: V, timestamp: ..."). At
 * most max, each in out[i]. */
size_t vbox_guest_ipv4(const char *text, char out[][64], size_t max);

/* `list vms`: '"NAME" {UUID}' lines. Whether name is among them. */
bool vbox_list_vms_has(const char *text, const char *name);

/* `list bridgedifs` / `list hostonlyifs`: blocks of "Key:   value" lines
 * separated by blank lines; the Name of each block. */
struct vbox_iface {
	char name[128];
	char status[32];    /* "Up", "Down", or "" */
	char medium[32];    /* "Ethernet", ... or "" */
};
/* At most max into out; the number found. */
size_t vbox_ifaces_parse(const char *text, struct vbox_iface *out, size_t max);

/* A snapshot of `snapshot VM list --machinereadable`: SnapshotName,
 * SnapshotName-1, SnapshotName-1-1 (a child of -1), ... */
struct vbox_snap {
	char name[128];
	char description[256];
	char parent[128]; /* "" for a root */
};
/* At most max; the number found ("This machine does not have any
 * snapshots" is none). */
size_t vbox_snaps_parse(const char *text, struct vbox_snap *out, size_t max);

/* VBoxManage's error output ("VBoxManage: error: TEXT" lines, "Details:
 * code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), ..."): the PROTO_E_* code
 * it stands for and the first error line's TEXT in msg. */
int vbox_error_of(const char *output, char *msg, size_t msglen);

/* `VBoxManage --version` ("7.0.14r161095", maybe after warnings): 0 and
 * major/minor, or PROTO_E_INVALID_ARGUMENT. */
int vbox_version_parse(const char *text, int *major, int *minor);

/* The last percentage of a progress output ("0%...10%...20%" of
 * VBoxManage, "(12.50/100%)" of qemu-img -p), in [0, 1], or -1. */
double vbox_progress_of(const char *text);

/* ---- cmd.c: the command lines ---- */

#define VBOX_ARGV_MAX 96
struct vbox_argv {
	char *v[VBOX_ARGV_MAX + 1]; /* NULL-terminated, each malloc'd */
	size_t n;
	bool bad; /* out of memory or too long: do not run */
};
void vbox_argv_init(struct vbox_argv *a, const char *program);
void vbox_argv_add(struct vbox_argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vbox_argv_free(struct vbox_argv *a);
/* The words from v[1] on, joined with ' ' (for tests and logs). */
void vbox_argv_join(const struct vbox_argv *a, char *buf, size_t len);

/* What cmd.c needs of an extra NIC. */
struct vbox_nic {
	const char *iface;
	const char *mac; /* "52:54:00:..." */
	bool hostonly;   /* a host-only interface, else bridged */
};

/* Each function fills a (initialised with the VBoxManage program). */
void vbox_cmd_createvm(struct vbox_argv *a, const char *name, const char *basefolder);
void vbox_cmd_modifyvm(struct vbox_argv *a, const char *name, unsigned cpus, uint64_t memory,
		       const char *mac, int ssh_port, const struct vbox_nic *nics, size_t n_nics);
void vbox_cmd_storagectl(struct vbox_argv *a, const char *name);
void vbox_cmd_diffdisk(struct vbox_argv *a, const char *disk, const char *parent);
void vbox_cmd_resize(struct vbox_argv *a, const char *disk, uint64_t bytes);
/* port 0: the disk (hdd), port 1: the seed (dvddrive); medium "none" detaches. */
void vbox_cmd_attach(struct vbox_argv *a, const char *name, int port, const char *medium);
void vbox_cmd_showvminfo(struct vbox_argv *a, const char *name);
void vbox_cmd_startvm(struct vbox_argv *a, const char *name);
/* action: "acpipowerbutton", "poweroff", "savestate". */
void vbox_cmd_controlvm(struct vbox_argv *a, const char *name, const char *action);
void vbox_cmd_discardstate(struct vbox_argv *a, const char *name);
void vbox_cmd_unregister(struct vbox_argv *a, const char *name);
void vbox_cmd_guestprops(struct vbox_argv *a, const char *name);
/* op: "take" (with description), "restore", "delete", "list". */
void vbox_cmd_snapshot(struct vbox_argv *a, const char *name, const char *op, const char *snap,
		       const char *description);
void vbox_cmd_clonevm(struct vbox_argv *a, const char *name, const char *clone,
		      const char *basefolder);
/* NIC 1 of a clone: its own MAC and SSH port. */
void vbox_cmd_reforward(struct vbox_argv *a, const char *name, const char *mac, int ssh_port);
void vbox_cmd_set_cpus(struct vbox_argv *a, const char *name, unsigned cpus);
void vbox_cmd_set_memory(struct vbox_argv *a, const char *name, uint64_t memory);
/* what: "bridgedifs", "hostonlyifs", "vms". */
void vbox_cmd_list(struct vbox_argv *a, const char *what);
/* qemu-img convert -p -O vdi SRC DST (program: qemu-img's path). */
void vbox_cmd_convert(struct vbox_argv *a, const char *src, const char *format, const char *dst);

/* ---- os-posix.c: what differs between host systems ---- */

/* The VBoxManage to run: setting (an absolute path) if given, else found
 * in PATH, else in the system's usual install folders. 0 and its path in
 * out, or PROTO_E_NOT_FOUND with where it was looked for in why. */
int vbox_os_find_manage(const char *setting, char *out, size_t outlen, char *why, size_t whylen);
/* qemu-img, the same way (PATH, then the usual folders); "qemu-img" when
 * not found, so that the error names it. */
void vbox_os_find_qemu_img(char *out, size_t outlen);
/* A TCP port on 127.0.0.1 that is free now, or PROTO_E_IO. */
int vbox_os_free_port(void);

/* ---- ops.c: the driver's methods ---- */
int vbox_init(const char *scope_dir, const msgpack_object *settings, char *why, size_t whylen);
void vbox_fini(void);
void vbox_instances_list(struct vmh_req *req, const msgpack_object *params);
void vbox_networks_list(struct vmh_req *req, const msgpack_object *params);
void vbox_instance_create(struct vmh_req *req, const msgpack_object *params);
void vbox_instance_start(struct vmh_req *req, const msgpack_object *params);
void vbox_instance_stop(struct vmh_req *req, const msgpack_object *params);
void vbox_instance_suspend(struct vmh_req *req, const msgpack_object *params);
void vbox_instance_restart(struct vmh_req *req, const msgpack_object *params);
void vbox_instance_delete(struct vmh_req *req, const msgpack_object *params);
void vbox_instance_state(struct vmh_req *req, const msgpack_object *params);
void vbox_instance_info(struct vmh_req *req, const msgpack_object *params);
void vbox_instance_set(struct vmh_req *req, const msgpack_object *params);
void vbox_snapshot_create(struct vmh_req *req, const msgpack_object *params);
void vbox_snapshot_list(struct vmh_req *req, const msgpack_object *params);
void vbox_snapshot_restore(struct vmh_req *req, const msgpack_object *params);
void vbox_snapshot_delete(struct vmh_req *req, const msgpack_object *params);
void vbox_instance_clone(struct vmh_req *req, const msgpack_object *params);

#endif
