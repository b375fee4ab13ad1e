/*
 * Choosing the accelerator. /dev/kvm existing proves nothing (a nested or
 * half-working KVM aborts or crawls), so "auto" picks KVM only after a tiny
 * guest really ran under it: a 64 KiB firmware whose reset vector writes a
 * byte to an isa-debug-exit port, which makes qemu exit with a status
 * derived from that byte. The answer is kept for the helper's life, and in
 * SCOPE_DIR/accel-probe for the next helpers: qemu starting a guest costs
 * a fifth of a second of CPU at every helper (re)start otherwise. The file
 * is trusted only for the same qemu binary (size, mtime), kernel release
 * and /dev/kvm (its ctime changes at every boot).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qh.h"

#define ACCEL_PROBE_TIMEOUT 10.0
#define ACCEL_PROBE_BYTE 0x2a
/* isa-debug-exit: qemu exits with (value << 1) | 1. */
#define ACCEL_PROBE_STATUS ((ACCEL_PROBE_BYTE << 1) | 1)
#define ACCEL_CACHE_FILE "accel-probe"
#define ACCEL_CACHE_VERSION "1"

enum accel_mode { ACCEL_AUTO, ACCEL_KVM, ACCEL_TCG };

struct accel_waiter {
	qh_accel_cb cb;
	void *ud;
	struct accel_waiter *next;
};

static struct {
	enum accel_mode mode;
	bool known;
	bool probing;
	enum qh_accel chosen;
	char bios[64];
	struct accel_waiter *waiters;
	char cache_dir[QH_PATH]; /* "" : no cache */
} accel;

const char *qh_accel_name(enum qh_accel a)
{
	return a == QH_ACCEL_KVM ? "kvm" : "tcg";
}

