/*
 * What the broker knows of the drivers. Which drivers there are, and each
 * one's scope and features, is what their helpers say: vmctl-DRIVER-helper
 * is looked for in VMCTL_HELPER_PATH, then EXE_DIR/../libexec/vmctl (the
 * install layout's VMCTL_HELPER_RELDIR: found without the build tree), and run
 * with --describe (the active driver's at start-up and before a switch to
 * it, every installed one a few seconds after start-up). The seed's table
 * (DESIGN.md, "Drivers and scopes") stays as the last resort for a driver
 * whose helper is not installed, or not described yet: its scope, and its
 * features, so that a refusal still names the drivers that have a feature.
 * Also the sentences that refuse a feature the active driver lacks.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"

/* A --describe run is killed after this long. */
#define DESCRIBE_KILL_AFTER 10.0

/* The seed's table, for drivers no installed helper has described. */
static const struct driver_info seed_drivers[] = {
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
#define N_SEED_DRIVERS (sizeof(seed_drivers) / sizeof(seed_drivers[0]))

/* What the installed helpers said of themselves, by driver name. */
static struct driver_info *described;
static size_t n_described;

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
	snprintf(libexec, sizeof(libexec), "%s/%s", B->exe_dir, VMCTL_HELPER_RELDIR);
	fn(libexec, rank, ud);
}

struct helper_search {
	const char *driver;
	char *path;
	size_t pathlen;
	bool found;
	int rank;
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
	/* vmctl-virtualbox-helper, else vmctl-vbox-helper (the seed's alias). */
	for (size_t i = 0;; i++) {
		const char *name = i == 0 ? s->driver : driver_alias(s->driver, i - 1);

		if (!name)
			break;
		snprintf(path, sizeof(path), "%s/vmctl-%s-helper", dir, name);
		if (access(path, X_OK) == 0) {
			snprintf(s->path, s->pathlen, "%s", path);
			s->found = true;
			s->rank = rank;
			return;
		}
	}
	if (!realpath(dir, shown))
		snprintf(shown, sizeof(shown), "%s", dir);
	snprintf(s->where + used, sizeof(s->where) - used, "%s%s", used ? ", " : "", shown);
}

/* helper_find(), also saying in *rank which folder of the search it is in. */
static int helper_find_ranked(const char *driver, char *path, size_t pathlen, int *rank, char *err,
			      size_t errlen)
{
	struct helper_search s = {.driver = driver, .path = path, .pathlen = pathlen};

	helper_for_each_dir(helper_search_dir, &s);
	if (s.found) {
		*rank = s.rank;
		return 0;
	}
	snprintf(err, errlen,
		 "the %s driver's helper vmctl-%s-helper was not found (looked in %s; "
		 "VMCTL_HELPER_PATH adds folders)",
		 driver, driver, s.where);
	return PROTO_E_NOT_FOUND;
}

int helper_find(const char *driver, char *path, size_t pathlen, char *err, size_t errlen)
{
	int rank;

	return helper_find_ranked(driver, path, pathlen, &rank, err, errlen);
}

/* The driver a file name vmctl-DRIVER-helper is the helper of, into buf
 * (an alias's driver for vmctl-ALIAS-helper); false for other names. */
static bool helper_file_driver(const char *file, char *buf, size_t len)
{
	size_t n = strlen(file);

	if (n <= strlen("vmctl--helper") || strncmp(file, "vmctl-", 6) != 0 ||
	    strcmp(file + n - 7, "-helper") != 0 || n - 13 >= len)
		return false;
	memcpy(buf, file + 6, n - 13);
	buf[n - 13] = '\0';
	return driver_name_valid(buf) && driver_canonical(buf, buf, len) == 0;
}

struct installed_list {
	char names[64][DRIVER_NAME_MAX + 1];
	size_t n;
};

