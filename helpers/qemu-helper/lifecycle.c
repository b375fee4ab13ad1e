/*
 * instance.create/start/stop/suspend/restart/delete/state/info and
 * instances.list. Long steps (qemu-img, qemu's start, waiting for a VM to
 * go away) run from the loop; the request is answered when they end.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "qh.h"
#include "vmcommon.h"

#define STOP_DEFAULT_TIMEOUT 120
#define STOP_POLL 0.1
#define QUIT_GRACE 10.0     /* after "quit" or SIGKILL, how long until we give up */
#define START_TIMEOUT 300.0 /* qemu's parent exits once the VM is set up (-loadvm included) */
#define SAVEVM_TIMEOUT 600.0

struct op;
typedef void (*op_next_fn)(struct op *op);

struct op {
	struct vmh_req *req;
	struct vmh_instance inst;
	bool claimed;
	/* stop */
	bool force;
	bool forcing;
	bool graceful_only; /* escalate: false: a guest that does not power off is left running */
	double timeout;
	double deadline;
	ev_timer poll;
	op_next_fn after_stop; /* NULL: answer {state: stopped} */
	/* start */
	bool resume;
	enum vmh_accel accel;
	int port_tries;
	int tap_fds[VMH_MAX_KEEP_FDS];
	size_t n_tap_fds;
	int port; /* of the SSH forward */
	/* create */
	uint64_t size;
	/* what the broker was told before this operation */
	const char *old_state;
};

static struct op *op_new(struct vmh_req *req, const msgpack_object *params)
{
	struct op *op = calloc(1, sizeof(*op));

	if (!op) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return NULL;
	}
	op->req = req;
	if (qh_inst_from_req(req, params, &op->inst) < 0) {
		free(op);
		return NULL;
	}
	return op;
}

static void op_free(struct op *op)
{
	ev_timer_stop(vmh_loop(), &op->poll);
	if (op->claimed)
		vmh_busy_release(op->inst.name);
	for (size_t i = 0; i < op->n_tap_fds; i++)
		close(op->tap_fds[i]);
	vmh_instance_free(&op->inst);
	free(op);
}

/* Claim the instance for this operation or fail the request. */
static int op_claim(struct op *op, enum proto_state state)
{
	char err[QH_ERR];
	int rc = vmh_busy_claim(op->inst.name, state, err, sizeof(err));

	if (rc < 0) {
		vmh_fail(op->req, rc, "%s", err);
		op->req = NULL;
		op_free(op);
		return rc;
	}
	op->claimed = true;
	return 0;
}

static void op_answer_state(struct op *op, enum proto_state state)
{
	msgpack_packer *pk = vmh_result(op->req);

	msgpack_pack_map(pk, 1);
	proto_pack_kv_state(pk, "state", state);
	vmh_done(op->req);
	op_free(op);
}

static void op_answer_empty(struct op *op)
{
	msgpack_pack_map(vmh_result(op->req), 0);
	vmh_done(op->req);
	op_free(op);
}