int qh_accel_configure(const char *setting, char *err, size_t errlen)
{
	if (!setting || !*setting || !strcmp(setting, "auto"))
		accel.mode = ACCEL_AUTO;
	else if (!strcmp(setting, "kvm"))
		accel.mode = ACCEL_KVM;
	else if (!strcmp(setting, "tcg"))
		accel.mode = ACCEL_TCG;
	else {
		snprintf(err, errlen, "local.qemu.accel is '%s'; use auto, kvm or tcg", setting);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (accel.mode != ACCEL_AUTO) {
		accel.known = true;
		accel.chosen = accel.mode == ACCEL_KVM ? QH_ACCEL_KVM : QH_ACCEL_TCG;
		vmh_log(VMH_INFO, "accelerator: %s (local.qemu.accel=%s)", qh_accel_name(accel.chosen),
			setting);
	}
	return 0;
}

/* The firmware image: real-mode code at the reset vector (offset 0xfff0). */
static int accel_write_bios(char *path, size_t len)
{
	static const unsigned char code[] = {
		0xb0, ACCEL_PROBE_BYTE, /* mov al, BYTE */
		0xe6, 0xf4,             /* out 0xf4, al */
		0xf4,                   /* hlt */
		0xeb, 0xfd,             /* jmp back to hlt */
	};
	unsigned char *image = calloc(1, 65536);
	int fd, rc = PROTO_E_IO;

	if (!image)
		return PROTO_E_NOMEM;
	memcpy(image + 0xfff0, code, sizeof(code));
	snprintf(path, len, "%s/vmctl-kvm-probe-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		goto out_free_image;
	if (write(fd, image, 65536) == 65536)
		rc = 0;
	close(fd);
	if (rc < 0)
		unlink(path);
out_free_image:
	free(image);
	return rc;
}

static void accel_probe_argv(const char *accel_name, const char *bios, char **argv)
{
	size_t i = 0;

	argv[i++] = "qemu-system-x86_64";
	argv[i++] = "-nodefaults";
	argv[i++] = "-display";
	argv[i++] = "none";
	argv[i++] = "-machine";
	argv[i++] = "pc";
	argv[i++] = "-accel";
	argv[i++] = strcmp(accel_name, "kvm") ? "tcg" : "kvm";
	argv[i++] = "-cpu";
	argv[i++] = strcmp(accel_name, "kvm") ? "max" : "host";
	argv[i++] = "-m";
	argv[i++] = "16";
	argv[i++] = "-bios";
	argv[i++] = (char *)bios;
	argv[i++] = "-device";
	argv[i++] = "isa-debug-exit,iobase=0xf4,iosize=0x04";
	argv[i] = NULL;
}

/* Why KVM cannot even be tried, or NULL. */
static const char *accel_kvm_absent(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? "/dev/kvm does not exist" : "/dev/kvm cannot be opened";
	close(fd);
	return NULL;
}

static void accel_explain(const struct qh_run_result *r, char *why, size_t whylen)
{
	const char *out = r->output && r->output[0] ? r->output : "";
	const char *nl = strchr(out, '\n');
	int outlen = nl ? (int)(nl - out) : (int)strlen(out);

	if (r->timed_out)
		snprintf(why, whylen, "a test guest did not finish within %.0f s under KVM",
			 ACCEL_PROBE_TIMEOUT);
	else if (r->signal)
		snprintf(why, whylen, "qemu died with signal %d running a test guest under KVM",
			 r->signal);
	else
		snprintf(why, whylen, "a test guest under KVM ended with status %d, not %d%s%.*s",
			 r->status, ACCEL_PROBE_STATUS, outlen ? ": " : "", outlen, out);
}

static void accel_decide(enum qh_accel chosen, const char *why)
{
	struct accel_waiter *w = accel.waiters;

	accel.known = true;
	accel.probing = false;
	accel.chosen = chosen;
	accel.waiters = NULL;
	vmh_log(VMH_INFO, "accelerator: %s (local.qemu.accel=auto: %s)", qh_accel_name(chosen), why);
	while (w) {
		struct accel_waiter *next = w->next;

		w->cb(w->ud, chosen);
		free(w);
		w = next;
	}
}

void qh_accel_cache_in(const char *dir)
{
	snprintf(accel.cache_dir, sizeof(accel.cache_dir), "%s", dir ? dir : "");
}

/* What the probe's answer depends on, as one line ("" if unknown). */
static void accel_cache_key(char *key, size_t len)
{
	const char *path = getenv("PATH");
	char prog[QH_PATH];
	struct stat q, kvm;
	struct utsname u;
	bool found = false;

	key[0] = '\0';
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path && !found) {
		size_t n = strcspn(path, ":");

		snprintf(prog, sizeof(prog), "%.*s/qemu-system-x86_64", (int)n, path);
		found = stat(prog, &q) == 0 && S_ISREG(q.st_mode);
		path += n + (path[n] == ':');
	}
	if (!found || stat("/dev/kvm", &kvm) < 0 || uname(&u) < 0)
		return;
	snprintf(key, len, "v%s %s %lld %lld.%09ld %s %lld.%09ld", ACCEL_CACHE_VERSION, prog,
		 (long long)q.st_size, (long long)q.st_mtim.tv_sec, q.st_mtim.tv_nsec, u.release,
		 (long long)kvm.st_ctim.tv_sec, kvm.st_ctim.tv_nsec);
}

/* The file holds the key line, then "kvm" or "tcg", then why. */
static bool accel_cache_read(const char *key)
{
	char path[QH_PATH + 32], text[2048], *chosen, *why;
	size_t n;
	FILE *f;

	if (!accel.cache_dir[0] || !key[0])
		return false;
	snprintf(path, sizeof(path), "%s/%s", accel.cache_dir, ACCEL_CACHE_FILE);
	f = fopen(path, "re");
	if (!f)
		return false;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	chosen = strchr(text, '\n');
	if (!chosen)
		return false;
	*chosen++ = '\0';
	why = strchr(chosen, '\n');
	if (!why || strcmp(text, key) != 0)
		return false;
	*why++ = '\0';
	why[strcspn(why, "\n")] = '\0';
	if (strcmp(chosen, "kvm") && strcmp(chosen, "tcg"))
		return false;
	vmh_log(VMH_DEBUG, "accelerator probe answer from %s", path);
	accel_decide(strcmp(chosen, "kvm") ? QH_ACCEL_TCG : QH_ACCEL_KVM, why);
	return true;
}

/* Best effort: without the file the next helper probes again. */
static void accel_cache_write(const char *key, enum qh_accel chosen, const char *why)
{
	char path[QH_PATH + 32], tmp[QH_PATH + 64];
	FILE *f;
	bool ok;

	if (!accel.cache_dir[0] || !key[0])
		return;
	snprintf(path, sizeof(path), "%s/%s", accel.cache_dir, ACCEL_CACHE_FILE);
	snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	f = fopen(tmp, "we");
	if (!f)
		return;
	ok = fprintf(f, "%s\n%s\n%s\n", key, qh_accel_name(chosen), why) > 0;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) < 0)
		unlink(tmp);
}

