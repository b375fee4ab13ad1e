/*
 * The addresses of an instance with extra networks. A helper only knows the
 * address of the default NIC (user-mode networking gives every guest the
 * same one); what DHCP on a host bridge handed out is known to the guest
 * alone, so `info` asks it over SSH, briefly, and keeps the helper's answer
 * when the guest does not say.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "broker.h"

/* info waits for this at most; a guest that is still booting answers later. */
#define ADDRESSES_DEADLINE 10.0

struct addr_probe {
	char name[INSTANCE_NAME_MAX + 1];
	msgpack_sbuffer *ipv4;
	addresses_done_fn done;
	void *ud;
};

static void addresses_on_ssh(void *ud, int status, const char *out)
{
	struct addr_probe *a = ud;
	char **addrs = NULL;
	size_t n = 0;

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char how[64];

		util_describe_status(status, how, sizeof(how));
		vlog(LOG_INFO_, "asking %s for its addresses: ssh %s; showing the driver's", a->name,
		     how);
	} else if (networks_parse_guest_ipv4(out, &addrs, &n) == 0 && n > 0) {
		msgpack_packer pk;

		msgpack_sbuffer_clear(a->ipv4);
		msgpack_packer_init(&pk, a->ipv4, msgpack_sbuffer_write);
		msgpack_pack_array(&pk, n);
		for (size_t i = 0; i < n; i++)
			proto_pack_str(&pk, addrs[i]);
	}
	networks_addrs_free(addrs, n);
	a->done(a->ud);
	free(a);
}

bool addresses_refresh(const struct instance_record *rec, const char *host, int64_t port,
		       msgpack_sbuffer *ipv4, addresses_done_fn done, void *ud)
{
	/* A login shell is not involved: ip may live in an sbin folder. */
	static const char cmd[] = "PATH=\"$PATH:/usr/sbin:/sbin\" ip -4 -o address show scope global";
	char port_text[16], err[256];
	struct addr_probe *a;

	if (!rec || rec->n_networks == 0 || port <= 0 || port > 65535)
		return false;
	a = calloc(1, sizeof(*a));
	if (!a)
		return false;
	snprintf(a->name, sizeof(a->name), "%s", rec->name);
	a->ipv4 = ipv4;
	a->done = done;
	a->ud = ud;
	snprintf(port_text, sizeof(port_text), "%d", (int)port);
	if (!child_run_ssh(host && *host ? host : "127.0.0.1", port_text, 5, cmd, ADDRESSES_DEADLINE,
			   addresses_on_ssh, a, err, sizeof(err))) {
		vlog(LOG_WARN_, "asking %s for its addresses: %s", rec->name, err);
		free(a);
		return false;
	}
	return true;
}
