/*
 * vmctl-bench-fetch URL CACHE_DIR: download one image through the broker's
 * own image code (libcurl multi on libev, SHA-256 while writing, rename into
 * the cache) and print "BYTES SECONDS". run.sh compares it with `curl -o`
 * of the same file from the same loopback server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include <ev.h>

#include "image.h"
#include "vmproto/proto.h"

struct fetch {
	bool done;
	int err;
	long long bytes;
};

static double fetch_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fetch_on_done(void *ud, int err, const char *errmsg, const struct image_spec *spec)
{
	struct fetch *f = ud;
	struct stat st;

	f->done = true;
	f->err = err;
	if (err < 0)
		fprintf(stderr, "vmctl-bench-fetch: %s\n", errmsg);
	else if (spec && stat(spec->disk, &st) == 0)
		f->bytes = (long long)st.st_size;
}

int main(int argc, char **argv)
{
	struct ev_loop *loop = ev_default_loop(0);
	struct image_cache *c;
	struct fetch f = { 0 };
	double t0;

	if (argc != 3) {
		fprintf(stderr, "usage: vmctl-bench-fetch URL CACHE_DIR\n");
		return 2;
	}
	c = image_cache_new(loop, argv[2]);
	if (!c) {
		fprintf(stderr, "vmctl-bench-fetch: cannot use %s as a cache\n", argv[2]);
		return 1;
	}
	t0 = fetch_now();
	image_resolve(c, argv[1], NULL, fetch_on_done, &f);
	while (!f.done)
		ev_run(loop, EVRUN_ONCE);
	printf("%lld %.3f\n", f.bytes, fetch_now() - t0);
	image_cache_free(c);
	return f.err < 0 ? 1 : 0;
}