static void op_fail(struct op *op, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void op_fail(struct op *op, int err, const char *fmt, ...)
{
	char msg[QH_ERR * 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vmh_log(VMH_WARN, "%s: %s: %s", op->inst.name, vmh_method(op->req), msg);
	vmh_fail(op->req, err, "%s", msg);
	op_free(op);
}

static bool file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* The first lines of a log, as one line for an error message. */
static void log_excerpt(const char *path, char *buf, size_t len)
{
	char *text = NULL;
	size_t n = 0;

	buf[0] = '\0';
	if (read_file(path, 1 << 20, &text, &n) < 0)
		return;
	while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
		text[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (text[i] == '\n')
			text[i] = ' ';
	snprintf(buf, len, "%s", text);
	free(text);
}

static int write_small(const struct vmh_instance *inst, const char *file, const char *text)
{
	char path[QH_PATH];

	qh_path(inst, file, path, sizeof(path));
	return atomic_write_file(path, text, strlen(text), 0644);
}

static void remove_file(const struct vmh_instance *inst, const char *file)
{
	char path[QH_PATH];

	qh_path(inst, file, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		vmh_log(VMH_WARN, "cannot remove %s: %s", path, strerror(errno));
}

/* ---- instance.create ---- */

static void create_done(void *ud, const struct vmh_run_result *r)
{
	struct op *op = ud;

	if (r->status != 0) {
		op_fail(op, PROTO_E_DRIVER, "qemu-img could not create the disk of '%s': %s",
			op->inst.name, r->output);
		return;
	}
	vmh_log(VMH_INFO, "%s: disk created (%llu bytes over %s)", op->inst.name,
		(unsigned long long)op->size, op->inst.image.disk);
	op_answer_empty(op);
}

static void create_got_info(void *ud, const struct vmh_run_result *r)
{
	struct op *op = ud;
	char disk[QH_PATH], size[32];
	json_t *info;
	json_error_t jerr;
	json_int_t base_size;
	int rc;

	if (r->status != 0) {
		op_fail(op, PROTO_E_DRIVER, "cannot read the image %s: %s", op->inst.image.disk,
			r->output);
		return;
	}
	info = json_loads(r->output, 0, &jerr);
	base_size = json_integer_value(json_object_get(info, "virtual-size"));
	json_decref(info);
	if (base_size <= 0) {
		op_fail(op, PROTO_E_DRIVER, "qemu-img did not report the size of %s",
			op->inst.image.disk);
		return;
	}
	op->size = op->inst.disk;
	if (op->size < (uint64_t)base_size) {
		/* A qcow2 overlay smaller than its base would cut the guest's file
		 * system short: keep the image's own size. */
		if (op->inst.disk)
			vmh_log(VMH_INFO, "%s: disk %llu bytes is smaller than the image's %lld; using %lld",
				op->inst.name, (unsigned long long)op->inst.disk, (long long)base_size,
				(long long)base_size);
		op->size = (uint64_t)base_size;
	}
	qh_path(&op->inst, PROTO_FILE_DISK, disk, sizeof(disk));
	snprintf(size, sizeof(size), "%llu", (unsigned long long)op->size);
	char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", op->inst.image.format, "-b",
			op->inst.image.disk, disk, size, NULL};
	struct vmh_run_opts opts = {.timeout_s = 120};

	rc = vmh_run(argv, &opts, create_done, op);
	if (rc < 0)
		op_fail(op, rc, "cannot run qemu-img");
}

void qh_instance_create(struct vmh_req *req, const msgpack_object *params)
{
	struct op *op = op_new(req, params);
	char disk[QH_PATH];
	int rc;

	if (!op || op_claim(op, PROTO_STATE_STOPPED) < 0)
		return;
	qh_path(&op->inst, PROTO_FILE_DISK, disk, sizeof(disk));
	if (file_exists(disk)) {
		op_fail(op, PROTO_E_ALREADY_EXISTS, "instance '%s' already has a disk (%s)",
			op->inst.name, disk);
		return;
	}
	if (!op->inst.image.disk) {
		op_fail(op, PROTO_E_INVALID_ARGUMENT, "instance '%s' names no base image to create "
			"its disk from", op->inst.name);
		return;
	}
	if (!file_exists(op->inst.image.disk)) {
		op_fail(op, PROTO_E_NOT_FOUND, "image disk %s does not exist", op->inst.image.disk);
		return;
	}
	rc = mkdir_p(op->inst.dir, 0755);
	if (rc < 0) {
		op_fail(op, rc, "cannot create %s: %s", op->inst.dir, strerror(errno));
		return;
	}
	char *argv[] = {"qemu-img", "info", "--output=json", "-U", "-f", op->inst.image.format,
			op->inst.image.disk, NULL};
	struct vmh_run_opts opts = {.timeout_s = 60};

	rc = vmh_run(argv, &opts, create_got_info, op);
	if (rc < 0)
		op_fail(op, rc, "cannot run qemu-img");
}

/* ---- instance.start ---- */

/* A free TCP port on 127.0.0.1 for the SSH forward. */
static int pick_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int port = PROTO_E_IO;

	if (fd < 0)
		return PROTO_E_IO;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void start_finish(struct op *op)
{
	qh_notify_state(&op->inst, PROTO_STATE_RUNNING);
	op_answer_state(op, PROTO_STATE_RUNNING);
}

struct delvm_task {
	char sock[QH_PATH];
	char name[64];
};

static int delvm_task(void *arg, char *err, size_t errlen)
{
	struct delvm_task *t = arg;

	return qh_hmp(t->sock, "delvm " PROTO_SUSPEND_TAG, 60.0, err, errlen);
}

static void delvm_done(void *ud, const struct vmh_run_result *r)
{
	struct delvm_task *t = ud;

	if (r->status != 0)
		vmh_log(VMH_WARN, "%s: resumed, but the suspend snapshot stays: %s", t->name,
			r->output);
	free(t);
}

static void start_resumed(struct op *op)
{
	struct delvm_task *t = calloc(1, sizeof(*t));

	remove_file(&op->inst, PROTO_FILE_SUSPENDED);
	if (!t)
		return;
	/* The saved state was needed only to come back; drop it so that the disk
	 * does not keep the VM's memory image. Freeing its clusters can take a
	 * while: not on the loop. */
	qh_path(&op->inst, QH_QMP, t->sock, sizeof(t->sock));
	snprintf(t->name, sizeof(t->name), "%s", op->inst.name);
	if (vmh_run_task(delvm_task, t, 120.0, delvm_done, t) < 0)
		free(t);
}

static void start_with_accel(void *ud, enum vmh_accel accel);

static void start_done(void *ud, const struct vmh_run_result *r)
{
	struct op *op = ud;
	char log[QH_PATH], text[QH_ERR];

	for (size_t i = 0; i < op->n_tap_fds; i++)
		close(op->tap_fds[i]);
	op->n_tap_fds = 0;
	qh_path(&op->inst, QH_LOG, log, sizeof(log));
	if (r->status == 0 && qh_vm_pid(&op->inst)) {
		vmh_log(VMH_INFO, "%s: qemu running (pid %d)%s", op->inst.name,
			(int)qh_vm_pid(&op->inst), op->resume ? ", resumed" : "");
		if (op->resume)
			start_resumed(op);
		start_finish(op);
		return;
	}
	log_excerpt(log, text, sizeof(text));
	qh_vm_cleanup(&op->inst);
	/* The free port was taken between our check and qemu's bind: pick another. */
	if (r->status != 0 && strstr(text, "host forwarding") && ++op->port_tries < 3) {
		vmh_log(VMH_INFO, "%s: SSH port taken meanwhile; trying another", op->inst.name);
		start_with_accel(op, op->accel);
		return;
	}
	/* A restart that cannot start again leaves the instance stopped. */
	qh_notify_state(&op->inst, op->resume ? PROTO_STATE_SUSPENDED : PROTO_STATE_STOPPED);
	if (r->timed_out)
		op_fail(op, PROTO_E_TIMEOUT, "qemu did not start '%s' within %.0f s", op->inst.name,
			START_TIMEOUT);
	else if (op->resume)
		op_fail(op, PROTO_E_DRIVER,
			"qemu could not resume '%s' from its suspended state: %s (a forced stop "
			"discards the suspended state so that it can start afresh)",
			op->inst.name, text[0] ? text : r->output);
	else
		op_fail(op, PROTO_E_DRIVER, "qemu could not start '%s': %s", op->inst.name,
			text[0] ? text : "it exited without saying why");
}

/* Copy src to dst through a temporary name, so that a crash never leaves a
 * half-written variable store that the firmware would then refuse. */
static int copy_file(const char *src, const char *dst, char *err, size_t errlen)
{
	char tmp[QH_PATH], buf[65536];
	int in, out, rc = -1;
	ssize_t n;

	snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		snprintf(err, errlen, "cannot read %s: %s", src, strerror(errno));
		return -1;
	}
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		goto out_close_in;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (write(out, buf, (size_t)n) != n) {
			snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
			goto out_close_out;
		}
	}
	if (n < 0) {
		snprintf(err, errlen, "cannot read %s: %s", src, strerror(errno));
		goto out_close_out;
	}
	if (fsync(out) < 0 || rename(tmp, dst) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", dst, strerror(errno));
		goto out_close_out;
	}
	rc = 0;
out_close_out:
	close(out);
	if (rc < 0)
		unlink(tmp);
out_close_in:
	close(in);
	return rc;
}

/* An image without a kernel boots through UEFI firmware; its variable store
 * is created from the firmware's template on the first start and kept. */
static int start_prepare_firmware(struct op *op)
{
	char vars[QH_PATH], err[QH_ERR];

	if (op->inst.image.kernel)
		return 0;
	if (!file_exists(QH_OVMF_CODE) || !file_exists(QH_OVMF_VARS)) {
		op_fail(op, PROTO_E_NOT_FOUND,
			"instance '%s' boots through UEFI firmware, but %s or %s is missing "
			"(install the ovmf package)",
			op->inst.name, QH_OVMF_CODE, QH_OVMF_VARS);
		return -1;
	}
	qh_path(&op->inst, QH_EFI_VARS, vars, sizeof(vars));
	if (file_exists(vars))
		return 0;
	if (copy_file(QH_OVMF_VARS, vars, err, sizeof(err)) < 0) {
		op_fail(op, PROTO_E_IO, "instance '%s': %s", op->inst.name, err);
		return -1;
	}
	return 0;
}

/* Files the command line names must exist, or qemu's own message is vaguer. */
static int start_check_files(struct op *op)
{
	const struct vmh_instance *in = &op->inst;
	char disk[QH_PATH];
	struct stat st;

	qh_path(in, PROTO_FILE_DISK, disk, sizeof(disk));
	if (!file_exists(disk)) {
		op_fail(op, PROTO_E_NOT_FOUND, "instance '%s' has no disk %s (create it first)",
			in->name, disk);
		return -1;
	}
	const char *need[] = {in->seed, in->image.kernel, in->image.initrd};
	for (size_t i = 0; i < 3; i++) {
		if (need[i] && !file_exists(need[i])) {
			op_fail(op, PROTO_E_NOT_FOUND, "instance '%s': %s does not exist", in->name,
				need[i]);
			return -1;
		}
	}
	for (size_t i = 0; i < in->n_mounts; i++) {
		if (stat(in->mounts[i].source, &st) < 0 || !S_ISDIR(st.st_mode)) {
			op_fail(op, PROTO_E_NOT_FOUND, "instance '%s': mount source %s is not a folder",
				in->name, in->mounts[i].source);
			return -1;
		}
	}
	return 0;
}

/* Extra NICs: as root the helper opens a tap on each bridge itself and
 * hands qemu the fd; otherwise qemu-bridge-helper does it. */
static int start_open_taps(struct op *op)
{
	char err[QH_ERR];

	if (geteuid() != 0)
		return 0;
	if (op->inst.n_networks > sizeof(op->tap_fds) / sizeof(op->tap_fds[0])) {
		op_fail(op, PROTO_E_INVALID_ARGUMENT, "instance '%s' has more than %zu extra networks",
			op->inst.name, sizeof(op->tap_fds) / sizeof(op->tap_fds[0]));
		return -1;
	}
	for (size_t i = 0; i < op->inst.n_networks; i++) {
		int fd = qh_tap_open(op->inst.networks[i].name, err, sizeof(err));

		if (fd < 0) {
			op_fail(op, fd, "instance '%s': %s", op->inst.name, err);
			return -1;
		}
		op->tap_fds[op->n_tap_fds++] = fd;
	}
	return 0;
}

/* Run qemu for op, whose files, taps, port and idmapped mounts are ready. */
static void start_qemu(struct op *op)
{
	char err[QH_ERR], log[QH_PATH], line[4096];
	int keep[VMH_MAX_KEEP_FDS], rc;
	char **argv;

	/* Passed fds land at 3, 4, ... in qemu (see vmh_run). */
	for (size_t i = 0; i < op->n_tap_fds; i++)
		keep[i] = 3 + (int)i;
	argv = qh_vm_argv(&op->inst, op->accel, op->port, op->resume, op->n_tap_fds ? keep : NULL,
			  err, sizeof(err));
	if (!argv) {
		qh_idmap_release(&op->inst);
		op_fail(op, PROTO_E_NOMEM, "%s", err);
		return;
	}
	vmh_argv_str(argv, line, sizeof(line));
	vmh_log(VMH_INFO, "%s: %s", op->inst.name, line);
	qh_path(&op->inst, QH_LOG, log, sizeof(log));
	struct vmh_run_opts opts = {
		.log_path = log,
		.new_session = true,
		.timeout_s = START_TIMEOUT,
		.keep_fds = op->tap_fds,
		.n_keep_fds = op->n_tap_fds,
	};
	rc = vmh_run(argv, &opts, start_done, op);
	qh_argv_free(argv);
	if (rc < 0) {
		qh_idmap_release(&op->inst);
		op_fail(op, rc, "cannot run qemu-system-x86_64");
	}
}

/* In a child of the runner: the idmapped mounts are made there, since
 * making one waits for a process of its own (see idmap.c). Mounts are
 * shared with the helper's mount namespace. */
static int start_idmap_task(void *arg, char *err, size_t errlen)
{
	struct op *op = arg;

	return qh_idmap_prepare(&op->inst, err, errlen);
}

static void start_idmapped(void *ud, const struct vmh_run_result *r)
{
	struct op *op = ud;
	int rc = vmh_task_code(r);

	if (rc < 0) {
		qh_idmap_release(&op->inst);
		op_fail(op, rc, "%s", r->output[0] ? r->output : "the id mapped mounts failed");
		return;
	}
	start_qemu(op);
}

static void start_with_accel(void *ud, enum vmh_accel accel)
{
	struct op *op = ud;
	char port_text[16];
	int rc;

	op->accel = accel;
	if (start_check_files(op) < 0 || start_prepare_firmware(op) < 0 ||
	    start_open_taps(op) < 0)
		return;
	op->port = pick_port();
	if (op->port < 0) {
		op_fail(op, PROTO_E_IO, "cannot find a free port for SSH");
		return;
	}
	snprintf(port_text, sizeof(port_text), "%d\n", op->port);
	rc = write_small(&op->inst, QH_SSH_PORT, port_text);
	if (rc < 0) {
		op_fail(op, rc, "cannot write %s/%s", op->inst.dir, QH_SSH_PORT);
		return;
	}
	op->resume = qh_vm_suspended(&op->inst);
	qh_vm_cleanup(&op->inst);
	/* What a helper that died before its VM stopped left behind. */
	qh_idmap_release(&op->inst);
	if (!qh_idmap_needed(&op->inst)) {
		start_qemu(op);
		return;
	}
	rc = vmh_run_task(start_idmap_task, op, QH_IDMAP_TIMEOUT, start_idmapped, op);
	if (rc < 0)
		op_fail(op, rc, "cannot start making the idmapped mounts");
}

/* Start an instance this op has claimed. */
static void start_begin(struct op *op)
{
	char sock[QH_PATH], err[QH_ERR];
	json_t *ret = NULL;

	if (qh_vm_pid(&op->inst)) {
		/* A VM left paused (a suspend that failed half-way) runs on. */
		qh_path(&op->inst, QH_QMP, sock, sizeof(sock));
		if (qh_qmp(sock, "query-status", NULL, 2.0, &ret, err, sizeof(err)) == 0 &&
		    json_is_false(json_object_get(ret, "running")) &&
		    qh_qmp(sock, "cont", NULL, 2.0, NULL, err, sizeof(err)) < 0)
			vmh_log(VMH_WARN, "%s: cannot resume the paused VM: %s", op->inst.name, err);
		json_decref(ret);
		op_answer_state(op, PROTO_STATE_RUNNING);
		return;
	}
	vmh_accel_when_ready(start_with_accel, op);
}

void qh_instance_start(struct vmh_req *req, const msgpack_object *params)
{
	struct op *op = op_new(req, params);

	if (!op || op_claim(op, PROTO_STATE_STARTING) < 0)
		return;
	start_begin(op);
}

/* ---- instance.stop ---- */

static void stop_gone(struct op *op)
{
	ev_timer_stop(vmh_loop(), &op->poll);
	qh_vm_cleanup(&op->inst);
	vmh_log(VMH_INFO, "%s: qemu has exited", op->inst.name);
	if (op->after_stop) {
		op->after_stop(op);
		return;
	}
	qh_notify_state(&op->inst, PROTO_STATE_STOPPED);
	op_answer_state(op, PROTO_STATE_STOPPED);
}

static double now(void)
{
	return ev_now(vmh_loop());
}

/* Power off at once: ask qemu to quit, kill it if the monitor does not answer. */
static void stop_force(struct op *op)
{
	char sock[QH_PATH], err[QH_ERR];
	pid_t pid = qh_vm_pid(&op->inst);

	op->forcing = true;
	op->deadline = now() + QUIT_GRACE;
	if (!pid)
		return;
	qh_path(&op->inst, QH_QMP, sock, sizeof(sock));
	if (qh_qmp(sock, "quit", NULL, 2.0, NULL, err, sizeof(err)) < 0) {
		vmh_log(VMH_WARN, "%s: %s; killing qemu (pid %d)", op->inst.name, err, (int)pid);
		kill(pid, SIGKILL);
	}
}

static void stop_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct op *op = w->data;
	pid_t pid = qh_vm_pid(&op->inst);

	if (!pid) {
		stop_gone(op);
		return;
	}
	if (now() < op->deadline)
		return;
	if (!op->forcing && op->graceful_only) {
		ev_timer_stop(loop, w);
		op_fail(op, PROTO_E_DRIVER, "the guest of '%s' did not power off within %.0f s (left running)",
			op->inst.name, op->timeout);
		return;
	}
	if (!op->forcing) {
		vmh_log(VMH_INFO, "%s: the guest did not power off within %.0f s; forcing it",
			op->inst.name, op->timeout);
		stop_force(op);
		return;
	}
	if (op->deadline > 0 && now() < op->deadline + QUIT_GRACE) {
		/* quit was accepted but qemu lingers: the last resort. */
		kill(pid, SIGKILL);
		return;
	}
	ev_timer_stop(loop, w);
	op_fail(op, PROTO_E_TIMEOUT, "qemu (pid %d) of '%s' does not exit even when killed", (int)pid,
		op->inst.name);
}

