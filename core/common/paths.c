/* Where vmctl keeps its state and where its own files are. */
#include "vmcommon.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmproto/proto.h>

static int paths_copy(char *buf, size_t len, const char *a, const char *b)
{
	int n = snprintf(buf, len, "%s%s", a, b);

	if (n < 0 || (size_t)n >= len)
		return PROTO_E_INVALID_ARGUMENT;
	return 0;
}

int data_dir(char *buf, size_t len)
{
	const char *env = getenv("VMCTL_DATA");
	const char *home;

	if (env && *env)
		return paths_copy(buf, len, env, "");
	/* The XDG spec says to ignore a relative XDG_DATA_HOME. */
	env = getenv("XDG_DATA_HOME");
	if (env && env[0] == '/')
		return paths_copy(buf, len, env, "/vmctl");
	home = getenv("HOME");
	if (!home || !*home) {
		struct passwd *pw = getpwuid(geteuid());

		home = pw ? pw->pw_dir : NULL;
	}
	if (!home || !*home)
		return PROTO_E_NOT_FOUND;
	return paths_copy(buf, len, home, "/.local/share/vmctl");
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
