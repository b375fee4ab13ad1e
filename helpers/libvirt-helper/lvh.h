/*
 * vmctl-libvirt-helper: the libvirt driver. It shares the qemu scope: the
 * instance folder, its qcow2 overlay DIR/disk.qcow2 and the cloud-init seed
 * are the same files the qemu driver uses; this helper only defines a libvirt
 * domain "vmctl-NAME" over them.
 *
 * Threads: the SDK's libev loop runs on the main thread, which also runs
 * libvirt's event callbacks (event.c). Blocking libvirt calls (start,
 * managed save, shutdown waits, connecting) run on short-lived worker
 * threads (job.c) and hand their result back to the main thread, which alone
 * talks to the broker, keeps the SDK's per-instance claims and states, and
 * runs qemu-img (instance.c, through the SDK's runner).
 */
#ifndef LVH_H
#define LVH_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libvirt/libvirt.h>
#include <vmproto/vmh.h>

#define LVH_DOMAIN_PREFIX "vmctl-"
#define LVH_DEFAULT_NETWORK "vmctl"
#define LVH_MAX_ADDRS 8

/* The instance map of a request is the SDK's struct vmh_instance. */

/* ops.c: the requests (the driver table is main.c's) */
int lvh_init(const char *scope_dir, const msgpack_object *settings, char *why, size_t whylen);
void lvh_instances_list(struct vmh_req *req, const msgpack_object *params);
void lvh_instance_create(struct vmh_req *req, const msgpack_object *params);
void lvh_instance_start(struct vmh_req *req, const msgpack_object *params);
void lvh_instance_stop(struct vmh_req *req, const msgpack_object *params);
void lvh_instance_suspend(struct vmh_req *req, const msgpack_object *params);
void lvh_instance_restart(struct vmh_req *req, const msgpack_object *params);
void lvh_instance_delete(struct vmh_req *req, const msgpack_object *params);
void lvh_instance_state(struct vmh_req *req, const msgpack_object *params);
void lvh_instance_info(struct vmh_req *req, const msgpack_object *params);
void lvh_instance_set(struct vmh_req *req, const msgpack_object *params);

/* instance.c */
/* DIR/disk.qcow2 (PROTO_FILE_DISK) */
int inst_overlay_path(const struct vmh_instance *inst, char *buf, size_t len);
/* The answer of the three below, from the main loop, exactly once: rc 0, or
 * a PROTO_E_* code with a sentence for the user in err. */
typedef void (*inst_done_fn)(void *ud, int rc, const char *err);
/* Create DIR/disk.qcow2 over the base image unless it exists. Main thread;
 * inst must live until done. */
void inst_overlay_ensure(const struct vmh_instance *inst, inst_done_fn done, void *ud);
/* Grow DIR/disk.qcow2 to size bytes. Main thread. */
void inst_overlay_resize(const struct vmh_instance *inst, uint64_t size, inst_done_fn done,
			 void *ud);
/* Delete the qemu driver's suspend snapshot from the disk. Main thread. */
void inst_qemu_suspend_discard(const struct vmh_instance *inst, inst_done_fn done, void *ud);

/* event.c */
/* Make libvirt run its event callbacks on loop (before any connection). */
int lvev_register(struct ev_loop *loop);

/* job.c */
/* Run fn(arg) on the main thread soon; callable from any thread. */
int job_post(void (*fn)(void *arg), void *arg);
/* Run work(arg) on a new thread, then done(arg) on the main thread. */
int job_spawn(void (*work)(void *arg), void (*done)(void *arg), void *arg);
int job_init(struct ev_loop *loop);

/* conn.c */
struct conn_settings {
	char uri[512];
	char network[64]; /* libvirt network for the default NIC */
};
int conn_init(const struct conn_settings *s);
void conn_fini(void);
/* A reference to the live connection (virConnectClose it when done), or
 * NULL with err saying why libvirt cannot be reached. Any thread. */
virConnectPtr conn_get(char *err, size_t errlen);
/* The live connection, or NULL; waits up to wait_s only for an attempt
 * already under way (the first one takes seconds), never for a retry. */
virConnectPtr conn_peek(double wait_s);
const struct conn_settings *conn_settings(void);
/* Whether domains get type 'kvm' on this connection (probed or forced). */
bool conn_use_kvm(void);
/* True when the URI names this machine's system daemon (qemu:///system,
 * qemu+unix:///system?socket=...). */
bool conn_is_local_system(void);
/* True when the URI names a daemon on this machine (qemu:///...,
 * qemu+unix:///...). */
bool conn_is_local(void);
/* Wait up to timeout_s for the next lifecycle event (or a connection
 * change); returns at once if one came after *gen. Worker threads only. */
void conn_wait_event(unsigned long *gen, double timeout_s);
unsigned long conn_event_gen(void);
/* From a worker: vmh_state_notify() on the main thread. */
void conn_post_state(const char *name, enum proto_state state);

/* domain.c */
/* The instance state of a libvirt state/reason. */
enum proto_state dom_state(int state, int reason, bool managed_save);
/* State of the instance's domain; "stopped" if it has no domain. dir (may
 * be NULL) is the instance folder, where the qemu driver marks a suspend. */
int dom_query_state(virConnectPtr c, const char *name, const char *dir, enum proto_state *state,
		    char *err, size_t errlen);
/* Whether the qemu driver left the instance suspended (DIR/suspended). */
bool dom_qemu_suspended(const char *dir);
/* Whether the disk was written after libvirt's managed save was taken (it
 * ran under the qemu driver since): restoring that save would corrupt it. */
bool dom_save_is_stale(const struct vmh_instance *inst);
/* What the domain XML depends on besides the instance. */
struct dom_xml_opts {
	bool kvm;            /* domain type kvm with the host's CPU; else qemu (TCG), CPU "maximum" */
	const char *uuid;    /* keep an existing definition's identity; NULL: libvirt picks one */
	const char *network; /* the libvirt network of the default NIC */
	bool static_owner;   /* run QEMU as owner:group, unrelabelled (the local system daemon) */
	unsigned owner, group;
};
/* The domain's XML for inst (malloc'd) or NULL; every string in it escaped. */
char *dom_xml(const struct vmh_instance *inst, const struct dom_xml_opts *o);
/* Define (or redefine) the domain; returns it (virDomainFree it). */
virDomainPtr dom_define(virConnectPtr c, const struct vmh_instance *inst, char *err, size_t errlen);
/* Make sure the network for the NIC exists and runs. */
int dom_network_ensure(virConnectPtr c, char *err, size_t errlen);
/* Undefine the inactive vmctl domains whose instance folder no longer
 * exists (local URIs only); returns how many. */
int dom_collect_orphans(virConnectPtr c);
/* Undefine every inactive vmctl domain that holds no saved state: when the
 * helper leaves, libvirt is left as it was but for suspended instances
 * (and the network vmctl). Their definition is made again at start. */
int dom_retire_idle(virConnectPtr c);
/* The libvirt domain name of an instance. */
void dom_name(const char *instance, char *buf, size_t len);
/* PROTO_E_* for the thread's last libvirt error; message into err. */
int dom_error(const char *what, char *err, size_t errlen);

#endif
