/*
 * The handlers. Each operation is one PowerShell call (two for a stop
 * that escalates, a restart, a clone), started with hv_os_spawn() so that
 * the loop never waits, its answer parsed by hv_ps_parse().
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hv.h"

#define PS_TIMEOUT 120.0
#define PS_LONG_TIMEOUT 3600.0

static char ps_path[HV_PATH];

const char *hv_powershell(void)
{
	return ps_path;
}

int hv_init(const char *scope_dir, const msgpack_object *settings, char *why, size_t whylen)
{
	const char *configured = vmh_setting("local.hyperv.powershell", "");
	char out[8192], qemu_img[HV_PATH], *script, *argv[6];
	int status;

	(void)scope_dir;
	(void)settings;
	if (!*configured && !hv_os_is_windows()) {
		snprintf(why, whylen, "Hyper-V needs Windows (10/11 Pro, Enterprise or Server)");
		return PROTO_E_UNAVAILABLE;
	}
	if (*configured) {
		snprintf(ps_path, sizeof(ps_path), "%s", configured);
	} else if (!hv_os_which("powershell.exe", ps_path, sizeof(ps_path)) &&
		   !hv_os_which("powershell", ps_path, sizeof(ps_path))) {
		snprintf(why, whylen, "Windows PowerShell (powershell.exe) is not in PATH");
		return PROTO_E_UNAVAILABLE;
	}
	if (!hv_os_which("qemu-img", qemu_img, sizeof(qemu_img))) {
		snprintf(why, whylen, "qemu-img is not in PATH (it converts images to VHDX)");
		return PROTO_E_UNAVAILABLE;
	}
	script = hv_script_probe();
	if (!script) {
		snprintf(why, whylen, "out of memory");
		return PROTO_E_NOMEM;
	}
	hv_ps_argv(ps_path, script, argv);
	status = vmh_run_wait(argv, 30, out, sizeof(out));
	free(script);
	if (hv_probe_verdict(out, status, why, whylen))
		return PROTO_E_UNAVAILABLE;
	vmh_log(VMH_INFO, "Hyper-V answers through %s", ps_path);
	return 0;
}

/* ---- one operation ---- */

struct call;
typedef void (*step_fn)(struct call *c, int rc, json_t *rows, const struct hv_pserr *e,
			bool timed_out);

struct call {
	struct vmh_req *req;
	struct vmh_instance inst, clone;
	bool have_inst, have_clone, claimed;
	const char *what; /* "start", for messages */
	step_fn step;
	/* stop and restart */
	double timeout;
	bool escalate, then_start;
	/* snapshots, mounts, clone */
	char snap[64];
	char share[128];
	char path[HV_PATH];
	char *comment;
};

static void call_free(struct call *c)
{
	if (c->claimed)
		vmh_busy_release(c->inst.name);
	if (c->have_inst)
		vmh_instance_free(&c->inst);
	if (c->have_clone)
		vmh_instance_free(&c->clone);
	free(c->comment);
	free(c);
}

static void call_fail(struct call *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void call_fail(struct call *c, int rc, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vmh_fail(c->req, rc, "%s", msg);
	call_free(c);
}

/* Parse params' instance, and claim it with state unless claim is UNKNOWN. */
static struct call *call_begin(struct vmh_req *req, const msgpack_object *params,
			       const char *what, bool claim, enum proto_state state)
{
	struct call *c = calloc(1, sizeof(*c));
	char err[256];
	int rc;

	if (!c) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return NULL;
	}
	c->req = req;
	c->what = what;
	if (vmh_instance_from_req(req, params, "instance", &c->inst) < 0) {
		free(c);
		return NULL;
	}
	c->have_inst = true;
	if (claim) {
		rc = vmh_busy_claim(c->inst.name, state, err, sizeof(err));
		if (rc < 0) {
			call_fail(c, rc, "%s", err);
			return NULL;
		}
		c->claimed = true;
		if (state != PROTO_STATE_STOPPED)
			vmh_state_notify(c->inst.name, state);
	}
	return c;
}

static void on_ps(void *ud, const struct vmh_run_result *r)
{
	struct call *c = ud;
	struct hv_pserr e;
	json_t *rows = NULL;
	int rc = hv_ps_parse(r->output, r->status, &rows, &e);

	if (r->timed_out)
		snprintf(e.message, sizeof(e.message), "PowerShell did not answer in time");
	c->step(c, r->timed_out ? PROTO_E_TIMEOUT : rc, rows, &e, r->timed_out);
	json_decref(rows);
}

