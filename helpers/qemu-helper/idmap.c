/*
 * Id maps of native mounts. 9p has no id translation of its own, so a mount
 * whose map is more than ids onto themselves is shared from an idmapped
 * bind mount of its source, made by the helper (as root) before qemu
 * starts, at DIR/idmapped/N for the instance's mount N. qemu serves that
 * view unchanged: the guest sees the mapped owners, and the chown qemu does
 * for a file the guest creates goes through the map back to the host id.
 *
 * The map is a bijection of all ids: HOST shows as GUEST, the ids a map
 * frees are shown for the ids it takes (so that no two owners look alike),
 * every other id as itself, as it would without a map.
 *
 * The bind mount is not recursive: mounts under the source show as the
 * empty folders they are mounted on (an idmap must be set per mount, and
 * one of them may not support it).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qh.h"

/* umount2's flags, from <sys/mount.h>, which cannot be included together
 * with <linux/mount.h> on this glibc. */
#define IDMAP_MNT_DETACH 2
#define IDMAP_UMOUNT_NOFOLLOW 8

#define IDMAP_ID_MAX 4294967294u /* (uid_t)-1 is no id */
#define IDMAP_DETACH_MAX 16      /* stacked mounts at one path, at most */

/* Capability bits of /proc/self/status (linux/capability.h). */
#define IDMAP_CAP_SETGID 6
#define IDMAP_CAP_SETUID 7
#define IDMAP_CAP_SYS_ADMIN 21

static bool idmap_list_identity(const struct vmh_idpair *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i].host != p[i].guest)
			return false;
	return true;
}

bool qh_idmap_active(const struct vmh_mount *m)
{
	return !(idmap_list_identity(m->uid_map, m->n_uid_map) &&
		 idmap_list_identity(m->gid_map, m->n_gid_map));
}

static int idmap_check_list(const struct vmh_idpair *p, size_t n, const char *what, char *err,
			    size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (p[i].host == p[j].host && p[i].guest == p[j].guest)
				continue; /* the same entry twice says nothing new */
			if (p[i].host == p[j].host || p[i].guest == p[j].guest) {
				bool host = p[i].host == p[j].host;

				snprintf(err, errlen,
					 "inconsistent %s map: %s %s %" PRIu32 " appears in both %" PRIu32
					 ":%" PRIu32 " and %" PRIu32 ":%" PRIu32
					 "; each host %s and each guest %s may be given once",
					 what, host ? "host" : "guest", what,
					 host ? p[i].host : p[i].guest, p[j].host, p[j].guest,
					 p[i].host, p[i].guest, what, what);
				return PROTO_E_INVALID_ARGUMENT;
			}
		}
	}
	return 0;
}

bool qh_idmap_needed(const struct vmh_instance *inst)
{
	for (size_t i = 0; i < inst->n_mounts; i++)
		if (qh_idmap_active(&inst->mounts[i]))
			return true;
	return false;
}

int qh_idmap_check(const struct vmh_mount *m, char *err, size_t errlen)
{
	int rc = idmap_check_list(m->uid_map, m->n_uid_map, "uid", err, errlen);

	if (rc == 0)
		rc = idmap_check_list(m->gid_map, m->n_gid_map, "gid", err, errlen);
	return rc;
}

/* ---- the user namespace that carries the map ---- */

struct idmap_move {
	uint32_t from, to;
};

static int idmap_cmp_move(const void *a, const void *b)
{
	const struct idmap_move *x = a, *y = b;

	return x->from < y->from ? -1 : x->from > y->from;
}

static int idmap_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static bool idmap_has(const uint32_t *v, size_t n, uint32_t id)
{
	return bsearch(&id, v, n, sizeof(*v), idmap_cmp_u32) != NULL;
}

/*
 * The uid_map text ("INSIDE OUTSIDE COUNT" lines) of the bijection. An
 * idmapped mount shows a file whose owner on disk is k as the outside id
 * that k maps to, so INSIDE is the host id and OUTSIDE the guest's.
 */
