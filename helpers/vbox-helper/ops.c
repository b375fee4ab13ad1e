/*
 * The virtualbox driver's methods. Each request is a job: a chain of
 * VBoxManage commands run one after the other with vmh_run, each step
 * reading the previous command's result. The VM of instance NAME is the
 * VirtualBox VM named NAME, its folder DIR/NAME, its disk DIR/disk.vdi, a
 * differencing image over the image's VDI in SCOPE_DIR/vdi/SHA256.vdi,
 * which is converted from the qcow2 once per image.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "vbox.h"

#define VBOX_PATH 4200
#define CMD_TIMEOUT 120.0     /* s: an ordinary VBoxManage command */
#define LONG_TIMEOUT 7200.0   /* s: a conversion, a clone */
#define STOP_TIMEOUT 60       /* s: a graceful stop, when the request gives none */
#define POLL_EVERY 1.0        /* s: between looks at a VM that is stopping */
#define MAX_LIST 1024

static char manage[VBOX_PATH];   /* VBoxManage */
static char qemu_img[VBOX_PATH]; /* qemu-img */
static char scope_dir[VBOX_PATH];

struct job;
typedef void (*step_fn)(struct job *j, const struct vmh_run_result *r);

struct list_entry {
	char name[64];
	enum proto_state state;
	char reason[160];
};

struct job {
	struct vmh_req *req;
	char progress_text[128]; /* what a long operation's progress says */
	struct vmh_instance inst, clone;
	bool have_inst, have_clone, claimed;
	bool force, escalate, restart;
	int64_t timeout;
	ev_tstamp deadline;
	ev_timer timer;
	bool timer_on;
	step_fn next;           /* the step after the running command */
	char log_path[VBOX_PATH]; /* a long command's output (progress), or "" */
	char sha[65];
	char base[VBOX_PATH];   /* the image's VDI */
	char tmp[VBOX_PATH];    /* the conversion's output before it is complete */
	char disk[VBOX_PATH];   /* DIR/disk.vdi */
	char snap[128], comment[256];
	char key[16];
	uint64_t value;
	struct vbox_kvs info;   /* the last showvminfo */
	bool missing;           /* VirtualBox has no such VM */
	enum proto_state state;
	char failed[512];       /* an error kept while a create is undone */
	int failed_code;
	struct vbox_nic nics[PROTO_NETWORKS_MAX];
	char *bridged, *hostonly; /* list outputs (networks.list, create) */
	struct list_entry *list;
	size_t n_list, i_list;
};

/* ---- the job's life ---- */

static void job_free(struct job *j)
{
	if (j->timer_on)
		ev_timer_stop(vmh_loop(), &j->timer);
	if (j->claimed)
		vmh_busy_release(j->inst.name);
	if (j->log_path[0])
		unlink(j->log_path);
	if (j->have_inst)
		vmh_instance_free(&j->inst);
	if (j->have_clone)
		vmh_instance_free(&j->clone);
	vbox_kvs_free(&j->info);
	free(j->bridged);
	free(j->hostonly);
	free(j->list);
	free(j);
}

static void job_fail(struct job *j, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void job_fail(struct job *j, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vmh_fail(j->req, code, "%s", msg);
	job_free(j);
}

static void job_answer_state(struct job *j, enum proto_state state)
{
	msgpack_packer *pk;

	vmh_busy_release(j->inst.name);
	j->claimed = false;
	vmh_state_notify(j->inst.name, state);
	pk = vmh_result(j->req);
	msgpack_pack_map(pk, 1);
	proto_pack_kv_state(pk, "state", state);
	vmh_done(j->req);
	job_free(j);
}

static void job_answer_empty(struct job *j)
{
	msgpack_pack_map(vmh_result(j->req), 0);
	vmh_done(j->req);
	job_free(j);
}

/* ---- running commands ---- */

static void on_progress(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct job *j = t->data;
	char buf[8192];
	ssize_t n;
	int fd = open(j->log_path, O_RDONLY | O_CLOEXEC);
	off_t size;

	(void)loop;
	(void)revents;
	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size > (off_t)sizeof(buf) - 1)
		lseek(fd, size - (off_t)sizeof(buf) + 1, SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		double f;

		buf[n] = '\0';
		f = vbox_progress_of(buf);
		if (f >= 0)
			vmh_progress(j->req, f, j->progress_text);
	}
}