/* Run script (freed here) and go on with step. */
static void call_ps(struct call *c, char *script, double timeout, step_fn step)
{
	char *argv[6];
	struct vmh_run_opts opts = {.timeout_s = timeout};
	int rc;

	if (!script) {
		call_fail(c, PROTO_E_NOMEM, "out of memory");
		return;
	}
	c->step = step;
	hv_ps_argv(ps_path, script, argv);
	rc = hv_os_spawn(argv, &opts, on_ps, c);
	free(script);
	if (rc < 0)
		call_fail(c, rc, "cannot run %s", ps_path);
}

/* The failure of a call, named for what was asked. */
static void step_failed(struct call *c, int rc, const struct hv_pserr *e)
{
	call_fail(c, rc, "Hyper-V could not %s %s: %s", c->what, c->inst.name, e->message);
}

static void answer_state(struct call *c, json_t *rows)
{
	enum proto_state state = hv_vm_state(json_object_get(json_array_get(rows, 0), "State"));
	msgpack_packer *pk;

	if (c->claimed) {
		vmh_busy_release(c->inst.name);
		c->claimed = false;
	}
	vmh_state_notify(c->inst.name, state);
	pk = vmh_result(c->req);
	msgpack_pack_map(pk, 1);
	proto_pack_kv_state(pk, "state", state);
	vmh_done(c->req);
	call_free(c);
}

static void answer_empty(struct call *c)
{
	msgpack_pack_map(vmh_result(c->req), 0);
	vmh_done(c->req);
	call_free(c);
}

static void step_state(struct call *c, int rc, json_t *rows, const struct hv_pserr *e, bool to)
{
	(void)to;
	if (rc < 0) {
		if (c->claimed) {
			vmh_busy_release(c->inst.name);
			c->claimed = false;
		}
		step_failed(c, rc, e);
		return;
	}
	answer_state(c, rows);
}

/* ---- inventory ---- */

struct list_call {
	struct vmh_req *req;
	struct vmh_instance *insts;
	size_t n;
};

static void list_free(struct list_call *l)
{
	for (size_t i = 0; i < l->n; i++)
		vmh_instance_free(&l->insts[i]);
	free(l->insts);
	free(l);
}

static json_t *row_named(json_t *rows, const char *name)
{
	size_t i;
	json_t *row;

	json_array_foreach(rows, i, row) {
		const char *n = json_string_value(json_object_get(row, "Name"));

		if (n && !strcmp(n, name))
			return row;
	}
	return NULL;
}

static void list_done(void *ud, const struct vmh_run_result *r)
{
	struct list_call *l = ud;
	struct hv_pserr e;
	json_t *rows = NULL;
	int rc = hv_ps_parse(r->output, r->status, &rows, &e);
	char reason[256], ip[64];
	msgpack_packer *pk;

	if (rc < 0) {
		vmh_fail(l->req, rc, "Hyper-V could not list its VMs: %s", e.message);
		list_free(l);
		return;
	}
	pk = vmh_result(l->req);
	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "instances");
	msgpack_pack_array(pk, l->n);
	for (size_t i = 0; i < l->n; i++) {
		const char *name = l->insts[i].name;
		json_t *row = row_named(rows, name);
		enum proto_state state = PROTO_STATE_UNKNOWN;

		if (row)
			state = hv_vm_state(json_object_get(row, "State"));
		if (!vmh_busy(name, &state) && !row) {
			snprintf(reason, sizeof(reason), "Hyper-V has no VM %s (removed outside vmctl?)",
				 name);
			vmh_state_seen_why(name, state, reason);
		} else {
			reason[0] = '\0';
			vmh_state_seen(name, state);
		}
		ip[0] = '\0';
		if (row)
			hv_first_ipv4(row, ip, sizeof(ip));
		msgpack_pack_map(pk, 2 + (ip[0] != 0) + (reason[0] != 0));
		proto_pack_kv_str(pk, "name", name);
		proto_pack_kv_state(pk, "state", state);
		if (ip[0]) {
			proto_pack_str(pk, "ipv4");
			msgpack_pack_array(pk, 1);
			proto_pack_str(pk, ip);
		}
		if (reason[0])
			proto_pack_kv_str(pk, "reason", reason);
	}
	vmh_done(l->req);
	json_decref(rows);
	list_free(l);
}

