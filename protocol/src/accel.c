/*
 * Choosing the accelerator of a QEMU-based driver. /dev/kvm existing proves
 * nothing (a nested or half-working KVM aborts or crawls, and libvirt still
 * offers kvm domains there), so "auto" picks KVM only after a tiny guest
 * really ran under it: a 64 KiB firmware whose reset vector writes a byte to
 * an isa-debug-exit port, which makes qemu exit with a status derived from
 * that byte. The firmware lives in a memfd handed to qemu as fd 3, so a
 * helper killed mid-probe leaves no file behind.
 *
 * The answer is kept for the helper's life, and in SCOPE_DIR/accel-probe for
 * the next helpers (of any driver sharing the scope): qemu starting a guest
 * costs a fifth of a second of CPU at every helper (re)start otherwise. The
 * file is trusted only for the same qemu binary (size, mtime), kernel
 * release and KVM device (its ctime changes at every boot).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <ev.h>
#include <vmproto/vmh.h>

#define ACCEL_PROBE_TIMEOUT 10.0
#define ACCEL_PROBE_BYTE 0x2a
/* isa-debug-exit: qemu exits with (value << 1) | 1. */
#define ACCEL_PROBE_STATUS ((ACCEL_PROBE_BYTE << 1) | 1)
#define ACCEL_FIRMWARE_SIZE 65536
#define ACCEL_CACHE_FILE "accel-probe"
#define ACCEL_CACHE_VERSION "2"
#define ACCEL_PATH 4096

enum accel_mode { ACCEL_AUTO, ACCEL_KVM, ACCEL_TCG };

struct accel_waiter {
	vmh_accel_cb cb;
	void *ud;
	struct accel_waiter *next;
};

static struct {
	enum accel_mode mode;
	char setting[96]; /* "local.qemu.accel=auto", for messages */
	bool known;
	bool probing;
	enum vmh_accel chosen;
	char why[512];
	int firmware_fd;
	struct accel_waiter *waiters;
	char cache_dir[ACCEL_PATH]; /* "" : no cache */
	char device[ACCEL_PATH];
	char qemu[ACCEL_PATH];
} accel = {
	.setting = "auto",
	.firmware_fd = -1,
	.device = "/dev/kvm",
	.qemu = "qemu-system-x86_64",
};

const char *vmh_accel_name(enum vmh_accel a)
{
	return a == VMH_ACCEL_KVM ? "kvm" : "tcg";
}

void vmh_accel_use(const char *kvm_device, const char *qemu_program)
{
	snprintf(accel.device, sizeof(accel.device), "%s", kvm_device ? kvm_device : "/dev/kvm");
	snprintf(accel.qemu, sizeof(accel.qemu), "%s",
		 qemu_program ? qemu_program : "qemu-system-x86_64");
	accel.known = false;
}

const char *vmh_accel_setting(void)
{
	return accel.setting;
}

int vmh_accel_configure(const char *key, const char *value, char *err, size_t errlen)
{
	if (!value || !*value)
		value = "auto";
	if (!strcasecmp(value, "auto"))
		accel.mode = ACCEL_AUTO;
	else if (!strcasecmp(value, "kvm"))
		accel.mode = ACCEL_KVM;
	else if (!strcasecmp(value, "tcg"))
		accel.mode = ACCEL_TCG;
	else {
		snprintf(err, errlen, "%s is '%s'; use auto, kvm or tcg", key, value);
		return PROTO_E_INVALID_ARGUMENT;
	}
	snprintf(accel.setting, sizeof(accel.setting), "%s=%s", key,
		 accel.mode == ACCEL_AUTO ? "auto" : accel.mode == ACCEL_KVM ? "kvm" : "tcg");
	accel.known = false;
	if (accel.mode != ACCEL_AUTO) {
		accel.known = true;
		accel.chosen = accel.mode == ACCEL_KVM ? VMH_ACCEL_KVM : VMH_ACCEL_TCG;
		snprintf(accel.why, sizeof(accel.why), "forced by %s", accel.setting);
		vmh_log(VMH_INFO, "accelerator: %s (%s)", vmh_accel_name(accel.chosen), accel.setting);
	}
	return 0;
}

int vmh_accel_configure_setting(const char *key, char *err, size_t errlen)
{
	static const char *const modes[] = {"auto", "kvm", "tcg", NULL};
	int mode, rc = vmh_setting_enum(key, modes, 0, &mode, err, errlen);

	if (rc < 0)
		return rc;
	return vmh_accel_configure(key, modes[mode], err, errlen);
}

/* The firmware image, real-mode code at the reset vector (offset 0xfff0),
 * in a memfd: an fd (>= 0) or a PROTO_E_* code. */