/* The output of a long command, from its log file. */
static char *read_log(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = calloc(1, 65536);
	size_t n;

	if (!f || !buf) {
		if (f)
			fclose(f);
		return buf;
	}
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void on_cmd(void *ud, const struct vmh_run_result *r)
{
	struct job *j = ud;
	step_fn next = j->next;

	if (j->timer_on) {
		ev_timer_stop(vmh_loop(), &j->timer);
		j->timer_on = false;
	}
	if (j->log_path[0]) {
		struct vmh_run_result copy = *r;
		char *out = read_log(j->log_path);

		copy.output = out ? out : "";
		unlink(j->log_path);
		j->log_path[0] = '\0';
		next(j, &copy);
		free(out);
		return;
	}
	next(j, r);
}

/* Run a (consumed); then next(j, result). long_op: a command that takes
 * long and prints its progress, which goes to the broker meanwhile. */
static void run(struct job *j, struct vbox_argv *a, step_fn next, bool long_op)
{
	struct vmh_run_opts opts = {.timeout_s = long_op ? LONG_TIMEOUT : CMD_TIMEOUT};
	int rc;

	if (a->bad) {
		vbox_argv_free(a);
		job_fail(j, PROTO_E_NOMEM, "out of memory");
		return;
	}
	j->next = next;
	if (long_op) {
		snprintf(j->log_path, sizeof(j->log_path), "%s/progress-%s-%ld.log", scope_dir,
			 j->inst.name, (long)getpid());
		opts.log_path = j->log_path;
		ev_timer_init(&j->timer, on_progress, 0.5, 0.5);
		j->timer.data = j;
		ev_timer_start(vmh_loop(), &j->timer);
		j->timer_on = true;
	}
	rc = vmh_run(a->v, &opts, on_cmd, j);
	vbox_argv_free(a);
	if (rc < 0) {
		j->log_path[0] = '\0';
		job_fail(j, rc, "cannot run %s", long_op ? "a long command" : manage);
	}
}

static void vbox(struct vbox_argv *a)
{
	vbox_argv_init(a, manage);
}

/* The command worked; otherwise j fails with VBoxManage's reason. */
static bool ok(struct job *j, const struct vmh_run_result *r, const char *doing)
{
	char msg[512];
	int code;

	if (r->status == 0 && !r->timed_out)
		return true;
	if (r->timed_out) {
		job_fail(j, PROTO_E_TIMEOUT, "VirtualBox did not %s in time", doing);
		return false;
	}
	code = vbox_error_of(r->output, msg, sizeof(msg));
	job_fail(j, code, "VirtualBox could not %s %s: %s", doing, j->inst.name,
		 msg[0] ? msg : "VBoxManage failed");
	return false;
}

/* ---- the state of a VM ---- */

/* showvminfo's answer into j->info, j->state, j->missing; false if j failed. */
static bool take_info(struct job *j, const struct vmh_run_result *r)
{
	char msg[512];

	vbox_kvs_free(&j->info);
	j->missing = false;
	if (r->status != 0 || r->timed_out) {
		if (!r->timed_out && vbox_error_of(r->output, msg, sizeof(msg)) == PROTO_E_NOT_FOUND) {
			j->missing = true;
			j->state = PROTO_STATE_UNKNOWN;
			return true;
		}
		return ok(j, r, "look at");
	}
	if (vbox_kvs_parse(r->output ? r->output : "", &j->info) < 0) {
		job_fail(j, PROTO_E_NOMEM, "out of memory");
		return false;
	}
	j->state = vbox_state_of(vbox_kvs_get(&j->info, "VMState"));
	return true;
}

static void query(struct job *j, step_fn next)
{
	struct vbox_argv a;

	vbox(&a);
	vbox_cmd_showvminfo(&a, j->inst.name);
	run(j, &a, next, false);
}

static void missing_reason(const struct job *j, char *buf, size_t len)
{
	snprintf(buf, len, "VirtualBox has no VM %s (deleted outside vmctl?)", j->inst.name);
}

static bool fail_missing(struct job *j)
{
	char reason[160];

	if (!j->missing)
		return false;
	missing_reason(j, reason, sizeof(reason));
	vmh_state_notify_why(j->inst.name, PROTO_STATE_UNKNOWN, reason);
	job_fail(j, PROTO_E_NOT_FOUND, "%s", reason);
	return true;
}

/* ---- instance.state, instance.info ---- */

static void state_done(struct job *j, const struct vmh_run_result *r)
{
	char reason[160] = "";
	msgpack_packer *pk;

	if (!take_info(j, r))
		return;
	if (j->missing)
		missing_reason(j, reason, sizeof(reason));
	vmh_state_notify_why(j->inst.name, j->state, reason[0] ? reason : NULL);
	pk = vmh_result(j->req);
	msgpack_pack_map(pk, 1);
	proto_pack_kv_state(pk, "state", j->state);
	vmh_done(j->req);
	job_free(j);
}

static void info_answer(struct job *j, const char *props)
{
	char ipv4[8][64], reason[160] = "";
	size_t n = props ? vbox_guest_ipv4(props, ipv4, 8) : 0;
	int port = vbox_forward_port(&j->info, VBOX_SSH_RULE);
	msgpack_packer *pk;

	if (j->missing)
		missing_reason(j, reason, sizeof(reason));
	vmh_state_notify_why(j->inst.name, j->state, reason[0] ? reason : NULL);
	pk = vmh_result(j->req);
	msgpack_pack_map(pk, 3 + (port ? 2 : 0) + (reason[0] ? 1 : 0));
	proto_pack_kv_state(pk, "state", j->state);
	proto_pack_str(pk, "ipv4");
	msgpack_pack_array(pk, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		proto_pack_str(pk, ipv4[i]);
	proto_pack_kv_int(pk, "pid", 0);
	if (port) {
		/* NIC 1 is NAT: SSH is the host's forward, not the guest's address. */
		proto_pack_kv_str(pk, "ssh_host", "127.0.0.1");
		proto_pack_kv_int(pk, "ssh_port", port);
	}
	if (reason[0])
		proto_pack_kv_str(pk, "reason", reason);
	vmh_done(j->req);
	job_free(j);
}

static void info_props(struct job *j, const struct vmh_run_result *r)
{
	info_answer(j, r->status == 0 ? r->output : NULL);
}

static void info_got(struct job *j, const struct vmh_run_result *r)
{
	struct vbox_argv a;

	if (!take_info(j, r))
		return;
	if (j->state != PROTO_STATE_RUNNING) {
		info_answer(j, NULL);
		return;
	}
	vbox(&a);
	vbox_cmd_guestprops(&a, j->inst.name);
	run(j, &a, info_props, false);
}

/* ---- instance.start, stop, suspend, restart ---- */

static void started(struct job *j, const struct vmh_run_result *r)
{
	if (!ok(j, r, "start"))
		return;
	job_answer_state(j, PROTO_STATE_RUNNING);
}

static void start_vm(struct job *j)
{
	struct vbox_argv a;

	vbox(&a);
	vbox_cmd_startvm(&a, j->inst.name);
	run(j, &a, started, false);
}

static void start_got(struct job *j, const struct vmh_run_result *r)
{
	if (!take_info(j, r) || fail_missing(j))
		return;
	if (j->state == PROTO_STATE_RUNNING) {
		job_answer_state(j, PROTO_STATE_RUNNING);
		return;
	}
	start_vm(j);
}

static void stopped(struct job *j)
{
	if (j->restart) {
		vmh_state_notify(j->inst.name, PROTO_STATE_STOPPED);
		start_vm(j);
		return;
	}
	job_answer_state(j, PROTO_STATE_STOPPED);
}

static void powered_off(struct job *j, const struct vmh_run_result *r)
{
	if (!ok(j, r, "power off"))
		return;
	stopped(j);
}

static void power_off(struct job *j)
{
	struct vbox_argv a;

	vbox(&a);
	vbox_cmd_controlvm(&a, j->inst.name, "poweroff");
	run(j, &a, powered_off, false);
}

static void stop_look(struct job *j, const struct vmh_run_result *r);

static void on_stop_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct job *j = t->data;

	(void)revents;
	ev_timer_stop(loop, t);
	j->timer_on = false;
	query(j, stop_look);
}

/* After the power button: is it off yet? */
static void stop_look(struct job *j, const struct vmh_run_result *r)
{
	if (!take_info(j, r))
		return;
	if (j->missing || j->state == PROTO_STATE_STOPPED) {
		stopped(j);
		return;
	}
	if (ev_now(vmh_loop()) >= j->deadline) {
		if (j->escalate) {
			vmh_log(VMH_INFO, "%s: still running after %llds, powering it off",
				j->inst.name, (long long)j->timeout);
			power_off(j);
			return;
		}
		vmh_state_notify(j->inst.name, j->state);
		job_fail(j, PROTO_E_DRIVER,
			 "%s did not power off within %llds after the ACPI power button; it was "
			 "left running", j->inst.name, (long long)j->timeout);
		return;
	}
	ev_timer_init(&j->timer, on_stop_timer, POLL_EVERY, 0);
	j->timer.data = j;
	ev_timer_start(vmh_loop(), &j->timer);
	j->timer_on = true;
}

static void button_pressed(struct job *j, const struct vmh_run_result *r)
{
	if (!ok(j, r, "press the power button of"))
		return;
	j->deadline = ev_now(vmh_loop()) + (double)j->timeout;
	query(j, stop_look);
}

static void discarded(struct job *j, const struct vmh_run_result *r)
{
	if (!ok(j, r, "discard the saved state of"))
		return;
	stopped(j);
}

static void stop_got(struct job *j, const struct vmh_run_result *r)
{
	struct vbox_argv a;
	const char *vmstate;

	if (!take_info(j, r) || fail_missing(j))
		return;
	if (j->state == PROTO_STATE_STOPPED) {
		stopped(j);
		return;
	}
	vmstate = vbox_kvs_get(&j->info, "VMState");
	vbox(&a);
	if (vmstate && !strcmp(vmstate, "saved")) {
		/* A saved VM has no guest to ask: stopping it drops the saved state. */
		vbox_cmd_discardstate(&a, j->inst.name);
		run(j, &a, discarded, false);
		return;
	}
	if (j->force || j->state != PROTO_STATE_RUNNING) {
		vbox_argv_free(&a);
		power_off(j);
		return;
	}
	vbox_cmd_controlvm(&a, j->inst.name, "acpipowerbutton");
	run(j, &a, button_pressed, false);
}

static void saved(struct job *j, const struct vmh_run_result *r)
{
	if (!ok(j, r, "save the state of"))
		return;
	job_answer_state(j, PROTO_STATE_SUSPENDED);
}

static void suspend_got(struct job *j, const struct vmh_run_result *r)
{
	struct vbox_argv a;

	if (!take_info(j, r) || fail_missing(j))
		return;
	if (j->state == PROTO_STATE_SUSPENDED) {
		job_answer_state(j, PROTO_STATE_SUSPENDED);
		return;
	}
	if (j->state != PROTO_STATE_RUNNING) {
		vmh_state_notify(j->inst.name, j->state);
		job_fail(j, PROTO_E_INVALID_STATE, "%s is %s: only a running instance can be suspended",
			 j->inst.name, proto_state_name(j->state));
		return;
	}
	vbox(&a);
	vbox_cmd_controlvm(&a, j->inst.name, "savestate");
	run(j, &a, saved, false);
}

/* ---- instance.delete ---- */

static void unregistered(struct job *j, const struct vmh_run_result *r)
{
	if (!ok(j, r, "delete"))
		return;
	vmh_state_forget(j->inst.name);
	job_answer_empty(j);
}

static void unregister(struct job *j)
{
	struct vbox_argv a;

	vbox(&a);
	vbox_cmd_unregister(&a, j->inst.name);
	run(j, &a, unregistered, false);
}

static void delete_off(struct job *j, const struct vmh_run_result *r)
{
	if (!ok(j, r, "power off"))
		return;
	unregister(j);
}

static void delete_got(struct job *j, const struct vmh_run_result *r)
{
	struct vbox_argv a;
	const char *vmstate;

	if (!take_info(j, r))
		return;
	if (j->missing) {
		vmh_state_forget(j->inst.name);
		job_answer_empty(j);
		return;
	}
	vmstate = vbox_kvs_get(&j->info, "VMState");
	vbox(&a);
	if (vmstate && !strcmp(vmstate, "saved")) {
		vbox_cmd_discardstate(&a, j->inst.name);
	} else if (j->state != PROTO_STATE_STOPPED) {
		vbox_cmd_controlvm(&a, j->inst.name, "poweroff");
	} else {
		vbox_argv_free(&a);
		unregister(j);
		return;
	}
	run(j, &a, delete_off, false);
}

/* ---- instance.create ---- */

static void create_step(struct job *j, const struct vmh_run_result *r);

/* Undo a half-made VM, then fail with the error kept in j->failed. */
static void undone(struct job *j, const struct vmh_run_result *r)
{
	(void)r;
	job_fail(j, j->failed_code, "%s", j->failed);
}

static void create_fail(struct job *j, const struct vmh_run_result *r, const char *doing)
{
	struct vbox_argv a;
	char msg[512];

	j->failed_code = r->timed_out ? PROTO_E_TIMEOUT : vbox_error_of(r->output, msg, sizeof(msg));
	snprintf(j->failed, sizeof(j->failed), "VirtualBox could not %s for %s: %s", doing,
		 j->inst.name, r->timed_out ? "it took too long" : msg);
	vbox(&a);
	vbox_cmd_unregister(&a, j->inst.name);
	run(j, &a, undone, false);
}

static void created(struct job *j)
{
	vmh_busy_release(j->inst.name);
	j->claimed = false;
	vmh_state_notify(j->inst.name, PROTO_STATE_STOPPED);
	job_answer_empty(j);
}

static bool is_hostonly(const struct job *j, const char *iface)
{
	struct vbox_iface ifs[64];
	size_t n = j->hostonly ? vbox_ifaces_parse(j->hostonly, ifs, 64) : 0;

	for (size_t i = 0; i < n; i++)
		if (!strcmp(ifs[i].name, iface))
			return true;
	return false;
}

/* The steps after the image is ready, in order; j->value counts them. */
static void create_step(struct job *j, const struct vmh_run_result *r)
{
	static const char *const doing[] = {
		"create the VM",	"configure the VM", "add a storage controller",
		"create the instance's disk", "resize the instance's disk", "attach the disk",
		"attach the cloud-init seed",
	};
	struct vbox_argv a;
	int step = (int)j->value;

	if (r && (r->status != 0 || r->timed_out)) {
		if (step == 1) { /* createvm: nothing to undo */
			ok(j, r, "create");
			return;
		}
		create_fail(j, r, doing[step - 1]);
		return;
	}
	j->value++;
	vbox(&a);
	switch (step) {
	case 0:
		vbox_cmd_createvm(&a, j->inst.name, j->inst.dir);
		break;
	case 1: {
		int port = vbox_os_free_port();

		for (size_t i = 0; i < j->inst.n_networks; i++) {
			j->nics[i].iface = j->inst.networks[i].name;
			j->nics[i].mac = j->inst.networks[i].mac;
			j->nics[i].hostonly = is_hostonly(j, j->inst.networks[i].name);
		}
		if (port < 0) {
			vbox_argv_free(&a);
			j->failed_code = PROTO_E_IO;
			snprintf(j->failed, sizeof(j->failed), "cannot find a free port for SSH");
			vbox(&a);
			vbox_cmd_unregister(&a, j->inst.name);
			run(j, &a, undone, false);
			return;
		}
		vbox_cmd_modifyvm(&a, j->inst.name, j->inst.cpus, j->inst.memory, j->inst.mac, port,
				  j->nics, j->inst.n_networks);
		break;
	}
	case 2:
		vbox_cmd_storagectl(&a, j->inst.name);
		break;
	case 3:
		vbox_cmd_diffdisk(&a, j->disk, j->base);
		break;
	case 4:
		if (j->inst.disk) {
			vbox_cmd_resize(&a, j->disk, j->inst.disk);
			break;
		}
		j->value++;
		/* fall through */
	case 5:
		vbox_cmd_attach(&a, j->inst.name, 0, j->disk);
		break;
	case 6:
		if (j->inst.seed) {
			vbox_cmd_attach(&a, j->inst.name, 1, j->inst.seed);
			break;
		}
		/* fall through */
	default:
		vbox_argv_free(&a);
		created(j);
		return;
	}
	run(j, &a, create_step, false);
}

static void create_hostonly(struct job *j, const struct vmh_run_result *r)
{
	if (r->status == 0 && r->output)
		j->hostonly = strdup(r->output);
	create_step(j, NULL);
}

/* The base VDI is there: the VM and its disk. */
static void create_vm(struct job *j)
{
	struct vbox_argv a;

	j->value = 0;
	if (j->inst.n_networks == 0) {
		create_step(j, NULL);
		return;
	}
	/* Host-only interfaces are attached as such, the others bridged. */
	vbox(&a);
	vbox_cmd_list(&a, "hostonlyifs");
	run(j, &a, create_hostonly, false);
}

static void converted(struct job *j, const struct vmh_run_result *r)
{
	if (r->status != 0 || r->timed_out) {
		unlink(j->tmp);
		job_fail(j, r->timed_out ? PROTO_E_TIMEOUT : PROTO_E_DRIVER,
			 "cannot convert %s to VDI: %s", j->inst.image.disk,
			 r->output && r->output[0] ? r->output : "qemu-img failed");
		return;
	}
	if (rename(j->tmp, j->base) < 0) {
		unlink(j->tmp);
		job_fail(j, PROTO_E_IO, "cannot rename %s: %s", j->tmp, strerror(errno));
		return;
	}
	vmh_progress(j->req, 1, j->progress_text);
	create_vm(j);
}

static bool is_sha256(const char *s, size_t n)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return false;
	return true;
}

