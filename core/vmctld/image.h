/*
 * The broker's image resolver and cache (images/ under the data folder).
 * Everything here is asynchronous on the broker's libev loop: nothing blocks.
 *
 * What can be resolved:
 *   /abs/path/disk.qcow2, file:///abs/path/disk.img   a local image, used in place
 *   http(s)://host/path/image.img                     downloaded into the cache
 *   [REMOTE:]ALIAS ("24.04", "release:noble", "lts")  simplestreams remotes
 *
 * A local disk D.ext may come with direct-boot files beside it:
 * D.vmlinuz (kernel), D.initrd (initrd) and D.cmdline (the whole kernel
 * command line, one line).
 */
#ifndef VMCTLD_IMAGE_H
#define VMCTLD_IMAGE_H

#include <stddef.h>

struct ev_loop;
struct image_cache;
struct image_op;

struct image_spec {
	char *disk;    /* absolute path of the (verified) base disk */
	char *format;  /* "qcow2" or "raw" */
	char *kernel;  /* optional direct-boot kernel, else NULL */
	char *initrd;  /* optional */
	char *cmdline; /* optional kernel command line */
	char *sha256;  /* hex digest of the disk, or NULL for a local file not hashed */
	char *source;  /* what was asked for, normalised: "file:///x/disk.qcow2", "release:24.04" */
	char *description; /* "Ubuntu 24.04 LTS", or the file name */
};

/* images_dir: DATA/images (created if missing). NULL on failure. */
struct image_cache *image_cache_new(struct ev_loop *loop, const char *images_dir);
void image_cache_free(struct image_cache *c);
/* Setting local.image.mirror (NULL or "" = the built-in hosts). */
void image_cache_set_mirror(struct image_cache *c, const char *mirror_url);

typedef void (*image_progress_fn)(void *ud, double fraction, const char *text);
/* spec is valid only during the call; err is 0 or a PROTO_E_* code. */
typedef void (*image_done_fn)(void *ud, int err, const char *errmsg, const struct image_spec *spec);

/* Start resolving `what`. done runs exactly once (possibly before this
 * returns, for a local file) unless the op is cancelled first. Returns NULL
 * only when done has already run. */
struct image_op *image_resolve(struct image_cache *c, const char *what,
			       image_progress_fn progress, image_done_fn done, void *ud);
/* Drop interest in an op: its callbacks will not run (a shared download goes on
 * for the other waiters). */
void image_op_cancel(struct image_op *op);

/* `vmctl find`: result is one packed msgpack map
 * {images: [{name, remote, aliases: [STR], version, description}]} */
typedef void (*image_find_fn)(void *ud, int err, const char *errmsg, const char *packed, size_t len);
void image_find(struct image_cache *c, const char *query, image_find_fn done, void *ud);
enum image_find_flag {
	IMAGE_FIND_FORCE_UPDATE = 1u << 0, /* fetch the index now; no stale fallback */
	IMAGE_FIND_UNSUPPORTED = 1u << 1,  /* also products marked "supported": false */
};
/* image_find() with IMAGE_FIND_* flags; the rows then say "supported". */
void image_find_with(struct image_cache *c, const char *query, unsigned flags, image_find_fn done,
		     void *ud);

/* A small text document over http(s) (cloud-init user data), kept in
 * memory: at most max bytes, with the image downloads' retries. body is
 * valid only during the call (NUL-terminated, len bytes; it may hold NULs). */
typedef void (*image_text_fn)(void *ud, int err, const char *errmsg, const char *body, size_t len);
struct image_text;
/* done runs exactly once, from the loop, unless cancelled first. NULL on ENOMEM. */
struct image_text *image_fetch_text(struct image_cache *c, const char *url, size_t max,
				    image_text_fn done, void *ud);
void image_text_cancel(struct image_text *t);

/* Tuning (settings, tests). Fields <= 0 keep the current value. */
struct image_tuning {
	int attempts;        /* tries per download (default 3) */
	double backoff;      /* seconds before the first retry, doubling (default 1) */
	long stall_seconds;  /* a download under 1 KiB/s this long is given up (default 30) */
	double index_ttl;    /* seconds a remote's index is used before refreshing (default 6 h) */
};
void image_cache_tune(struct image_cache *c, const struct image_tuning *t);

/* Delete cached images (disks, kernels, initrds under images/) that were
 * last used more than max_age seconds ago and are not in in_use (a
 * NULL-terminated list of absolute paths, e.g. every instance's image disk,
 * kernel and initrd; NULL = none). A resolve that uses a cached file counts
 * as a use. Returns how many files were removed, or a PROTO_E_* code. */
int image_cache_prune(struct image_cache *c, const char *const *in_use, double max_age);

/* Duplicate / free a spec (for keeping it past a callback). */
struct image_spec *image_spec_dup(const struct image_spec *s);
void image_spec_free(struct image_spec *s);

#endif