static int accel_firmware(void)
{
	static const unsigned char code[] = {
		0xb0, ACCEL_PROBE_BYTE, /* mov al, BYTE */
		0xe6, 0xf4,             /* out 0xf4, al */
		0xf4,                   /* hlt */
		0xeb, 0xfd,             /* jmp back to hlt */
	};
	unsigned char *image = calloc(1, ACCEL_FIRMWARE_SIZE);
	int fd, rc = PROTO_E_IO;

	if (!image)
		return PROTO_E_NOMEM;
	memcpy(image + 0xfff0, code, sizeof(code));
	fd = memfd_create("vmctl-kvm-probe", MFD_CLOEXEC);
	if (fd >= 0 && write(fd, image, ACCEL_FIRMWARE_SIZE) == ACCEL_FIRMWARE_SIZE)
		rc = fd;
	else if (fd >= 0)
		close(fd);
	free(image);
	return rc;
}

/* argv for a test guest whose firmware is the child's fd 3. */
static void accel_probe_argv(const char *accel_name, char **argv)
{
	bool kvm = !strcmp(accel_name, "kvm");
	size_t i = 0;

	argv[i++] = accel.qemu;
	argv[i++] = "-nodefaults";
	argv[i++] = "-display";
	argv[i++] = "none";
	argv[i++] = "-machine";
	argv[i++] = "pc";
	argv[i++] = "-accel";
	argv[i++] = kvm ? "kvm" : "tcg";
	argv[i++] = "-cpu";
	argv[i++] = kvm ? "host" : "max";
	argv[i++] = "-m";
	argv[i++] = "16";
	argv[i++] = "-bios";
	argv[i++] = "/dev/fd/3";
	argv[i++] = "-device";
	argv[i++] = "isa-debug-exit,iobase=0xf4,iosize=0x04";
	argv[i] = NULL;
}

/* Why KVM cannot even be tried, or NULL. */
static const char *accel_kvm_absent(void)
{
	static char why[ACCEL_PATH + 64];
	int fd = open(accel.device, O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		return NULL;
	}
	snprintf(why, sizeof(why), "%s %s", accel.device,
		 errno == ENOENT ? "does not exist" : "cannot be opened");
	return why;
}

/* What a finished test guest says, as a reason; true if it ran. */
static bool accel_judge(const char *accel_name, const struct vmh_run_result *r, char *why,
			size_t whylen)
{
	const char *out = r->output && r->output[0] ? r->output : "";
	const char *nl = strchr(out, '\n');
	int outlen = nl ? (int)(nl - out) : (int)strlen(out);

	if (r->status == ACCEL_PROBE_STATUS && !r->timed_out) {
		snprintf(why, whylen, "a test guest ran under %s", accel_name);
		return true;
	}
	if (r->timed_out)
		snprintf(why, whylen, "a test guest did not finish within %.0f s under %s",
			 ACCEL_PROBE_TIMEOUT, accel_name);
	else if (r->signal)
		snprintf(why, whylen, "qemu died with signal %d running a test guest under %s",
			 r->signal, accel_name);
	else
		snprintf(why, whylen, "a test guest under %s ended with status %d, not %d%s%.*s",
			 accel_name, r->status, ACCEL_PROBE_STATUS, outlen ? ": " : "", outlen, out);
	return false;
}

static void accel_decide(enum vmh_accel chosen, const char *why)
{
	struct accel_waiter *w = accel.waiters;

	accel.known = true;
	accel.probing = false;
	accel.chosen = chosen;
	snprintf(accel.why, sizeof(accel.why), "%s", why);
	accel.waiters = NULL;
	vmh_log(VMH_INFO, "accelerator: %s (%s: %s)", vmh_accel_name(chosen), accel.setting, why);
	while (w) {
		struct accel_waiter *next = w->next;

		w->cb(w->ud, chosen);
		free(w);
		w = next;
	}
}

bool vmh_accel_chosen(enum vmh_accel *chosen, const char **why)
{
	if (!accel.known)
		return false;
	if (chosen)
		*chosen = accel.chosen;
	if (why)
		*why = accel.why;
	return true;
}

void vmh_accel_cache_in(const char *dir)
{
	snprintf(accel.cache_dir, sizeof(accel.cache_dir), "%s", dir ? dir : "");
}

/* The qemu program the probe runs, as a path: false if not found. */
static bool accel_find_qemu(char *prog, size_t len, struct stat *st)
{
	const char *path = getenv("PATH");

	if (strchr(accel.qemu, '/')) {
		snprintf(prog, len, "%s", accel.qemu);
		return stat(prog, st) == 0 && S_ISREG(st->st_mode);
	}
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");

		snprintf(prog, len, "%.*s/%s", (int)n, path, accel.qemu);
		if (stat(prog, st) == 0 && S_ISREG(st->st_mode))
			return true;
		path += n + (path[n] == ':');
	}
	return false;
}

