/* One VM as qemu runs it: its command line, its process, its state. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qh.h"

#define VM_QMP_TIMEOUT 1.5

/* During a batch the parent folder of the instances stays open, so that
 * looking at a file of each one walks two path components, not the whole
 * path (instances.list with 1,000 instances spent half its time there). */
static struct {
	bool on;
	int fd; /* -1: not open */
	char parent[QH_PATH];
} vm_batch = {.fd = -1};

void qh_vm_batch(bool on)
{
	if (vm_batch.fd >= 0)
		close(vm_batch.fd);
	vm_batch.fd = -1;
	vm_batch.parent[0] = '\0';
	vm_batch.on = on;
}

/* The folder fd to resolve rel against: the batch's, or AT_FDCWD with
 * the whole path. */
static int vm_at(const struct vmh_instance *inst, const char *file, char *rel, size_t len)
{
	const char *slash = strrchr(inst->dir, '/');
	size_t plen = slash ? (size_t)(slash - inst->dir) : 0;

	if (vm_batch.on && slash && plen > 0 && plen < sizeof(vm_batch.parent)) {
		if (strncmp(vm_batch.parent, inst->dir, plen) != 0 || vm_batch.parent[plen] != '\0') {
			if (vm_batch.fd >= 0)
				close(vm_batch.fd);
			memcpy(vm_batch.parent, inst->dir, plen);
			vm_batch.parent[plen] = '\0';
			vm_batch.fd = open(vm_batch.parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
		}
		if (vm_batch.fd >= 0) {
			snprintf(rel, len, "%s/%s", slash + 1, file);
			return vm_batch.fd;
		}
	}
	qh_path(inst, file, rel, len);
	return AT_FDCWD;
}

/* Read DIR/file into buf; 0 or -1. A plain read(): instances.list asks
 * this of every instance, most of which have no file to read. */
static int vm_read_small(const struct vmh_instance *inst, const char *file, char *buf, size_t len)
{
	char path[QH_PATH];
	size_t got = 0;
	ssize_t n;
	int fd, at;

	at = vm_at(inst, file, path, sizeof(path));
	fd = openat(at, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (got < len - 1 && (n = read(fd, buf + got, len - 1 - got)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return 0;
}

pid_t qh_vm_pid(const struct vmh_instance *inst)
{
	char buf[64], pidfile[QH_PATH], path[64];
	char *cmdline = NULL;
	size_t cap = 0;
	ssize_t n;
	long pid;
	char *end;
	FILE *f;
	pid_t found = 0;

	if (vm_read_small(inst, QH_PIDFILE, buf, sizeof(buf)) < 0)
		return 0;
	errno = 0;
	pid = strtol(buf, &end, 10);
	if (errno || end == buf || pid <= 1 || (*end && *end != '\n'))
		return 0;
	/* A stale pid file may name a process that is now something else (or a
	 * zombie, whose cmdline is empty): only a qemu given this instance's own
	 * pid file is this instance's VM. */
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	qh_path(inst, QH_PIDFILE, pidfile, sizeof(pidfile));
	bool prev_pidfile = false;
	while ((n = getdelim(&cmdline, &cap, '\0', f)) > 0) {
		if (prev_pidfile && !strcmp(cmdline, pidfile)) {
			found = (pid_t)pid;
			break;
		}
		prev_pidfile = !strcmp(cmdline, "-pidfile");
	}
	free(cmdline);
	fclose(f);
	return found;
}

bool qh_vm_suspended(const struct vmh_instance *inst)
{
	char path[QH_PATH];
	int at = vm_at(inst, PROTO_FILE_SUSPENDED, path, sizeof(path));

	return faccessat(at, path, F_OK, 0) == 0;
}

int qh_vm_ssh_port(const struct vmh_instance *inst)
{
	char buf[32];
	int port;

	if (vm_read_small(inst, QH_SSH_PORT, buf, sizeof(buf)) < 0)
		return 0;
	port = atoi(buf);
	return port > 0 && port < 65536 ? port : 0;
}

/* qemu's run states, as the protocol's. */
static enum proto_state vm_map_status(const char *s)
{
	static const struct {
		const char *qemu;
		enum proto_state state;
	} map[] = {
		{"running", PROTO_STATE_RUNNING},        {"paused", PROTO_STATE_SUSPENDED},
		{"suspended", PROTO_STATE_SUSPENDED},    {"shutdown", PROTO_STATE_STOPPING},
		{"inmigrate", PROTO_STATE_STARTING},     {"prelaunch", PROTO_STATE_STARTING},
		{"restore-vm", PROTO_STATE_STARTING},    {"save-vm", PROTO_STATE_SUSPENDING},
		{"finish-migrate", PROTO_STATE_SUSPENDING}, {"postmigrate", PROTO_STATE_SUSPENDED},
		{"internal-error", PROTO_STATE_UNKNOWN}, {"io-error", PROTO_STATE_UNKNOWN},
		{"guest-panicked", PROTO_STATE_UNKNOWN},
	};

	for (size_t i = 0; s && i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(s, map[i].qemu))
			return map[i].state;
	return PROTO_STATE_RUNNING;
}

enum proto_state qh_vm_state(const struct vmh_instance *inst)
{
	/* An operation in progress answers without looking at the process. */
	return qh_vm_state_known(inst, vmh_busy(inst->name, NULL) ? 0 : qh_vm_pid(inst));
}

enum proto_state qh_vm_state_known(const struct vmh_instance *inst, pid_t pid)
{
	char sock[QH_PATH], err[QH_ERR];
	enum proto_state state;
	json_t *ret = NULL;

	if (vmh_busy(inst->name, &state))
		return state;
	if (!pid)
		return qh_vm_suspended(inst) ? PROTO_STATE_SUSPENDED : PROTO_STATE_STOPPED;
	qh_path(inst, QH_QMP, sock, sizeof(sock));
	if (qh_qmp(sock, "query-status", NULL, VM_QMP_TIMEOUT, &ret, err, sizeof(err)) < 0) {
		/* The process is alive and is ours; a monitor that does not answer
		 * (busy with another client) does not make the VM stop. */
		vmh_log(VMH_DEBUG, "%s: %s", inst->name, err);
		return PROTO_STATE_RUNNING;
	}
	state = vm_map_status(json_string_value(json_object_get(ret, "status")));
	json_decref(ret);
	return state;
}

void qh_vm_cleanup(const struct vmh_instance *inst)
{
	char path[QH_PATH];

	/* The idmapped views of the sources serve only a running qemu. */
	if (!qh_vm_pid(inst))
		qh_idmap_release(inst);

	qh_path(inst, QH_PIDFILE, path, sizeof(path));
	unlink(path);
	qh_path(inst, QH_QMP, path, sizeof(path));
	unlink(path);
}

/* ---- the command line ---- */

struct argv_buf {
	char **v;
	size_t n, cap;
	bool failed;
};

static void av_add(struct argv_buf *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void av_add(struct argv_buf *a, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (a->failed)
		return;
	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		char **nv = realloc(a->v, cap * sizeof(*nv));

		if (!nv) {
			a->failed = true;
			return;
		}
		a->v = nv;
		a->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		a->failed = true;
		va_end(ap);
		return;
	}
	va_end(ap);
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

/* qemu option values end at ',' unless it is doubled. */
static char *vm_esc(const char *s)
{
	size_t commas = 0, len = strlen(s);
	char *out, *p;

	for (const char *c = s; *c; c++)
		commas += *c == ',';
	out = malloc(len + commas + 1);
	if (!out)
		return NULL;
	for (p = out; *s; s++) {
		*p++ = *s;
		if (*s == ',')
			*p++ = ',';
	}
	*p = '\0';
	return out;
}

/* Add "-OPT PREFIX<escaped path>SUFFIX". */
static void av_path(struct argv_buf *a, const char *opt, const char *prefix, const char *path,
		    const char *suffix)
{
	char *e = vm_esc(path);

	if (!e) {
		a->failed = true;
		return;
	}
	av_add(a, "%s", opt);
	av_add(a, "%s%s%s", prefix, e, suffix);
	free(e);
}

void qh_argv_free(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

char **qh_vm_argv(const struct vmh_instance *inst, enum vmh_accel accel, int ssh_port, bool resume,
		  const int *tap_fds, char *err, size_t errlen)
{
	struct argv_buf a = {0};
	char path[QH_PATH];

	av_add(&a, "qemu-system-x86_64");
	av_add(&a, "-name");
	av_add(&a, "%s", inst->name);
	av_add(&a, "-machine");
	av_add(&a, "q35");
	if (accel == VMH_ACCEL_KVM) {
		av_add(&a, "-accel");
		av_add(&a, "kvm");
		av_add(&a, "-cpu");
		av_add(&a, "host");
	} else {
		av_add(&a, "-accel");
		av_add(&a, "tcg,thread=multi");
		av_add(&a, "-cpu");
		av_add(&a, "max");
	}
	av_add(&a, "-smp");
	av_add(&a, "%u", inst->cpus);
	av_add(&a, "-m");
	av_add(&a, "%lluM", (unsigned long long)(inst->memory >> 20));
	av_add(&a, "-nodefaults");
	av_add(&a, "-no-user-config");
	av_add(&a, "-display");
	av_add(&a, "none");
	av_add(&a, "-daemonize");
	qh_path(inst, QH_PIDFILE, path, sizeof(path));
	av_add(&a, "-pidfile"); /* a plain path, not an option string: no escaping */
	av_add(&a, "%s", path);
	qh_path(inst, QH_QMP, path, sizeof(path));
	av_path(&a, "-chardev", "socket,id=qmp,server=on,wait=off,path=", path, "");
	av_add(&a, "-mon");
	av_add(&a, "chardev=qmp,mode=control");
	qh_path(inst, QH_CONSOLE, path, sizeof(path));
	av_path(&a, "-chardev", "file,id=console,path=", path, "");
	av_add(&a, "-serial");
	av_add(&a, "chardev:console");

	/* The device set must be the same on every start: a suspended VM only
	 * resumes into exactly the devices it was saved with. */
	qh_path(inst, PROTO_FILE_DISK, path, sizeof(path));
	av_path(&a, "-drive", "if=none,id=disk0,format=qcow2,discard=unmap,file=", path, "");
	av_add(&a, "-device");
	av_add(&a, "virtio-blk-pci,drive=disk0,bootindex=1");
	if (inst->seed) {
		av_path(&a, "-drive", "if=none,id=seed,format=raw,readonly=on,file=", inst->seed, "");
		av_add(&a, "-device");
		av_add(&a, "virtio-blk-pci,drive=seed");
	}
	av_add(&a, "-netdev");
	av_add(&a, "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", ssh_port);
	av_add(&a, "-device");
	if (inst->mac)
		av_add(&a, "virtio-net-pci,netdev=n0,mac=%s", inst->mac);
	else
		av_add(&a, "virtio-net-pci,netdev=n0");
	for (size_t i = 0; i < inst->n_networks; i++) {
		av_add(&a, "-netdev");
		if (tap_fds && tap_fds[i] >= 0)
			av_add(&a, "tap,id=n%zu,fd=%d", i + 1, tap_fds[i]);
		else
			av_add(&a, "bridge,id=n%zu,br=%s", i + 1, inst->networks[i].name);
		av_add(&a, "-device");
		av_add(&a, "virtio-net-pci,netdev=n%zu,mac=%s", i + 1, inst->networks[i].mac);
	}
	for (size_t i = 0; i < inst->n_mounts; i++) {
		const char *share = inst->mounts[i].source;
		char *src;

		/* A mount with an id map is shared from its idmapped view, which
		 * qh_idmap_prepare() makes before qemu starts. */
		if (qh_idmap_active(&inst->mounts[i])) {
			qh_idmap_path(inst, i, path, sizeof(path));
			share = path;
		}
		src = vm_esc(share);

		if (!src) {
			a.failed = true;
			break;
		}
		av_add(&a, "-virtfs");
		av_add(&a, "local,id=fs%zu,path=%s,mount_tag=%s,security_model=none", i, src,
		       inst->mounts[i].tag);
		free(src);
	}
	av_add(&a, "-device");
	av_add(&a, "virtio-rng-pci");
	if (inst->image.kernel) {
		av_add(&a, "-kernel");
		av_add(&a, "%s", inst->image.kernel);
		if (inst->image.initrd) {
			av_add(&a, "-initrd");
			av_add(&a, "%s", inst->image.initrd);
		}
		/* Under emulation on a busy host the guest kernel's early check that
		 * the IO-APIC timer ticks can fail and panic the boot; the check
		 * proves nothing about an emulated timer, so skip it. */
		bool skip_timer_check = accel == VMH_ACCEL_TCG &&
					!(inst->image.cmdline && strstr(inst->image.cmdline, "no_timer_check"));
		if (inst->image.cmdline || skip_timer_check) {
			av_add(&a, "-append");
			av_add(&a, "%s%s%s", inst->image.cmdline ? inst->image.cmdline : "",
			       inst->image.cmdline && skip_timer_check ? " " : "",
			       skip_timer_check ? "no_timer_check" : "");
		}
	} else {
		/* No kernel: the image boots itself through UEFI firmware, which
		 * keeps its boot entries in the instance's own variable store. */
		av_path(&a, "-drive", "if=pflash,format=raw,readonly=on,file=", QH_OVMF_CODE, "");
		qh_path(inst, QH_EFI_VARS, path, sizeof(path));
		av_path(&a, "-drive", "if=pflash,format=raw,file=", path, "");
	}
	if (resume) {
		av_add(&a, "-loadvm");
		av_add(&a, PROTO_SUSPEND_TAG);
	}
	if (a.failed) {
		snprintf(err, errlen, "out of memory building qemu's command line");
		qh_argv_free(a.v);
		return NULL;
	}
	return a.v;
}