void hv_instances_list(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *arr = proto_map_get(params, "instances");
	struct list_call *l = calloc(1, sizeof(*l));
	char err[512], *script, *argv[6];
	struct vmh_run_opts opts = {.timeout_s = PS_TIMEOUT};
	int rc;

	if (!l) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return;
	}
	l->req = req;
	if (arr && arr->type == MSGPACK_OBJECT_ARRAY && arr->via.array.size) {
		l->insts = calloc(arr->via.array.size, sizeof(*l->insts));
		if (!l->insts) {
			vmh_fail(req, PROTO_E_NOMEM, "out of memory");
			list_free(l);
			return;
		}
		for (uint32_t i = 0; i < arr->via.array.size; i++) {
			rc = vmh_instance_parse(&arr->via.array.ptr[i], &l->insts[l->n], err, sizeof(err));
			if (rc < 0) {
				vmh_fail(req, rc, "instances: %s", err);
				list_free(l);
				return;
			}
			l->n++;
		}
	}
	script = hv_script_vms();
	if (!script) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		list_free(l);
		return;
	}
	hv_ps_argv(ps_path, script, argv);
	rc = hv_os_spawn(argv, &opts, list_done, l);
	free(script);
	if (rc < 0) {
		vmh_fail(req, rc, "cannot run %s", ps_path);
		list_free(l);
	}
}

static void networks_done(void *ud, const struct vmh_run_result *r)
{
	struct vmh_req *req = ud;
	struct hv_pserr e;
	json_t *rows = NULL, *row;
	int rc = hv_ps_parse(r->output, r->status, &rows, &e);
	static const char *const types[] = {"private", "internal", "external"};
	msgpack_packer *pk;
	size_t i;

	if (rc < 0) {
		vmh_fail(req, rc, "Hyper-V could not list its switches: %s", e.message);
		return;
	}
	pk = vmh_result(req);
	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "networks");
	msgpack_pack_array(pk, json_array_size(rows));
	json_array_foreach(rows, i, row) {
		json_int_t t = json_integer_value(json_object_get(row, "SwitchType"));
		const char *name = json_string_value(json_object_get(row, "Name"));
		const char *nic =
			json_string_value(json_object_get(row, "NetAdapterInterfaceDescription"));
		char desc[256];

		if (nic && *nic)
			snprintf(desc, sizeof(desc), "Hyper-V switch on %s", nic);
		else
			snprintf(desc, sizeof(desc), "Hyper-V %s switch",
				 t >= 0 && t <= 2 ? types[t] : "unknown");
		msgpack_pack_map(pk, 3);
		proto_pack_kv_str(pk, "name", name ? name : "");
		proto_pack_kv_str(pk, "type", t >= 0 && t <= 2 ? types[t] : "unknown");
		proto_pack_kv_str(pk, "description", desc);
	}
	vmh_done(req);
	json_decref(rows);
}

void hv_networks_list(struct vmh_req *req, const msgpack_object *params)
{
	char *script = hv_script_switches(), *argv[6];
	struct vmh_run_opts opts = {.timeout_s = PS_TIMEOUT};
	int rc;

	(void)params;
	if (!script) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return;
	}
	hv_ps_argv(ps_path, script, argv);
	rc = hv_os_spawn(argv, &opts, networks_done, req);
	free(script);
	if (rc < 0)
		vmh_fail(req, rc, "cannot run %s", ps_path);
}

/* ---- lifecycle ---- */

static void create_on_image(void *ud, int rc, const char *text)
{
	struct call *c = ud;
	char disk[HV_PATH];
	struct hv_create cr = {.inst = &c->inst, .base_vhdx = text, .disk = disk,
			       .sw = vmh_setting("local.hyperv.switch", HV_SWITCH_DEFAULT)};

	if (rc < 0) {
		call_fail(c, rc, "%s", text);
		return;
	}
	if (hv_os_path_join(c->inst.dir, HV_FILE_DISK, disk, sizeof(disk)) < 0) {
		call_fail(c, PROTO_E_INVALID_ARGUMENT, "the instance folder's path is too long");
		return;
	}
	vmh_progress(c->req, -1, "Creating the Hyper-V VM");
	call_ps(c, hv_script_create(&cr), PS_TIMEOUT, step_state);
}

