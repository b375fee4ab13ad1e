/*
 * The image as a VHDX for Hyper-V: qemu-img convert -O vhdx -o
 * subformat=dynamic, once per image sha256, into SCOPE_DIR/vhdx/SHA.vhdx,
 * which every instance's differencing disk then has for parent. The
 * sha256 is computed on a work thread; qemu-img -p's progress, written to
 * a log file, is read by a timer and sent as progress notifications.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/evp.h>

#include "hv.h"

struct image_job {
	struct vmh_req *req;
	char src[HV_PATH], fmt[16];
	char sha[65];
	char dst[HV_PATH], tmp[HV_PATH], log[HV_PATH];
	char err[HV_ERR];
	int rc;
	ev_timer tick;
	hv_image_cb cb;
	void *ud;
};

void hv_image_convert_argv(const char *src, const char *fmt, const char *dst, char *argv[12])
{
	argv[0] = "qemu-img";
	argv[1] = "convert";
	argv[2] = "-p";
	argv[3] = "-f";
	argv[4] = (char *)fmt;
	argv[5] = "-O";
	argv[6] = "vhdx";
	argv[7] = "-o";
	argv[8] = "subformat=dynamic";
	argv[9] = (char *)src;
	argv[10] = (char *)dst;
	argv[11] = NULL;
}

double hv_image_progress(const char *text)
{
	const char *p = text, *last = NULL;
	double f;

	while ((p = strchr(p, '(')) != NULL)
		last = p++;
	if (!last || sscanf(last, "(%lf/100%%)", &f) != 1)
		return -1;
	return f / 100.0;
}

static int sha256_file(const char *path, char hex[65], char *err, size_t errlen)
{
	unsigned char md[EVP_MAX_MD_SIZE], buf[1 << 16];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = NULL;
	int rc = PROTO_E_IO;
	size_t n;
	FILE *f = fopen(path, "rb");

	if (!f) {
		snprintf(err, errlen, "cannot read image %s: %s", path, strerror(errno));
		return PROTO_E_IO;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		snprintf(err, errlen, "out of memory");
		rc = PROTO_E_NOMEM;
		goto out_close;
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(ctx, buf, n);
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read image %s: %s", path, strerror(errno));
		goto out_close;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	for (unsigned int i = 0; i < mdlen && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	rc = 0;
out_close:
	EVP_MD_CTX_free(ctx);
	fclose(f);
	return rc;
}

static void job_finish(struct image_job *j, int rc, const char *text)
{
	hv_image_cb cb = j->cb;
	void *ud = j->ud;
	char msg[HV_PATH + HV_ERR];

	snprintf(msg, sizeof(msg), "%s", text);
	ev_timer_stop(vmh_loop(), &j->tick);
	if (j->log[0])
		unlink(j->log);
	free(j);
	cb(ud, rc, msg);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct image_job *j = w->data;
	char text[4096];
	size_t n;
	FILE *f = fopen(j->log, "r");

	(void)loop;
	(void)revents;
	if (!f)
		return;
	if (fseek(f, -(long)(sizeof(text) - 1), SEEK_END) < 0)
		rewind(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	if (hv_image_progress(text) >= 0)
		vmh_progress(j->req, hv_image_progress(text), "Converting the image to VHDX");
}

static void on_converted(void *ud, const struct vmh_run_result *r)
{
	struct image_job *j = ud;

	if (r->status != 0) {
		unlink(j->tmp);
		snprintf(j->err, sizeof(j->err), "qemu-img could not convert %s to VHDX (%s)", j->src,
			 r->timed_out ? "timed out" : "see the broker's log");
		job_finish(j, PROTO_E_DRIVER, j->err);
		return;
	}
	if (rename(j->tmp, j->dst) < 0) {
		snprintf(j->err, sizeof(j->err), "cannot rename %s: %s", j->tmp, strerror(errno));
		unlink(j->tmp);
		job_finish(j, PROTO_E_IO, j->err);
		return;
	}
	vmh_progress(j->req, 1.0, "Converting the image to VHDX");
	job_finish(j, 0, j->dst);
}

static void hash_work(void *arg)
{
	struct image_job *j = arg;

	j->rc = sha256_file(j->src, j->sha, j->err, sizeof(j->err));
}

static void hash_done(void *arg)
{
	struct image_job *j = arg;
	char dir[HV_PATH], file[80];
	char *argv[12];
	struct vmh_run_opts opts = {.timeout_s = 3600};
	int rc;

	if (j->rc < 0) {
		job_finish(j, j->rc, j->err);
		return;
	}
	snprintf(file, sizeof(file), "%s.vhdx", j->sha);
	if (hv_os_path_join(vmh_scope_dir(), "vhdx", dir, sizeof(dir)) < 0 ||
	    hv_os_path_join(dir, file, j->dst, sizeof(j->dst)) < 0) {
		job_finish(j, PROTO_E_INVALID_ARGUMENT, "the scope folder's path is too long");
		return;
	}
	if (access(j->dst, F_OK) == 0) {
		job_finish(j, 0, j->dst);
		return;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(j->err, sizeof(j->err), "cannot make %s: %s", dir, strerror(errno));
		job_finish(j, PROTO_E_IO, j->err);
		return;
	}
	snprintf(j->tmp, sizeof(j->tmp), "%.*s.part", (int)(sizeof(j->tmp) - 6), j->dst);
	snprintf(j->log, sizeof(j->log), "%.*s.log", (int)(sizeof(j->log) - 5), j->dst);
	hv_image_convert_argv(j->src, j->fmt, j->tmp, argv);
	opts.log_path = j->log;
	vmh_progress(j->req, 0, "Converting the image to VHDX");
	rc = hv_os_spawn(argv, &opts, on_converted, j);
	if (rc < 0) {
		job_finish(j, rc, "cannot run qemu-img");
		return;
	}
	ev_timer_start(vmh_loop(), &j->tick);
}

int hv_image_ensure(struct vmh_req *req, const char *image, const char *format,
		    hv_image_cb cb, void *ud)
{
	struct image_job *j = calloc(1, sizeof(*j));
	int rc;

	if (!j)
		return PROTO_E_NOMEM;
	j->req = req;
	j->cb = cb;
	j->ud = ud;
	snprintf(j->src, sizeof(j->src), "%s", image);
	snprintf(j->fmt, sizeof(j->fmt), "%s", format && !strcmp(format, "raw") ? "raw" : "qcow2");
	ev_timer_init(&j->tick, on_tick, 0.5, 0.5);
	j->tick.data = j;
	rc = vmh_work(hash_work, hash_done, j);
	if (rc < 0)
		free(j);
	return rc;
}