static void create_have_sha(struct job *j)
{
	struct vbox_argv a;
	char dir[VBOX_PATH];

	snprintf(dir, sizeof(dir), "%s/vdi", scope_dir);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		job_fail(j, PROTO_E_IO, "cannot make %s: %s", dir, strerror(errno));
		return;
	}
	snprintf(j->base, sizeof(j->base), "%s/%s.vdi", dir, j->sha);
	if (access(j->base, F_OK) == 0) {
		create_vm(j);
		return;
	}
	snprintf(j->tmp, sizeof(j->tmp), "%s/%s.vdi.part", dir, j->sha);
	snprintf(j->progress_text, sizeof(j->progress_text), "Converting the image of %s to VDI",
		 j->inst.name);
	vmh_progress(j->req, 0, j->progress_text);
	vbox_argv_init(&a, qemu_img);
	vbox_cmd_convert(&a, j->inst.image.disk, j->inst.image.format ? j->inst.image.format : "qcow2",
			 j->tmp);
	run(j, &a, converted, true);
}

/* In a child process (vmh_run_task): the sha256 of the image, as the "error" text. */
static int sha256_task(void *arg, char *err, size_t errlen)
{
	const char *path = arg;
	unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	FILE *f = fopen(path, "rb");
	size_t n;

	int rc = 0;

	if (!f || !ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		snprintf(err, errlen, "cannot read image %s: %s", path, strerror(errno));
		rc = PROTO_E_IO;
		goto out_close;
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(ctx, buf, n);
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read image %s: %s", path, strerror(errno));
		rc = PROTO_E_IO;
		goto out_close;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	for (unsigned int i = 0; i < mdlen && i < 32 && (size_t)(2 * i + 3) <= errlen; i++)
		snprintf(err + 2 * i, 3, "%02x", md[i]);
out_close:
	EVP_MD_CTX_free(ctx);
	if (f)
		fclose(f);
	return rc;
}

static void on_sha(void *ud, const struct vmh_run_result *r)
{
	struct job *j = ud;
	int rc = vmh_task_code(r);

	if (rc < 0) {
		job_fail(j, rc, "%s", r->output && r->output[0] ? r->output : "cannot hash the image");
		return;
	}
	snprintf(j->sha, sizeof(j->sha), "%s", r->output ? r->output : "");
	if (!is_sha256(j->sha, strlen(j->sha))) {
		job_fail(j, PROTO_E_INTERNAL, "cannot hash the image %s", j->inst.image.disk);
		return;
	}
	create_have_sha(j);
}

static void create_begin(struct job *j)
{
	const char *disk = j->inst.image.disk, *base, *dot;
	int rc;

	if (!disk) {
		job_fail(j, PROTO_E_INVALID_ARGUMENT, "the virtualbox driver needs an image disk");
		return;
	}
	if (j->inst.image.kernel) {
		job_fail(j, PROTO_E_UNSUPPORTED,
			 "the virtualbox driver boots an image's own boot loader; it cannot boot a "
			 "kernel given apart (use a disk image with a boot loader)");
		return;
	}
	if (j->inst.image.format && strcmp(j->inst.image.format, "qcow2") &&
	    strcmp(j->inst.image.format, "raw")) {
		job_fail(j, PROTO_E_UNSUPPORTED, "the virtualbox driver cannot use %s images",
			 j->inst.image.format);
		return;
	}
	snprintf(j->disk, sizeof(j->disk), "%s/%s", j->inst.dir, VBOX_DISK_FILE);
	/* The image cache names its files SHA256.EXT: no need to read them. */
	base = strrchr(disk, '/');
	base = base ? base + 1 : disk;
	dot = strchr(base, '.');
	if (is_sha256(base, dot ? (size_t)(dot - base) : strlen(base))) {
		snprintf(j->sha, sizeof(j->sha), "%.64s", base);
		create_have_sha(j);
		return;
	}
	rc = vmh_run_task(sha256_task, j->inst.image.disk, LONG_TIMEOUT, on_sha, j);
	if (rc < 0)
		job_fail(j, rc, "cannot hash the image");
}

/* ---- instance.set ---- */

static void set_done(struct job *j, const struct vmh_run_result *r)
{
	if (!ok(j, r, "change"))
		return;
	job_answer_empty(j);
}

static void set_begin(struct job *j)
{
	struct vbox_argv a;

	vbox(&a);
	if (!strcmp(j->key, "cpus")) {
		vbox_cmd_set_cpus(&a, j->inst.name, (unsigned)j->value);
	} else if (!strcmp(j->key, "memory")) {
		vbox_cmd_set_memory(&a, j->inst.name, j->value);
	} else {
		snprintf(j->disk, sizeof(j->disk), "%s/%s", j->inst.dir, VBOX_DISK_FILE);
		vbox_cmd_resize(&a, j->disk, j->value);
	}
	run(j, &a, set_done, false);
}

/* ---- snapshots: their specs in DIR/vbox-snapshots.json ---- */

static json_t *snaps_load(const struct job *j, char *path, size_t len)
{
	json_t *doc;

	snprintf(path, len, "%s/%s", j->inst.dir, VBOX_SNAP_FILE);
	doc = json_load_file(path, 0, NULL);
	if (!json_is_object(doc)) {
		json_decref(doc);
		doc = json_object();
	}
	return doc;
}

static int snaps_save(json_t *doc, const char *path)
{
	char tmp[VBOX_PATH + 8];

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (json_dump_file(doc, tmp, JSON_INDENT(1)) < 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		return PROTO_E_IO;
	}
	return 0;
}

static void snap_taken(struct job *j, const struct vmh_run_result *r)
{
	char path[VBOX_PATH], created[32];
	time_t now = time(NULL);
	struct tm tm;
	json_t *doc;

	if (!ok(j, r, "take a snapshot of"))
		return;
	gmtime_r(&now, &tm);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	doc = snaps_load(j, path, sizeof(path));
	json_object_set_new(doc, j->snap,
			    json_pack("{s:s, s:I, s:I, s:I}", "created", created, "cpus",
				      (json_int_t)j->inst.cpus, "memory", (json_int_t)j->inst.memory,
				      "disk", (json_int_t)j->inst.disk));
	if (snaps_save(doc, path) < 0)
		vmh_log(VMH_WARN, "%s: cannot write %s: %s", j->inst.name, path, strerror(errno));
	json_decref(doc);
	vmh_busy_release(j->inst.name);
	j->claimed = false;
	job_answer_empty(j);
}

static void snap_listed(struct job *j, const struct vmh_run_result *r)
{
	struct vbox_snap *snaps;
	char path[VBOX_PATH];
	size_t n = 0;
	json_t *doc;
	msgpack_packer *pk;

	if (r->status != 0 && (!r->output || !strstr(r->output, "does not have any snapshots"))) {
		ok(j, r, "list the snapshots of");
		return;
	}
	snaps = calloc(256, sizeof(*snaps));
	if (!snaps) {
		job_fail(j, PROTO_E_NOMEM, "out of memory");
		return;
	}
	if (r->status == 0)
		n = vbox_snaps_parse(r->output ? r->output : "", snaps, 256);
	doc = snaps_load(j, path, sizeof(path));
	pk = vmh_result(j->req);
	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "snapshots");
	msgpack_pack_array(pk, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		json_t *spec = json_object_get(doc, snaps[i].name);
		const char *created = json_string_value(json_object_get(spec, "created"));

		msgpack_pack_map(pk, spec ? 7 : 4);
		proto_pack_kv_str(pk, "name", snaps[i].name);
		proto_pack_kv_str(pk, "comment", snaps[i].description);
		proto_pack_kv_str(pk, "created", created ? created : "");
		proto_pack_kv_str(pk, "parent", snaps[i].parent);
		if (spec) {
			proto_pack_kv_uint(pk, "cpus",
					   (uint64_t)json_integer_value(json_object_get(spec, "cpus")));
			proto_pack_kv_uint(pk, "memory",
					   (uint64_t)json_integer_value(json_object_get(spec, "memory")));
			proto_pack_kv_uint(pk, "disk",
					   (uint64_t)json_integer_value(json_object_get(spec, "disk")));
		}
	}
	json_decref(doc);
	free(snaps);
	vmh_done(j->req);
	job_free(j);
}