void hv_instance_create(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = call_begin(req, params, "create", true, PROTO_STATE_STOPPED);
	int rc;

	if (!c)
		return;
	if (!c->inst.image.disk) {
		call_fail(c, PROTO_E_INVALID_ARGUMENT, "the hyperv driver needs a disk image");
		return;
	}
	if (c->inst.image.kernel) {
		call_fail(c, PROTO_E_INVALID_ARGUMENT,
			  "the hyperv driver boots the image's own boot loader (UEFI), not a kernel");
		return;
	}
	if (mkdir(c->inst.dir, 0755) < 0 && errno != EEXIST) {
		call_fail(c, PROTO_E_IO, "cannot make %s: %s", c->inst.dir, strerror(errno));
		return;
	}
	rc = hv_image_ensure(req, c->inst.image.disk, c->inst.image.format, create_on_image, c);
	if (rc < 0)
		call_fail(c, rc, "cannot convert the image");
}

void hv_instance_start(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = call_begin(req, params, "start", true, PROTO_STATE_STARTING);

	if (c)
		call_ps(c, hv_script_start(c->inst.name), PS_TIMEOUT, step_state);
}

static void step_stopped(struct call *c, int rc, json_t *rows, const struct hv_pserr *e,
			 bool timed_out);

static void step_turned_off(struct call *c, int rc, json_t *rows, const struct hv_pserr *e,
			    bool timed_out)
{
	step_stopped(c, rc, rows, e, timed_out);
}

static void step_stopped(struct call *c, int rc, json_t *rows, const struct hv_pserr *e,
			 bool timed_out)
{
	if (timed_out && c->step != step_turned_off) {
		if (!c->escalate) {
			call_fail(c, PROTO_E_DRIVER, "%s is still up after %.0f s; it is left running",
				  c->inst.name, c->timeout);
			return;
		}
		vmh_log(VMH_INFO, "%s: not down after %.0f s, turning it off", c->inst.name,
			c->timeout);
		call_ps(c, hv_script_stop(c->inst.name, true), PS_TIMEOUT, step_turned_off);
		return;
	}
	if (rc < 0) {
		step_failed(c, rc, e);
		return;
	}
	if (c->then_start) {
		c->then_start = false;
		c->what = "start";
		call_ps(c, hv_script_start(c->inst.name), PS_TIMEOUT, step_state);
		return;
	}
	answer_state(c, rows);
}

static void stop_begin(struct call *c, const msgpack_object *params, bool force)
{
	int64_t t = 0;

	c->escalate = true;
	proto_get_bool(params, "escalate", &c->escalate);
	if (proto_get_int(params, "timeout", &t) < 0 || t <= 0)
		t = 300;
	c->timeout = (double)t;
	if (force)
		call_ps(c, hv_script_stop(c->inst.name, true), PS_TIMEOUT, step_turned_off);
	else
		call_ps(c, hv_script_stop(c->inst.name, false), c->timeout, step_stopped);
}

void hv_instance_stop(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = call_begin(req, params, "stop", true, PROTO_STATE_STOPPING);
	bool force = false;

	if (!c)
		return;
	proto_get_bool(params, "force", &force);
	stop_begin(c, params, force);
}

void hv_instance_restart(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = call_begin(req, params, "restart", true, PROTO_STATE_RESTARTING);

	if (!c)
		return;
	c->then_start = true;
	stop_begin(c, params, false);
}

void hv_instance_suspend(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = call_begin(req, params, "suspend", true, PROTO_STATE_SUSPENDING);

	if (c)
		call_ps(c, hv_script_save(c->inst.name), PS_TIMEOUT, step_state);
}

static void step_deleted(struct call *c, int rc, json_t *rows, const struct hv_pserr *e, bool to)
{
	(void)rows;
	(void)to;
	if (rc < 0) {
		step_failed(c, rc, e);
		return;
	}
	vmh_state_forget(c->inst.name);
	answer_empty(c);
}