static int idmap_text(const struct vmh_idpair *p, size_t n, char *buf, size_t len)
{
	struct idmap_move moves[2 * QH_IDMAP_MAX];
	uint32_t from[QH_IDMAP_MAX], to[QH_IDMAP_MAX], freed[QH_IDMAP_MAX], taken[QH_IDMAP_MAX];
	size_t n_moves = 0, n_moved = 0, n_freed = 0, n_taken = 0, used = 0;
	uint64_t next = 0;
	int w;

	for (size_t i = 0; i < n && i < QH_IDMAP_MAX; i++) {
		bool seen = false;

		for (size_t j = 0; j < n_moved; j++)
			seen |= from[j] == p[i].host;
		if (p[i].host == p[i].guest || seen)
			continue;
		from[n_moved] = p[i].host;
		to[n_moved++] = p[i].guest;
	}
	qsort(from, n_moved, sizeof(*from), idmap_cmp_u32);
	qsort(to, n_moved, sizeof(*to), idmap_cmp_u32);
	/* Ids shown for others but not moved themselves (taken) are shown as
	 * the ids moved away and shown for no one (freed), in order. */
	for (size_t i = 0; i < n_moved; i++) {
		if (!idmap_has(to, n_moved, from[i]))
			freed[n_freed++] = from[i];
		if (!idmap_has(from, n_moved, to[i]))
			taken[n_taken++] = to[i];
	}
	for (size_t i = 0; i < n && i < QH_IDMAP_MAX; i++) {
		bool seen = false;

		for (size_t j = 0; j < n_moves; j++)
			seen |= moves[j].from == p[i].host;
		if (p[i].host != p[i].guest && !seen)
			moves[n_moves++] = (struct idmap_move){p[i].host, p[i].guest};
	}
	for (size_t i = 0; i < n_taken && i < n_freed; i++)
		moves[n_moves++] = (struct idmap_move){taken[i], freed[i]};
	qsort(moves, n_moves, sizeof(*moves), idmap_cmp_move);

	for (size_t i = 0; i <= n_moves; i++) {
		uint64_t end = i < n_moves ? moves[i].from : (uint64_t)IDMAP_ID_MAX + 1;

		if (end > next) {
			w = snprintf(buf + used, len - used, "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
				     next, next, end - next);
			if (w < 0 || (size_t)w >= len - used)
				return PROTO_E_INVALID_ARGUMENT;
			used += (size_t)w;
		}
		if (i == n_moves)
			break;
		w = snprintf(buf + used, len - used, "%" PRIu32 " %" PRIu32 " 1\n", moves[i].from,
			     moves[i].to);
		if (w < 0 || (size_t)w >= len - used)
			return PROTO_E_INVALID_ARGUMENT;
		used += (size_t)w;
		next = (uint64_t)moves[i].from + 1;
	}
	return 0;
}

static int idmap_write(pid_t pid, const char *file, const char *text, char *err, size_t errlen)
{
	char path[64];
	size_t len = strlen(text);
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return PROTO_E_IO;
	}
	/* The kernel takes a map in one write only. */
	n = write(fd, text, len);
	if (n != (ssize_t)len) {
		snprintf(err, errlen, "cannot write the id map to %s: %s", path,
			 n < 0 ? strerror(errno) : "short write");
		close(fd);
		return PROTO_E_IO;
	}
	close(fd);
	return 0;
}

/* A child in a new user namespace lives until its map is written and its
 * namespace opened; the namespace outlives it through the fd. The kernel
 * needs that process (a map is written to /proc/PID/uid_map by a process of
 * the parent namespace, as systemd and util-linux do too), and its caller
 * waits for it: this runs in a child of the runner (vmh_run_task), so the
 * helper's loop never does. */
