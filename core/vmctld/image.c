/*
 * The image resolver: turns what the user asked for into a verified base
 * disk (plus optional direct-boot files), downloading into the cache when
 * needed. Local files are used in place.
 */
#include "image-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>
#include <vmproto/proto.h>

#define IMG_CMDLINE_MAX 4096

/* ---- small helpers ---- */

char *img_strdupf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

int img_mkdirs(const char *path)
{
	char *p = strdup(path);
	int rc = 0;

	if (!p)
		return PROTO_E_NOMEM;
	for (char *s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char saved = *s;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			rc = PROTO_E_IO;
			break;
		}
		*s = saved;
		if (saved == '\0')
			break;
	}
	free(p);
	return rc;
}

int img_write_atomic(const char *path, const void *data, size_t len)
{
	char *tmp = img_strdupf("%s.tmp.%ld", path, (long)getpid());
	int fd, rc = PROTO_E_IO;
	const char *p = data;

	if (!tmp)
		return PROTO_E_NOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto out_free_tmp;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out_close;
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0)
		goto out_close;
	if (close(fd) < 0) {
		fd = -1;
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto out_unlink;
	rc = 0;
	goto out_free_tmp;
out_close:
	close(fd);
out_unlink:
	unlink(tmp);
out_free_tmp:
	free(tmp);
	return rc;
}

