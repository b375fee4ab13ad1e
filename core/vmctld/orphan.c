/*
 * Instance folders with no record: scopes/S/instances/NAME while S's
 * instances.yaml has no NAME (a registry cut short or edited by hand). They
 * are never silently lost: list warns about them, prune keeps every image
 * while there are any, and recover rebuilds a record from what the folder
 * holds (the disk overlay names its base image and its size).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"

#define ORPHAN_DISK "disk.qcow2"        /* the overlay every driver of a scope shares */
#define ORPHAN_HEADER_MAX (64u << 10)   /* qcow2 header, extensions and backing name */
#define ORPHAN_CMDLINE_MAX 4096
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau

static int orphan_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int orphans_find(const char *scope_dir, const struct registry *reg, char ***names, size_t *n)
{
	char dir[4400], why[256];
	const char **recorded = NULL;
	DIR *dh;
	struct dirent *de;
	int rc = 0;

	*names = NULL;
	*n = 0;
	snprintf(dir, sizeof(dir), "%s/instances", scope_dir);
	dh = opendir(dir);
	if (!dh)
		return errno == ENOENT ? 0 : PROTO_E_IO;
	if (reg->n && !(recorded = malloc(reg->n * sizeof(*recorded)))) {
		rc = PROTO_E_NOMEM;
		goto out_close;
	}
	for (size_t i = 0; i < reg->n; i++)
		recorded[i] = reg->v[i].name;
	if (reg->n)
		qsort(recorded, reg->n, sizeof(*recorded), orphan_cmp);
	while ((de = readdir(dh)) != NULL) {
		const char *name = de->d_name;
		struct stat st;
		char **grown;

		/* Only what could be an instance: anything else is not ours to name. */
		if (validate_instance_name(name, why, sizeof(why)) < 0)
			continue;
		if (reg->n && bsearch(&name, recorded, reg->n, sizeof(*recorded), orphan_cmp))
			continue;
		if (fstatat(dirfd(dh), name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		grown = realloc(*names, (*n + 1) * sizeof(*grown));
		if (!grown || !(grown[*n] = strdup(name))) {
			if (grown)
				*names = grown;
			rc = PROTO_E_NOMEM;
			goto out_free;
		}
		*names = grown;
		(*n)++;
	}
	if (*n)
		qsort(*names, *n, sizeof(**names), orphan_cmp);
	goto out_close;

out_free:
	names_free(*names, *n);
	*names = NULL;
	*n = 0;
out_close:
	free(recorded);
	closedir(dh);
	return rc;
}

/* ---- rebuilding a record ---- */

static uint64_t be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* What the overlay says: its base image (an absolute path), that image's
 * format when the overlay records it ("" when not), and its virtual size. */
struct orphan_disk {
	char backing[4096];
	char format[16];
	uint64_t size;
};

static int orphan_read_disk(const char *path, struct orphan_disk *d, char *err, size_t errlen)
{
	static const unsigned char magic[4] = { 'Q', 'F', 'I', 0xfb };
	unsigned char *h;
	ssize_t got;
	uint64_t boff, ext;
	uint32_t blen, version;
	int fd, rc = PROTO_E_INVALID_ARGUMENT;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return errno == ENOENT ? PROTO_E_NOT_FOUND : PROTO_E_IO;
	}
	h = calloc(1, ORPHAN_HEADER_MAX);
	if (!h) {
		close(fd);
		return PROTO_E_NOMEM;
	}
	do
		got = pread(fd, h, ORPHAN_HEADER_MAX, 0);
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		rc = PROTO_E_IO;
		goto out_free;
	}
	version = got >= 72 ? be32(h + 4) : 0;
	if (got < 72 || memcmp(h, magic, sizeof(magic)) != 0 || (version != 2 && version != 3)) {
		snprintf(err, errlen, "%s is not a qcow2 disk", path);
		goto out_free;
	}
	boff = be64(h + 8);
	blen = be32(h + 16);
	d->size = be64(h + 24);
	if (blen == 0 || blen >= sizeof(d->backing) || boff + blen > (uint64_t)got) {
		snprintf(err, errlen, "%s does not name its base image", path);
		goto out_free;
	}
	memcpy(d->backing, h + boff, blen);
	d->backing[blen] = '\0';
	if (d->backing[0] != '/' || strlen(d->backing) != blen || strpbrk(d->backing, "\n\r")) {
		snprintf(err, errlen, "%s names a base image that is not an absolute path", path);
		goto out_free;
	}
	/* Header extensions: type, length, data padded to 8 bytes; type 0 ends. */
	d->format[0] = '\0';
	ext = version == 3 && got >= 104 ? be32(h + 100) : 72;
	while (ext + 8 <= (uint64_t)got) {
		uint32_t type = be32(h + ext), len = be32(h + ext + 4);

		if (type == 0 || ext + 8 + len > (uint64_t)got)
			break;
		if (type == QCOW2_EXT_BACKING_FORMAT && len < sizeof(d->format)) {
			memcpy(d->format, h + ext + 8, len);
			d->format[len] = '\0';
		}
		ext += 8 + (((uint64_t)len + 7) & ~(uint64_t)7);
	}
	rc = 0;
out_free:
	free(h);
	close(fd);
	return rc;
}

