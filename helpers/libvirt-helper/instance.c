/*
 * The disk overlay every driver of the qemu scope shares. qemu-img runs
 * through the SDK's runner (vmh_run), so the main loop never waits for it;
 * each function answers through its callback, exactly once.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lvh.h"

#define INST_INFO_TIMEOUT 60.0
#define INST_IMG_TIMEOUT 120.0
#define INST_ERR 1024

/* One qemu-img conversation about one instance's disk. */
struct inst_run {
	const struct vmh_instance *inst; /* the caller's, alive until done */
	char overlay[PATH_MAX];
	char size[32];
	inst_done_fn done;
	void *ud;
};

int inst_overlay_path(const struct vmh_instance *inst, char *buf, size_t len)
{
	return vmh_instance_file(inst, PROTO_FILE_DISK, buf, len);
}

/* done(rc, message) and free r. */
static void inst_finish(struct inst_run *r, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void inst_finish(struct inst_run *r, int rc, const char *fmt, ...)
{
	char err[INST_ERR] = "";
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(err, sizeof(err), fmt, ap);
		va_end(ap);
	}
	r->done(r->ud, rc, err);
	free(r);
}

static struct inst_run *inst_run_new(const struct vmh_instance *inst, inst_done_fn done, void *ud)
{
	struct inst_run *r = calloc(1, sizeof(*r));

	if (!r) {
		done(ud, PROTO_E_NOMEM, "out of memory");
		return NULL;
	}
	r->inst = inst;
	r->done = done;
	r->ud = ud;
	if (inst_overlay_path(inst, r->overlay, sizeof(r->overlay)) < 0) {
		inst_finish(r, PROTO_E_INVALID_ARGUMENT, "the instance folder path of %s is too long",
			    inst->name);
		return NULL;
	}
	return r;
}

/* vmh_run() of argv for r, or r finished with the reason it could not start. */
static void inst_spawn(struct inst_run *r, char *const argv[], double timeout_s, vmh_run_cb cb)
{
	struct vmh_run_opts opts = {.timeout_s = timeout_s};
	int rc = vmh_run(argv, &opts, cb, r);

	if (rc < 0)
		inst_finish(r, rc, "cannot run qemu-img: %s", proto_strerror(rc));
}

/* ---- creating the overlay ---- */

static void inst_created(void *ud, const struct vmh_run_result *res)
{
	struct inst_run *r = ud;

	if (res->status != 0) {
		unlink(r->overlay);
		inst_finish(r, PROTO_E_DRIVER, "cannot create the disk of %s: %s", r->inst->name,
			    res->output[0] ? res->output : "qemu-img failed");
		return;
	}
	vmh_log(VMH_INFO, "%s: disk created (%s bytes over %s)", r->inst->name, r->size,
		r->inst->image.disk);
	inst_finish(r, 0, NULL);
}

/* The virtual size of the base image, from `qemu-img info --output=json`. */
static void inst_got_info(void *ud, const struct vmh_run_result *res)
{
	static const char key[] = "\"virtual-size\":";
	struct inst_run *r = ud;
	const struct vmh_instance *inst = r->inst;
	uint64_t base_size = 0;
	const char *p;

	if (res->status != 0) {
		inst_finish(r, PROTO_E_DRIVER, "cannot read the image %s: %s", inst->image.disk,
			    res->output[0] ? res->output : "qemu-img failed");
		return;
	}
	p = strstr(res->output, key);
	if (!p || sscanf(p + strlen(key), " %" SCNu64, &base_size) != 1 || base_size == 0) {
		inst_finish(r, PROTO_E_DRIVER, "qemu-img did not report the size of %s",
			    inst->image.disk);
		return;
	}
	/* As the qemu driver does: never smaller than the image, or the guest's
	 * file system would be cut short. */
	snprintf(r->size, sizeof(r->size), "%" PRIu64,
		 inst->disk > base_size ? inst->disk : base_size);
	char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", inst->image.format,
			"-b", inst->image.disk, r->overlay, r->size, NULL};
	inst_spawn(r, argv, INST_IMG_TIMEOUT, inst_created);
}