/* Stop the running VM of op, then call op->after_stop or answer. */
static void stop_running(struct op *op)
{
	char sock[QH_PATH], err[QH_ERR];

	ev_timer_init(&op->poll, stop_poll_cb, STOP_POLL, STOP_POLL);
	op->poll.data = op;
	ev_timer_start(vmh_loop(), &op->poll);
	if (op->force) {
		stop_force(op);
		return;
	}
	op->deadline = now() + op->timeout;
	qh_path(&op->inst, QH_QMP, sock, sizeof(sock));
	if (qh_qmp(sock, "system_powerdown", NULL, 2.0, NULL, err, sizeof(err)) < 0) {
		if (op->graceful_only) {
			ev_timer_stop(vmh_loop(), &op->poll);
			op_fail(op, PROTO_E_DRIVER, "cannot ask the guest of '%s' to power off: %s (left running)",
				op->inst.name, err);
			return;
		}
		vmh_log(VMH_WARN, "%s: %s; forcing the stop", op->inst.name, err);
		stop_force(op);
	}
}

static int op_read_stop_params(struct op *op, const msgpack_object *params)
{
	int64_t timeout = STOP_DEFAULT_TIMEOUT;
	bool force = false, escalate = true;

	if ((proto_map_get(params, "force") && proto_get_bool(params, "force", &force) < 0) ||
	    (proto_map_get(params, "escalate") && proto_get_bool(params, "escalate", &escalate) < 0) ||
	    (proto_map_get(params, "timeout") && proto_get_int(params, "timeout", &timeout) < 0) ||
	    timeout < 0) {
		op_fail(op, PROTO_E_INVALID_ARGUMENT,
			"'force' and 'escalate' must be bools and 'timeout' seconds >= 0");
		return -1;
	}
	op->force = force;
	op->graceful_only = !escalate;
	op->timeout = timeout ? (double)timeout : STOP_DEFAULT_TIMEOUT;
	return 0;
}