static void snap_restored(struct job *j, const struct vmh_run_result *r)
{
	char path[VBOX_PATH];
	json_t *doc, *spec;
	msgpack_packer *pk;
	static const char *const keys[] = {"cpus", "memory", "disk"};
	int n = 0;

	if (!ok(j, r, "restore a snapshot of"))
		return;
	doc = snaps_load(j, path, sizeof(path));
	spec = json_object_get(doc, j->snap);
	for (size_t i = 0; i < 3; i++)
		n += json_integer_value(json_object_get(spec, keys[i])) > 0;
	vmh_busy_release(j->inst.name);
	j->claimed = false;
	pk = vmh_result(j->req);
	msgpack_pack_map(pk, (uint32_t)n);
	for (size_t i = 0; i < 3; i++) {
		json_int_t v = json_integer_value(json_object_get(spec, keys[i]));

		if (v > 0)
			proto_pack_kv_uint(pk, keys[i], (uint64_t)v);
	}
	json_decref(doc);
	vmh_done(j->req);
	job_free(j);
}

static void snap_deleted(struct job *j, const struct vmh_run_result *r)
{
	char path[VBOX_PATH];
	json_t *doc;

	if (!ok(j, r, "delete a snapshot of"))
		return;
	doc = snaps_load(j, path, sizeof(path));
	if (json_object_del(doc, j->snap) == 0 && snaps_save(doc, path) < 0)
		vmh_log(VMH_WARN, "%s: cannot write %s", j->inst.name, path);
	json_decref(doc);
	vmh_busy_release(j->inst.name);
	j->claimed = false;
	job_answer_empty(j);
}

