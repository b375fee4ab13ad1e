/* Crash-safe file replacement and small file-system helpers. */
#include "vmcommon.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmproto/proto.h>

void (*atomic_write_test_hook)(const char *tmp_path);

static int atomic_errno_code(int e)
{
	return e == ENOMEM ? PROTO_E_NOMEM : PROTO_E_IO;
}

static int atomic_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The rename is only durable once the folder entry itself reaches the disk. */
static int atomic_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -1;
	if (fsync(fd) < 0 && errno != EINVAL)
		rc = -1;
	close(fd);
	return rc;
}

int atomic_write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	char *dir = NULL, *tmp = NULL;
	const char *slash, *base;
	int fd = -1, rc = 0, saved_errno;

	if (!path || !*path || (!data && len > 0))
		return PROTO_E_INVALID_ARGUMENT;

	slash = strrchr(path, '/');
	if (slash) {
		base = slash + 1;
		dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
	} else {
		base = path;
		dir = strdup(".");
	}
	if (!dir)
		return PROTO_E_NOMEM;
	if (!*base) {
		rc = PROTO_E_INVALID_ARGUMENT;
		goto out_free_dir;
	}

	/* Same folder as the target, so rename() stays on one file system. */
	if (asprintf(&tmp, "%s/.%s.tmp.XXXXXX", dir, base) < 0) {
		tmp = NULL;
		rc = PROTO_E_NOMEM;
		goto out_free_dir;
	}
	/* mkostemp opens with O_CREAT|O_EXCL under a unique name. */
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = atomic_errno_code(errno);
		goto out_free_tmp;
	}
	if (fchmod(fd, mode) < 0 || atomic_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		rc = atomic_errno_code(errno);
		goto out_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = atomic_errno_code(errno);
		goto out_unlink;
	}
	fd = -1;
	if (atomic_write_test_hook)
		atomic_write_test_hook(tmp);
	if (rename(tmp, path) < 0) {
		rc = atomic_errno_code(errno);
		goto out_unlink;
	}
	if (atomic_sync_dir(dir) < 0)
		rc = atomic_errno_code(errno);
	goto out_free_tmp;

out_unlink:
	saved_errno = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = saved_errno;
out_free_tmp:
	free(tmp);
out_free_dir:
	free(dir);
	return rc;
}

int mkdir_p(const char *path, mode_t mode)
{
	char *copy;
	struct stat st;
	int rc = 0;

	if (!path || !*path)
		return PROTO_E_INVALID_ARGUMENT;
	copy = strdup(path);
	if (!copy)
		return PROTO_E_NOMEM;

	for (char *p = copy + 1;; p++) {
		char c = *p;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (mkdir(copy, mode) < 0) {
			int e = errno;
			if (e != EEXIST || stat(copy, &st) < 0 || !S_ISDIR(st.st_mode)) {
				errno = e == EEXIST ? ENOTDIR : e;
				rc = atomic_errno_code(errno);
				goto out_free_copy;
			}
		}
		*p = c;
		if (c == '\0')
			break;
	}

out_free_copy:
	free(copy);
	return rc;
}

static int atomic_remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Stops the walk (returns 1) at a folder below the top that is the root of
 * a mount: a bind mount of the user's own files (a native mount left behind
 * by a crashed helper) sits on the same device, so FTW_MOUNT alone would
 * walk into it and delete what it shows. */
static int atomic_find_mount(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	struct statx stx;

	(void)st;
	if (type != FTW_D || ftw->level == 0)
		return 0;
	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0)
		return errno == ENOENT ? 0 : -1;
	return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

int remove_tree(const char *path)
{
	struct stat st;
	int rc;

	if (!path || !*path || strspn(path, "/") == strlen(path))
		return PROTO_E_INVALID_ARGUMENT;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : atomic_errno_code(errno);
	/* Nothing is removed from a tree with something mounted inside it. */
	rc = nftw(path, atomic_find_mount, 16, FTW_PHYS | FTW_MOUNT);
	if (rc != 0)
		return rc > 0 ? PROTO_E_INVALID_STATE : atomic_errno_code(errno);
	/* FTW_PHYS: never follow a symlink out of the tree being removed. */
	if (nftw(path, atomic_remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		return atomic_errno_code(errno);
	return 0;
}

int read_file(const char *path, size_t max, char **out, size_t *len)
{
	char *buf = NULL, *grown;
	size_t cap = 4096, used = 0;
	struct stat st;
	int fd, rc = 0;

	if (!path || !out)
		return PROTO_E_INVALID_ARGUMENT;
	*out = NULL;
	if (len)
		*len = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? PROTO_E_NOT_FOUND : atomic_errno_code(errno);
	if (fstat(fd, &st) < 0) {
		rc = atomic_errno_code(errno);
		goto out_close;
	}
	if (S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		rc = PROTO_E_IO;
		goto out_close;
	}
	if (S_ISREG(st.st_mode) && st.st_size > 0) {
		if ((uint64_t)st.st_size > max) {
			errno = EFBIG;
			rc = PROTO_E_INVALID_ARGUMENT;
			goto out_close;
		}
		/* One byte for the NUL and one so EOF is seen without growing. */
		cap = (size_t)st.st_size + 2;
	}

	buf = malloc(cap);
	if (!buf) {
		rc = PROTO_E_NOMEM;
		goto out_close;
	}
	for (;;) {
		ssize_t n;

		if (used + 1 >= cap) {
			/* The file grew past its stat size (or is not a regular file). */
			if (cap > max + 1) {
				errno = EFBIG;
				rc = PROTO_E_INVALID_ARGUMENT;
				goto out_free_buf;
			}
			grown = realloc(buf, cap * 2);
			if (!grown) {
				rc = PROTO_E_NOMEM;
				goto out_free_buf;
			}
			buf = grown;
			cap *= 2;
		}
		n = read(fd, buf + used, cap - used - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = atomic_errno_code(errno);
			goto out_free_buf;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (used > max) {
		errno = EFBIG;
		rc = PROTO_E_INVALID_ARGUMENT;
		goto out_free_buf;
	}
	buf[used] = '\0';
	*out = buf;
	if (len)
		*len = used;
	goto out_close;

out_free_buf:
	free(buf);
out_close:
	close(fd);
	return rc;
}