static void installed_dir(const char *dir, int rank, void *ud)
{
	struct installed_list *l = ud;
	DIR *dh = opendir(dir);
	struct dirent *de;

	if (!dh)
		return;
	while ((de = readdir(dh)) != NULL && l->n < sizeof(l->names) / sizeof(l->names[0])) {
		char name[DRIVER_NAME_MAX + 1], path[4400];
		size_t i;

		if (!helper_file_driver(de->d_name, name, sizeof(name)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (access(path, X_OK) != 0)
			continue;
		for (i = 0; i < l->n && strcmp(l->names[i], name) != 0; i++)
			;
		if (i == l->n)
			snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", name);
	}
	closedir(dh);
}

static int names_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

void drivers_installed(char *buf, size_t len)
{
	struct installed_list *l = calloc(1, sizeof(*l));
	size_t used = 0;

	buf[0] = '\0';
	if (!l)
		return;
	helper_for_each_dir(installed_dir, l);
	qsort(l->names, l->n, sizeof(l->names[0]), names_cmp);
	for (size_t i = 0; i < l->n && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", l->names[i]);
	free(l);
}

/* ---- --describe ---- */

static int described_cmp(const void *a, const void *b)
{
	return strcmp(((const struct driver_info *)a)->driver, ((const struct driver_info *)b)->driver);
}

/* Keep what a helper said of itself; a helper found earlier in the search
 * wins over one of the same driver found later. */
static void driver_record(const struct driver_info *d)
{
	struct driver_info *grown;
	size_t i;

	for (i = 0; i < n_described; i++)
		if (strcmp(described[i].driver, d->driver) == 0)
			break;
	if (i < n_described) {
		if (described[i].rank >= d->rank)
			described[i] = *d;
		return;
	}
	grown = realloc(described, (n_described + 1) * sizeof(*grown));
	if (!grown)
		return;
	described = grown;
	described[n_described++] = *d;
	qsort(described, n_described, sizeof(*described), described_cmp);
	vlog(LOG_INFO_, "driver %s (scope %s, version %s) at %s", d->driver, d->scope, d->version,
	     d->path);
}

/* What the --describe run of the helper of driver at path gave: 0 with *d,
 * or PROTO_E_PROTOCOL with why. */
static int describe_result(const char *driver, const char *path, int rank, int status,
			   const char *out, struct driver_info *d, char *why, size_t whylen)
{
	char how[64];

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		util_describe_status(status, how, sizeof(how));
		snprintf(why, whylen, "%s --describe %s", path, how);
		return PROTO_E_PROTOCOL;
	}
	if (util_parse_describe(out, d) < 0) {
		snprintf(why, whylen, "%s --describe gave no usable answer", path);
		return PROTO_E_PROTOCOL;
	}
	if (strcmp(d->driver, driver) != 0) {
		snprintf(why, whylen, "%s --describe says it is the helper of driver %s", path,
			 d->driver);
		return PROTO_E_PROTOCOL;
	}
	snprintf(d->path, sizeof(d->path), "%s", path);
	d->rank = rank;
	driver_record(d);
	return 0;
}

struct describe_run {
	char driver[DRIVER_NAME_MAX + 1];
	char path[4200];
	int rank;
	/* Either a callback... */
	driver_described_fn done;
	void *ud;
	/* ...or, in driver_describe_now(), the result. */
	bool finished;
	int err;
	char why[4400];
	struct driver_info d;
};

static void describe_on_done(void *ud, int status, const char *out)
{
	struct describe_run *run = ud;

	run->err = describe_result(run->driver, run->path, run->rank, status, out, &run->d,
				   run->why, sizeof(run->why));
	run->finished = true;
	if (!run->done)
		return;
	if (run->err < 0)
		run->done(run->ud, run->err, run->why, NULL);
	else
		run->done(run->ud, 0, NULL, &run->d);
	free(run);
}

static struct describe_run *describe_start(const char *driver, driver_described_fn done, void *ud,
					   char *err, size_t errlen)
{
	struct describe_run *run = calloc(1, sizeof(*run));
	int rc;

	if (!run) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(run->driver, sizeof(run->driver), "%s", driver);
	run->done = done;
	run->ud = ud;
	rc = helper_find_ranked(driver, run->path, sizeof(run->path), &run->rank, err, errlen);
	if (rc == 0) {
		char *argv[] = {run->path, "--describe", NULL};

		if (child_run(argv, NULL, DESCRIBE_KILL_AFTER, describe_on_done, run, err, errlen))
			return run;
	}
	free(run);
	return NULL;
}

int driver_describe(const char *driver, driver_described_fn done, void *ud, char *err,
		    size_t errlen)
{
	return describe_start(driver, done, ud, err, errlen) ? 0 : PROTO_E_NOT_FOUND;
}

int driver_describe_now(const char *driver, struct driver_info *d, char *err, size_t errlen)
{
	struct describe_run *run = describe_start(driver, NULL, NULL, err, errlen);
	int rc;

	if (!run)
		return PROTO_E_NOT_FOUND;
	/* Before the broker's loop runs: nothing else is waiting on it. */
	while (!run->finished)
		ev_run(B->loop, EVRUN_ONCE);
	rc = run->err;
	if (rc == 0)
		*d = run->d;
	else
		snprintf(err, errlen, "%s", run->why);
	free(run);
	return rc;
}

static void describe_all_on_done(void *ud, int err, const char *errmsg,
				 const struct driver_info *d)
{
	if (err < 0)
		vlog(LOG_WARN_, "%s", errmsg);
}

static void describe_dir(const char *dir, int rank, void *ud)
{
	DIR *dh = opendir(dir);
	struct dirent *de;

	if (!dh)
		return;
	while ((de = readdir(dh)) != NULL) {
		struct describe_run *run;
		char driver[DRIVER_NAME_MAX + 1], err[256];

		if (!helper_file_driver(de->d_name, driver, sizeof(driver)))
			continue;
		run = calloc(1, sizeof(*run));
		if (!run)
			break;
		snprintf(run->driver, sizeof(run->driver), "%s", driver);
		snprintf(run->path, sizeof(run->path), "%s/%s", dir, de->d_name);
		run->rank = rank;
		run->done = describe_all_on_done;
		if (access(run->path, X_OK) != 0) {
			free(run);
			continue;
		}
		char *argv[] = {run->path, "--describe", NULL};
		if (!child_run(argv, NULL, DESCRIBE_KILL_AFTER, describe_on_done, run, err,
			       sizeof(err))) {
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

void drivers_free(void)
{
	free(described);
	described = NULL;
	n_described = 0;
}

/* ---- what is known of each driver ---- */

const struct driver_info *driver_info_get(const char *driver)
{
	for (size_t i = 0; i < n_described; i++)
		if (strcmp(described[i].driver, driver) == 0)
			return &described[i];
	for (size_t i = 0; i < N_SEED_DRIVERS; i++)
		if (strcmp(seed_drivers[i].driver, driver) == 0)
			return &seed_drivers[i];
	return NULL;
}

void driver_scope(const char *driver, char *buf, size_t len)
{
	const struct driver_info *d = driver_info_get(driver);

	/* A driver nobody knows of has a scope of its own. */
	snprintf(buf, len, "%s", d ? d->scope : driver);
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

/* Append name to the list in have when it has feature and is not driver. */
static void refusal_add(const char *name, unsigned feature, const char *driver, char *have,
			size_t len, size_t *used)
{
	const struct driver_info *info = driver_info_get(name);

	if (!info || !(info->features & feature) || strcmp(name, driver) == 0 || *used >= len)
		return;
	*used += (size_t)snprintf(have + *used, len - *used, "%s%s", *used ? ", " : "", name);
}

void driver_refusal(unsigned feature, const char *driver, char *buf, size_t len)
{
	const char *title = proto_feature_title(feature);
	size_t tl = title ? strlen(title) : 0;
	bool plural = tl > 0 && title[tl - 1] == 's';
	char have[512] = "";
	size_t used = 0;

	/* The seed's drivers in its order, then the other described ones by name. */
	for (size_t i = 0; i < N_SEED_DRIVERS; i++)
		refusal_add(seed_drivers[i].driver, feature, driver, have, sizeof(have), &used);
	for (size_t i = 0; i < n_described; i++) {
		size_t j;

		for (j = 0; j < N_SEED_DRIVERS && strcmp(seed_drivers[j].driver, described[i].driver); j++)
			;
		if (j == N_SEED_DRIVERS)
			refusal_add(described[i].driver, feature, driver, have, sizeof(have), &used);
	}
	if (have[0])
		snprintf(buf, len, "%s %s not supported by the %s driver; drivers that have %s: %s",
			 title ? title : "this feature", plural ? "are" : "is", driver,
			 plural ? "them" : "it", have);
	else
		snprintf(buf, len, "%s %s not supported by the %s driver",
			 title ? title : "this feature", plural ? "are" : "is", driver);
}

/* ---- which drivers there are ---- */

size_t drivers_known(char (*names)[DRIVER_NAME_MAX + 1], size_t max)
{
	struct installed_list *l = calloc(1, sizeof(*l));
	size_t n = 0;

	for (size_t i = 0; i < N_SEED_DRIVERS && n < max; i++)
		snprintf(names[n++], sizeof(names[0]), "%s", seed_drivers[i].driver);
	if (!l)
		return n;
	helper_for_each_dir(installed_dir, l);
	qsort(l->names, l->n, sizeof(l->names[0]), names_cmp);
	for (size_t i = 0; i < l->n && n < max; i++) {
		size_t j;

		for (j = 0; j < N_SEED_DRIVERS && strcmp(seed_drivers[j].driver, l->names[i]); j++)
			;
		if (j == N_SEED_DRIVERS)
			snprintf(names[n++], sizeof(names[0]), "%s", l->names[i]);
	}
	free(l);
	return n;
}

/* ---- probing: one hello of a driver's helper ---- */

struct driver_probe {
	struct driver_probe_result res;
	driver_probed_fn done;
	void *ud;
	struct helper *h;
	ev_timer later_w; /* reports a result known at once from the loop */
};

/* hello's settings: the broker's, local.driver being the probed driver. */
static void probe_pack_settings(void *ud, msgpack_packer *pk)
{
	const struct driver_probe *p = ud;
	const char *const *keys = settings_known_keys();
	size_t n = 0;

	for (size_t i = 0; keys && keys[i]; i++)
		if (strcmp(keys[i], "local.driver") == 0 || settings_get(&B->settings, keys[i]))
			n++;
	msgpack_pack_map(pk, n);
	for (size_t i = 0; keys && keys[i]; i++) {
		const char *v = strcmp(keys[i], "local.driver") == 0 ? p->res.info.driver
								      : settings_get(&B->settings, keys[i]);

		if (v)
			proto_pack_kv_str(pk, keys[i], v);
	}
}

static const struct helper_ops probe_helper_ops = {
	.find = helper_find,
	.pack_settings = probe_pack_settings,
};

static void probe_report(struct driver_probe *p)
{
	p->done(p->ud, &p->res);
	free(p);
}

static void probe_on_later(struct ev_loop *loop, ev_timer *w, int revents)
{
	probe_report(w->data);
}

static void probe_on_stopped(void *ud)
{
	struct driver_probe *p = ud;

	helper_free(p->h);
	p->h = NULL;
	probe_report(p);
}

static void probe_on_ping(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct driver_probe *p = ud;
	const struct proto_hello *hello = helper_hello(p->h);

	if (hello) {
		/* What it says in hello is what it is, whether or not it can run. */
		p->res.hello = true;
		p->res.info.features = hello->features;
		snprintf(p->res.info.version, sizeof(p->res.info.version), "%s", hello->helper_version);
	}
	p->res.usable = err == 0;
	if (err < 0)
		snprintf(p->res.why, sizeof(p->res.why), "%s",
			 errmsg && errmsg[0] ? errmsg : proto_strerror(err));
	helper_stop(p->h, probe_on_stopped, p);
}

static void probe_on_described(void *ud, int err, const char *errmsg, const struct driver_info *d)
{
	struct driver_probe *p = ud;
	char scope_dir[4200];
	struct helper_spec spec = {
		.loop = B->loop,
		.driver = p->res.info.driver,
		.scope_dir = scope_dir,
		.deadline_cap = B->deadline_cap,
		.once = true,
		.ops = &probe_helper_ops,
		.ud = p,
	};

	if (err < 0) {
		snprintf(p->res.why, sizeof(p->res.why), "%s", errmsg);
		probe_report(p);
		return;
	}
	p->res.info = *d;
	spec.driver = p->res.info.driver;
	spec.scope = p->res.info.scope;
	/* Not created for a probe: a scope exists once a driver of it was used. */
	snprintf(scope_dir, sizeof(scope_dir), "%s/scopes/%s", B->data_dir, d->scope);
	p->h = helper_new(&spec);
	if (!p->h) {
		snprintf(p->res.why, sizeof(p->res.why), "out of memory");
		probe_report(p);
		return;
	}
	/* Answered once hello is: at once when it went well, with why not
	 * when the helper said it cannot run, refused, broke the protocol or
	 * died. */
	if (!helper_call(p->h, "ping", NULL, BROKER_SHORT_DEADLINE, probe_on_ping, p)) {
		snprintf(p->res.why, sizeof(p->res.why), "out of memory");
		helper_stop(p->h, probe_on_stopped, p);
	}
}

void driver_probe(const char *driver, driver_probed_fn done, void *ud)
{
	struct driver_probe *p = calloc(1, sizeof(*p));
	const struct driver_info *known;
	char err[2048];

	if (!p) {
		struct driver_probe_result res = {0};

		snprintf(res.info.driver, sizeof(res.info.driver), "%s", driver);
		snprintf(res.why, sizeof(res.why), "out of memory");
		done(ud, &res);
		return;
	}
	p->done = done;
	p->ud = ud;
	snprintf(p->res.info.driver, sizeof(p->res.info.driver), "%s", driver);
	known = driver_info_get(driver);
	if (known)
		snprintf(p->res.info.scope, sizeof(p->res.info.scope), "%s", known->scope);
	else
		snprintf(p->res.info.scope, sizeof(p->res.info.scope), "%s", driver);
	if (helper_find(driver, p->res.info.path, sizeof(p->res.info.path), err, sizeof(err)) == 0) {
		p->res.found = true;
		if (driver_describe(driver, probe_on_described, p, err, sizeof(err)) == 0)
			return;
	}
	p->res.info.path[0] = '\0';
	snprintf(p->res.why, sizeof(p->res.why), "%s", err);
	ev_timer_init(&p->later_w, probe_on_later, 0, 0);
	p->later_w.data = p;
	ev_timer_start(B->loop, &p->later_w);
}