/* ---- instance.clone ---- */

static void clone_step(struct job *j, const struct vmh_run_result *r)
{
	struct vbox_argv a;
	int step = (int)j->value++;

	if (step > 0 && (r->status != 0 || r->timed_out)) {
		char msg[512];
		int code = r->timed_out ? PROTO_E_TIMEOUT : vbox_error_of(r->output, msg, sizeof(msg));

		job_fail(j, code, "VirtualBox could not clone %s as %s: %s", j->inst.name,
			 j->clone.name, r->timed_out ? "it took too long" : msg);
		return;
	}
	vbox(&a);
	switch (step) {
	case 0:
		snprintf(j->progress_text, sizeof(j->progress_text), "Cloning %s into %s",
			 j->inst.name, j->clone.name);
		vmh_progress(j->req, 0, j->progress_text);
		vbox_cmd_clonevm(&a, j->inst.name, j->clone.name, j->clone.dir);
		run(j, &a, clone_step, true);
		return;
	case 1: {
		int port = vbox_os_free_port();

		vmh_progress(j->req, 1, j->progress_text);
		if (port < 0) {
			vbox_argv_free(&a);
			job_fail(j, PROTO_E_IO, "cannot find a free port for SSH");
			return;
		}
		vbox_cmd_reforward(&a, j->clone.name, j->clone.mac, port);
		break;
	}
	case 2:
		if (j->clone.seed) {
			vbox_cmd_attach(&a, j->clone.name, 1, j->clone.seed);
			break;
		}
		/* fall through */
	default:
		vbox_argv_free(&a);
		vmh_busy_release(j->inst.name);
		j->claimed = false;
		vmh_state_notify(j->clone.name, PROTO_STATE_STOPPED);
		job_answer_empty(j);
		return;
	}
	run(j, &a, clone_step, false);
}

