/*
 * A qcow2 disk as an LXD virtual-machine image. LXD's VM images are split:
 * a metadata tarball (metadata.yaml: architecture, creation_date,
 * properties) and the disk as rootfs.img, uploaded together as
 * multipart/form-data to POST /1.0/images. The fingerprint LXD gives such
 * an image covers both parts, so the helper finds it again by an alias
 * named for the qcow2's sha256 rather than by recomputing it. Blocking:
 * work threads only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "lxd.h"

#define TAR_BLOCK 512

int lxd_sha256_file(const char *path, char hex[65], char *err, size_t errlen)
{
	unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;
	FILE *f;
	size_t n;
	int rc = 0;

	f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot read image %s: %s", path, strerror(errno));
		return PROTO_E_IO;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		snprintf(err, errlen, "out of memory");
		rc = PROTO_E_NOMEM;
		goto out_close;
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(ctx, buf, n);
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read image %s: %s", path, strerror(errno));
		rc = PROTO_E_IO;
		goto out_close;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	for (unsigned int i = 0; i < mdlen && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
out_close:
	EVP_MD_CTX_free(ctx);
	fclose(f);
	return rc;
}

/* A YAML double-quoted scalar of s, printable ASCII kept, the rest '?'. */
static void yaml_quote(const char *s, char *out, size_t len)
{
	size_t n = 0;

	if (len < 3)
		return;
	out[n++] = '"';
	for (; *s && n + 3 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			out[n++] = '\\';
		out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[n++] = '"';
	out[n] = '\0';
}

int lxd_vm_metadata_yaml(const char *arch, long long created, const char *description,
			 const char *sha256, char *buf, size_t len)
{
	char desc[512];
	int n;

	yaml_quote(description, desc, sizeof(desc));
	n = snprintf(buf, len,
		     "architecture: %s\n"
		     "creation_date: %lld\n"
		     "properties:\n"
		     "  description: %s\n"
		     "  os: vmctl\n"
		     "  vmctl.sha256: \"%s\"\n",
		     arch, created, desc, sha256);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

/* An octal field of width w (w - 1 digits and a NUL). */
static void tar_octal(char *field, size_t w, unsigned long long v)
{
	snprintf(field, w, "%0*llo", (int)(w - 1), v);
}

int lxd_tar_one(const char *name, const void *data, size_t len, long long mtime,
		unsigned char **out, size_t *outlen)
{
	size_t body = (len + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
	size_t total = TAR_BLOCK + body + 2 * TAR_BLOCK; /* header, data, end of archive */
	unsigned char *t = calloc(1, total);
	char *h = (char *)t;
	unsigned sum = 0;

	if (!t)
		return PROTO_E_NOMEM;
	/* ustar header: name 0, mode 100, uid 108, gid 116, size 124, mtime 136,
	 * chksum 148, typeflag 156, magic 257, version 263. */
	snprintf(h, 100, "%s", name);
	tar_octal(h + 100, 8, 0644);
	tar_octal(h + 108, 8, 0);
	tar_octal(h + 116, 8, 0);
	tar_octal(h + 124, 12, len);
	tar_octal(h + 136, 12, mtime > 0 ? (unsigned long long)mtime : 0);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	for (size_t i = 0; i < TAR_BLOCK; i++)
		sum += t[i];
	snprintf(h + 148, 8, "%06o", sum);
	h[155] = ' ';
	memcpy(t + TAR_BLOCK, data, len);
	*out = t;
	*outlen = total;
	return 0;
}

/* The target of alias name, or PROTO_E_NOT_FOUND. */
static int alias_target(const char *socket_path, const char *name, char fp[65], char *err,
			size_t errlen)
{
	struct lxd_resp r;
	char path[256];
	const char *target;
	int rc;

	snprintf(path, sizeof(path), "/1.0/images/aliases/%s", name);
	rc = lxd_call(socket_path, "GET", path, NULL, NULL, 30, &r, err, errlen);
	target = json_string_value(json_object_get(r.metadata, "target"));
	if (rc == 0 && (!target || strlen(target) != 64)) {
		snprintf(err, errlen, "LXD's alias %s has no image", name);
		rc = PROTO_E_NOT_FOUND;
	}
	if (rc == 0)
		snprintf(fp, 65, "%s", target);
	lxd_resp_free(&r);
	return rc;
}

int lxd_vm_image_ensure(const char *socket_path, const char *qcow2, const char *sha256,
			const char *arch, double timeout_s, char fp[65], char *err, size_t errlen)
{
	char alias[128], yaml[1024], desc[600], why[1024];
	const char *base = strrchr(qcow2, '/') ? strrchr(qcow2, '/') + 1 : qcow2;
	struct lxd_split split = { .rootfs = qcow2, .rootfs_part = "rootfs.img" };
	unsigned char *tar = NULL;
	size_t tarlen = 0;
	struct lxd_resp r;
	const char *got;
	json_t *req;
	char *body;
	int n, rc;

	snprintf(alias, sizeof(alias), "%s%s", LXD_VM_ALIAS_PREFIX, sha256);
	rc = alias_target(socket_path, alias, fp, err, errlen);
	if (rc != PROTO_E_NOT_FOUND)
		return rc;

	snprintf(desc, sizeof(desc), "vmctl: %s", base);
	n = lxd_vm_metadata_yaml(arch, (long long)time(NULL), desc, sha256, yaml, sizeof(yaml));
	if (n < 0) {
		snprintf(err, errlen, "the metadata of %s does not fit", qcow2);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (lxd_tar_one("metadata.yaml", yaml, (size_t)n, (long long)time(NULL), &tar, &tarlen) < 0) {
		snprintf(err, errlen, "out of memory");
		return PROTO_E_NOMEM;
	}
	split.metadata = tar;
	split.metadata_len = tarlen;
	rc = lxd_sync_split(socket_path, "/1.0/images", &split, timeout_s, &r, why, sizeof(why));
	free(tar);
	if (rc < 0) {
		snprintf(err, errlen, "LXD could not import %s as a virtual-machine image: %s", qcow2,
			 why);
		lxd_resp_free(&r);
		return rc;
	}
	/* The awaited operation's own metadata: {fingerprint, size}. */
	got = json_string_value(
		json_object_get(json_object_get(r.metadata, "metadata"), "fingerprint"));
	if (!got || strlen(got) != 64) {
		snprintf(err, errlen, "LXD imported %s but did not say its fingerprint", qcow2);
		lxd_resp_free(&r);
		return PROTO_E_DRIVER;
	}
	snprintf(fp, 65, "%s", got);
	lxd_resp_free(&r);

	req = json_pack("{s:s, s:s, s:s}", "name", alias, "target", fp, "description", desc);
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body) {
		snprintf(err, errlen, "out of memory");
		return PROTO_E_NOMEM;
	}
	rc = lxd_call(socket_path, "POST", "/1.0/images/aliases", body, NULL, 30, &r, why, sizeof(why));
	free(body);
	lxd_resp_free(&r);
	/* Without its alias the image is imported again next time: say so, go on. */
	if (rc < 0 && rc != PROTO_E_ALREADY_EXISTS)
		vmh_log(VMH_WARN, "could not name the image %.12s %s in LXD: %s", fp, alias, why);
	return 0;
}