static int idmap_userns(const char *uid_text, const char *gid_text, char *err, size_t errlen)
{
	int ready[2], hold[2], rc, ns = -1, child_err = 0;
	char path[64];
	pid_t pid;

	if (pipe2(ready, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return PROTO_E_IO;
	}
	if (pipe2(hold, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		rc = PROTO_E_IO;
		goto out_close_ready;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		rc = PROTO_E_IO;
		goto out_close_hold;
	}
	if (pid == 0) {
		char c;
		int e = 0;

		close(ready[0]);
		close(hold[1]);
		if (unshare(CLONE_NEWUSER) < 0)
			e = errno;
		if (write(ready[1], &e, sizeof(e)) != sizeof(e) || e)
			_exit(1);
		while (read(hold[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(ready[1]);
	ready[1] = -1;
	close(hold[0]);
	hold[0] = -1;
	if (read(ready[0], &child_err, sizeof(child_err)) != sizeof(child_err) || child_err) {
		snprintf(err, errlen, "cannot create a user namespace for the id map: %s",
			 strerror(child_err ? child_err : EIO));
		rc = PROTO_E_DRIVER;
		goto out_reap;
	}
	rc = idmap_write(pid, "uid_map", uid_text, err, errlen);
	if (rc == 0)
		rc = idmap_write(pid, "gid_map", gid_text, err, errlen);
	if (rc < 0)
		goto out_reap;
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		rc = PROTO_E_IO;
	}
out_reap:
	close(hold[1]);
	hold[1] = -1;
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
out_close_hold:
	if (hold[0] >= 0)
		close(hold[0]);
	if (hold[1] >= 0)
		close(hold[1]);
out_close_ready:
	close(ready[0]);
	if (ready[1] >= 0)
		close(ready[1]);
	return rc < 0 ? rc : ns;
}

/* ---- privilege and support ---- */

static bool idmap_privileged(void)
{
	unsigned long long caps = 0;
	char line[256];
	bool found = false;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "CapEff: %llx", &caps) == 1;
	fclose(f);
	return found && (caps >> IDMAP_CAP_SYS_ADMIN & 1) && (caps >> IDMAP_CAP_SETUID & 1) &&
	       (caps >> IDMAP_CAP_SETGID & 1);
}

bool qh_idmap_possible(void)
{
	return idmap_privileged();
}

static const char *idmap_fs_name(const char *path, char *buf, size_t len)
{
	struct statfs sf;

	if (statfs(path, &sf) < 0)
		return "unknown";
	switch ((unsigned long)sf.f_type) {
	case 0xEF53: return "ext4";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x01021994: return "tmpfs";
	case 0x6969: return "nfs";
	case 0x65735546: return "fuse";
	case 0x794c7630: return "overlayfs";
	case 0x01021997: return "9p";
	default:
		snprintf(buf, len, "type 0x%lx", (unsigned long)sf.f_type);
		return buf;
	}
}

/* A detached idmapped clone of the mount's source, or a PROTO_E_* code. */
static int idmap_tree(const struct vmh_mount *m, char *err, size_t errlen)
{
	const char *source = m->source;
	char uid_text[4096], gid_text[4096], fsbuf[32];
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP};
	int ns, tree, rc;

	if (!idmap_privileged()) {
		snprintf(err, errlen,
			 "an id map other than ids onto themselves needs an idmapped mount of %s, "
			 "which only a qemu driver running as root (CAP_SYS_ADMIN) can make; it runs "
			 "as uid %u",
			 source, (unsigned)geteuid());
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (idmap_text(m->uid_map, m->n_uid_map, uid_text, sizeof(uid_text)) < 0 ||
	    idmap_text(m->gid_map, m->n_gid_map, gid_text, sizeof(gid_text)) < 0) {
		snprintf(err, errlen, "the id map of %s is too long", source);
		return PROTO_E_INVALID_ARGUMENT;
	}
	ns = idmap_userns(uid_text, gid_text, err, errlen);
	if (ns < 0)
		return ns;
	tree = (int)syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (tree < 0) {
		snprintf(err, errlen, "cannot open the tree of %s: %s%s", source, strerror(errno),
			 errno == ENOSYS ? " (idmapped mounts need Linux 5.12 or later)" : "");
		rc = errno == ENOENT ? PROTO_E_NOT_FOUND : PROTO_E_DRIVER;
		goto out_close_ns;
	}
	attr.userns_fd = (uint64_t)ns;
	if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
		int e = errno;

		snprintf(err, errlen,
			 "cannot make an idmapped mount of %s (%s): %s; id maps need Linux 5.12 or "
			 "later and a source filesystem that supports idmapped mounts (ext4, xfs, "
			 "btrfs, tmpfs since 6.3)",
			 source, idmap_fs_name(source, fsbuf, sizeof(fsbuf)), strerror(e));
		rc = PROTO_E_INVALID_ARGUMENT;
		close(tree);
		goto out_close_ns;
	}
	rc = tree;
out_close_ns:
	close(ns);
	return rc;
}

int qh_idmap_try(const struct vmh_mount *m, char *err, size_t errlen)
{
	int tree = idmap_tree(m, err, errlen);

	if (tree < 0)
		return tree;
	/* Never attached: closing it frees it. */
	close(tree);
	return 0;
}

/* ---- DIR/idmapped/N ---- */

void qh_idmap_path(const struct vmh_instance *inst, size_t i, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s/%zu", inst->dir, QH_IDMAPPED, i);
}

/* Detach whatever is mounted at path; 0 or -1 with errno. */
static int idmap_detach(const char *path)
{
	for (int i = 0; i < IDMAP_DETACH_MAX; i++) {
		if (syscall(SYS_umount2, path, IDMAP_MNT_DETACH | IDMAP_UMOUNT_NOFOLLOW) < 0)
			return errno == EINVAL ? 0 : -1; /* EINVAL: no mount (left) there */
		vmh_log(VMH_INFO, "detached the idmapped mount %s", path);
	}
	errno = EBUSY;
	return -1;
}

void qh_idmap_release(const struct vmh_instance *inst)
{
	char top[QH_PATH], path[QH_PATH];
	struct dirent *de;
	DIR *d;

	qh_path(inst, QH_IDMAPPED, top, sizeof(top));
	d = opendir(top);
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", top, de->d_name);
		if (idmap_detach(path) < 0) {
			vmh_log(VMH_WARN, "%s: cannot detach the idmapped mount %s: %s", inst->name,
				path, strerror(errno));
			continue;
		}
		/* Only an empty folder goes: never anything of a source. */
		if (rmdir(path) < 0 && errno != ENOENT)
			vmh_log(VMH_WARN, "%s: cannot remove %s: %s", inst->name, path,
				strerror(errno));
	}
	closedir(d);
	rmdir(top);
}

static int idmap_mkdir(const char *path, char *err, size_t errlen)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return PROTO_E_IO;
	}
	return 0;
}

