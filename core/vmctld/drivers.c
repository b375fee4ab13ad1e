/*
 * What the broker knows of the drivers: where each one's helper is
 * (vmctl-DRIVER-helper in VMCTL_HELPER_PATH, then EXE_DIR/../libexec/vmctl),
 * what every installed helper says of itself when run with --describe, and
 * the sentences that refuse a feature the active driver lacks.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"

/* ---- finding helpers ---- */

/* Calls fn for each folder helpers are looked for in, in order. */
static void helper_for_each_dir(void (*fn)(const char *dir, int rank, void *ud), void *ud)
{
	const char *env = getenv("VMCTL_HELPER_PATH");
	char libexec[4200];
	int rank = 0;

	if (env && *env) {
		char *copy = strdup(env);
		char *save = NULL;

		for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d;
		     d = strtok_r(NULL, ":", &save))
			fn(d, rank++, ud);
		free(copy);
	}
	snprintf(libexec, sizeof(libexec), "%s/../libexec/vmctl", B->exe_dir);
	fn(libexec, rank, ud);
}

struct helper_search {
	const char *driver;
	char *path;
	size_t pathlen;
	bool found;
	char where[2048];
};

static void helper_search_dir(const char *dir, int rank, void *ud)
{
	struct helper_search *s = ud;
	char path[4200];
	char shown[4200];
	size_t used = strlen(s->where);

	if (s->found)
		return;
	snprintf(path, sizeof(path), "%s/vmctl-%s-helper", dir, s->driver);
	if (access(path, X_OK) == 0) {
		snprintf(s->path, s->pathlen, "%s", path);
		s->found = true;
		return;
	}
	if (!realpath(dir, shown))
		snprintf(shown, sizeof(shown), "%s", dir);
	snprintf(s->where + used, sizeof(s->where) - used, "%s%s", used ? ", " : "", shown);
}

int helper_find(const char *driver, char *path, size_t pathlen, char *err, size_t errlen)
{
	struct helper_search s = {.driver = driver, .path = path, .pathlen = pathlen};

	helper_for_each_dir(helper_search_dir, &s);
	if (s.found)
		return 0;
	snprintf(err, errlen,
		 "the %s driver's helper vmctl-%s-helper was not found (looked in %s; "
		 "VMCTL_HELPER_PATH adds folders)",
		 driver, driver, s.where);
	return PROTO_E_NOT_FOUND;
}

/* ---- features ---- */

static const struct driver_info driver_builtin[] = {
	{"qemu", "qemu", "", "",
	 PROTO_FEAT_NATIVE_MOUNTS | PROTO_FEAT_EXTRA_NETWORKS | PROTO_FEAT_SNAPSHOTS |
		 PROTO_FEAT_CLONE | PROTO_FEAT_SUSPEND,
	 false, 0},
	{"libvirt", "qemu", "", "", PROTO_FEAT_SUSPEND, false, 0},
	{"lxd", "lxd", "", "", PROTO_FEAT_NATIVE_MOUNTS | PROTO_FEAT_EXTRA_NETWORKS, false, 0},
	{"hyperv", "hyperv", "", "",
	 PROTO_FEAT_NATIVE_MOUNTS | PROTO_FEAT_EXTRA_NETWORKS | PROTO_FEAT_SNAPSHOTS |
		 PROTO_FEAT_CLONE | PROTO_FEAT_SUSPEND,
	 false, 0},
	{"virtualbox", "virtualbox", "", "",
	 PROTO_FEAT_EXTRA_NETWORKS | PROTO_FEAT_SNAPSHOTS | PROTO_FEAT_CLONE | PROTO_FEAT_SUSPEND,
	 false, 0},
};

const struct driver_info *driver_info_get(const char *driver)
{
	for (size_t i = 0; i < B->n_drivers; i++)
		if (strcmp(B->drivers[i].driver, driver) == 0)
			return &B->drivers[i];
	for (size_t i = 0; i < sizeof(driver_builtin) / sizeof(driver_builtin[0]); i++)
		if (strcmp(driver_builtin[i].driver, driver) == 0)
			return &driver_builtin[i];
	return NULL;
}

