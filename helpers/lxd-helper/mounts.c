/*
 * Native mounts as LXD disk devices. Each mount of the instance map is a
 * disk device named for its guest path (lxd_mount_device_name), so that the
 * broker's list of mounts, not the order of it, says which device is which.
 *
 * An unprivileged container sees host ids outside its user namespace's
 * map as nobody. A mount's uid_map/gid_map [[HOST, GUEST]] become the
 * container's raw.idmap ("uid HOST GUEST"), which LXD applies when the
 * container starts, and which LXC can only set up if root may map HOST
 * (a line root:HOST:1 in /etc/subuid, /etc/subgid for gids). LXD 5.0's
 * shift=true (idmapped mounts) maps host ids onto the same ids only, and
 * refuses to start a container here ("idmapping abilities are required"),
 * so it is not used. Pure functions, unit-tested.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lxd.h"

void lxd_mount_device_name(const char *target, char *buf, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)target; *p; p++) {
		h ^= *p;
		h *= 1099511628211ull;
	}
	snprintf(buf, len, "%s%016" PRIx64, LXD_MOUNT_DEVICE_PREFIX, h);
}

/* One kind of map ("uid" or "gid") of every mount, checked for pairs that
 * contradict each other, appended to buf as raw.idmap lines. */
static int idmap_lines(const struct vmh_mount *const *mounts, size_t n, bool gid, char *buf,
		       size_t len, size_t *used, char *err, size_t errlen)
{
	const char *what = gid ? "gid" : "uid";

	for (size_t i = 0; i < n; i++) {
		const struct vmh_idpair *p = gid ? mounts[i]->gid_map : mounts[i]->uid_map;
		size_t np = gid ? mounts[i]->n_gid_map : mounts[i]->n_uid_map;

		for (size_t k = 0; k < np; k++) {
			bool seen = false;

			/* Against every pair before it, in this mount and the ones before. */
			for (size_t pi = 0; pi <= i && !seen; pi++) {
				const struct vmh_idpair *q = gid ? mounts[pi]->gid_map : mounts[pi]->uid_map;
				size_t nq = pi == i ? k : (gid ? mounts[pi]->n_gid_map : mounts[pi]->n_uid_map);

				for (size_t qi = 0; qi < nq; qi++) {
					if (q[qi].host == p[k].host && q[qi].guest == p[k].guest) {
						seen = true;
						break;
					}
					if (q[qi].host == p[k].host || q[qi].guest == p[k].guest) {
						snprintf(err, errlen,
							 "the %s maps %u:%u and %u:%u of the mounts of this "
							 "instance contradict each other: LXD maps ids for the "
							 "whole container, one host %s to one guest %s",
							 what, (unsigned)q[qi].host, (unsigned)q[qi].guest,
							 (unsigned)p[k].host, (unsigned)p[k].guest, what, what);
						return PROTO_E_INVALID_ARGUMENT;
					}
				}
			}
			if (seen)
				continue;
			int w = snprintf(buf + *used, len - *used, "%s%s %u %u", *used ? "\n" : "", what,
					 (unsigned)p[k].host, (unsigned)p[k].guest);
			if (w < 0 || (size_t)w >= len - *used) {
				snprintf(err, errlen, "the id maps of this instance's mounts are too long");
				return PROTO_E_INVALID_ARGUMENT;
			}
			*used += (size_t)w;
		}
	}
	return 0;
}

int lxd_mounts_idmap(const struct vmh_mount *const *mounts, size_t n, char *buf, size_t len,
		     char *err, size_t errlen)
{
	size_t used = 0;
	int rc;

	if (len == 0)
		return PROTO_E_INVALID_ARGUMENT;
	buf[0] = '\0';
	rc = idmap_lines(mounts, n, false, buf, len, &used, err, errlen);
	if (rc == 0)
		rc = idmap_lines(mounts, n, true, buf, len, &used, err, errlen);
	return rc;
}

