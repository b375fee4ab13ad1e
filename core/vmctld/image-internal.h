/*
 * Internals of the image resolver shared by image.c, image-fetch.c and
 * image-streams.c. Not part of the broker's API (that is image.h).
 */
#ifndef VMCTLD_IMAGE_INTERNAL_H
#define VMCTLD_IMAGE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

#define IMG_ERRLEN 512

/* ---- image.c: small helpers used by the other files ---- */

/* printf into a fresh heap string; NULL on ENOMEM. */
char *img_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* mkdir -p (0755). 0 or PROTO_E_IO. */
int img_mkdirs(const char *path);
/* Replace path with data: temp file, fsync, rename. 0 or PROTO_E_IO. */
int img_write_atomic(const char *path, const void *data, size_t len);
/* Whole file into a NUL-terminated heap buffer; PROTO_E_NOT_FOUND if absent. */
int img_read_whole(const char *path, size_t max, char **out, size_t *len);
/* The format of a disk from its first n bytes: 0 with *format "qcow2" (a
 * version 2 or 3 header) or "raw" (an MBR or GPT partition table, or an
 * ext2/3/4, XFS, Btrfs or ISO 9660 file system), else
 * PROTO_E_INVALID_ARGUMENT with why ("it holds text; it has no ..."). */
int img_check_head(const unsigned char *head, size_t n, const char **format, char *why,
		   size_t whylen);
/* img_check_head() of the file at path; err names shown (path when NULL):
 * "SHOWN is not a disk image vmctl can use: WHY". */
int img_detect_format(const char *path, const char *shown, const char **format, char *err,
		      size_t errlen);

/* ---- image-fetch.c: libcurl's multi interface on the libev loop ---- */

struct img_fetcher;
struct img_xfer;

struct img_fetch_tuning {
	int attempts;          /* tries per transfer (>= 1) */
	double backoff;        /* seconds before the 2nd try; doubles each time */
	long low_speed_time;   /* seconds below low_speed_limit before giving up */
	long low_speed_limit;  /* bytes per second */
	long connect_timeout;  /* seconds */
};

/* What a finished transfer produced. body is set only for memory transfers. */
struct img_xfer_result {
	int err;                /* 0 or PROTO_E_* */
	const char *errmsg;     /* with the URL and the cause */
	const char *body;       /* NUL-terminated */
	size_t body_len;
	const char *sha256;     /* hex digest of every byte received */
	uint64_t bytes;
};

typedef void (*img_xfer_progress_fn)(void *ud, uint64_t now, uint64_t total, double speed);
typedef void (*img_xfer_done_fn)(void *ud, const struct img_xfer_result *r);

struct img_fetcher *img_fetcher_new(struct ev_loop *loop);
void img_fetcher_free(struct img_fetcher *f);
void img_fetcher_tune(struct img_fetcher *f, const struct img_fetch_tuning *t);
const struct img_fetch_tuning *img_fetcher_tuning(const struct img_fetcher *f);

/*
 * Fetch url. fd >= 0: the body goes to that file (truncated on each retry;
 * the caller owns fd). fd < 0: the body is kept in memory, at most mem_max
 * bytes. expect_size (0 = unknown) is what progress uses as a total when the
 * server sends no length. done runs exactly once, from the loop, unless the
 * transfer is cancelled. NULL on ENOMEM.
 */
struct img_xfer *img_xfer_start(struct img_fetcher *f, const char *url, int fd, size_t mem_max,
				uint64_t expect_size, img_xfer_progress_fn progress,
				img_xfer_done_fn done, void *ud);
void img_xfer_cancel(struct img_xfer *x);

/* ---- image-streams.c: simplestreams v1 ---- */

/* One downloadable file of a product version. */
struct img_stream_file {
	char *url;
	char sha256[65];
	uint64_t size;
};

/* The chosen version of one product, as resolve needs it. */
struct img_stream_image {
	char *remote;      /* "release" */
	char *name;        /* first alias or the release ("noble") */
	char *version;     /* "20240423" */
	char *description; /* "Ubuntu 24.04 LTS" */
	char *format_hint; /* ftype of the disk item */
	struct img_stream_file disk;
	struct img_stream_file kernel; /* url NULL when absent */
	struct img_stream_file initrd;
	char *cmdline; /* kernel command line published with the kernel, or NULL */
};
void img_stream_image_free(struct img_stream_image *im);

struct img_streams;

struct img_streams *img_streams_new(struct ev_loop *loop, struct img_fetcher *f, const char *images_dir);
void img_streams_free(struct img_streams *s);
int img_streams_set_mirror(struct img_streams *s, const char *mirror_url);
void img_streams_set_ttl(struct img_streams *s, double seconds);
/* True when name is a known remote ("release", "daily"). */
bool img_streams_has_remote(const struct img_streams *s, const char *name);

typedef void (*img_lookup_fn)(void *ud, int err, const char *errmsg, const struct img_stream_image *im);
struct img_lookup;
/* Find the image [REMOTE:]ALIAS; done runs once, from the loop, unless cancelled. */
struct img_lookup *img_streams_lookup(struct img_streams *s, const char *remote, const char *alias,
				      img_lookup_fn done, void *ud);
void img_lookup_cancel(struct img_lookup *l);
/* `find`: done receives the packed msgpack result. flags: IMAGE_FIND_*. */
void img_streams_find(struct img_streams *s, const char *remote, const char *query,
		      unsigned flags, image_find_fn done, void *ud);

#endif