/* ---- instances.list ---- */

static void list_next(struct job *j);

static void list_got(struct job *j, const struct vmh_run_result *r)
{
	struct list_entry *e = &j->list[j->i_list];
	char msg[256];

	if (r->status != 0) {
		if (vbox_error_of(r->output, msg, sizeof(msg)) == PROTO_E_NOT_FOUND)
			snprintf(e->reason, sizeof(e->reason),
				 "VirtualBox has no VM %s (deleted outside vmctl?)", e->name);
		else
			snprintf(e->reason, sizeof(e->reason), "VBoxManage: %s", msg);
		e->state = PROTO_STATE_UNKNOWN;
	} else {
		struct vbox_kvs kvs;

		if (vbox_kvs_parse(r->output ? r->output : "", &kvs) == 0) {
			e->state = vbox_state_of(vbox_kvs_get(&kvs, "VMState"));
			vbox_kvs_free(&kvs);
		}
	}
	j->i_list++;
	list_next(j);
}

static void list_answer(struct job *j)
{
	msgpack_packer *pk = vmh_result(j->req);

	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "instances");
	msgpack_pack_array(pk, (uint32_t)j->n_list);
	for (size_t i = 0; i < j->n_list; i++) {
		struct list_entry *e = &j->list[i];
		enum proto_state busy;

		if (vmh_busy(e->name, &busy)) {
			e->state = busy;
			e->reason[0] = '\0';
		} else {
			vmh_state_seen_why(e->name, e->state, e->reason[0] ? e->reason : NULL);
		}
		msgpack_pack_map(pk, e->reason[0] ? 3 : 2);
		proto_pack_kv_str(pk, "name", e->name);
		proto_pack_kv_state(pk, "state", e->state);
		if (e->reason[0])
			proto_pack_kv_str(pk, "reason", e->reason);
	}
	vmh_done(j->req);
	job_free(j);
}

static void list_next(struct job *j)
{
	struct vbox_argv a;

	if (j->i_list == j->n_list) {
		list_answer(j);
		return;
	}
	vbox(&a);
	vbox_cmd_showvminfo(&a, j->list[j->i_list].name);
	run(j, &a, list_got, false);
}

/* ---- networks.list ---- */

static void pack_ifaces(msgpack_packer *pk, const struct vbox_iface *ifs, size_t n,
			const char *type, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		char desc[256];

		snprintf(desc, sizeof(desc), "%s%s%s%s", what, ifs[i].status[0] ? " (" : "",
			 ifs[i].status, ifs[i].status[0] ? ")" : "");
		msgpack_pack_map(pk, 3);
		proto_pack_kv_str(pk, "name", ifs[i].name);
		proto_pack_kv_str(pk, "type", type);
		proto_pack_kv_str(pk, "description", desc);
	}
}

static void networks_hostonly(struct job *j, const struct vmh_run_result *r)
{
	struct vbox_iface *ifs = calloc(128, sizeof(*ifs));
	size_t nb, nh;
	msgpack_packer *pk;

	if (!ifs) {
		job_fail(j, PROTO_E_NOMEM, "out of memory");
		return;
	}
	nb = vbox_ifaces_parse(j->bridged ? j->bridged : "", ifs, 64);
	nh = r->status == 0 && r->output ? vbox_ifaces_parse(r->output, ifs + 64, 64) : 0;
	pk = vmh_result(j->req);
	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "networks");
	msgpack_pack_array(pk, (uint32_t)(nb + nh));
	pack_ifaces(pk, ifs, nb, "bridge", "VirtualBox bridged adapter");
	pack_ifaces(pk, ifs + 64, nh, "host-only", "VirtualBox host-only adapter");
	free(ifs);
	vmh_done(j->req);
	job_free(j);
}

