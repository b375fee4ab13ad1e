/* Extra NICs: a tap device on a host bridge, handed to qemu as an fd. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qh.h"

bool qh_is_bridge(const char *name)
{
	char path[QH_PATH];
	struct stat st;

	if (!name || !*name || strchr(name, '/') || strlen(name) >= IFNAMSIZ)
		return false;
	snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", name);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The tap is not persistent: it goes away with the last fd, i.e. with qemu. */
int qh_tap_open(const char *bridge, char *err, size_t errlen)
{
	struct ifreq ifr;
	int fd, sock, rc = PROTO_E_DRIVER;

	if (!qh_is_bridge(bridge)) {
		snprintf(err, errlen, "%s is not a network bridge on this host", bridge ? bridge : "");
		return PROTO_E_NOT_FOUND;
	}
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open /dev/net/tun: %s", strerror(errno));
		return PROTO_E_DRIVER;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, IFNAMSIZ, "vmtap%%d");
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		snprintf(err, errlen, "cannot create a tap device: %s", strerror(errno));
		goto out_close_tap;
	}
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		snprintf(err, errlen, "cannot configure %s: %s", ifr.ifr_name, strerror(errno));
		goto out_close_tap;
	}
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0 ||
	    (ifr.ifr_flags |= IFF_UP, ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)) {
		snprintf(err, errlen, "cannot bring %s up: %s", ifr.ifr_name, strerror(errno));
		goto out_close_sock;
	}
	char tap[IFNAMSIZ];
	snprintf(tap, sizeof(tap), "%s", ifr.ifr_name);
	if (ioctl(sock, SIOCGIFINDEX, &ifr) < 0) {
		snprintf(err, errlen, "cannot find %s: %s", tap, strerror(errno));
		goto out_close_sock;
	}
	int index = ifr.ifr_ifindex;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", bridge);
	ifr.ifr_ifindex = index;
	if (ioctl(sock, SIOCBRADDIF, &ifr) < 0) {
		snprintf(err, errlen, "cannot add %s to bridge %s: %s", tap, bridge, strerror(errno));
		goto out_close_sock;
	}
	vmh_log(VMH_INFO, "tap %s added to bridge %s", tap, bridge);
	rc = 0;
out_close_sock:
	close(sock);
out_close_tap:
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}