void hv_instance_delete(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = call_begin(req, params, "delete", true, PROTO_STATE_STOPPING);
	char (*names)[128];
	const char **shares;

	if (!c)
		return;
	names = calloc(c->inst.n_mounts + 1, sizeof(*names));
	shares = calloc(c->inst.n_mounts + 1, sizeof(*shares));
	if (!names || !shares) {
		free(names);
		free(shares);
		call_fail(c, PROTO_E_NOMEM, "out of memory");
		return;
	}
	for (size_t i = 0; i < c->inst.n_mounts; i++) {
		hv_share_name(c->inst.name, c->inst.mounts[i].source, names[i], sizeof(names[i]));
		shares[i] = names[i];
	}
	call_ps(c, hv_script_delete(c->inst.name, shares, c->inst.n_mounts), PS_TIMEOUT,
		step_deleted);
	free(names);
	free(shares);
}

void hv_instance_state(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = call_begin(req, params, "read the state of", false, 0);
	enum proto_state state;
	msgpack_packer *pk;

	if (!c)
		return;
	if (vmh_busy(c->inst.name, &state)) {
		pk = vmh_result(req);
		msgpack_pack_map(pk, 1);
		proto_pack_kv_state(pk, "state", state);
		vmh_done(req);
		call_free(c);
		return;
	}
	call_ps(c, hv_script_vm(c->inst.name), PS_TIMEOUT, step_state);
}

static void step_info(struct call *c, int rc, json_t *rows, const struct hv_pserr *e, bool to)
{
	json_t *row = json_array_get(rows, 0);
	enum proto_state state = PROTO_STATE_UNKNOWN;
	char ip[64] = "", reason[256] = "";
	msgpack_packer *pk;

	(void)to;
	if (rc == PROTO_E_NOT_FOUND) {
		snprintf(reason, sizeof(reason), "Hyper-V has no VM %s (removed outside vmctl?)",
			 c->inst.name);
	} else if (rc < 0) {
		step_failed(c, rc, e);
		return;
	} else {
		state = hv_vm_state(json_object_get(row, "State"));
		hv_first_ipv4(row, ip, sizeof(ip));
	}
	vmh_busy(c->inst.name, &state);
	vmh_state_notify_why(c->inst.name, state, reason[0] ? reason : NULL);
	pk = vmh_result(c->req);
	msgpack_pack_map(pk, 5 + (reason[0] != 0));
	proto_pack_kv_state(pk, "state", state);
	proto_pack_kv_str(pk, "ssh_host", ip);
	/* Hyper-V's switches put the guest on a network of the host's: sshd's own port. */
	proto_pack_kv_int(pk, "ssh_port", ip[0] ? 22 : 0);
	proto_pack_str(pk, "ipv4");
	msgpack_pack_array(pk, ip[0] ? 1 : 0);
	if (ip[0])
		proto_pack_str(pk, ip);
	proto_pack_kv_int(pk, "pid", 0);
	if (reason[0])
		proto_pack_kv_str(pk, "reason", reason);
	vmh_done(c->req);
	call_free(c);
}

void hv_instance_info(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = call_begin(req, params, "describe", false, 0);

	if (c)
		call_ps(c, hv_script_vm(c->inst.name), PS_TIMEOUT, step_info);
}

/* ---- changes ---- */

static void step_done_empty(struct call *c, int rc, json_t *rows, const struct hv_pserr *e,
			    bool to)
{
	(void)rows;
	(void)to;
	if (rc < 0) {
		step_failed(c, rc, e);
		return;
	}
	answer_empty(c);
}

void hv_instance_set(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *v = proto_map_get(params, "value");
	char key[32], disk[HV_PATH];
	struct call *c;

	if (proto_get_str(params, "key", key, sizeof(key)) < 0 ||
	    (strcmp(key, "cpus") && strcmp(key, "memory") && strcmp(key, "disk"))) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'key' must be cpus, memory or disk");
		return;
	}
	if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 == 0) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "%s: 'value' must be a positive integer", key);
		return;
	}
	c = call_begin(req, params, "change", true, PROTO_STATE_STOPPED);
	if (!c)
		return;
	if (hv_os_path_join(c->inst.dir, HV_FILE_DISK, disk, sizeof(disk)) < 0) {
		call_fail(c, PROTO_E_INVALID_ARGUMENT, "the instance folder's path is too long");
		return;
	}
	call_ps(c, hv_script_set(c->inst.name, key, v->via.u64, disk), PS_TIMEOUT, step_done_empty);
}

