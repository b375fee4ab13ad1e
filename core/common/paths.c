/* Where vmctl keeps its state, whether to trust it, and where its own files are. */
#include "vmcommon.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmproto/proto.h>

static int paths_copy(char *buf, size_t len, const char *a, const char *b)
{
	int n = snprintf(buf, len, "%s%s", a, b);

	if (n < 0 || (size_t)n >= len)
		return PROTO_E_INVALID_ARGUMENT;
	return 0;
}

int path_absolute(const char *path, char *buf, size_t len)
{
	char cwd[4096];
	int n;

	if (path[0] == '/')
		return paths_copy(buf, len, path, "");
	if (!getcwd(cwd, sizeof(cwd)))
		return PROTO_E_IO;
	while (strncmp(path, "./", 2) == 0)
		path += 2;
	if (!*path || strcmp(path, ".") == 0)
		return paths_copy(buf, len, cwd, "");
	n = snprintf(buf, len, "%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "", path);
	return n < 0 || (size_t)n >= len ? PROTO_E_INVALID_ARGUMENT : 0;
}

int data_dir(char *buf, size_t len)
{
	const char *env = getenv("VMCTL_DATA");
	const char *home;

	/* The broker runs in "/": the folder must not depend on where it started. */
	if (env && *env)
		return path_absolute(env, buf, len);
	/* The XDG spec says to ignore a relative XDG_DATA_HOME. */
	env = getenv("XDG_DATA_HOME");
	if (env && env[0] == '/')
		return paths_copy(buf, len, env, "/vmctl");
	home = getenv("HOME");
	if (!home || home[0] != '/') {
		struct passwd *pw = getpwuid(geteuid());

		home = pw ? pw->pw_dir : NULL;
	}
	if (!home || home[0] != '/')
		return PROTO_E_NOT_FOUND;
	return paths_copy(buf, len, home, "/.local/share/vmctl");
}

/* "owned by uid 1000, not by you (uid 0)" etc.: what makes st untrusted, or NULL. */
static const char *paths_distrust(const struct stat *st, bool check_mode, char *buf, size_t len)
{
	uid_t me = geteuid();

	if (st->st_uid != me && st->st_uid != 0) {
		snprintf(buf, len, "is owned by uid %u, not by you (uid %u)", (unsigned)st->st_uid,
			 (unsigned)me);
		return buf;
	}
	if (check_mode && (st->st_mode & (S_IWGRP | S_IWOTH))) {
		snprintf(buf, len, "is writable by %s (mode %04o)",
			 st->st_mode & S_IWOTH ? "others" : "its group", (unsigned)(st->st_mode & 07777));
		return buf;
	}
	return NULL;
}

int path_check_trusted(const char *path, mode_t type, const char *what, char *err, size_t errlen)
{
	struct stat st;
	char why[128];
	const char *distrust;

	/* A data folder may be a link to a bigger disk; nothing in it may be. */
	if ((type == S_IFDIR ? stat(path, &st) : lstat(path, &st)) < 0) {
		if (errno == ENOENT)
			return PROTO_E_NOT_FOUND;
		snprintf(err, errlen, "cannot use %s %s: %s", what, path, strerror(errno));
		return PROTO_E_IO;
	}
	if ((st.st_mode & S_IFMT) != type) {
		snprintf(err, errlen, "refusing %s %s: it is not a %s", what, path,
			 type == S_IFDIR ? "folder" : type == S_IFSOCK ? "unix socket" : "regular file");
		return PROTO_E_INVALID_STATE;
	}
	/* Who may connect to a socket is its mode's business; who made it is not. */
	distrust = paths_distrust(&st, type != S_IFSOCK, why, sizeof(why));
	if (distrust) {
		snprintf(err, errlen, "refusing %s %s: it %s%s", what, path, distrust,
			 type == S_IFDIR ? "; set VMCTL_DATA to a folder of your own that only you can write to"
					 : "");
		return PROTO_E_INVALID_STATE;
	}
	return 0;
}

int open_private_file(const char *path, int flags, const char *what, char *err, size_t errlen)
{
	struct stat st;
	char why[128];
	const char *distrust;
	int fd;

	fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0600);
	if (fd < 0) {
		int e = errno;

		if (e == ELOOP)
			snprintf(err, errlen, "refusing %s %s: it is a symbolic link", what, path);
		else
			snprintf(err, errlen, "cannot open %s %s: %s", what, path, strerror(e));
		return e == ELOOP ? PROTO_E_INVALID_STATE : e == ENOENT ? PROTO_E_NOT_FOUND : PROTO_E_IO;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "cannot use %s %s: %s", what, path, strerror(errno));
		close(fd);
		return PROTO_E_IO;
	}
	distrust = S_ISREG(st.st_mode) ? paths_distrust(&st, true, why, sizeof(why)) : "is not a regular file";
	if (distrust) {
		snprintf(err, errlen, "refusing %s %s: it %s", what, path, distrust);
		close(fd);
		return PROTO_E_INVALID_STATE;
	}
	/* O_NONBLOCK only kept open() from hanging on a FIFO planted there. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int exe_dir(char *buf, size_t len)
{
	ssize_t n;
	char *slash;

	if (len < 2)
		return PROTO_E_INVALID_ARGUMENT;
	n = readlink("/proc/self/exe", buf, len);
	if (n < 0)
		return errno == ENOENT ? PROTO_E_NOT_FOUND : PROTO_E_IO;
	if ((size_t)n >= len)
		return PROTO_E_INVALID_ARGUMENT;
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	if (!slash)
		return PROTO_E_INTERNAL;
	if (slash == buf)
		slash[1] = '\0';
	else
		*slash = '\0';
	return 0;
}