static void discard_done(void *ud, const struct vmh_run_result *r)
{
	struct op *op = ud;

	if (r->status != 0)
		vmh_log(VMH_WARN, "%s: could not delete the suspend snapshot: %s", op->inst.name,
			r->output);
	remove_file(&op->inst, PROTO_FILE_SUSPENDED);
	vmh_log(VMH_INFO, "%s: suspended state discarded", op->inst.name);
	if (op->after_stop) {
		op->after_stop(op);
		return;
	}
	qh_notify_state(&op->inst, PROTO_STATE_STOPPED);
	op_answer_state(op, PROTO_STATE_STOPPED);
}

/* Forget a suspended state (a forced stop of a suspended instance; delete):
 * also the way out when a saved state cannot be restored. */
static void discard_suspend(struct op *op)
{
	char disk[QH_PATH];
	int rc;

	qh_path(&op->inst, PROTO_FILE_DISK, disk, sizeof(disk));
	char *argv[] = {"qemu-img", "snapshot", "-d", PROTO_SUSPEND_TAG, disk, NULL};
	struct vmh_run_opts opts = {.timeout_s = 120};

	rc = vmh_run(argv, &opts, discard_done, op);
	if (rc < 0)
		op_fail(op, rc, "cannot run qemu-img");
}

void qh_instance_stop(struct vmh_req *req, const msgpack_object *params)
{
	struct op *op = op_new(req, params);

	if (!op || op_read_stop_params(op, params) < 0 || op_claim(op, PROTO_STATE_STOPPING) < 0)
		return;
	if (qh_vm_pid(&op->inst)) {
		stop_running(op);
		return;
	}
	if (qh_vm_suspended(&op->inst)) {
		if (!op->force) {
			op_fail(op, PROTO_E_INVALID_STATE,
				"instance '%s' is suspended: start it, or stop it with force to discard "
				"its suspended state",
				op->inst.name);
			return;
		}
		discard_suspend(op);
		return;
	}
	qh_vm_cleanup(&op->inst);
	op_answer_state(op, PROTO_STATE_STOPPED);
}