static void networks_bridged(struct job *j, const struct vmh_run_result *r)
{
	struct vbox_argv a;

	if (!ok(j, r, "list the host's interfaces for"))
		return;
	j->bridged = strdup(r->output ? r->output : "");
	vbox(&a);
	vbox_cmd_list(&a, "hostonlyifs");
	run(j, &a, networks_hostonly, false);
}

/* ---- requests ---- */

static struct job *job_new(struct vmh_req *req)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return NULL;
	}
	j->req = req;
	j->escalate = true;
	j->timeout = STOP_TIMEOUT;
	return j;
}

/* A job for an instance request, claimed with state (UNKNOWN: no claim). */
static struct job *instance_job(struct vmh_req *req, const msgpack_object *params,
				enum proto_state claim)
{
	struct job *j = job_new(req);
	char err[256];
	int64_t timeout;

	if (!j)
		return NULL;
	if (vmh_instance_from_req(req, params, "instance", &j->inst) < 0) {
		free(j);
		return NULL;
	}
	j->have_inst = true;
	proto_get_bool(params, "force", &j->force);
	proto_get_bool(params, "escalate", &j->escalate);
	if (proto_get_int(params, "timeout", &timeout) == 0 && timeout > 0)
		j->timeout = timeout;
	if (claim != PROTO_STATE_UNKNOWN) {
		int rc = vmh_busy_claim(j->inst.name, claim, err, sizeof(err));

		if (rc < 0) {
			vmh_fail(req, rc, "%s", err);
			j->req = NULL;
			job_free(j);
			return NULL;
		}
		j->claimed = true;
	}
	return j;
}

/* The snapshot's name of params (and comment), checked: a VirtualBox
 * snapshot name is an argument, but keep it to the broker's rule. */
static bool snap_params(struct job *j, const msgpack_object *params)
{
	const msgpack_object *s = proto_map_get(params, "snapshot");
	char err[256];

	if (!s || s->type != MSGPACK_OBJECT_MAP ||
	    proto_get_str(s, "name", j->snap, sizeof(j->snap)) < 0 ||
	    proto_check_name(j->snap, err, sizeof(err)) < 0) {
		job_fail(j, PROTO_E_INVALID_ARGUMENT, "'snapshot' needs a valid 'name'");
		return false;
	}
	proto_get_str(s, "comment", j->comment, sizeof(j->comment));
	return true;
}

void vbox_instance_state(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_UNKNOWN);
	enum proto_state busy;

	if (!j)
		return;
	if (vmh_busy(j->inst.name, &busy)) {
		msgpack_packer *pk = vmh_result(req);

		msgpack_pack_map(pk, 1);
		proto_pack_kv_state(pk, "state", busy);
		vmh_done(req);
		job_free(j);
		return;
	}
	query(j, state_done);
}

void vbox_instance_info(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_UNKNOWN);

	if (j)
		query(j, info_got);
}

void vbox_instance_create(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_STARTING);

	if (j)
		create_begin(j);
}

void vbox_instance_start(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_STARTING);

	if (j)
		query(j, start_got);
}

void vbox_instance_stop(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_STOPPING);

	if (j)
		query(j, stop_got);
}

void vbox_instance_restart(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_RESTARTING);

	if (!j)
		return;
	j->restart = true;
	j->force = false;
	j->escalate = true;
	query(j, stop_got);
}

void vbox_instance_suspend(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_SUSPENDING);

	if (j)
		query(j, suspend_got);
}

void vbox_instance_delete(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_STOPPING);

	if (j)
		query(j, delete_got);
}

void vbox_instance_set(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *v = proto_map_get(params, "value");
	struct job *j;
	char key[16];

	if (proto_get_str(params, "key", key, sizeof(key)) < 0 ||
	    (strcmp(key, "cpus") && strcmp(key, "memory") && strcmp(key, "disk"))) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'key' must be cpus, memory or disk");
		return;
	}
	if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 == 0) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "%s: 'value' must be a positive integer", key);
		return;
	}
	j = instance_job(req, params, PROTO_STATE_STOPPED);
	if (!j)
		return;
	snprintf(j->key, sizeof(j->key), "%s", key);
	j->value = v->via.u64;
	set_begin(j);
}

void vbox_snapshot_create(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_STOPPED);
	struct vbox_argv a;

	if (!j || !snap_params(j, params))
		return;
	vbox(&a);
	vbox_cmd_snapshot(&a, j->inst.name, "take", j->snap, j->comment);
	run(j, &a, snap_taken, false);
}

void vbox_snapshot_list(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_UNKNOWN);
	struct vbox_argv a;

	if (!j)
		return;
	vbox(&a);
	vbox_cmd_snapshot(&a, j->inst.name, "list", NULL, NULL);
	run(j, &a, snap_listed, false);
}

void vbox_snapshot_restore(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_STOPPED);
	struct vbox_argv a;

	if (!j || !snap_params(j, params))
		return;
	vbox(&a);
	vbox_cmd_snapshot(&a, j->inst.name, "restore", j->snap, NULL);
	run(j, &a, snap_restored, false);
}

void vbox_snapshot_delete(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_STOPPED);
	struct vbox_argv a;

	if (!j || !snap_params(j, params))
		return;
	vbox(&a);
	vbox_cmd_snapshot(&a, j->inst.name, "delete", j->snap, NULL);
	run(j, &a, snap_deleted, false);
}

void vbox_instance_clone(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = instance_job(req, params, PROTO_STATE_STOPPED);

	if (!j)
		return;
	if (vmh_instance_from_req(req, params, "clone", &j->clone) < 0) {
		j->req = NULL;
		job_free(j);
		return;
	}
	j->have_clone = true;
	j->value = 0;
	clone_step(j, NULL);
}

void vbox_instances_list(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *arr = proto_map_get(params, "instances");
	struct job *j = job_new(req);

	if (!j)
		return;
	if (arr && arr->type == MSGPACK_OBJECT_ARRAY && arr->via.array.size) {
		uint32_t n = arr->via.array.size < MAX_LIST ? arr->via.array.size : MAX_LIST;

		j->list = calloc(n, sizeof(*j->list));
		if (!j->list) {
			job_fail(j, PROTO_E_NOMEM, "out of memory");
			return;
		}
		for (uint32_t i = 0; i < n; i++) {
			struct vmh_instance inst;
			char err[256];

			if (vmh_instance_parse(&arr->via.array.ptr[i], &inst, err, sizeof(err)) < 0)
				continue;
			snprintf(j->list[j->n_list].name, sizeof(j->list[0].name), "%s", inst.name);
			j->list[j->n_list].state = PROTO_STATE_UNKNOWN;
			j->n_list++;
			vmh_instance_free(&inst);
		}
	}
	list_next(j);
}