int qh_idmap_prepare(const struct vmh_instance *inst, char *err, size_t errlen)
{
	char path[QH_PATH];
	int rc = 0;

	/* What a helper that died before its VM stopped left behind. */
	qh_idmap_release(inst);
	for (size_t i = 0; i < inst->n_mounts; i++) {
		const struct vmh_mount *m = &inst->mounts[i];
		int tree;

		if (!qh_idmap_active(m))
			continue;
		rc = qh_idmap_check(m, err, errlen);
		if (rc < 0)
			break;
		qh_path(inst, QH_IDMAPPED, path, sizeof(path));
		rc = idmap_mkdir(path, err, errlen);
		if (rc < 0)
			break;
		qh_idmap_path(inst, i, path, sizeof(path));
		rc = idmap_mkdir(path, err, errlen);
		if (rc < 0)
			break;
		tree = idmap_tree(m, err, errlen);
		if (tree < 0) {
			rc = tree;
			break;
		}
		if (syscall(SYS_move_mount, tree, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
			snprintf(err, errlen, "cannot mount the idmapped view of %s on %s: %s",
				 m->source, path, strerror(errno));
			rc = PROTO_E_DRIVER;
			close(tree);
			break;
		}
		close(tree);
		vmh_log(VMH_INFO, "%s: %s shared through the idmapped mount %s", inst->name,
			m->source, path);
	}
	if (rc < 0)
		qh_idmap_release(inst);
	return rc;
}