/* What the probe's answer depends on, as one line ("" if unknown). */
static void accel_cache_key(char *key, size_t len)
{
	char prog[ACCEL_PATH];
	struct stat q, kvm;
	struct utsname u;

	key[0] = '\0';
	if (!accel_find_qemu(prog, sizeof(prog), &q) || stat(accel.device, &kvm) < 0 ||
	    uname(&u) < 0)
		return;
	snprintf(key, len, "v%s %s %lld %lld.%09ld %s %s %lld.%09ld", ACCEL_CACHE_VERSION, prog,
		 (long long)q.st_size, (long long)q.st_mtim.tv_sec, q.st_mtim.tv_nsec, u.release,
		 accel.device, (long long)kvm.st_ctim.tv_sec, kvm.st_ctim.tv_nsec);
}

/* The file holds the key line, then "kvm" or "tcg", then why. */
static bool accel_cache_read(const char *key)
{
	char path[ACCEL_PATH + 32], text[2 * ACCEL_PATH + 1024], *chosen, *why;
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
	accel_decide(strcmp(chosen, "kvm") ? VMH_ACCEL_TCG : VMH_ACCEL_KVM, why);
	return true;
}

/* Best effort: without the file the next helper probes again. */
static void accel_cache_write(const char *key, enum vmh_accel chosen, const char *why)
{
	char path[ACCEL_PATH + 32], tmp[ACCEL_PATH + 64];
	FILE *f;
	bool ok;

	if (!accel.cache_dir[0] || !key[0])
		return;
	snprintf(path, sizeof(path), "%s/%s", accel.cache_dir, ACCEL_CACHE_FILE);
	snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	f = fopen(tmp, "we");
	if (!f)
		return;
	ok = fprintf(f, "%s\n%s\n%s\n", key, vmh_accel_name(chosen), why) > 0;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) < 0)
		unlink(tmp);
}

static void accel_probe_done(void *ud, const struct vmh_run_result *r)
{
	char why[512], key[2 * ACCEL_PATH + 128];
	enum vmh_accel chosen;

	(void)ud;
	close(accel.firmware_fd);
	accel.firmware_fd = -1;
	chosen = accel_judge("KVM", r, why, sizeof(why)) ? VMH_ACCEL_KVM : VMH_ACCEL_TCG;
	/* A probe that timed out may have met a busy host, not a broken KVM. */
	if (!r->timed_out) {
		accel_cache_key(key, sizeof(key));
		accel_cache_write(key, chosen, why);
	}
	accel_decide(chosen, why);
}

/* Start a test guest under accel_name; cb gets its result. */
static int accel_probe_start(const char *accel_name, vmh_run_cb cb, void *ud)
{
	char *argv[20];
	int fd = accel_firmware();
	int rc;

	if (fd < 0)
		return fd;
	struct vmh_run_opts opts = {
		.timeout_s = ACCEL_PROBE_TIMEOUT,
		.keep_fds = &fd,
		.n_keep_fds = 1,
	};
	accel_probe_argv(accel_name, argv);
	rc = vmh_run(argv, &opts, cb, ud);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	accel.firmware_fd = fd;
	return 0;
}

void vmh_accel_prepare(void)
{
	const char *absent;
	char key[2 * ACCEL_PATH + 128];

	if (accel.known || accel.probing)
		return;
	absent = accel_kvm_absent();
	if (absent) {
		accel_decide(VMH_ACCEL_TCG, absent);
		return;
	}
	accel_cache_key(key, sizeof(key));
	if (accel_cache_read(key))
		return;
	accel.probing = true;
	if (accel_probe_start("kvm", accel_probe_done, NULL) < 0)
		accel_decide(VMH_ACCEL_TCG, "cannot run qemu to test KVM");
}

void vmh_accel_when_ready(vmh_accel_cb cb, void *ud)
{
	struct accel_waiter *w;

	if (accel.known) {
		cb(ud, accel.chosen);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		cb(ud, VMH_ACCEL_TCG);
		return;
	}
	w->cb = cb;
	w->ud = ud;
	w->next = accel.waiters;
	accel.waiters = w;
	vmh_accel_prepare();
}

struct accel_sync {
	bool done;
	bool ran;
	const char *accel_name;
	char *why;
	size_t whylen;
};

static void accel_sync_done(void *ud, const struct vmh_run_result *r)
{
	struct accel_sync *s = ud;

	close(accel.firmware_fd);
	accel.firmware_fd = -1;
	s->ran = accel_judge(s->accel_name, r, s->why, s->whylen);
	s->done = true;
}

int vmh_accel_probe_sync(const char *accel_name, char *why, size_t whylen)
{
	struct accel_sync s = {.accel_name = accel_name, .why = why, .whylen = whylen};
	const char *absent = strcmp(accel_name, "kvm") ? NULL : accel_kvm_absent();

	if (absent) {
		snprintf(why, whylen, "%s", absent);
		return PROTO_E_UNAVAILABLE;
	}
	if (accel_probe_start(accel_name, accel_sync_done, &s) < 0) {
		snprintf(why, whylen, "cannot run %s", accel.qemu);
		return PROTO_E_UNAVAILABLE;
	}
	while (!s.done)
		ev_run(vmh_loop(), EVRUN_ONCE);
	return s.ran ? 0 : PROTO_E_UNAVAILABLE;
}