/* ---- instance.restart: a real reboot, the guest shuts down and boots again ---- */

static void restart_after_stop(struct op *op)
{
	start_begin(op);
}

void qh_instance_restart(struct vmh_req *req, const msgpack_object *params)
{
	struct op *op = op_new(req, params);

	if (!op || op_read_stop_params(op, params) < 0)
		return;
	op->force = false;
	if (op_claim(op, PROTO_STATE_RESTARTING) < 0)
		return;
	if (!qh_vm_pid(&op->inst) && qh_vm_suspended(&op->inst)) {
		op_fail(op, PROTO_E_INVALID_STATE, "instance '%s' is suspended: start it instead",
			op->inst.name);
		return;
	}
	op->after_stop = restart_after_stop;
	qh_notify_state(&op->inst, PROTO_STATE_RESTARTING);
	if (!qh_vm_pid(&op->inst)) {
		start_begin(op);
		return;
	}
	stop_running(op);
}

/* ---- instance.suspend ---- */

struct suspend_task {
	char sock[QH_PATH];
};

/* In a child process: pause, save everything into the disk, keep it paused. */
static int suspend_task(void *arg, char *err, size_t errlen)
{
	struct suspend_task *t = arg;
	int rc;

	rc = qh_qmp(t->sock, "stop", NULL, 10.0, NULL, err, errlen);
	if (rc < 0)
		return rc;
	rc = qh_hmp(t->sock, "savevm " PROTO_SUSPEND_TAG, SAVEVM_TIMEOUT, err, errlen);
	if (rc < 0) {
		char ignored[QH_ERR];

		qh_qmp(t->sock, "cont", NULL, 10.0, NULL, ignored, sizeof(ignored));
	}
	return rc;
}

