/*
 * The NoCloud seed of an instance: user-data and meta-data written into its
 * folder (texts from seed.c) and genisoimage run to make cloud-init.iso.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"

struct seed_run {
	seed_done_fn done;
	void *ud;
};

static void seed_on_genisoimage(void *ud, int status, const char *out)
{
	struct seed_run *run = ud;

	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		run->done(run->ud, 0, NULL);
	} else {
		char how[64], msg[1024];
		size_t n = strlen(out);

		util_describe_status(status, how, sizeof(how));
		while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
			n--;
		snprintf(msg, sizeof(msg), "genisoimage %s while making the cloud-init seed%s%.*s",
			 how, n ? ": " : "", (int)(n > 600 ? 600 : n), out);
		run->done(run->ud, PROTO_E_IO, msg);
	}
	free(run);
}

int seed_make(const char *dir, const char *name, const char *pubkey,
	      const char *user_cloud_init, seed_done_fn done, void *ud, char *err, size_t errlen)
{
	char path[4400], iso[4400], instance_id[INSTANCE_NAME_MAX + 16];
	uint32_t rnd[2];
	char *ours = NULL, *user_data = NULL, *meta = NULL;
	struct seed_run *run = NULL;
	int rc = PROTO_E_NOMEM;

	if (!pubkey) {
		snprintf(err, errlen, "the broker's SSH key is not ready");
		return PROTO_E_INTERNAL;
	}
	util_random(rnd, sizeof(rnd));
	snprintf(instance_id, sizeof(instance_id), "%s-%08x", name, rnd[0]);
	ours = seed_user_data(pubkey);
	if (!ours)
		goto out_nomem;
	user_data = seed_combine(ours, user_cloud_init, rnd[1]);
	meta = seed_meta_data(name, instance_id);
	run = calloc(1, sizeof(*run));
	if (!user_data || !meta || !run)
		goto out_nomem;
	snprintf(path, sizeof(path), "%s/user-data", dir);
	rc = atomic_write_file(path, user_data, strlen(user_data), 0600);
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/meta-data", dir);
		rc = atomic_write_file(path, meta, strlen(meta), 0600);
	}
	if (rc < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, proto_strerror(rc));
		goto out_free;
	}
	snprintf(iso, sizeof(iso), "%s/cloud-init.iso", dir);
	run->done = done;
	run->ud = ud;
	/* seed_write_network_config() left one for an instance with extra networks. */
	snprintf(path, sizeof(path), "%s/network-config", dir);
	{
		char *argv[] = {"genisoimage", "-output", iso, "-volid", "cidata", "-joliet",
				"-rock", "user-data", "meta-data",
				access(path, F_OK) == 0 ? "network-config" : NULL, NULL};

		if (!child_run(argv, dir, 120.0, seed_on_genisoimage, run, err, errlen)) {
			rc = PROTO_E_IO;
			goto out_free;
		}
	}
	run = NULL;
	rc = 0;
	goto out_free;

out_nomem:
	snprintf(err, errlen, "out of memory");
	rc = PROTO_E_NOMEM;
out_free:
	free(run);
	free(ours);
	free(user_data);
	free(meta);
	return rc;
}