bool lxd_idmap_covers(const char *current, const char *wanted)
{
	const char *line = wanted;

	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
		bool found = false;

		for (const char *c = current; c && *c;) {
			const char *cend = strchr(c, '\n');
			size_t cn = cend ? (size_t)(cend - c) : strlen(c);

			if (cn == n && strncmp(c, line, n) == 0) {
				found = true;
				break;
			}
			c = cend ? cend + 1 : NULL;
		}
		if (!found)
			return false;
		line = end ? end + 1 : NULL;
	}
	return true;
}

int lxd_subid_allows(const char *file, const char *user, uint32_t id)
{
	char line[512];
	size_t ulen = strlen(user);
	FILE *f = fopen(file, "r");
	int allowed = 0;

	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (!allowed && fgets(line, sizeof(line), f)) {
		unsigned long long start, count;
		char *end;

		if (strncmp(line, user, ulen) != 0 || line[ulen] != ':')
			continue;
		errno = 0;
		start = strtoull(line + ulen + 1, &end, 10);
		if (errno || *end != ':')
			continue;
		count = strtoull(end + 1, &end, 10);
		if (errno)
			continue;
		if (id >= start && id - start < count)
			allowed = 1;
	}
	fclose(f);
	return allowed;
}

int lxd_mounts_check_ids(const struct vmh_mount *const *mounts, size_t n, const char *subuid,
			 const char *subgid, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		for (int g = 0; g < 2; g++) {
			const struct vmh_idpair *p = g ? mounts[i]->gid_map : mounts[i]->uid_map;
			size_t np = g ? mounts[i]->n_gid_map : mounts[i]->n_uid_map;
			const char *file = g ? subgid : subuid;

			for (size_t k = 0; k < np; k++) {
				int ok = lxd_subid_allows(file, "root", p[k].host);

				if (ok > 0)
					continue;
				if (ok < 0)
					snprintf(err, errlen, "cannot read %s: %s", file, strerror(-ok));
				else
					snprintf(err, errlen,
						 "the lxd driver cannot map host %s %u to guest %s %u in "
						 "%s: LXD maps it with raw.idmap, which needs root to be "
						 "allowed that id (add the line root:%u:1 to %s, then "
						 "restart LXD)",
						 g ? "gid" : "uid", (unsigned)p[k].host, g ? "gid" : "uid",
						 (unsigned)p[k].guest, mounts[i]->source, (unsigned)p[k].host,
						 file);
				return ok < 0 ? PROTO_E_IO : PROTO_E_INVALID_ARGUMENT;
			}
		}
	}
	return 0;
}

bool lxd_mounts_apply(json_t *devices, const struct vmh_mount *const *mounts, size_t n)
{
	bool changed = false;
	const char *name;
	json_t *dev;
	void *tmp;

	/* Ours that are not wanted, or not as they should be, go. */
	json_object_foreach_safe(devices, tmp, name, dev) {
		bool wanted = false;

		if (strncmp(name, LXD_MOUNT_DEVICE_PREFIX, strlen(LXD_MOUNT_DEVICE_PREFIX)) != 0)
			continue;
		for (size_t i = 0; i < n && !wanted; i++) {
			char want[64];
			const char *src = json_string_value(json_object_get(dev, "source"));
			const char *path = json_string_value(json_object_get(dev, "path"));

			lxd_mount_device_name(mounts[i]->target, want, sizeof(want));
			wanted = !strcmp(want, name) && src && !strcmp(src, mounts[i]->source) && path &&
				 !strcmp(path, mounts[i]->target);
		}
		if (!wanted) {
			json_object_del(devices, name);
			changed = true;
		}
	}
	for (size_t i = 0; i < n; i++) {
		char want[64];

		lxd_mount_device_name(mounts[i]->target, want, sizeof(want));
		if (json_object_get(devices, want))
			continue;
		json_object_set_new(devices, want,
				    json_pack("{s:s, s:s, s:s}", "type", "disk", "source",
					      mounts[i]->source, "path", mounts[i]->target));
		changed = true;
	}
	return changed;
}
