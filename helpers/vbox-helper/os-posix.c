/*
 * What differs between host systems: where VBoxManage and qemu-img are
 * installed, starting a process and waiting for it, finding a free port.
 * This is the POSIX version (Linux, macOS); a Windows build replaces this
 * file alone (CreateProcessW, "C:\Program Files\Oracle\VirtualBox").
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "vbox.h"

extern char **environ;

/* Where the installers put them when PATH does not have them. */
static const char *const manage_dirs[] = {
	"/usr/local/bin",				   /* macOS installer's links */
	"/Applications/VirtualBox.app/Contents/MacOS", /* macOS */
	"/usr/bin",					   /* Linux packages */
	"/usr/lib/virtualbox",				   /* Linux packages */
	NULL,
};
static const char *const qemu_img_dirs[] = {"/opt/homebrew/bin", "/usr/local/bin", "/usr/bin",
					    NULL};

static bool in_path(const char *prog, char *out, size_t outlen)
{
	const char *path = getenv("PATH");
	char *copy, *save = NULL;
	bool found = false;

	if (!path || !*path)
		return false;
	copy = strdup(path);
	for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d && !found;
	     d = strtok_r(NULL, ":", &save)) {
		snprintf(out, outlen, "%s/%s", d, prog);
		found = access(out, X_OK) == 0;
	}
	free(copy);
	return found;
}

static bool in_dirs(const char *const dirs[], const char *prog, char *out, size_t outlen)
{
	for (size_t i = 0; dirs[i]; i++) {
		snprintf(out, outlen, "%s/%s", dirs[i], prog);
		if (access(out, X_OK) == 0)
			return true;
	}
	return false;
}

int vbox_os_find_manage(const char *setting, char *out, size_t outlen, char *why, size_t whylen)
{
	if (setting && *setting) {
		if (setting[0] == '/' && access(setting, X_OK) == 0) {
			snprintf(out, outlen, "%s", setting);
			return 0;
		}
		snprintf(why, whylen,
			 "VBoxManage not found: local.virtualbox.manage is %s, which is not an "
			 "executable file", setting);
		return PROTO_E_NOT_FOUND;
	}
	if (in_path("VBoxManage", out, outlen) || in_dirs(manage_dirs, "VBoxManage", out, outlen))
		return 0;
	snprintf(why, whylen,
		 "VBoxManage not found (looked in PATH and in /usr/local/bin, "
		 "/Applications/VirtualBox.app/Contents/MacOS, /usr/bin, /usr/lib/virtualbox); "
		 "install VirtualBox %d.%d or later, or set local.virtualbox.manage to its path",
		 VBOX_MIN_MAJOR, VBOX_MIN_MINOR);
	return PROTO_E_NOT_FOUND;
}

void vbox_os_find_qemu_img(char *out, size_t outlen)
{
	if (in_path("qemu-img", out, outlen) || in_dirs(qemu_img_dirs, "qemu-img", out, outlen))
		return;
	snprintf(out, outlen, "qemu-img");
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int vbox_os_run_wait(char *const argv[], double timeout_s, char *out, size_t outlen)
{
	posix_spawn_file_actions_t fa;
	int fds[2], status = -1;
	size_t used = 0;
	double deadline = now_s() + timeout_s;
	pid_t pid;
	bool killed = false;

	if (outlen)
		out[0] = '\0';
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	for (;;) {
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		double left = deadline - now_s();
		char buf[1024];
		ssize_t n;

		if (left <= 0) {
			kill(pid, SIGKILL);
			killed = true;
			break;
		}
		if (poll(&p, 1, (int)(left * 1000) + 1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		n = read(fds[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && used + 1 < outlen; i++)
			out[used++] = buf[i];
		if (outlen)
			out[used] = '\0';
	}
	close(fds[0]);
	/* The loop has not run yet (init): nothing else reaps this child. */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (killed || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

int vbox_os_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int port = PROTO_E_IO;

	if (fd < 0)
		return PROTO_E_IO;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}