void vbox_networks_list(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = job_new(req);
	struct vbox_argv a;

	(void)params;
	if (!j)
		return;
	vbox(&a);
	vbox_cmd_list(&a, "bridgedifs");
	run(j, &a, networks_bridged, false);
}

/* ---- noticing a VM that stopped by itself ---- */

/*
 * VBoxManage has no event stream the helper could wait on, so every
 * POLL_STATES seconds, while the SDK remembers an instance as running,
 * `list runningvms` says which still are; one that is not (its guest shut
 * down, VirtualBox aborted it) is looked at and its new state told to the
 * broker, which then ends a launch waiting for its SSH at once.
 */
#define POLL_STATES 5.0
static ev_timer poll_timer;
static bool polling;

struct poll_names {
	char (*names)[64];
	size_t n, max;
};

static void poll_collect(void *ud, const char *name, enum proto_state state)
{
	struct poll_names *p = ud;

	if (state == PROTO_STATE_RUNNING && !vmh_busy(name, NULL) && p->n < p->max)
		snprintf(p->names[p->n++], 64, "%s", name);
}

struct poll_look {
	char name[64];
};

static void poll_looked(void *ud, const struct vmh_run_result *r)
{
	struct poll_look *l = ud;
	struct vbox_kvs kvs;
	char msg[256];

	if (vmh_busy(l->name, NULL)) {
		free(l);
		return;
	}
	if (r->status == 0 && vbox_kvs_parse(r->output ? r->output : "", &kvs) == 0) {
		vmh_state_notify(l->name, vbox_state_of(vbox_kvs_get(&kvs, "VMState")));
		vbox_kvs_free(&kvs);
	} else if (r->status != 0 && vbox_error_of(r->output, msg, sizeof(msg)) == PROTO_E_NOT_FOUND) {
		char reason[160];

		snprintf(reason, sizeof(reason), "VirtualBox has no VM %s (deleted outside vmctl?)",
			 l->name);
		vmh_state_notify_why(l->name, PROTO_STATE_UNKNOWN, reason);
	}
	free(l);
}

static void poll_listed(void *ud, const struct vmh_run_result *r)
{
	struct poll_names *p = ud;

	polling = false;
	for (size_t i = 0; r->status == 0 && i < p->n; i++) {
		struct poll_look *l;
		struct vbox_argv a;

		if (vbox_list_vms_has(r->output ? r->output : "", p->names[i]) ||
		    !(l = calloc(1, sizeof(*l))))
			continue;
		snprintf(l->name, sizeof(l->name), "%s", p->names[i]);
		vbox(&a);
		vbox_cmd_showvminfo(&a, l->name);
		if (a.bad || vmh_run(a.v, &(struct vmh_run_opts){.timeout_s = CMD_TIMEOUT}, poll_looked,
				     l) < 0)
			free(l);
		vbox_argv_free(&a);
	}
	free(p->names);
	free(p);
}

static void on_poll(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct poll_names *p;
	struct vbox_argv a;

	(void)loop;
	(void)t;
	(void)revents;
	if (polling || !(p = calloc(1, sizeof(*p))))
		return;
	p->max = MAX_LIST;
	p->names = calloc(p->max, sizeof(*p->names));
	if (p->names)
		vmh_state_each(poll_collect, p);
	if (!p->n) {
		free(p->names);
		free(p);
		return;
	}
	vbox(&a);
	vbox_cmd_list(&a, "runningvms");
	if (!a.bad && vmh_run(a.v, &(struct vmh_run_opts){.timeout_s = CMD_TIMEOUT}, poll_listed,
			      p) == 0)
		polling = true;
	else {
		free(p->names);
		free(p);
	}
	vbox_argv_free(&a);
}

/* ---- start-up ---- */

int vbox_init(const char *sd, const msgpack_object *settings, char *why, size_t whylen)
{
	char out[4096];
	char *argv[3];
	int major = 0, minor = 0, st;

	(void)settings;
	snprintf(scope_dir, sizeof(scope_dir), "%s", sd);
	vbox_os_find_qemu_img(qemu_img, sizeof(qemu_img));
	if (vbox_os_find_manage(vmh_setting("local.virtualbox.manage", ""), manage, sizeof(manage),
				why, whylen) < 0)
		return PROTO_E_UNAVAILABLE;
	argv[0] = manage;
	argv[1] = "--version";
	argv[2] = NULL;
	st = vmh_run_wait(argv, 20, out, sizeof(out));
	if (st != 0 || vbox_version_parse(out, &major, &minor) < 0) {
		char *nl = strchr(out, '\n');

		if (nl)
			*nl = '\0';
		snprintf(why, whylen, "%s --version %s%s%s", manage,
			 st < 0 ? "did not answer" : "failed", out[0] ? ": " : "", out);
		return PROTO_E_UNAVAILABLE;
	}
	if (major < VBOX_MIN_MAJOR || (major == VBOX_MIN_MAJOR && minor < VBOX_MIN_MINOR)) {
		snprintf(why, whylen,
			 "%s is VirtualBox %d.%d; the virtualbox driver needs %d.%d or later", manage,
			 major, minor, VBOX_MIN_MAJOR, VBOX_MIN_MINOR);
		return PROTO_E_UNAVAILABLE;
	}
	vmh_log(VMH_INFO, "VirtualBox %d.%d (%s)", major, minor, manage);
	ev_timer_init(&poll_timer, on_poll, POLL_STATES, POLL_STATES);
	ev_timer_start(vmh_loop(), &poll_timer);
	/* The loop may end while the helper has nothing else to do. */
	ev_unref(vmh_loop());
	return 0;
}

void vbox_fini(void)
{
	if (ev_is_active(&poll_timer)) {
		ev_ref(vmh_loop());
		ev_timer_stop(vmh_loop(), &poll_timer);
	}
}