static void accel_probe_done(void *ud, const struct qh_run_result *r)
{
	char why[512], key[QH_PATH + 256];
	enum qh_accel chosen = QH_ACCEL_TCG;

	unlink(accel.bios);
	if (r->status == ACCEL_PROBE_STATUS && !r->timed_out) {
		chosen = QH_ACCEL_KVM;
		snprintf(why, sizeof(why), "a test guest ran under KVM");
	} else {
		accel_explain(r, why, sizeof(why));
	}
	/* A probe that timed out may have met a busy host, not a broken KVM. */
	if (!r->timed_out) {
		accel_cache_key(key, sizeof(key));
		accel_cache_write(key, chosen, why);
	}
	accel_decide(chosen, why);
}

void qh_accel_prepare(void)
{
	const char *absent;
	char *argv[20];
	char key[QH_PATH + 256];
	struct qh_run_opts opts = {.timeout_s = ACCEL_PROBE_TIMEOUT};

	if (accel.known || accel.probing)
		return;
	absent = accel_kvm_absent();
	if (absent) {
		accel_decide(QH_ACCEL_TCG, absent);
		return;
	}
	accel_cache_key(key, sizeof(key));
	if (accel_cache_read(key))
		return;
	accel.probing = true;
	if (accel_write_bios(accel.bios, sizeof(accel.bios)) < 0) {
		accel_decide(QH_ACCEL_TCG, "cannot write the KVM test firmware");
		return;
	}
	accel_probe_argv("kvm", accel.bios, argv);
	if (qh_run(argv, &opts, accel_probe_done, NULL) < 0) {
		unlink(accel.bios);
		accel_decide(QH_ACCEL_TCG, "cannot run qemu to test KVM");
	}
}

void qh_accel_when_ready(qh_accel_cb cb, void *ud)
{
	struct accel_waiter *w;

	if (accel.known) {
		cb(ud, accel.chosen);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		cb(ud, QH_ACCEL_TCG);
		return;
	}
	w->cb = cb;
	w->ud = ud;
	w->next = accel.waiters;
	accel.waiters = w;
	qh_accel_prepare();
}

int qh_accel_probe_sync(const char *accel_name, char *why, size_t whylen)
{
	char bios[64];
	char *argv[20];
	struct timespec tick = {0, 20 * 1000 * 1000};
	int status = 0, rc, waited = 0;
	pid_t pid;

	if (!strcmp(accel_name, "kvm") && accel_kvm_absent()) {
		snprintf(why, whylen, "%s", accel_kvm_absent());
		return PROTO_E_UNAVAILABLE;
	}
	rc = accel_write_bios(bios, sizeof(bios));
	if (rc < 0) {
		snprintf(why, whylen, "cannot write the test firmware");
		return rc;
	}
	accel_probe_argv(accel_name, bios, argv);
	pid = fork();
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	rc = PROTO_E_UNAVAILABLE;
	while (pid > 0 && waitpid(pid, &status, WNOHANG) == 0) {
		if (waited++ * 0.02 > ACCEL_PROBE_TIMEOUT) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			snprintf(why, whylen, "the test guest did not finish within %.0f s",
				 ACCEL_PROBE_TIMEOUT);
			goto out_unlink;
		}
		nanosleep(&tick, NULL);
	}
	if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == ACCEL_PROBE_STATUS) {
		snprintf(why, whylen, "a test guest ran under %s", accel_name);
		rc = 0;
	} else if (pid > 0) {
		snprintf(why, whylen, "the test guest ended with status %d, not %d",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1, ACCEL_PROBE_STATUS);
	} else {
		snprintf(why, whylen, "cannot fork");
	}
out_unlink:
	unlink(bios);
	return rc;
}
