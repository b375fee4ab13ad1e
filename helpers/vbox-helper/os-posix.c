/*
 * What differs between host systems: where VBoxManage and qemu-img are
 * installed, starting a process and waiting for it, finding a free port.
 * This is the POSIX version (Linux, macOS); a Windows build replaces this
 * file alone (CreateProcessW, "C:\Program Files\Oracle\VirtualBox").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "vbox.h"


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