static struct call *mount_begin(struct vmh_req *req, const msgpack_object *params,
				const char *what, struct vmh_mount *m)
{
	struct call *c;
	char err[512];
	int rc = vmh_mount_parse(proto_map_get(params, "mount"), m, err, sizeof(err));

	if (rc < 0) {
		vmh_fail(req, rc, "mount: %s", err);
		return NULL;
	}
	if (m->n_uid_map || m->n_gid_map) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT,
			 "the hyperv driver shares folders over SMB, which maps no ids (uid_map and "
			 "gid_map must be empty)");
		vmh_mount_free(m);
		return NULL;
	}
	c = call_begin(req, params, what, true, PROTO_STATE_STOPPED);
	if (!c) {
		vmh_mount_free(m);
		return NULL;
	}
	hv_share_name(c->inst.name, m->source, c->share, sizeof(c->share));
	return c;
}

void hv_instance_mount(struct vmh_req *req, const msgpack_object *params)
{
	struct vmh_mount m = {0};
	struct call *c = mount_begin(req, params, "share a folder of", &m);

	if (!c)
		return;
	call_ps(c, hv_script_share_add(c->share, m.source), PS_TIMEOUT, step_done_empty);
	vmh_mount_free(&m);
}

void hv_instance_umount(struct vmh_req *req, const msgpack_object *params)
{
	struct vmh_mount m = {0};
	struct call *c = mount_begin(req, params, "stop sharing a folder of", &m);

	if (!c)
		return;
	call_ps(c, hv_script_share_remove(c->share), PS_TIMEOUT, step_done_empty);
	vmh_mount_free(&m);
}

void hv_instance_network_add(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *net = proto_map_get(params, "network");
	struct vmh_network n = {0};
	char name[128], mac[32] = "";
	struct call *c;

	if (proto_get_str(net, "name", name, sizeof(name)) < 0 || !name[0]) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "network: a 'name' is needed");
		return;
	}
	proto_get_str(net, "mac", mac, sizeof(mac));
	c = call_begin(req, params, "add a network to", true, PROTO_STATE_STOPPED);
	if (!c)
		return;
	n.name = name;
	n.mac = mac[0] ? mac : NULL;
	call_ps(c, hv_script_network_add(c->inst.name, c->inst.n_networks + 1, &n), PS_TIMEOUT,
		step_done_empty);
}

/* ---- snapshots ---- */

static struct call *snap_begin(struct vmh_req *req, const msgpack_object *params,
			       const char *what)
{
	const msgpack_object *snap = proto_map_get(params, "snapshot");
	struct call *c = call_begin(req, params, what, true, PROTO_STATE_STOPPED);
	int rc;

	if (!c)
		return NULL;
	rc = proto_get_str(snap, "name", c->snap, sizeof(c->snap));
	if (rc < 0 || !c->snap[0] || strpbrk(c->snap, " \t\r\n/\\,=*?[]`'\"$")) {
		call_fail(c, PROTO_E_INVALID_ARGUMENT,
			  "a snapshot needs a 'name' of 1-63 characters without spaces, quotes, "
			  "wildcards, '/', '\\', ',', '=' or '$'");
		return NULL;
	}
	c->comment = proto_dup_str(snap, "comment");
	return c;
}

void hv_snapshot_create(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = snap_begin(req, params, "snapshot");

	if (c)
		call_ps(c, hv_script_snapshot_create(c->inst.name, c->snap, c->comment), PS_TIMEOUT,
			step_done_empty);
}