static void suspend_after_quit(struct op *op)
{
	qh_notify_state(&op->inst, PROTO_STATE_SUSPENDED);
	op_answer_state(op, PROTO_STATE_SUSPENDED);
}

static void suspend_saved(void *ud, const struct vmh_run_result *r)
{
	struct op *op = ud;
	char stamp[64];
	time_t t = time(NULL);
	int rc;

	if (r->status != 0) {
		op_fail(op, r->timed_out ? PROTO_E_TIMEOUT : PROTO_E_DRIVER,
			"qemu could not save the state of '%s': %s", op->inst.name,
			r->output[0] ? r->output : "the monitor conversation failed");
		return;
	}
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ\n", gmtime(&t));
	rc = write_small(&op->inst, PROTO_FILE_SUSPENDED, stamp);
	if (rc < 0) {
		op_fail(op, rc, "cannot write %s/%s; the VM stays paused", op->inst.dir, PROTO_FILE_SUSPENDED);
		return;
	}
	vmh_log(VMH_INFO, "%s: state saved; stopping qemu", op->inst.name);
	op->force = true;
	op->after_stop = suspend_after_quit;
	stop_running(op);
}

void qh_instance_suspend(struct vmh_req *req, const msgpack_object *params)
{
	struct op *op = op_new(req, params);
	struct suspend_task *t;
	int rc;

	if (!op || op_claim(op, PROTO_STATE_SUSPENDING) < 0)
		return;
	if (!qh_vm_pid(&op->inst)) {
		if (qh_vm_suspended(&op->inst))
			op_answer_state(op, PROTO_STATE_SUSPENDED);
		else
			op_fail(op, PROTO_E_INVALID_STATE, "instance '%s' is not running", op->inst.name);
		return;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		op_fail(op, PROTO_E_NOMEM, "out of memory");
		return;
	}
	qh_path(&op->inst, QH_QMP, t->sock, sizeof(t->sock));
	/* The child has its own copy of t after fork. */
	rc = vmh_run_task(suspend_task, t, SAVEVM_TIMEOUT + 30, suspend_saved, op);
	free(t);
	if (rc < 0)
		op_fail(op, rc, "cannot start saving the state");
}

