/*
 * Everything of the helper that depends on the host's OS: finding a
 * program, joining paths, starting processes. Today POSIX (the helper
 * builds and is tested on Linux against a stand-in PowerShell); a Windows
 * port replaces this file only (CreateProcessW with a quoted command line,
 * '\\' separators, PATHEXT).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv.h"


bool hv_os_is_windows(void)
{
#ifdef _WIN32
	return true;
#else
	return false;
#endif
}

bool hv_os_which(const char *prog, char *buf, size_t len)
{
	const char *path = getenv("PATH");

	if (strchr(prog, '/')) {
		snprintf(buf, len, "%s", prog);
		return access(prog, X_OK) == 0;
	}
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");

		if (n && (size_t)snprintf(buf, len, "%.*s/%s", (int)n, path, prog) < len &&
		    access(buf, X_OK) == 0)
			return true;
		path += n + (path[n] == ':');
	}
	return false;
}

int hv_os_path_join(const char *dir, const char *file, char *buf, size_t len)
{
	const char sep = hv_os_is_windows() ? '\\' : '/';
	size_t n = strlen(dir);

	while (n > 1 && (dir[n - 1] == '/' || dir[n - 1] == '\\'))
		n--;
	if ((size_t)snprintf(buf, len, "%.*s%c%s", (int)n, dir, sep, file) >= len)
		return PROTO_E_INVALID_ARGUMENT;
	return 0;
}


int hv_os_spawn(char *const argv[], const struct vmh_run_opts *opts, vmh_run_cb cb, void *ud)
{
	return vmh_run(argv, opts, cb, ud);
}
