/*
 * Image cache pruning: a cached image that no instance of any scope uses
 * (soft-deleted ones included, since they can be recovered) and that was
 * last used longer ago than local.image.prune-after is removed. Runs at
 * start-up and every few hours; reading the registries is small local I/O.
 */
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "broker.h"
#include "image.h"

#define PRUNE_INTERVAL (6 * 3600.0)

static ev_timer prune_w;

/* Append rec's image files to *v (NULL-terminated at the end by the caller). */
static int prune_add_record(const char ***v, size_t *n, size_t *cap,
			    const struct instance_record *rec)
{
	const char *paths[] = { rec->image_disk, rec->image_kernel, rec->image_initrd };

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		if (!paths[i])
			continue;
		if (*n + 2 > *cap) {
			size_t ncap = *cap ? *cap * 2 : 64;
			const char **nv = realloc(*v, ncap * sizeof(*nv));

			if (!nv)
				return PROTO_E_NOMEM;
			*v = nv;
			*cap = ncap;
		}
		(*v)[(*n)++] = paths[i];
	}
	return 0;
}

/* An instance folder with no record (orphan.c) may use any image. */
static bool prune_has_orphans(const struct registry *others, char *const *scopes, size_t n_others)
{
	char dir[4300], **names;
	size_t n;
	int rc;

	for (size_t s = 0; s <= n_others; s++) {
		if (s < n_others)
			snprintf(dir, sizeof(dir), "%s/scopes/%s", B->data_dir, scopes[s]);
		else
			snprintf(dir, sizeof(dir), "%s", B->scope_dir);
		rc = orphans_find(dir, s < n_others ? &others[s] : &B->reg, &names, &n);
		if (rc < 0 || n > 0) {
			vlog(LOG_WARN_, "not pruning the image cache: %s/instances %s", dir,
			     rc < 0 ? "could not be read" : "holds folders with no record (vmctl recover NAME)");
			names_free(names, n);
			return true;
		}
	}
	return false;
}

static void prune_run(void)
{
	const char *setting = settings_get(&B->settings, "local.image.prune-after");
	struct registry *others = NULL;
	char **scopes = NULL, err[256];
	size_t n_others = 0, n = 0, cap = 0;
	const char **in_use = NULL;
	uint64_t max_age = 0;
	int rc = 0;

	if (!setting || parse_duration(setting, &max_age, err, sizeof(err)) < 0 || max_age == 0)
		return; /* "never", or a value the settings code already refused */
	/* An image whose instance we cannot see may still be in use. */
	if (list_other_scopes(&others, &scopes, &n_others, NULL, 0) > 0) {
		vlog(LOG_WARN_, "not pruning the image cache: a registry could not be loaded");
		goto out_free;
	}
	if (prune_has_orphans(others, scopes, n_others))
		goto out_free;
	for (size_t i = 0; rc == 0 && i < B->reg.n; i++)
		rc = prune_add_record(&in_use, &n, &cap, &B->reg.v[i]);
	for (size_t s = 0; s < n_others; s++)
		for (size_t i = 0; rc == 0 && i < others[s].n; i++)
			rc = prune_add_record(&in_use, &n, &cap, &others[s].v[i]);
	if (rc == 0) {
		if (in_use)
			in_use[n] = NULL;
		rc = image_cache_prune(B->images, in_use, (double)max_age);
		if (rc > 0)
			vlog(LOG_INFO_, "removed %d cached image file(s) unused for %s", rc, setting);
		else if (rc < 0)
			vlog(LOG_WARN_, "pruning the image cache failed: %s", proto_strerror(rc));
	}
	free(in_use);
out_free:
	for (size_t s = 0; s < n_others; s++) {
		registry_free(&others[s]);
		free(scopes[s]);
	}
	free(others);
	free(scopes);
}

static void prune_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	prune_run();
}

void prune_start(void)
{
	ev_timer_init(&prune_w, prune_on_timer, 0., PRUNE_INTERVAL);
	ev_timer_start(B->loop, &prune_w);
}

void prune_stop(void)
{
	ev_timer_stop(B->loop, &prune_w);
}
