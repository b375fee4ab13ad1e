/*
 * Everything of the helper that depends on the host's OS: finding a
 * program, joining paths, starting processes. Today POSIX (the helper
 * builds and is tested on Linux against a stand-in PowerShell); a Windows
 * port replaces this file only (CreateProcessW with a quoted command line,
 * '\\' separators, PATHEXT).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hv.h"

extern char **environ;

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

static double os_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int hv_os_run_sync(char *const argv[], double timeout_s, char *out, size_t len)
{
	posix_spawn_file_actions_t fa;
	int fds[2], status = -1;
	size_t used = 0;
	double end = os_now() + timeout_s;
	pid_t pid;

	out[0] = '\0';
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		goto out_close;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	fds[1] = -1;
	for (;;) {
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		double left = end - os_now();
		char chunk[4096];
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) == 0) {
			kill(pid, SIGKILL);
			break;
		}
		n = read(fds[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (used + 1 < len) {
			size_t take = (size_t)n < len - 1 - used ? (size_t)n : len - 1 - used;

			memcpy(out + used, chunk, take);
			used += take;
			out[used] = '\0';
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
out_close:
	close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	return status;
}

int hv_os_spawn(char *const argv[], const struct vmh_run_opts *opts, vmh_run_cb cb, void *ud)
{
	return vmh_run(argv, opts, cb, ud);
}