static void step_snapshots(struct call *c, int rc, json_t *rows, const struct hv_pserr *e,
			   bool to)
{
	msgpack_packer *pk;
	json_t *row;
	size_t i;

	(void)to;
	if (rc < 0) {
		step_failed(c, rc, e);
		return;
	}
	pk = vmh_result(c->req);
	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "snapshots");
	msgpack_pack_array(pk, json_array_size(rows));
	json_array_foreach(rows, i, row) {
		const char *s;

		msgpack_pack_map(pk, 6);
		s = json_string_value(json_object_get(row, "Name"));
		proto_pack_kv_str(pk, "name", s ? s : "");
		s = json_string_value(json_object_get(row, "Notes"));
		proto_pack_kv_str(pk, "comment", s ? s : "");
		s = json_string_value(json_object_get(row, "Created"));
		proto_pack_kv_str(pk, "created", s ? s : "");
		s = json_string_value(json_object_get(row, "ParentSnapshotName"));
		proto_pack_kv_str(pk, "parent", s ? s : "");
		proto_pack_kv_int(pk, "cpus", json_integer_value(json_object_get(row, "ProcessorCount")));
		proto_pack_kv_int(pk, "memory", json_integer_value(json_object_get(row, "MemoryStartup")));
	}
	vmh_done(c->req);
	call_free(c);
}

void hv_snapshot_list(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = call_begin(req, params, "list the snapshots of", false, 0);

	if (c)
		call_ps(c, hv_script_snapshots(c->inst.name), PS_TIMEOUT, step_snapshots);
}

static void step_restored(struct call *c, int rc, json_t *rows, const struct hv_pserr *e,
			  bool to)
{
	json_t *row = json_array_get(rows, 0);
	json_int_t cpus, memory;
	msgpack_packer *pk;

	(void)to;
	if (rc < 0) {
		step_failed(c, rc, e);
		return;
	}
	cpus = json_integer_value(json_object_get(row, "ProcessorCount"));
	memory = json_integer_value(json_object_get(row, "MemoryStartup"));
	pk = vmh_result(c->req);
	msgpack_pack_map(pk, (cpus > 0) + (memory > 0));
	if (cpus > 0)
		proto_pack_kv_int(pk, "cpus", cpus);
	if (memory > 0)
		proto_pack_kv_int(pk, "memory", memory);
	vmh_done(c->req);
	call_free(c);
}

void hv_snapshot_restore(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = snap_begin(req, params, "restore a snapshot of");

	if (c)
		call_ps(c, hv_script_snapshot_restore(c->inst.name, c->snap), PS_TIMEOUT,
			step_restored);
}

void hv_snapshot_delete(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = snap_begin(req, params, "delete a snapshot of");

	if (c)
		call_ps(c, hv_script_snapshot_delete(c->inst.name, c->snap), PS_TIMEOUT,
			step_done_empty);
}

/* ---- clone: Export-VM, then Import-VM -Copy -GenerateNewId ---- */

static void step_imported(struct call *c, int rc, json_t *rows, const struct hv_pserr *e,
			  bool to)
{
	(void)rows;
	(void)to;
	if (rc < 0) {
		call_fail(c, rc, "Hyper-V could not import the export of %s as %s: %s", c->inst.name,
			  c->clone.name, e->message);
		return;
	}
	vmh_progress(c->req, 1.0, "Cloned");
	vmh_state_seen(c->clone.name, PROTO_STATE_STOPPED);
	answer_empty(c);
}

static void step_exported(struct call *c, int rc, json_t *rows, const struct hv_pserr *e,
			  bool to)
{
	(void)rows;
	(void)to;
	if (rc < 0) {
		step_failed(c, rc, e);
		return;
	}
	vmh_progress(c->req, 0.5, "Importing the copy");
	call_ps(c, hv_script_import(c->inst.name, c->path, c->clone.name, c->clone.dir),
		PS_LONG_TIMEOUT, step_imported);
}

void hv_instance_clone(struct vmh_req *req, const msgpack_object *params)
{
	struct call *c = call_begin(req, params, "export", true, PROTO_STATE_STOPPED);

	if (!c)
		return;
	if (vmh_instance_from_req(req, params, "clone", &c->clone) < 0) {
		call_free(c); /* req is answered */
		return;
	}
	c->have_clone = true;
	if (mkdir(c->clone.dir, 0755) < 0 && errno != EEXIST) {
		call_fail(c, PROTO_E_IO, "cannot make %s: %s", c->clone.dir, strerror(errno));
		return;
	}
	if (hv_os_path_join(c->clone.dir, "export", c->path, sizeof(c->path)) < 0) {
		call_fail(c, PROTO_E_INVALID_ARGUMENT, "the clone's folder path is too long");
		return;
	}
	vmh_progress(c->req, 0, "Exporting the source");
	call_ps(c, hv_script_export(c->inst.name, c->path), PS_LONG_TIMEOUT, step_exported);
}
