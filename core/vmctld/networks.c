/*
 * Extra networks: the checks and defaults of launch's `networks` and
 * `bridged` params, MACs for clones, and reading the addresses a guest
 * reports. Pure (no loop, no helper): unit-tested.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker.h"

/* What the helpers can pass to a hypervisor as a host interface name. */
static int networks_check_name(const char *name, char *err, size_t errlen)
{
	if (!name[0]) {
		snprintf(err, errlen, "an extra network needs the name of a host network");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (strlen(name) > NETWORK_NAME_MAX || strpbrk(name, ",=/ \t\r\n:")) {
		snprintf(err, errlen, "'%.40s' is not a host network name (at most %d characters, "
			 "no spaces or any of , = / :)", name, NETWORK_NAME_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

static bool networks_mac_used(const struct network_record *v, size_t n, const char *mac)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].mac && !strcasecmp(v[i].mac, mac))
			return true;
	return false;
}

/* A fresh 52:54:00 address that none of v[0..n), other[0..n_other) nor
 * avoid has. */
static int networks_new_mac(const struct network_record *v, size_t n,
			    const struct network_record *other, size_t n_other, const char *avoid,
			    char **out)
{
	char mac[32];

	do {
		unsigned char rnd[3];

		util_random(rnd, sizeof(rnd));
		util_format_mac(rnd, mac, sizeof(mac));
	} while (networks_mac_used(v, n, mac) || networks_mac_used(other, n_other, mac) ||
		 (avoid && !strcasecmp(avoid, mac)));
	return record_set(out, mac);
}

static int networks_add(struct network_record **v, size_t *n, const char *name, const char *mode,
			const char *mac)
{
	struct network_record *grown = realloc(*v, (*n + 1) * sizeof(**v));
	struct network_record *net;

	if (!grown)
		return PROTO_E_NOMEM;
	*v = grown;
	net = &grown[(*n)++];
	memset(net, 0, sizeof(*net));
	if (record_set(&net->name, name) < 0 || record_set(&net->mode, mode) < 0 ||
	    record_set(&net->mac, mac) < 0)
		return PROTO_E_NOMEM;
	/* Stored lower case, so that a MAC given twice in two cases is found. */
	for (char *c = net->mac; c && *c; c++)
		*c = (char)tolower((unsigned char)*c);
	return 0;
}

/* "bridged" stands for the network named by local.bridged-network. */
static int networks_resolve(const char *name, const char *bridged_setting, const char **out,
			    char *err, size_t errlen)
{
	*out = name;
	if (strcmp(name, "bridged") != 0)
		return 0;
	if (!bridged_setting || !bridged_setting[0]) {
		snprintf(err, errlen, "no bridged network is set; choose one with vmctl set "
			 "local.bridged-network=BRIDGE (see vmctl networks)");
		return PROTO_E_INVALID_ARGUMENT;
	}
	*out = bridged_setting;
	return 0;
}

static int networks_take_one(const msgpack_object *o, size_t i, const char *bridged_setting,
			     struct network_record **v, size_t *n, char *err, size_t errlen)
{
	char name[64] = "", mode[16] = "auto", mac[32] = "";
	const char *resolved;
	int rc;

	if (o->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "network %zu must be a map {name, mode, mac}", i + 1);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (proto_get_str(o, "name", name, sizeof(name)) == PROTO_E_INVALID_ARGUMENT ||
	    proto_get_str(o, "mode", mode, sizeof(mode)) == PROTO_E_INVALID_ARGUMENT ||
	    proto_get_str(o, "mac", mac, sizeof(mac)) == PROTO_E_INVALID_ARGUMENT) {
		snprintf(err, errlen, "network %zu: name, mode and mac must be short strings", i + 1);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!mode[0])
		snprintf(mode, sizeof(mode), "auto");
	if (strcmp(mode, "auto") != 0 && strcmp(mode, "manual") != 0) {
		snprintf(err, errlen, "network mode '%s' is not auto or manual", mode);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if ((rc = networks_check_name(name, err, errlen)) < 0 ||
	    (rc = networks_resolve(name, bridged_setting, &resolved, err, errlen)) < 0 ||
	    (rc = networks_check_name(resolved, err, errlen)) < 0)
		return rc;
	if (mac[0]) {
		if ((rc = validate_mac(mac, err, errlen)) < 0)
			return rc;
		if (networks_mac_used(*v, *n, mac)) {
			snprintf(err, errlen, "MAC address %s is given to two networks", mac);
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	if (networks_add(v, n, resolved, mode, mac[0] ? mac : NULL) < 0) {
		snprintf(err, errlen, "out of memory");
		return PROTO_E_NOMEM;
	}
	return 0;
}

int networks_from_params(const msgpack_object *p, const char *bridged_setting,
			 struct network_record **out, size_t *n_out, char *err, size_t errlen)
{
	const msgpack_object *arr = proto_map_get(p, "networks");
	struct network_record *v = NULL;
	size_t n = 0, given;
	bool bridged = false;
	int rc;

	*out = NULL;
	*n_out = 0;
	if (proto_get_bool(p, "bridged", &bridged) == PROTO_E_INVALID_ARGUMENT) {
		snprintf(err, errlen, "bridged must be true or false");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (arr && arr->type != MSGPACK_OBJECT_NIL && arr->type != MSGPACK_OBJECT_ARRAY) {
		snprintf(err, errlen, "networks must be a list of {name, mode, mac}");
		return PROTO_E_INVALID_ARGUMENT;
	}
	given = arr && arr->type == MSGPACK_OBJECT_ARRAY ? arr->via.array.size : 0;
	if (given + bridged > BROKER_MAX_NETWORKS) {
		snprintf(err, errlen, "at most %d extra networks can be given, not %zu",
			 BROKER_MAX_NETWORKS, given + bridged);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (bridged) {
		const char *resolved;

		if ((rc = networks_resolve("bridged", bridged_setting, &resolved, err, errlen)) < 0 ||
		    (rc = networks_check_name(resolved, err, errlen)) < 0)
			goto out_free;
		if ((rc = networks_add(&v, &n, resolved, "auto", NULL)) < 0) {
			snprintf(err, errlen, "out of memory");
			goto out_free;
		}
	}
	for (size_t i = 0; i < given; i++) {
		rc = networks_take_one(&arr->via.array.ptr[i], i, bridged_setting, &v, &n, err, errlen);
		if (rc < 0)
			goto out_free;
	}
	/* Generated last, so that no generated MAC takes one given later. */
	for (size_t i = 0; i < n; i++) {
		if (!v[i].mac && networks_new_mac(v, n, NULL, 0, NULL, &v[i].mac) < 0) {
			snprintf(err, errlen, "out of memory");
			rc = PROTO_E_NOMEM;
			goto out_free;
		}
	}
	*out = v;
	*n_out = n;
	return 0;

out_free:
	network_records_free(v, n);
	return rc;
}

int networks_copy_new_macs(struct network_record **out, const struct network_record *src, size_t n,
			   const char *avoid_mac)
{
	struct network_record *v = NULL;
	size_t done = 0;

	*out = NULL;
	for (size_t i = 0; i < n; i++) {
		if (networks_add(&v, &done, src[i].name, src[i].mode, NULL) < 0 ||
		    networks_new_mac(v, done, src, n, avoid_mac, &v[done - 1].mac) < 0) {
			network_records_free(v, done);
			return PROTO_E_NOMEM;
		}
	}
	*out = v;
	return 0;
}

bool networks_mac_taken(const struct network_record *v, size_t n, const char *mac)
{
	return mac && networks_mac_used(v, n, mac);
}

int networks_parse_guest_ipv4(const char *out, char ***addrs, size_t *n)
{
	char **v = NULL;
	size_t count = 0;
	const char *p = out;

	*addrs = NULL;
	*n = 0;
	/* `ip -4 -o address` and plain `ip -4 address` both print "inet A/P". */
	while ((p = strstr(p, "inet ")) != NULL) {
		char addr[64];
		struct in_addr parsed;
		size_t len;

		if (p != out && !isspace((unsigned char)p[-1])) {
			p += 5;
			continue;
		}
		p += 5;
		while (*p == ' ')
			p++;
		len = strcspn(p, "/ \t\r\n");
		if (len == 0 || len >= sizeof(addr))
			continue;
		memcpy(addr, p, len);
		addr[len] = '\0';
		if (inet_pton(AF_INET, addr, &parsed) != 1)
			continue;
		{
			char **grown = realloc(v, (count + 1) * sizeof(*v));

			if (!grown)
				goto out_nomem;
			v = grown;
			if (!(v[count] = strdup(addr)))
				goto out_nomem;
			count++;
		}
		if (count == BROKER_MAX_NETWORKS * 4)
			break;
	}
	*addrs = v;
	*n = count;
	return 0;

out_nomem:
	networks_addrs_free(v, count);
	return PROTO_E_NOMEM;
}

void networks_addrs_free(char **addrs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(addrs[i]);
	free(addrs);
}