void inst_overlay_ensure(const struct vmh_instance *inst, inst_done_fn done, void *ud)
{
	struct inst_run *r = inst_run_new(inst, done, ud);
	struct stat st;

	if (!r)
		return;
	if (stat(r->overlay, &st) == 0) {
		inst_finish(r, 0, NULL);
		return;
	}
	if (!inst->image.disk) {
		inst_finish(r, PROTO_E_INVALID_ARGUMENT,
			    "%s has no disk yet and its instance map names no base image", inst->name);
		return;
	}
	if (stat(inst->image.disk, &st) < 0) {
		inst_finish(r, PROTO_E_NOT_FOUND, "the base image of %s, %s, is not readable: %s",
			    inst->name, inst->image.disk, strerror(errno));
		return;
	}
	if (mkdir(inst->dir, 0755) < 0 && errno != EEXIST) {
		inst_finish(r, PROTO_E_IO, "cannot create the instance folder %s: %s", inst->dir,
			    strerror(errno));
		return;
	}
	char *argv[] = {"qemu-img", "info", "--output=json", "-U", "-f", inst->image.format,
			inst->image.disk, NULL};
	inst_spawn(r, argv, INST_INFO_TIMEOUT, inst_got_info);
}

/* ---- growing it ---- */

static void inst_resized(void *ud, const struct vmh_run_result *res)
{
	struct inst_run *r = ud;

	/* Without --shrink, qemu-img refuses to make the disk smaller and says so. */
	if (res->status != 0 && strstr(res->output, "--shrink")) {
		inst_finish(r, PROTO_E_INVALID_ARGUMENT, "the disk of %s can only grow, not shrink",
			    r->inst->name);
		return;
	}
	if (res->status != 0) {
		inst_finish(r, PROTO_E_DRIVER, "qemu-img could not resize the disk of %s: %s",
			    r->inst->name, res->output[0] ? res->output : "failed");
		return;
	}
	vmh_log(VMH_INFO, "%s: disk resized to %s bytes", r->inst->name, r->size);
	inst_finish(r, 0, NULL);
}

void inst_overlay_resize(const struct vmh_instance *inst, uint64_t size, inst_done_fn done,
			 void *ud)
{
	struct inst_run *r = inst_run_new(inst, done, ud);
	struct stat st;

	if (!r)
		return;
	if (stat(r->overlay, &st) < 0) {
		inst_finish(r, PROTO_E_NOT_FOUND, "%s has no disk %s", inst->name, r->overlay);
		return;
	}
	snprintf(r->size, sizeof(r->size), "%" PRIu64, size);
	char *argv[] = {"qemu-img", "resize", "-q", "-f", "qcow2", r->overlay, r->size, NULL};
	inst_spawn(r, argv, INST_IMG_TIMEOUT, inst_resized);
}

/* ---- the qemu driver's suspend snapshot ---- */

static void inst_discarded(void *ud, const struct vmh_run_result *res)
{
	struct inst_run *r = ud;

	if (res->status != 0)
		inst_finish(r, PROTO_E_DRIVER, "%s",
			    res->output[0] ? res->output : "qemu-img snapshot -d failed");
	else
		inst_finish(r, 0, NULL);
}

void inst_qemu_suspend_discard(const struct vmh_instance *inst, inst_done_fn done, void *ud)
{
	struct inst_run *r = inst_run_new(inst, done, ud);

	if (!r)
		return;
	/* The qemu driver keeps a suspended VM's RAM in this internal snapshot;
	 * without its marker it is dead weight in the disk. */
	char *argv[] = {"qemu-img", "snapshot", "-d", PROTO_SUSPEND_TAG, r->overlay, NULL};
	inst_spawn(r, argv, INST_IMG_TIMEOUT, inst_discarded);
}