/* ---- instance.delete ---- */

static void delete_files(struct op *op)
{
	static const char *const files[] = {QH_PIDFILE, QH_QMP, QH_SSH_PORT, QH_CONSOLE, QH_LOG,
					    PROTO_FILE_SUSPENDED, QH_EFI_VARS};

	/* Before the broker removes the folder: it must not reach a source. */
	qh_idmap_release(&op->inst);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		remove_file(&op->inst, files[i]);
	vmh_log(VMH_INFO, "%s: runtime files removed", op->inst.name);
	qh_notify_state(&op->inst, PROTO_STATE_STOPPED);
	op_answer_empty(op);
}

static void delete_after_stop(struct op *op)
{
	if (qh_vm_suspended(&op->inst)) {
		op->after_stop = delete_files;
		discard_suspend(op);
		return;
	}
	delete_files(op);
}

void qh_instance_delete(struct vmh_req *req, const msgpack_object *params)
{
	struct op *op = op_new(req, params);

	if (!op || op_claim(op, PROTO_STATE_STOPPING) < 0)
		return;
	op->force = true;
	op->after_stop = delete_after_stop;
	if (qh_vm_pid(&op->inst)) {
		stop_running(op);
		return;
	}
	delete_after_stop(op);
}

/* ---- instance.state, instance.info, instances.list ---- */