int img_read_whole(const char *path, size_t max, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t got = 0;
	int rc = PROTO_E_IO;

	if (fd < 0)
		return errno == ENOENT ? PROTO_E_NOT_FOUND : PROTO_E_IO;
	if (fstat(fd, &st) < 0)
		goto out_close;
	if ((uint64_t)st.st_size > max) {
		rc = PROTO_E_INVALID_ARGUMENT;
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = PROTO_E_NOMEM;
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			goto out_close;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	if (len)
		*len = got;
	rc = 0;
out_close:
	close(fd);
	return rc;
}

/*
 * Which disk formats the drivers can boot, told by a disk's first bytes. A
 * raw image must carry a partition table or a file system the firmware or
 * a direct-boot kernel can use; any other file (a text file, an archive, a
 * disk of another hypervisor) would boot nothing and, on a system-wide
 * broker, would hand the file's bytes to a guest.
 */
struct img_signature {
	size_t offset;
	const char *magic;
	size_t len;
	const char *what;
};

/* Any of these makes a file a usable raw disk. */
static const struct img_signature raw_signatures[] = {
	{ 510, "\x55\xaa", 2, "an MBR partition table" },
	{ 512, "EFI PART", 8, "a GPT partition table" },
	{ 4096, "EFI PART", 8, "a GPT partition table (4 KiB sectors)" },
	{ 1080, "\x53\xef", 2, "an ext2/3/4 file system" },
	{ 0, "XFSB", 4, "an XFS file system" },
	{ 65600, "_BHRfS_M", 8, "a Btrfs file system" },
	{ 32769, "CD001", 5, "an ISO 9660 file system" },
};

/* Files that are something else, named so the user knows what to do. */
static const struct img_signature foreign_signatures[] = {
	{ 0, "KDMV", 4, "a VMDK disk; convert it with qemu-img convert -O qcow2" },
	{ 0, "# Disk DescriptorFile", 21, "a VMDK descriptor; convert the disk with qemu-img convert -O qcow2" },
	{ 64, "\x7f\x10\xda\xbe", 4, "a VirtualBox VDI disk; convert it with qemu-img convert -O qcow2" },
	{ 0, "vhdxfile", 8, "a VHDX disk; convert it with qemu-img convert -O qcow2" },
	{ 0, "conectix", 8, "a VHD disk; convert it with qemu-img convert -O qcow2" },
	{ 0, "\x1f\x8b", 2, "gzip-compressed; decompress it first" },
	{ 0, "\xfd" "7zXZ\0", 6, "xz-compressed; decompress it first" },
	{ 0, "\x28\xb5\x2f\xfd", 4, "zstd-compressed; decompress it first" },
	{ 0, "BZh", 3, "bzip2-compressed; decompress it first" },
	{ 257, "ustar", 5, "a tar archive; extract the disk image from it first" },
};

/* Enough for every signature above (Btrfs's is the farthest). */
#define IMG_HEAD_SIZE (65600 + 8)

static bool sig_at(const unsigned char *head, size_t n, const struct img_signature *sig)
{
	return n >= sig->offset + sig->len && memcmp(head + sig->offset, sig->magic, sig->len) == 0;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Printable ASCII and white space only, as in /etc/passwd or a script. */
static bool looks_like_text(const unsigned char *head, size_t n)
{
	if (n > 512)
		n = 512;
	for (size_t i = 0; i < n; i++)
		if ((head[i] < 0x20 && head[i] != '\n' && head[i] != '\r' && head[i] != '\t') ||
		    head[i] >= 0x7f)
			return false;
	return n > 0;
}

/*
 * An LXD unified tarball (tools/build-lxd-image.sh, LXD's own exports): a
 * tar whose first member is metadata.yaml, after the pax header that GNU
 * tar writes before a member with extended attributes. Only the lxd driver
 * takes it (launch.c).
 */
static bool is_lxd_tarball(const unsigned char *head, size_t n)
{
	size_t at = 0;

	for (int member = 0; member < 2 && at + 512 <= n; member++) {
		const unsigned char *h = head + at;
		char name[101], size_text[13];
		unsigned long long size;

		if (memcmp(h + 257, "ustar", 5) != 0)
			return false;
		memcpy(name, h, 100);
		name[100] = '\0';
		if (h[156] != 'x')
			return !strcmp(name, "metadata.yaml") || !strcmp(name, "./metadata.yaml");
		/* A pax header: its data follows, then the member it describes. */
		memcpy(size_text, h + 124, 12);
		size_text[12] = '\0';
		size = strtoull(size_text, NULL, 8);
		if (size > n)
			return false;
		at += 512 + (size_t)((size + 511) / 512 * 512);
	}
	return false;
}

int img_check_head(const unsigned char *head, size_t n, const char **format, char *why,
		   size_t whylen)
{
	static const unsigned char qcow2_magic[4] = { 'Q', 'F', 'I', 0xfb };

	if (n == 0) {
		snprintf(why, whylen, "the file is empty");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (n >= sizeof(qcow2_magic) && memcmp(head, qcow2_magic, sizeof(qcow2_magic)) == 0) {
		uint32_t version = n >= 8 ? be32(head + 4) : 0;

		if (version != 2 && version != 3) {
			snprintf(why, whylen, "it has a qcow header of version %u; only qcow2 "
				 "(versions 2 and 3) can be used", (unsigned)version);
			return PROTO_E_INVALID_ARGUMENT;
		}
		/* The fixed part of the header: 72 bytes in version 2, 104 in 3. */
		if (n < (version == 2 ? 72u : 104u)) {
			snprintf(why, whylen, "its qcow2 header is cut short (%zu bytes)", n);
			return PROTO_E_INVALID_ARGUMENT;
		}
		*format = "qcow2";
		return 0;
	}
	if (is_lxd_tarball(head, n)) {
		*format = "lxd";
		return 0;
	}
	for (size_t i = 0; i < sizeof(foreign_signatures) / sizeof(foreign_signatures[0]); i++) {
		if (sig_at(head, n, &foreign_signatures[i])) {
			snprintf(why, whylen, "it is %s", foreign_signatures[i].what);
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	for (size_t i = 0; i < sizeof(raw_signatures) / sizeof(raw_signatures[0]); i++) {
		if (sig_at(head, n, &raw_signatures[i])) {
			*format = "raw";
			return 0;
		}
	}
	snprintf(why, whylen, "%sit has no qcow2 header, no partition table (MBR or GPT) and no "
		 "file system signature (ext2/3/4, XFS, Btrfs, ISO 9660)",
		 looks_like_text(head, n) ? "it holds text; " : "");
	return PROTO_E_INVALID_ARGUMENT;
}

int img_detect_format(const char *path, const char *shown, const char **format, char *err,
		      size_t errlen)
{
	unsigned char *head;
	char why[256];
	size_t got = 0;
	int fd, rc;

	if (!shown)
		shown = path;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open image %s: %s", shown, strerror(errno));
		return errno == ENOENT ? PROTO_E_NOT_FOUND : PROTO_E_IO;
	}
	head = malloc(IMG_HEAD_SIZE);
	if (!head) {
		rc = PROTO_E_NOMEM;
		snprintf(err, errlen, "out of memory");
		goto out_close;
	}
	while (got < IMG_HEAD_SIZE) {
		ssize_t n = read(fd, head + got, IMG_HEAD_SIZE - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "cannot read image %s: %s", shown, strerror(errno));
			rc = PROTO_E_IO;
			goto out_free_head;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	rc = img_check_head(head, got, format, why, sizeof(why));
	if (rc < 0)
		snprintf(err, errlen, "%s is not a disk image vmctl can use: %s", shown, why);
out_free_head:
	free(head);
out_close:
	close(fd);
	return rc;
}

/* ---- specs ---- */

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

void image_spec_free(struct image_spec *s)
{
	if (!s)
		return;
	free(s->disk);
	free(s->format);
	free(s->kernel);
	free(s->initrd);
	free(s->cmdline);
	free(s->sha256);
	free(s->source);
	free(s->description);
	free(s);
}

struct image_spec *image_spec_dup(const struct image_spec *s)
{
	struct image_spec *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->disk = dup_or_null(s->disk);
	d->format = dup_or_null(s->format);
	d->kernel = dup_or_null(s->kernel);
	d->initrd = dup_or_null(s->initrd);
	d->cmdline = dup_or_null(s->cmdline);
	d->sha256 = dup_or_null(s->sha256);
	d->source = dup_or_null(s->source);
	d->description = dup_or_null(s->description);
	if ((s->disk && !d->disk) || (s->format && !d->format) || (s->kernel && !d->kernel) ||
	    (s->initrd && !d->initrd) || (s->cmdline && !d->cmdline) || (s->sha256 && !d->sha256) ||
	    (s->source && !d->source) || (s->description && !d->description)) {
		image_spec_free(d);
		return NULL;
	}
	return d;
}

/* ---- local images ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* file:///a/b%20c -> /a/b c ; also accepts file://localhost/a. */
static int file_url_to_path(const char *url, char **path, char *err, size_t errlen)
{
	const char *p = url + strlen("file://");
	char *out, *o;

	if (strncmp(p, "localhost/", 10) == 0)
		p += strlen("localhost");
	if (*p != '/') {
		snprintf(err, errlen, "unsupported file URL %s: expected file:///absolute/path", url);
		return PROTO_E_INVALID_ARGUMENT;
	}
	out = o = malloc(strlen(p) + 1);
	if (!out)
		return PROTO_E_NOMEM;
	for (; *p; p++) {
		if (*p == '%') {
			int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				snprintf(err, errlen, "malformed file URL %s: bad %%-escape", url);
				free(out);
				return PROTO_E_INVALID_ARGUMENT;
			}
			*o++ = (char)(hi * 16 + lo);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	*path = out;
	return 0;
}

/* D.ext -> D (the extension of the file name only). */
static char *strip_extension(const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *dot = strrchr(path, '.');

	if (!dot || (slash && dot < slash) || dot == (slash ? slash + 1 : path))
		return strdup(path);
	return strndup(path, (size_t)(dot - path));
}

/* The companion file base+suffix if it is a regular file, else NULL in *out. */
static int companion(const char *base, const char *suffix, char **out)
{
	struct stat st;
	char *p = img_strdupf("%s%s", base, suffix);

	*out = NULL;
	if (!p)
		return PROTO_E_NOMEM;
	if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
		*out = p;
	else
		free(p);
	return 0;
}

static int read_cmdline(const char *path, char **cmdline, char *err, size_t errlen)
{
	size_t len;
	char *text;
	int rc = img_read_whole(path, IMG_CMDLINE_MAX, &text, &len);

	if (rc < 0) {
		snprintf(err, errlen, "cannot read kernel command line %s: %s", path,
			 rc == PROTO_E_INVALID_ARGUMENT ? "file too large" : strerror(errno));
		return rc;
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = '\0';
	if (strchr(text, '\n')) {
		snprintf(err, errlen, "kernel command line %s must be a single line", path);
		free(text);
		return PROTO_E_INVALID_ARGUMENT;
	}
	*cmdline = text;
	return 0;
}

static int resolve_local(const char *path, struct image_spec *spec, char *err, size_t errlen)
{
	struct stat st;
	const char *format;
	const char *name;
	char *base, *cmdline_path = NULL;
	int rc;

	if (path[0] != '/') {
		snprintf(err, errlen, "image path %s must be absolute", path);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (stat(path, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR) {
			snprintf(err, errlen, "image file %s does not exist", path);
			return PROTO_E_NOT_FOUND;
		}
		snprintf(err, errlen, "cannot use image file %s: %s", path, strerror(errno));
		return PROTO_E_IO;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "image %s is not a regular file", path);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (access(path, R_OK) < 0) {
		snprintf(err, errlen, "image %s is not readable: %s", path, strerror(errno));
		return PROTO_E_IO;
	}
	rc = img_detect_format(path, NULL, &format, err, errlen);
	if (rc < 0)
		return rc;

	base = strip_extension(path);
	if (!base)
		return PROTO_E_NOMEM;
	name = strrchr(path, '/') + 1;
	spec->disk = strdup(path);
	spec->format = strdup(format);
	spec->source = img_strdupf("file://%s", path);
	spec->description = strdup(name);
	rc = PROTO_E_NOMEM;
	if (!spec->disk || !spec->format || !spec->source || !spec->description)
		goto out_free_base;
	if (companion(base, ".vmlinuz", &spec->kernel) < 0 ||
	    companion(base, ".initrd", &spec->initrd) < 0 ||
	    companion(base, ".cmdline", &cmdline_path) < 0)
		goto out_free_base;
	if (cmdline_path) {
		rc = read_cmdline(cmdline_path, &spec->cmdline, err, errlen);
		if (rc < 0)
			goto out_free_cmdline;
	}
	if (spec->initrd && !spec->kernel) {
		snprintf(err, errlen, "image %s has an initrd (%s) but no kernel (%s.vmlinuz)", path,
			 spec->initrd, base);
		rc = PROTO_E_INVALID_ARGUMENT;
		goto out_free_cmdline;
	}
	rc = 0;
out_free_cmdline:
	free(cmdline_path);
out_free_base:
	free(base);
	return rc;
}

static void spec_clear(struct image_spec *s)
{
	free(s->disk);
	free(s->format);
	free(s->kernel);
	free(s->initrd);
	free(s->cmdline);
	free(s->sha256);
	free(s->source);
	free(s->description);
	memset(s, 0, sizeof(*s));
}

/* ---- the cache: ops, shared downloads ---- */

enum img_slot { SLOT_DISK, SLOT_KERNEL, SLOT_INITRD, SLOT_COUNT };

static const char *const slot_title[SLOT_COUNT] = { "image", "kernel", "initrd" };

struct img_waiter {
	struct image_op *op;
	enum img_slot slot;
	struct img_waiter *next;
};

/* One file being downloaded into the cache, shared by every op that needs it. */
struct img_download {
	struct image_cache *c;
	struct img_download *next;
	char *key;        /* the expected sha256, or the URL when nothing is expected */
	char *url;
	char *expect_sha; /* NULL: a direct URL, cached under whatever arrives */
	uint64_t expect_size;
	enum img_slot kind;
	char *tmp_path;
	int fd;
	struct img_xfer *xfer;
	struct img_waiter *waiters;
	bool finishing;
	uint64_t now, total;
	double speed;
};

struct image_op {
	struct image_cache *c;
	struct image_op *next, *prev;
	image_progress_fn progress;
	image_done_fn done;
	void *ud;
	struct img_lookup *lookup;
	ev_timer deferred; /* answers an already-cached image from the loop */
	struct image_spec spec;
	struct img_download *dl[SLOT_COUNT];
	int pending;
	double last_progress;
};

struct image_cache {
	struct ev_loop *loop;
	char *dir;
	struct img_fetcher *fetcher;
	struct img_streams *streams;
	struct img_download *downloads;
	struct image_op *ops;
};

static const char *disk_ext(const char *format)
{
	return strcmp(format, "qcow2") == 0 ? "qcow2" : "img";
}

static bool file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The mtime of a cached file is its last use. */
static void mark_used(const char *path)
{
	if (path)
		utimensat(AT_FDCWD, path, NULL, 0);
}

/* The cached file for a digest and slot, or NULL. */
static char *cached_path(struct image_cache *c, enum img_slot slot, const char *sha)
{
	static const char *const disk_exts[] = { "qcow2", "img" };
	char *p;

	if (slot != SLOT_DISK) {
		p = img_strdupf("%s/%s.%s", c->dir, sha, slot == SLOT_KERNEL ? "vmlinuz" : "initrd");
		if (p && !file_exists(p)) {
			free(p);
			p = NULL;
		}
		return p;
	}
	for (size_t i = 0; i < 2; i++) {
		p = img_strdupf("%s/%s.%s", c->dir, sha, disk_exts[i]);
		if (p && file_exists(p))
			return p;
		free(p);
	}
	return NULL;
}

/* ---- images/urls.json: direct URLs -> the digest they were cached under ---- */

static json_t *urls_load(struct image_cache *c)
{
	char *path = img_strdupf("%s/urls.json", c->dir), *text = NULL;
	json_t *doc = NULL;
	size_t len;

	if (path && img_read_whole(path, 16u << 20, &text, &len) == 0)
		doc = json_loadb(text, len, 0, NULL);
	free(text);
	free(path);
	if (!json_is_object(doc)) {
		json_decref(doc);
		doc = json_object();
	}
	return doc;
}

static char *urls_cached(struct image_cache *c, const char *url)
{
	json_t *doc = urls_load(c);
	const char *sha = json_string_value(json_object_get(json_object_get(doc, url), "sha256"));
	char *path = sha && strlen(sha) == 64 && !strchr(sha, '/') ? cached_path(c, SLOT_DISK, sha) : NULL;

	json_decref(doc);
	return path;
}

static void urls_record(struct image_cache *c, const char *url, const char *sha, uint64_t size)
{
	json_t *doc = urls_load(c);
	char *path = img_strdupf("%s/urls.json", c->dir);
	char *text;

	json_object_set_new(doc, url, json_pack("{s:s, s:I}", "sha256", sha, "size", (json_int_t)size));
	text = json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
	/* Losing this record costs one download next time, nothing more. */
	if (text && path)
		img_write_atomic(path, text, strlen(text));
	free(text);
	free(path);
	json_decref(doc);
}

/* ---- ops ---- */

static void download_drop_waiter(struct img_download *dl, struct image_op *op);

static void op_free(struct image_op *op)
{
	struct image_cache *c = op->c;

	for (int i = 0; i < SLOT_COUNT; i++)
		if (op->dl[i])
			download_drop_waiter(op->dl[i], op);
	img_lookup_cancel(op->lookup);
	ev_timer_stop(c->loop, &op->deferred);
	if (op->prev)
		op->prev->next = op->next;
	else
		c->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	spec_clear(&op->spec);
	free(op);
}

static void op_fail(struct image_op *op, int err, const char *msg)
{
	image_done_fn done = op->done;
	void *ud = op->ud;

	op_free(op);
	done(ud, err, msg ? msg : proto_strerror(err), NULL);
}

static void op_complete(struct image_op *op)
{
	char err[IMG_ERRLEN] = "";
	const char *format;
	int rc = img_detect_format(op->spec.disk, NULL, &format, err, sizeof(err));

	if (rc == 0 && !op->spec.format && !(op->spec.format = strdup(format)))
		rc = PROTO_E_NOMEM;
	if (rc < 0) {
		op_fail(op, rc, err[0] ? err : NULL);
		return;
	}
	if (op->spec.sha256) {
		mark_used(op->spec.disk);
		mark_used(op->spec.kernel);
		mark_used(op->spec.initrd);
	}
	if (op->progress)
		op->progress(op->ud, 1.0, "Image ready");
	/* The spec lives on the op, so free it only after done has run. */
	for (int i = 0; i < SLOT_COUNT; i++)
		if (op->dl[i])
			download_drop_waiter(op->dl[i], op);
	img_lookup_cancel(op->lookup);
	op->lookup = NULL;
	ev_timer_stop(op->c->loop, &op->deferred);
	op->done(op->ud, 0, NULL, &op->spec);
	op_free(op);
}

static void op_deferred_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	op_complete(w->data);
}

static void format_rate(char *buf, size_t len, double bytes)
{
	if (bytes >= 1024.0 * 1024 * 1024)
		snprintf(buf, len, "%.1fGiB", bytes / (1024.0 * 1024 * 1024));
	else if (bytes >= 1024.0 * 1024)
		snprintf(buf, len, "%.1fMiB", bytes / (1024.0 * 1024));
	else if (bytes >= 1024.0)
		snprintf(buf, len, "%.1fKiB", bytes / 1024.0);
	else
		snprintf(buf, len, "%.0fB", bytes);
}

static void op_report_progress(struct image_op *op)
{
	uint64_t now = 0, total = 0;
	double speed = 0, t = ev_now(op->c->loop);
	char text[160], rate[32], eta[32] = "";
	bool complete;

	if (!op->progress)
		return;
	for (int i = 0; i < SLOT_COUNT; i++) {
		if (!op->dl[i])
			continue;
		now += op->dl[i]->now;
		total += op->dl[i]->total;
		speed += op->dl[i]->speed;
	}
	complete = total > 0 && now >= total;
	/* Ten updates a second are plenty for a progress bar. */
	if (!complete && t - op->last_progress < 0.1)
		return;
	op->last_progress = t;
	format_rate(rate, sizeof(rate), speed);
	if (total > 0) {
		double fraction = (double)now / (double)total;
		if (speed > 0 && !complete) {
			long secs = (long)((double)(total - now) / speed + 0.5);
			if (secs >= 60)
				snprintf(eta, sizeof(eta), " ETA %ldm%02lds", secs / 60, secs % 60);
			else
				snprintf(eta, sizeof(eta), " ETA %lds", secs);
		}
		snprintf(text, sizeof(text), "Retrieving image: %d%% %s/s%s", (int)(fraction * 100),
			 rate, eta);
		op->progress(op->ud, fraction > 1 ? 1 : fraction, text);
	} else {
		char got[32];
		format_rate(got, sizeof(got), (double)now);
		snprintf(text, sizeof(text), "Retrieving image: %s %s/s", got, rate);
		op->progress(op->ud, 0, text);
	}
}

/* ---- downloads ---- */

static void download_free(struct img_download *dl)
{
	struct image_cache *c = dl->c;

	for (struct img_download **p = &c->downloads; *p; p = &(*p)->next) {
		if (*p == dl) {
			*p = dl->next;
			break;
		}
	}
	img_xfer_cancel(dl->xfer);
	if (dl->fd >= 0)
		close(dl->fd);
	if (dl->tmp_path) {
		unlink(dl->tmp_path);
		free(dl->tmp_path);
	}
	while (dl->waiters) {
		struct img_waiter *w = dl->waiters;
		dl->waiters = w->next;
		free(w);
	}
	free(dl->key);
	free(dl->url);
	free(dl->expect_sha);
	free(dl);
}

static void download_drop_waiter(struct img_download *dl, struct image_op *op)
{
	for (struct img_waiter **p = &dl->waiters; *p;) {
		struct img_waiter *w = *p;
		if (w->op == op) {
			*p = w->next;
			w->op->dl[w->slot] = NULL;
			free(w);
		} else {
			p = &w->next;
		}
	}
	/* Nobody wants it any more: stop fetching. */
	if (!dl->waiters && !dl->finishing)
		download_free(dl);
}

static void download_progress(void *ud, uint64_t now, uint64_t total, double speed)
{
	struct img_download *dl = ud;

	dl->now = now;
	dl->total = total ? total : dl->expect_size;
	dl->speed = speed;
	for (struct img_waiter *w = dl->waiters, *next; w; w = next) {
		next = w->next;
		op_report_progress(w->op);
	}
}

/* Check what arrived and move it into the cache. 0 with *final set, or an error. */
static int download_store(struct img_download *dl, const struct img_xfer_result *r, char **final,
			  char *err, size_t errlen)
{
	const char *ext, *format;
	int rc;

	if (dl->expect_size && r->bytes != dl->expect_size) {
		snprintf(err, errlen, "%s from %s is %llu bytes, the stream says %llu: refused",
			 slot_title[dl->kind], dl->url, (unsigned long long)r->bytes,
			 (unsigned long long)dl->expect_size);
		return PROTO_E_DRIVER;
	}
	if (dl->expect_sha && strcmp(r->sha256, dl->expect_sha) != 0) {
		snprintf(err, errlen, "%s from %s failed verification: sha256 %s, expected %s: refused",
			 slot_title[dl->kind], dl->url, r->sha256, dl->expect_sha);
		return PROTO_E_DRIVER;
	}
	if (r->bytes == 0) {
		snprintf(err, errlen, "%s from %s is empty: refused", slot_title[dl->kind], dl->url);
		return PROTO_E_DRIVER;
	}
	if (dl->kind == SLOT_DISK) {
		rc = img_detect_format(dl->tmp_path, dl->url, &format, err, errlen);
		if (rc < 0)
			return rc;
		ext = disk_ext(format);
	} else {
		ext = dl->kind == SLOT_KERNEL ? "vmlinuz" : "initrd";
	}
	*final = img_strdupf("%s/%s.%s", dl->c->dir, r->sha256, ext);
	if (!*final)
		return PROTO_E_NOMEM;
	if (fsync(dl->fd) < 0 || fchmod(dl->fd, 0644) < 0 || rename(dl->tmp_path, *final) < 0) {
		snprintf(err, errlen, "cannot store %s in %s: %s", slot_title[dl->kind], dl->c->dir,
			 strerror(errno));
		free(*final);
		*final = NULL;
		return PROTO_E_IO;
	}
	free(dl->tmp_path);
	dl->tmp_path = NULL;
	return 0;
}

static void download_done(void *ud, const struct img_xfer_result *r)
{
	struct img_download *dl = ud;
	struct image_cache *c = dl->c;
	char err[IMG_ERRLEN] = "";
	char *final = NULL;
	int rc = r->err;

	dl->xfer = NULL;
	dl->finishing = true;
	for (struct img_download **p = &c->downloads; *p; p = &(*p)->next) {
		if (*p == dl) {
			*p = dl->next;
			dl->next = NULL;
			break;
		}
	}
	if (rc < 0)
		snprintf(err, sizeof(err), "%s", r->errmsg);
	else
		rc = download_store(dl, r, &final, err, sizeof(err));
	if (rc == 0 && !dl->expect_sha)
		urls_record(c, dl->url, r->sha256, r->bytes);

	while (dl->waiters) {
		struct img_waiter *w = dl->waiters;
		struct image_op *op = w->op;
		enum img_slot slot = w->slot;
		dl->waiters = w->next;
		free(w);
		op->dl[slot] = NULL;
		if (rc < 0) {
			op_fail(op, rc, err);
			continue;
		}
		char **field = slot == SLOT_DISK ? &op->spec.disk
			     : slot == SLOT_KERNEL ? &op->spec.kernel : &op->spec.initrd;
		free(*field);
		*field = strdup(final);
		if (slot == SLOT_DISK && !op->spec.sha256)
			op->spec.sha256 = strdup(r->sha256);
		if (!*field) {
			op_fail(op, PROTO_E_NOMEM, NULL);
			continue;
		}
		if (--op->pending == 0)
			op_complete(op);
	}
	free(final);
	download_free(dl);
}

static int download_start(struct image_cache *c, enum img_slot kind, const char *url,
			  const char *sha, uint64_t size, struct img_download **out, char *err,
			  size_t errlen)
{
	struct img_download *dl = calloc(1, sizeof(*dl));

	if (!dl)
		return PROTO_E_NOMEM;
	dl->c = c;
	dl->fd = -1;
	dl->kind = kind;
	dl->expect_size = size;
	dl->total = size;
	dl->url = strdup(url);
	dl->key = strdup(sha ? sha : url);
	dl->expect_sha = sha ? strdup(sha) : NULL;
	dl->tmp_path = img_strdupf("%s/.partial-XXXXXX", c->dir);
	if (!dl->url || !dl->key || (sha && !dl->expect_sha) || !dl->tmp_path)
		goto out_nomem;
	dl->fd = mkostemp(dl->tmp_path, O_CLOEXEC);
	if (dl->fd < 0) {
		snprintf(err, errlen, "cannot create a file in %s: %s", c->dir, strerror(errno));
		free(dl->tmp_path);
		dl->tmp_path = NULL;
		download_free(dl);
		return PROTO_E_IO;
	}
	dl->xfer = img_xfer_start(c->fetcher, url, dl->fd, 0, size, download_progress, download_done, dl);
	if (!dl->xfer)
		goto out_nomem;
	dl->next = c->downloads;
	c->downloads = dl;
	*out = dl;
	return 0;
out_nomem:
	download_free(dl);
	return PROTO_E_NOMEM;
}

/* Make slot of op available: from the cache, or by joining or starting a download. */
static int op_need(struct image_op *op, enum img_slot slot, const char *url, const char *sha,
		   uint64_t size, char *err, size_t errlen)
{
	struct image_cache *c = op->c;
	struct img_download *dl = NULL;
	struct img_waiter *w;
	char **field = slot == SLOT_DISK ? &op->spec.disk
		     : slot == SLOT_KERNEL ? &op->spec.kernel : &op->spec.initrd;
	int rc;

	if (sha && (*field = cached_path(c, slot, sha)))
		return 0;
	for (struct img_download *d = c->downloads; d; d = d->next)
		if (strcmp(d->key, sha ? sha : url) == 0 && d->kind == slot)
			dl = d;
	w = calloc(1, sizeof(*w));
	if (!w)
		return PROTO_E_NOMEM;
	if (!dl) {
		rc = download_start(c, slot, url, sha, size, &dl, err, errlen);
		if (rc < 0) {
			free(w);
			return rc;
		}
	}
	w->op = op;
	w->slot = slot;
	w->next = dl->waiters;
	dl->waiters = w;
	op->dl[slot] = dl;
	op->pending++;
	return 0;
}

static void op_lookup_done(void *ud, int err, const char *errmsg, const struct img_stream_image *im)
{
	struct image_op *op = ud;
	char msg[IMG_ERRLEN] = "";
	int rc;

	op->lookup = NULL;
	if (err < 0) {
		op_fail(op, err, errmsg);
		return;
	}
	free(op->spec.description);
	op->spec.description = strdup(im->description);
	op->spec.sha256 = strdup(im->disk.sha256);
	if (im->cmdline)
		op->spec.cmdline = strdup(im->cmdline);
	if (!op->spec.description || !op->spec.sha256 || (im->cmdline && !op->spec.cmdline)) {
		op_fail(op, PROTO_E_NOMEM, NULL);
		return;
	}
	rc = op_need(op, SLOT_DISK, im->disk.url, im->disk.sha256, im->disk.size, msg, sizeof(msg));
	if (rc == 0 && im->kernel.url)
		rc = op_need(op, SLOT_KERNEL, im->kernel.url, im->kernel.sha256, im->kernel.size, msg,
			     sizeof(msg));
	if (rc == 0 && im->kernel.url && im->initrd.url)
		rc = op_need(op, SLOT_INITRD, im->initrd.url, im->initrd.sha256, im->initrd.size, msg,
			     sizeof(msg));
	if (rc < 0) {
		op_fail(op, rc, msg[0] ? msg : NULL);
		return;
	}
	if (op->pending == 0)
		op_complete(op);
	else
		op_report_progress(op);
}

/* ---- housekeeping ---- */

/* "<64 hex>.<ext>" with a known extension: a file the cache owns. */
static bool cache_file_name(const char *name)
{
	static const char *const exts[] = { ".qcow2", ".img", ".vmlinuz", ".initrd" };
	size_t i;

	for (i = 0; i < 64; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	for (size_t e = 0; e < sizeof(exts) / sizeof(exts[0]); e++)
		if (strcmp(name + 64, exts[e]) == 0)
			return true;
	return false;
}

/* A download interrupted by a crash leaves a .partial-* file: only one broker
 * uses a data folder, so at start-up none of them is live. */
static void remove_partials(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, ".partial-", 9) != 0)
			continue;
		char *p = img_strdupf("%s/%s", dir, e->d_name);
		if (p)
			unlink(p);
		free(p);
	}
	closedir(d);
}

int image_cache_prune(struct image_cache *c, const char *const *in_use, double max_age)
{
	DIR *d = opendir(c->dir);
	struct dirent *e;
	time_t now = time(NULL);
	int removed = 0;

	if (!d)
		return PROTO_E_IO;
	while ((e = readdir(d))) {
		struct stat st;
		bool used = false;
		char *p;

		if (strlen(e->d_name) < 65 || !cache_file_name(e->d_name))
			continue;
		p = img_strdupf("%s/%s", c->dir, e->d_name);
		if (!p) {
			closedir(d);
			return PROTO_E_NOMEM;
		}
		if (stat(p, &st) < 0) {
			free(p);
			continue;
		}
		/* Compared as files, not strings: the same image may be named
		 * through another path (a symlinked data folder). */
		for (size_t i = 0; in_use && in_use[i] && !used; i++) {
			struct stat ust;

			used = strcmp(in_use[i], p) == 0 ||
			       (stat(in_use[i], &ust) == 0 && ust.st_dev == st.st_dev &&
				ust.st_ino == st.st_ino);
		}
		/* A file some op is about to hand out is in use too. */
		for (struct image_op *op = c->ops; op && !used; op = op->next)
			used = (op->spec.disk && strcmp(op->spec.disk, p) == 0) ||
			       (op->spec.kernel && strcmp(op->spec.kernel, p) == 0) ||
			       (op->spec.initrd && strcmp(op->spec.initrd, p) == 0);
		if (!used && difftime(now, st.st_mtime) > max_age && unlink(p) == 0)
			removed++;
		free(p);
	}
	closedir(d);
	return removed;
}

/* ---- public API ---- */

struct image_cache *image_cache_new(struct ev_loop *loop, const char *images_dir)
{
	struct image_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->loop = loop;
	c->dir = strdup(images_dir);
	if (!c->dir || img_mkdirs(images_dir) < 0)
		goto out_free;
	remove_partials(images_dir);
	c->fetcher = img_fetcher_new(loop);
	if (!c->fetcher)
		goto out_free;
	c->streams = img_streams_new(loop, c->fetcher, images_dir);
	if (!c->streams)
		goto out_free;
	return c;
out_free:
	img_fetcher_free(c->fetcher);
	free(c->dir);
	free(c);
	return NULL;
}

void image_cache_free(struct image_cache *c)
{
	if (!c)
		return;
	while (c->ops)
		op_free(c->ops);
	while (c->downloads)
		download_free(c->downloads);
	img_streams_free(c->streams);
	img_fetcher_free(c->fetcher);
	free(c->dir);
	free(c);
}

void image_cache_set_mirror(struct image_cache *c, const char *mirror_url)
{
	img_streams_set_mirror(c->streams, mirror_url);
}

void image_cache_tune(struct image_cache *c, const struct image_tuning *t)
{
	struct img_fetch_tuning ft = *img_fetcher_tuning(c->fetcher);

	if (t->attempts > 0)
		ft.attempts = t->attempts;
	if (t->backoff > 0)
		ft.backoff = t->backoff;
	if (t->stall_seconds > 0)
		ft.low_speed_time = t->stall_seconds;
	img_fetcher_tune(c->fetcher, &ft);
	if (t->index_ttl > 0)
		img_streams_set_ttl(c->streams, t->index_ttl);
}

static struct image_op *op_new(struct image_cache *c, image_progress_fn progress, image_done_fn done,
			       void *ud)
{
	struct image_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->c = c;
	op->progress = progress;
	op->done = done;
	op->ud = ud;
	ev_timer_init(&op->deferred, op_deferred_cb, 0., 0.);
	op->deferred.data = op;
	op->next = c->ops;
	if (c->ops)
		c->ops->prev = op;
	c->ops = op;
	return op;
}

static struct image_op *resolve_url(struct image_cache *c, const char *url, image_progress_fn progress,
				    image_done_fn done, void *ud)
{
	struct image_op *op = op_new(c, progress, done, ud);
	const char *name;
	char err[IMG_ERRLEN] = "";
	int rc;

	if (!op) {
		done(ud, PROTO_E_NOMEM, "out of memory", NULL);
		return NULL;
	}
	name = strrchr(url, '/');
	op->spec.source = strdup(url);
	op->spec.description = strdup(name && name[1] ? name + 1 : url);
	if (!op->spec.source || !op->spec.description) {
		op_fail(op, PROTO_E_NOMEM, NULL);
		return NULL;
	}
	op->spec.disk = urls_cached(c, url);
	if (op->spec.disk) {
		/* The digest is the file's name. */
		const char *base = strrchr(op->spec.disk, '/') + 1;
		op->spec.sha256 = strndup(base, 64);
		ev_timer_start(c->loop, &op->deferred);
		return op;
	}
	rc = op_need(op, SLOT_DISK, url, NULL, 0, err, sizeof(err));
	if (rc < 0) {
		op_fail(op, rc, err[0] ? err : NULL);
		return NULL;
	}
	return op;
}

static struct image_op *resolve_alias(struct image_cache *c, const char *what,
				      image_progress_fn progress, image_done_fn done, void *ud)
{
	const char *colon = strchr(what, ':');
	char *remote = colon ? strndup(what, (size_t)(colon - what)) : strdup("release");
	const char *alias = colon ? colon + 1 : what;
	struct image_op *op;
	struct img_lookup *lookup;
	char err[IMG_ERRLEN];

	if (!remote) {
		done(ud, PROTO_E_NOMEM, "out of memory", NULL);
		return NULL;
	}
	if (!*alias || !*remote || strchr(alias, ':') || strchr(alias, '/')) {
		snprintf(err, sizeof(err),
			 "cannot understand image '%s': expected [REMOTE:]ALIAS, an absolute path, "
			 "or a file://, http:// or https:// URL", what);
		free(remote);
		done(ud, PROTO_E_INVALID_ARGUMENT, err, NULL);
		return NULL;
	}
	if (!img_streams_has_remote(c->streams, remote)) {
		snprintf(err, sizeof(err), "unknown remote '%s' in '%s' (known remotes: release, daily)",
			 remote, what);
		free(remote);
		done(ud, PROTO_E_NOT_FOUND, err, NULL);
		return NULL;
	}
	op = op_new(c, progress, done, ud);
	if (!op || !(op->spec.source = img_strdupf("%s:%s", remote, alias)) ||
	    !(op->spec.description = strdup(alias))) {
		free(remote);
		if (op)
			op_fail(op, PROTO_E_NOMEM, NULL);
		else
			done(ud, PROTO_E_NOMEM, "out of memory", NULL);
		return NULL;
	}
	lookup = img_streams_lookup(c->streams, remote, alias, op_lookup_done, op);
	free(remote);
	/* On failure the lookup has already answered, and op_lookup_done freed op. */
	if (!lookup)
		return NULL;
	op->lookup = lookup;
	return op;
}

struct image_op *image_resolve(struct image_cache *c, const char *what, image_progress_fn progress,
			       image_done_fn done, void *ud)
{
	char err[IMG_ERRLEN] = "";
	struct image_spec spec = { 0 };
	char *path = NULL;
	int rc;

	if (!what || !*what) {
		done(ud, PROTO_E_INVALID_ARGUMENT, "no image given", NULL);
		return NULL;
	}
	if (strncmp(what, "http://", 7) == 0 || strncmp(what, "https://", 8) == 0)
		return resolve_url(c, what, progress, done, ud);
	if (what[0] != '/' && strncmp(what, "file://", 7) != 0) {
		if (strstr(what, "://")) {
			snprintf(err, sizeof(err),
				 "unsupported image URL %s: use file://, http:// or https://", what);
			done(ud, PROTO_E_INVALID_ARGUMENT, err, NULL);
			return NULL;
		}
		return resolve_alias(c, what, progress, done, ud);
	}
	if (what[0] == '/') {
		rc = resolve_local(what, &spec, err, sizeof(err));
	} else {
		rc = file_url_to_path(what, &path, err, sizeof(err));
		if (rc == 0)
			rc = resolve_local(path, &spec, err, sizeof(err));
		free(path);
	}
	if (rc < 0)
		done(ud, rc, err[0] ? err : proto_strerror(rc), NULL);
	else
		done(ud, 0, NULL, &spec);
	spec_clear(&spec);
	return NULL;
}

void image_op_cancel(struct image_op *op)
{
	if (op)
		op_free(op);
}

void image_find(struct image_cache *c, const char *query, image_find_fn done, void *ud)
{
	image_find_with(c, query, 0, done, ud);
}

void image_find_with(struct image_cache *c, const char *query, unsigned flags, image_find_fn done,
		     void *ud)
{
	const char *colon = query ? strchr(query, ':') : NULL;
	char *remote = NULL;

	if (colon) {
		remote = strndup(query, (size_t)(colon - query));
		if (!remote) {
			done(ud, PROTO_E_NOMEM, "out of memory", NULL, 0);
			return;
		}
		query = colon + 1;
	}
	img_streams_find(c->streams, remote, query ? query : "", flags, done, ud);
	free(remote);
}

/* ---- small documents ---- */

struct image_text {
	struct img_xfer *xfer;
	image_text_fn done;
	void *ud;
};

static void text_done(void *ud, const struct img_xfer_result *r)
{
	struct image_text *t = ud;
	image_text_fn done = t->done;
	void *done_ud = t->ud;

	free(t);
	done(done_ud, r->err, r->errmsg, r->body, r->body_len);
}

struct image_text *image_fetch_text(struct image_cache *c, const char *url, size_t max,
				    image_text_fn done, void *ud)
{
	struct image_text *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->done = done;
	t->ud = ud;
	t->xfer = img_xfer_start(c->fetcher, url, -1, max, 0, NULL, text_done, t);
	if (!t->xfer) {
		free(t);
		return NULL;
	}
	return t;
}

void image_text_cancel(struct image_text *t)
{
	if (!t)
		return;
	img_xfer_cancel(t->xfer);
	free(t);
}