/* The format of a base image the overlay does not name: by its magic. */
static const char *orphan_sniff_format(const char *path)
{
	unsigned char head[4] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got = -1;

	if (fd >= 0) {
		got = read(fd, head, sizeof(head));
		close(fd);
	}
	return got == 4 && !memcmp(head, "QFI\xfb", 4) ? "qcow2" : "raw";
}

/* BASE.vmlinuz, BASE.initrd and BASE.cmdline beside the base image BASE.qcow2
 * (or .img), as launch takes them for a file:// image and keeps them in the
 * image cache. */
static int orphan_companions(struct instance_record *rec)
{
	char base[4096], path[4200];
	char *dot, *text;
	size_t len;
	int rc = 0;

	snprintf(base, sizeof(base), "%s", rec->image_disk);
	dot = strrchr(base, '.');
	if (dot && strchr(dot, '/') == NULL)
		*dot = '\0';
	snprintf(path, sizeof(path), "%s.vmlinuz", base);
	if (access(path, R_OK) == 0)
		rc = record_set(&rec->image_kernel, path);
	snprintf(path, sizeof(path), "%s.initrd", base);
	if (rc == 0 && rec->image_kernel && access(path, R_OK) == 0)
		rc = record_set(&rec->image_initrd, path);
	snprintf(path, sizeof(path), "%s.cmdline", base);
	if (rc == 0 && rec->image_kernel && read_file(path, ORPHAN_CMDLINE_MAX, &text, &len) == 0) {
		while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
			text[--len] = '\0';
		if (!strpbrk(text, "\n\r"))
			rc = record_set(&rec->image_cmdline, text);
		free(text);
	}
	return rc;
}

int orphan_rebuild(const char *name, char *note, size_t notelen)
{
	struct orphan_disk d;
	struct instance_record *rec;
	char dir[4400], disk[4500], mac[32], size[32], image[4200];
	unsigned char rnd[3];
	struct stat st;
	int rc;

	scope_instance_dir(name, dir, sizeof(dir));
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || registry_find(&B->reg, name)) {
		snprintf(note, notelen, "instance \"%s\" does not exist (driver %s, scope %s)", name,
			 B->driver, B->scope);
		return PROTO_E_NOT_FOUND;
	}
	snprintf(disk, sizeof(disk), "%s/%s", dir, ORPHAN_DISK);
	rc = orphan_read_disk(disk, &d, note, notelen);
	if (rc < 0) {
		char why[1024];

		snprintf(why, sizeof(why), "%s", note);
		snprintf(note, notelen, "cannot rebuild the record of %s from %s: %s", name, dir, why);
		return rc;
	}
	if (strcmp(d.format, "qcow2") != 0 && strcmp(d.format, "raw") != 0)
		snprintf(d.format, sizeof(d.format), "%s", orphan_sniff_format(d.backing));
	rec = registry_add(&B->reg, name);
	if (!rec)
		return PROTO_E_NOMEM;
	util_random(rnd, sizeof(rnd));
	util_format_mac(rnd, mac, sizeof(mac));
	snprintf(image, sizeof(image), "file://%s", d.backing);
	rec->cpus = 1;
	rec->memory = 1ull << 30;
	rec->disk = d.size < MIN_DISK ? MIN_DISK : d.size;
	/* The helper's next answer (list, start) corrects a VM that runs. */
	rec->state = PROTO_STATE_STOPPED;
	if (record_set(&rec->image, image) < 0 ||
	    record_set(&rec->image_disk, d.backing) < 0 ||
	    record_set(&rec->image_format, d.format) < 0 || record_set(&rec->mac, mac) < 0 ||
	    orphan_companions(rec) < 0) {
		registry_remove(&B->reg, name);
		return PROTO_E_NOMEM;
	}
	rc = scope_save();
	if (rc < 0) {
		registry_remove(&B->reg, name);
		snprintf(note, notelen, "could not save %s: %s", B->registry_path, proto_strerror(rc));
		return rc;
	}
	format_size(rec->disk, size, sizeof(size));
	vlog(LOG_WARN_, "rebuilt the record of %s from %s (base image %s)", name, dir, d.backing);
	snprintf(note, notelen,
		 "rebuilt the record of %s from its folder: image %s, disk %s; its cpus (1), memory "
		 "(1.0GiB) and MAC address are new, its mounts and extra networks are not known "
		 "(vmctl set local.%s.cpus=N and vmctl mount change them)",
		 name, d.backing, size, name);
	return 0;
}