void qh_instance_state(struct vmh_req *req, const msgpack_object *params)
{
	struct vmh_instance inst;
	msgpack_packer *pk;

	if (qh_inst_from_req(req, params, &inst) < 0)
		return;
	pk = vmh_result(req);
	msgpack_pack_map(pk, 1);
	proto_pack_kv_state(pk, "state", qh_vm_state(&inst));
	vmh_done(req);
	vmh_instance_free(&inst);
}

/* User-mode networking gives every guest the same address behind the
 * forwarded port; there is none while the VM is not running. */
static void pack_ipv4(msgpack_packer *pk, enum proto_state state)
{
	if (state == PROTO_STATE_RUNNING) {
		msgpack_pack_array(pk, 1);
		proto_pack_str(pk, "10.0.2.15");
	} else {
		msgpack_pack_array(pk, 0);
	}
}

void qh_instance_info(struct vmh_req *req, const msgpack_object *params)
{
	struct vmh_instance inst;
	enum proto_state state;
	msgpack_packer *pk;
	pid_t pid;

	if (qh_inst_from_req(req, params, &inst) < 0)
		return;
	state = qh_vm_state(&inst);
	pid = qh_vm_pid(&inst);
	pk = vmh_result(req);
	msgpack_pack_map(pk, 5);
	proto_pack_kv_state(pk, "state", state);
	proto_pack_kv_str(pk, "ssh_host", "127.0.0.1");
	proto_pack_kv_int(pk, "ssh_port", pid ? qh_vm_ssh_port(&inst) : 0);
	proto_pack_str(pk, "ipv4");
	pack_ipv4(pk, pid ? state : PROTO_STATE_STOPPED);
	proto_pack_str(pk, "pid");
	if (pid)
		msgpack_pack_int64(pk, pid);
	else
		msgpack_pack_nil(pk);
	vmh_done(req);
	vmh_instance_free(&inst);
}

void qh_instances_list(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *arr = proto_map_get(params, "instances");
	msgpack_packer *pk;
	char err[QH_ERR];

	if (!arr || arr->type != MSGPACK_OBJECT_ARRAY) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'instances' must be an array of instance maps");
		return;
	}
	pk = vmh_result(req);
	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "instances");
	msgpack_pack_array(pk, arr->via.array.size);
	qh_vm_batch(true);
	for (uint32_t i = 0; i < arr->via.array.size; i++) {
		const msgpack_object *m = &arr->via.array.ptr[i];
		struct vmh_instance inst;
		enum proto_state state;
		char name[128] = "";

		if (qh_inst_parse(m, &inst, err, sizeof(err)) < 0) {
			/* One bad record must not hide the others. */
			proto_get_str(m, "name", name, sizeof(name));
			vmh_log(VMH_WARN, "instances.list: %s", err);
			msgpack_pack_map(pk, 4);
			proto_pack_kv_str(pk, "name", name);
			proto_pack_kv_state(pk, "state", PROTO_STATE_UNKNOWN);
			proto_pack_kv_str(pk, "reason", err);
			proto_pack_str(pk, "ipv4");
			msgpack_pack_array(pk, 0);
			continue;
		}
		msgpack_pack_map(pk, 3);
		/* One look at the pid file serves the watch and the state. */
		state = qh_vm_state_known(&inst, qh_watch_pid(&inst));
		proto_pack_kv_str(pk, "name", inst.name);
		proto_pack_kv_state(pk, "state", state);
		/* Optional, as in instance.info: saves the broker a call per instance. */
		proto_pack_str(pk, "ipv4");
		pack_ipv4(pk, state);
		vmh_instance_free(&inst);
	}
	qh_vm_batch(false);
	vmh_done(req);
}