bool broker_has_feature(unsigned feature)
{
	const struct proto_hello *hello = B->helper ? helper_hello(B->helper) : NULL;
	const struct driver_info *d;

	if (hello)
		return (hello->features & feature) != 0;
	d = driver_info_get(B->driver);
	return d && (d->features & feature);
}

void driver_refusal(unsigned feature, const char *driver, char *buf, size_t len)
{
	const char *title = proto_feature_title(feature);
	size_t tl = title ? strlen(title) : 0;
	bool plural = tl > 0 && title[tl - 1] == 's';
	char have[512] = "";
	size_t used = 0;

	for (const char *const *d = driver_names(); d && *d; d++) {
		const struct driver_info *info = driver_info_get(*d);

		if (!info || !(info->features & feature) || strcmp(*d, driver) == 0)
			continue;
		used += (size_t)snprintf(have + used, sizeof(have) - used, "%s%s", used ? ", " : "",
					 *d);
		if (used >= sizeof(have))
			break;
	}
	if (have[0])
		snprintf(buf, len, "%s %s not supported by the %s driver; drivers that have %s: %s",
			 title ? title : "this feature", plural ? "are" : "is", driver,
			 plural ? "them" : "it", have);
	else
		snprintf(buf, len, "%s %s not supported by the %s driver",
			 title ? title : "this feature", plural ? "are" : "is", driver);
}

/* ---- --describe ---- */

struct describe_run {
	char path[4200];
	int rank;
};

static void describe_on_done(void *ud, int status, const char *out)
{
	struct describe_run *run = ud;
	struct driver_info d;
	struct driver_info *grown;
	size_t i;

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || util_parse_describe(out, &d) < 0) {
		vlog(LOG_WARN_, "%s --describe gave no usable answer", run->path);
		goto out_free;
	}
	snprintf(d.path, sizeof(d.path), "%s", run->path);
	d.rank = run->rank;
	for (i = 0; i < B->n_drivers; i++)
		if (strcmp(B->drivers[i].driver, d.driver) == 0)
			break;
	if (i < B->n_drivers) {
		if (B->drivers[i].rank > d.rank)
			B->drivers[i] = d;
		goto out_free;
	}
	grown = realloc(B->drivers, (B->n_drivers + 1) * sizeof(*grown));
	if (!grown)
		goto out_free;
	B->drivers = grown;
	B->drivers[B->n_drivers++] = d;
	vlog(LOG_INFO_, "driver %s (scope %s, version %s) at %s", d.driver, d.scope, d.version,
	     d.path);
out_free:
	free(run);
}

static void describe_dir(const char *dir, int rank, void *ud)
{
	DIR *dh = opendir(dir);
	struct dirent *de;

	if (!dh)
		return;
	while ((de = readdir(dh)) != NULL) {
		size_t n = strlen(de->d_name);
		struct describe_run *run;
		char err[256];

		if (n <= strlen("vmctl--helper") || strncmp(de->d_name, "vmctl-", 6) != 0 ||
		    strcmp(de->d_name + n - 7, "-helper") != 0)
			continue;
		run = calloc(1, sizeof(*run));
		if (!run)
			break;
		snprintf(run->path, sizeof(run->path), "%s/%s", dir, de->d_name);
		run->rank = rank;
		if (access(run->path, X_OK) != 0) {
			free(run);
			continue;
		}
		char *argv[] = {run->path, "--describe", NULL};
		if (!child_run(argv, NULL, 10.0, describe_on_done, run, err, sizeof(err))) {
			vlog(LOG_WARN_, "%s", err);
			free(run);
		}
	}
	closedir(dh);
}

void helper_describe_all(void)
{
	helper_for_each_dir(describe_dir, NULL);
}
