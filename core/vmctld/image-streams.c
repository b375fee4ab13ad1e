/*
 * Simplestreams v1 remotes, read the way Ubuntu's cloud-image mirrors
 * publish them: BASE/streams/v1/index.json (format "index:1.0") names the
 * products file (format "products:1.0", datatype "image-downloads"), whose
 * products carry aliases, release, release_title, version and versions;
 * each version has items with ftype, path (relative to BASE), sha256, size.
 *
 * The index and products file of each remote are cached on disk under
 * images/streams/<remote>/ and in memory, and refreshed after a while. When
 * a refresh fails, the data we already have is used.
 */
#include "image-internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>
#include <msgpack.h>
#include <vmproto/proto.h>

#define STREAMS_INDEX_MAX (16u << 20)
#define STREAMS_PRODUCTS_MAX (128u << 20)
#define STREAMS_DEFAULT_TTL (6 * 3600.0)
#define STREAMS_DEFAULT_HOST "https://cloud-images.ubuntu.com/"
#define STREAMS_DEFAULT_REMOTE "release"

/* Disk item types, best first. */
static const char *const disk_ftypes[] = { "disk1.img", "uefi1.img", "disk-kvm.img", "disk.img", NULL };
static const char *const kernel_ftypes[] = { "vmlinuz", "boot-kernel", "kernel", NULL };
static const char *const initrd_ftypes[] = { "initrd", "boot-initrd", NULL };

enum lookup_kind { LOOKUP_RESOLVE, LOOKUP_FIND };

struct img_lookup {
	struct img_streams *s;
	struct img_remote *r;
	struct img_lookup *next, *prev;
	struct img_lookup **list; /* r->waiting or s->ready */
	enum lookup_kind kind;
	char *what;
	img_lookup_fn resolve_done;
	image_find_fn find_done;
	unsigned flags; /* IMAGE_FIND_* */
	void *ud;
};

struct img_remote {
	struct img_streams *s;
	const char *name;
	const char *subdir;
	char *base;     /* effective base URL, ends with '/' */
	char *dir;      /* images/streams/<name> */
	json_t *products;
	double fetched; /* wall-clock time the products were downloaded */
	bool disk_tried;
	struct img_xfer *xfer;
	char *products_path; /* while fetching: the products file named by the index */
	char *index_body;
	size_t index_len;
	struct img_lookup *waiting;
};

struct img_streams {
	struct ev_loop *loop;
	struct img_fetcher *f;
	char *dir;
	double ttl;
	char arch[sizeof(((struct utsname *)0)->machine)];
	struct img_remote remotes[2];
	struct img_lookup *ready; /* answered on the next loop iteration */
	ev_timer ready_timer;
};

/* ---- helpers ---- */

static const char *host_arch(void)
{
	static const struct { const char *machine, *arch; } map[] = {
		{ "x86_64", "amd64" }, { "aarch64", "arm64" }, { "armv7l", "armhf" },
		{ "ppc64le", "ppc64el" }, { "s390x", "s390x" }, { "riscv64", "riscv64" },
		{ "i686", "i386" }, { "i386", "i386" },
	};
	static struct utsname u;

	if (uname(&u) < 0)
		return "amd64";
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(u.machine, map[i].machine) == 0)
			return map[i].arch;
	return u.machine;
}

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *jstr(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* A property of a product, inherited from the document when the product lacks it. */
static const char *prod_prop(const json_t *doc, const json_t *prod, const char *key)
{
	const char *v = jstr(prod, key);

	return v ? v : jstr(doc, key);
}

/* Is word one of the comma-separated aliases (spaces around commas ignored)? */
static bool alias_listed(const char *aliases, const char *word, bool substring)
{
	size_t wlen = strlen(word);

	while (aliases && *aliases) {
		while (*aliases == ' ' || *aliases == ',')
			aliases++;
		const char *end = aliases;
		while (*end && *end != ',')
			end++;
		size_t len = (size_t)(end - aliases);
		while (len > 0 && aliases[len - 1] == ' ')
			len--;
		if (len > 0) {
			if (!substring && len == wlen && strncasecmp(aliases, word, len) == 0)
				return true;
			if (substring) {
				char *tok = strndup(aliases, len);
				bool hit = tok && strcasestr(tok, word);
				free(tok);
				if (hit)
					return true;
			}
		}
		aliases = end;
	}
	return false;
}

static bool str_matches(const char *value, const char *word, bool substring)
{
	if (!value)
		return false;
	return substring ? strcasestr(value, word) != NULL : strcasecmp(value, word) == 0;
}

static bool product_matches(const json_t *doc, const char *id, const json_t *prod, const char *word,
			    bool substring)
{
	if (!*word)
		return substring;
	return alias_listed(jstr(prod, "aliases"), word, substring) ||
	       str_matches(prod_prop(doc, prod, "release"), word, substring) ||
	       str_matches(prod_prop(doc, prod, "version"), word, substring) ||
	       (!substring && strcmp(id, word) == 0);
}

static const json_t *find_item(const json_t *items, const char *const *ftypes, bool need_path)
{
	for (size_t i = 0; ftypes[i]; i++) {
		const char *key;
		const json_t *item;
		json_object_foreach((json_t *)items, key, item) {
			const char *ftype = jstr(item, "ftype");
			if (!ftype)
				ftype = key;
			if (strcmp(ftype, ftypes[i]) != 0)
				continue;
			if (need_path && (!jstr(item, "path") || !jstr(item, "sha256")))
				continue;
			return item;
		}
	}
	return NULL;
}

/* The newest version key that has a usable disk item (keys are sortable serials). */
static const char *newest_version(const json_t *prod, const json_t **ver_out)
{
	const json_t *versions = json_object_get(prod, "versions");
	const char *best = NULL, *key;
	const json_t *ver;

	*ver_out = NULL;
	json_object_foreach((json_t *)versions, key, ver) {
		if (!find_item(json_object_get(ver, "items"), disk_ftypes, true))
			continue;
		if (!best || strcmp(key, best) > 0) {
			best = key;
			*ver_out = ver;
		}
	}
	return best;
}

static bool valid_sha256(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

static int fill_file(struct img_stream_file *file, const char *base, const json_t *item)
{
	const char *sha = jstr(item, "sha256");
	const json_t *size = json_object_get(item, "size");

	if (!valid_sha256(sha))
		return PROTO_E_PROTOCOL;
	for (size_t i = 0; i < 64; i++)
		file->sha256[i] = (char)tolower((unsigned char)sha[i]);
	file->sha256[64] = '\0';
	if (json_is_integer(size) && json_integer_value(size) > 0)
		file->size = (uint64_t)json_integer_value(size);
	else if (json_is_string(size))
		file->size = strtoull(json_string_value(size), NULL, 10);
	file->url = img_strdupf("%s%s", base, jstr(item, "path"));
	return file->url ? 0 : PROTO_E_NOMEM;
}

/* "Ubuntu 24.04 LTS" from os "ubuntu" and release_title "24.04 LTS". */
static char *describe(const json_t *doc, const json_t *prod)
{
	const char *os = prod_prop(doc, prod, "os");
	const char *title = prod_prop(doc, prod, "release_title");

	if (!title)
		title = prod_prop(doc, prod, "release");
	if (!title)
		title = "";
	if (!os || !*os || strncasecmp(title, os, strlen(os)) == 0)
		return strdup(title);
	return img_strdupf("%c%s %s", toupper((unsigned char)os[0]), os + 1, title);
}

/* The product's display name and its other aliases. */
static const char *display_name(const json_t *doc, const json_t *prod)
{
	const char *v = jstr(prod, "version");

	return v ? v : prod_prop(doc, prod, "release");
}

static bool product_wanted(const struct img_streams *s, const json_t *doc, const json_t *prod)
{
	const char *arch = prod_prop(doc, prod, "arch");

	return json_is_object(prod) && (!arch || strcmp(arch, s->arch) == 0);
}

void img_stream_image_free(struct img_stream_image *im)
{
	if (!im)
		return;
	free(im->remote);
	free(im->name);
	free(im->version);
	free(im->description);
	free(im->format_hint);
	free(im->disk.url);
	free(im->kernel.url);
	free(im->initrd.url);
	free(im->cmdline);
	free(im);
}

static int build_image(struct img_remote *r, const json_t *doc, const json_t *prod,
		       struct img_stream_image **out, char *err, size_t errlen)
{
	const json_t *ver, *disk, *kernel, *initrd, *items;
	const char *serial = newest_version(prod, &ver);
	struct img_stream_image *im;
	int rc = PROTO_E_NOMEM;

	if (!serial) {
		snprintf(err, errlen, "%s:%s has no version with a disk image", r->name,
			 display_name(doc, prod));
		return PROTO_E_NOT_FOUND;
	}
	items = json_object_get(ver, "items");
	disk = find_item(items, disk_ftypes, true);
	kernel = find_item(items, kernel_ftypes, true);
	initrd = find_item(items, initrd_ftypes, true);
	im = calloc(1, sizeof(*im));
	if (!im)
		return PROTO_E_NOMEM;
	im->remote = strdup(r->name);
	im->name = strdup(display_name(doc, prod) ? display_name(doc, prod) : serial);
	im->version = strdup(serial);
	im->description = describe(doc, prod);
	im->format_hint = strdup(jstr(disk, "ftype") ? jstr(disk, "ftype") : "disk1.img");
	if (!im->remote || !im->name || !im->version || !im->description || !im->format_hint)
		goto out_free;
	rc = fill_file(&im->disk, r->base, disk);
	if (rc == 0 && kernel)
		rc = fill_file(&im->kernel, r->base, kernel);
	if (rc == 0 && kernel && initrd)
		rc = fill_file(&im->initrd, r->base, initrd);
	if (rc == PROTO_E_PROTOCOL) {
		snprintf(err, errlen, "%s:%s version %s: an item has no valid sha256", r->name, im->name,
			 serial);
		goto out_free;
	}
	if (rc < 0)
		goto out_free;
	if (kernel && jstr(kernel, "kernel_cmdline")) {
		im->cmdline = strdup(jstr(kernel, "kernel_cmdline"));
		if (!im->cmdline) {
			rc = PROTO_E_NOMEM;
			goto out_free;
		}
	}
	*out = im;
	return 0;
out_free:
	img_stream_image_free(im);
	return rc;
}

/* ---- answering lookups ---- */

static void lookup_unlink(struct img_lookup *l)
{
	if (!l->list)
		return;
	if (l->prev)
		l->prev->next = l->next;
	else
		*l->list = l->next;
	if (l->next)
		l->next->prev = l->prev;
	l->next = l->prev = NULL;
	l->list = NULL;
}

static void lookup_push(struct img_lookup **head, struct img_lookup *l)
{
	lookup_unlink(l);
	l->prev = NULL;
	l->next = *head;
	if (*head)
		(*head)->prev = l;
	*head = l;
	l->list = head;
}

static void lookup_free(struct img_lookup *l)
{
	free(l->what);
	free(l);
}

static void answer_resolve(struct img_lookup *l)
{
	struct img_remote *r = l->r;
	const json_t *doc = r->products, *prod, *match = NULL;
	const json_t *products = json_object_get(doc, "products");
	struct img_stream_image *im = NULL;
	char err[IMG_ERRLEN] = "";
	const char *id;
	int rc;

	json_object_foreach((json_t *)products, id, prod) {
		if (!product_wanted(l->s, doc, prod) || !product_matches(doc, id, prod, l->what, false))
			continue;
		match = prod;
		break;
	}
	if (!match) {
		snprintf(err, sizeof(err), "no image '%s' in remote '%s' for %s (try `vmctl find`)", l->what,
			 r->name, l->s->arch);
		l->resolve_done(l->ud, PROTO_E_NOT_FOUND, err, NULL);
		return;
	}
	rc = build_image(r, doc, match, &im, err, sizeof(err));
	if (rc < 0) {
		l->resolve_done(l->ud, rc, err[0] ? err : proto_strerror(rc), NULL);
		return;
	}
	l->resolve_done(l->ud, 0, NULL, im);
	img_stream_image_free(im);
}

struct find_row {
	const char *name;
	const json_t *prod;
	const char *serial;
	char *description;
	bool supported;
};

static int find_row_cmp(const void *a, const void *b)
{
	const struct find_row *x = a, *y = b;

	return strverscmp(y->name, x->name);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

static void pack_aliases(msgpack_packer *pk, const char *aliases, const char *skip)
{
	size_t count = 0;

	for (int pass = 0; pass < 2; pass++) {
		const char *p = aliases;
		if (pass == 1)
			msgpack_pack_array(pk, count);
		while (p && *p) {
			while (*p == ' ' || *p == ',')
				p++;
			const char *end = p;
			while (*end && *end != ',')
				end++;
			size_t len = (size_t)(end - p);
			while (len > 0 && p[len - 1] == ' ')
				len--;
			if (len > 0 && !(skip && strlen(skip) == len && strncmp(p, skip, len) == 0)) {
				if (pass == 0) {
					count++;
				} else {
					msgpack_pack_str(pk, len);
					msgpack_pack_str_body(pk, p, len);
				}
			}
			p = end;
		}
	}
}

static void answer_find(struct img_lookup *l)
{
	struct img_remote *r = l->r;
	const json_t *doc = r->products, *prod;
	const json_t *products = json_object_get(doc, "products");
	struct find_row *rows = calloc(json_object_size(products) + 1, sizeof(*rows));
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n = 0;
	const char *id;

	if (!rows) {
		l->find_done(l->ud, PROTO_E_NOMEM, "out of memory", NULL, 0);
		return;
	}
	json_object_foreach((json_t *)products, id, prod) {
		const json_t *ver;
		const json_t *supported = json_object_get(prod, "supported");
		if (!product_wanted(l->s, doc, prod) ||
		    (json_is_false(supported) && !(l->flags & IMAGE_FIND_UNSUPPORTED)))
			continue;
		if (!product_matches(doc, id, prod, l->what, true))
			continue;
		rows[n].serial = newest_version(prod, &ver);
		rows[n].name = display_name(doc, prod);
		if (!rows[n].serial || !rows[n].name)
			continue;
		rows[n].prod = prod;
		rows[n].supported = !json_is_false(supported);
		rows[n].description = describe(doc, prod);
		n++;
	}
	qsort(rows, n, sizeof(*rows), find_row_cmp);

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	pack_str(&pk, "images");
	msgpack_pack_array(&pk, n);
	for (size_t i = 0; i < n; i++) {
		msgpack_pack_map(&pk, 5 + !!(l->flags & IMAGE_FIND_UNSUPPORTED));
		pack_str(&pk, "name");
		pack_str(&pk, rows[i].name);
		pack_str(&pk, "remote");
		pack_str(&pk, r->name);
		pack_str(&pk, "aliases");
		pack_aliases(&pk, jstr(rows[i].prod, "aliases"), rows[i].name);
		pack_str(&pk, "version");
		pack_str(&pk, rows[i].serial);
		pack_str(&pk, "description");
		pack_str(&pk, rows[i].description ? rows[i].description : "");
		if (l->flags & IMAGE_FIND_UNSUPPORTED) {
			pack_str(&pk, "supported");
			msgpack_pack_str(&pk, rows[i].supported ? 3 : 2);
			msgpack_pack_str_body(&pk, rows[i].supported ? "yes" : "no",
					      rows[i].supported ? 3 : 2);
		}
		free(rows[i].description);
	}
	free(rows);
	l->find_done(l->ud, 0, NULL, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

static void answer(struct img_lookup *l)
{
	if (l->kind == LOOKUP_RESOLVE)
		answer_resolve(l);
	else
		answer_find(l);
}

static void answer_error(struct img_lookup *l, int err, const char *msg)
{
	if (l->kind == LOOKUP_RESOLVE)
		l->resolve_done(l->ud, err, msg, NULL);
	else
		l->find_done(l->ud, err, msg, NULL, 0);
}

static void ready_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct img_streams *s = w->data;

	while (s->ready) {
		struct img_lookup *l = s->ready;
		lookup_unlink(l);
		answer(l);
		lookup_free(l);
	}
}

static void queue_ready(struct img_streams *s, struct img_lookup *l)
{
	lookup_push(&s->ready, l);
	if (!ev_is_active(&s->ready_timer)) {
		ev_timer_set(&s->ready_timer, 0., 0.);
		ev_timer_start(s->loop, &s->ready_timer);
	}
}

/* ---- the remote's data: memory, disk, network ---- */

static bool remote_fresh(const struct img_streams *s, const struct img_remote *r)
{
	return r->products && wall_now() - r->fetched < s->ttl;
}

static int check_products(json_t *doc, const char *url, char *err, size_t errlen)
{
	const char *format = jstr(doc, "format");

	if (!json_is_object(doc) || !format || strcmp(format, "products:1.0") != 0 ||
	    !json_is_object(json_object_get(doc, "products"))) {
		snprintf(err, errlen, "%s is not a simplestreams products file (format products:1.0)", url);
		return PROTO_E_DRIVER;
	}
	return 0;
}

static void remote_load_disk(struct img_remote *r)
{
	char *path = img_strdupf("%s/meta.json", r->dir);
	char *text = NULL, err[IMG_ERRLEN];
	json_t *meta = NULL, *doc = NULL;
	size_t len;

	r->disk_tried = true;
	if (!path || img_read_whole(path, 1 << 16, &text, &len) < 0)
		goto out;
	meta = json_loadb(text, len, 0, NULL);
	free(text);
	text = NULL;
	if (!jstr(meta, "base_url") || strcmp(jstr(meta, "base_url"), r->base) != 0 ||
	    !json_is_number(json_object_get(meta, "fetched")))
		goto out;
	free(path);
	path = img_strdupf("%s/products.json", r->dir);
	if (!path || img_read_whole(path, STREAMS_PRODUCTS_MAX, &text, &len) < 0)
		goto out;
	doc = json_loadb(text, len, 0, NULL);
	if (!doc || check_products(doc, path, err, sizeof(err)) < 0) {
		json_decref(doc);
		goto out;
	}
	json_decref(r->products);
	r->products = doc;
	r->fetched = json_number_value(json_object_get(meta, "fetched"));
out:
	free(text);
	json_decref(meta);
	free(path);
}

static void remote_save_disk(struct img_remote *r, const char *index, size_t index_len,
			     const char *products, size_t products_len)
{
	json_t *meta = json_pack("{s:s, s:f, s:s}", "base_url", r->base, "fetched", r->fetched,
				 "products_path", r->products_path ? r->products_path : "");
	char *meta_text = meta ? json_dumps(meta, JSON_INDENT(1)) : NULL;
	char *p_index = img_strdupf("%s/index.json", r->dir);
	char *p_products = img_strdupf("%s/products.json", r->dir);
	char *p_meta = img_strdupf("%s/meta.json", r->dir);

	/* The cache is only an optimisation: failing to write it is not an error. */
	if (meta_text && p_index && p_products && p_meta && img_mkdirs(r->dir) == 0 &&
	    img_write_atomic(p_index, index, index_len) == 0 &&
	    img_write_atomic(p_products, products, products_len) == 0)
		img_write_atomic(p_meta, meta_text, strlen(meta_text));
	free(p_meta);
	free(p_products);
	free(p_index);
	free(meta_text);
	json_decref(meta);
}

static void remote_finish_refresh(struct img_streams *s, struct img_remote *r, int err, const char *msg)
{
	r->xfer = NULL;
	free(r->products_path);
	r->products_path = NULL;
	free(r->index_body);
	r->index_body = NULL;
	/* Stale data beats none, but do not ask the unreachable remote again
	 * for every lookup: try again in a minute. */
	if (err < 0 && r->products && s->ttl > 60)
		r->fetched = wall_now() - s->ttl + 60;
	/* Lookups started from the callbacks below wait for a new refresh. */
	struct img_lookup *batch = r->waiting;
	r->waiting = NULL;
	for (struct img_lookup *p = batch; p; p = p->next)
		p->list = &batch;
	while (batch) {
		struct img_lookup *l = batch;
		lookup_unlink(l);
		/* Stale data beats none when the remote cannot be reached,
		 * unless fresh data was asked for. */
		if (err == 0 || (r->products && !(l->flags & IMAGE_FIND_FORCE_UPDATE)))
			answer(l);
		else
			answer_error(l, err, msg);
		lookup_free(l);
	}
}

static void products_done(void *ud, const struct img_xfer_result *res)
{
	struct img_remote *r = ud;
	struct img_streams *s = r->s;
	char err[IMG_ERRLEN];
	char *url = img_strdupf("%s%s", r->base, r->products_path);
	json_error_t jerr;
	json_t *doc;

	if (res->err < 0) {
		remote_finish_refresh(s, r, res->err, res->errmsg);
		goto out_free;
	}
	doc = json_loadb(res->body, res->body_len, 0, &jerr);
	if (!doc) {
		snprintf(err, sizeof(err), "%s is not valid JSON: %s (line %d)", url ? url : "products file",
			 jerr.text, jerr.line);
		remote_finish_refresh(s, r, PROTO_E_DRIVER, err);
		goto out_free;
	}
	if (check_products(doc, url ? url : "products file", err, sizeof(err)) < 0) {
		json_decref(doc);
		remote_finish_refresh(s, r, PROTO_E_DRIVER, err);
		goto out_free;
	}
	json_decref(r->products);
	r->products = doc;
	r->fetched = wall_now();
	remote_save_disk(r, r->index_body, r->index_len, res->body, res->body_len);
	remote_finish_refresh(s, r, 0, NULL);
out_free:
	free(url);
}

/* Choose the products file for our architecture from an index:1.0 document. */
static int pick_products(const struct img_streams *s, json_t *index, const char *url, char **path,
			 char *err, size_t errlen)
{
	const char *format = jstr(index, "format");
	const json_t *entries = json_object_get(index, "index");
	const char *fallback = NULL, *key;
	json_t *entry;
	size_t alen = strlen(s->arch);

	if (!format || strcmp(format, "index:1.0") != 0 || !json_is_object(entries)) {
		snprintf(err, errlen, "%s is not a simplestreams index (format index:1.0)", url);
		return PROTO_E_DRIVER;
	}
	json_object_foreach((json_t *)entries, key, entry) {
		const char *dt = jstr(entry, "datatype"), *fmt = jstr(entry, "format");
		const json_t *prods = json_object_get(entry, "products");
		size_t i;
		json_t *p;
		if (!jstr(entry, "path") || (dt && strcmp(dt, "image-downloads") != 0) ||
		    (fmt && strcmp(fmt, "products:1.0") != 0))
			continue;
		if (!fallback)
			fallback = jstr(entry, "path");
		json_array_foreach(prods, i, p) {
			const char *id = json_string_value(p);
			size_t len = id ? strlen(id) : 0;
			if (len > alen && id[len - alen - 1] == ':' && strcmp(id + len - alen, s->arch) == 0) {
				*path = strdup(jstr(entry, "path"));
				return *path ? 0 : PROTO_E_NOMEM;
			}
		}
	}
	if (!fallback) {
		snprintf(err, errlen, "%s lists no image-downloads products file", url);
		return PROTO_E_DRIVER;
	}
	*path = strdup(fallback);
	return *path ? 0 : PROTO_E_NOMEM;
}

static void index_done(void *ud, const struct img_xfer_result *res)
{
	struct img_remote *r = ud;
	struct img_streams *s = r->s;
	char err[IMG_ERRLEN];
	char *url = img_strdupf("%sstreams/v1/index.json", r->base), *purl = NULL;
	json_error_t jerr;
	json_t *index = NULL;
	int rc;

	r->xfer = NULL;
	if (res->err < 0) {
		remote_finish_refresh(s, r, res->err, res->errmsg);
		goto out_free;
	}
	index = json_loadb(res->body, res->body_len, 0, &jerr);
	if (!index) {
		snprintf(err, sizeof(err), "%s is not valid JSON: %s (line %d)", url ? url : "index",
			 jerr.text, jerr.line);
		remote_finish_refresh(s, r, PROTO_E_DRIVER, err);
		goto out_free;
	}
	rc = pick_products(s, index, url ? url : "index", &r->products_path, err, sizeof(err));
	if (rc < 0) {
		remote_finish_refresh(s, r, rc, err);
		goto out_free;
	}
	r->index_body = malloc(res->body_len + 1);
	purl = img_strdupf("%s%s", r->base, r->products_path);
	if (!r->index_body || !purl) {
		remote_finish_refresh(s, r, PROTO_E_NOMEM, "out of memory");
		goto out_free;
	}
	memcpy(r->index_body, res->body, res->body_len + 1);
	r->index_len = res->body_len;
	r->xfer = img_xfer_start(s->f, purl, -1, STREAMS_PRODUCTS_MAX, 0, NULL, products_done, r);
	if (!r->xfer)
		remote_finish_refresh(s, r, PROTO_E_NOMEM, "out of memory");
out_free:
	free(purl);
	json_decref(index);
	free(url);
}

/* Start fetching the index unless that is under way. PROTO_E_NOMEM leaves
 * the waiters to the caller. */
static int remote_refresh(struct img_streams *s, struct img_remote *r)
{
	char *url;

	if (r->xfer)
		return 0;
	url = img_strdupf("%sstreams/v1/index.json", r->base);
	if (url)
		r->xfer = img_xfer_start(s->f, url, -1, STREAMS_INDEX_MAX, 0, NULL, index_done, r);
	free(url);
	return r->xfer ? 0 : PROTO_E_NOMEM;
}

static void remote_drop_data(struct img_remote *r)
{
	if (r->xfer) {
		img_xfer_cancel(r->xfer);
		r->xfer = NULL;
	}
	free(r->products_path);
	r->products_path = NULL;
	free(r->index_body);
	r->index_body = NULL;
	json_decref(r->products);
	r->products = NULL;
	r->fetched = 0;
	r->disk_tried = false;
}

/* ---- public to image.c ---- */

struct img_streams *img_streams_new(struct ev_loop *loop, struct img_fetcher *f, const char *images_dir)
{
	struct img_streams *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->loop = loop;
	s->f = f;
	s->ttl = STREAMS_DEFAULT_TTL;
	snprintf(s->arch, sizeof(s->arch), "%s", host_arch());
	ev_timer_init(&s->ready_timer, ready_cb, 0., 0.);
	s->ready_timer.data = s;
	s->remotes[0].s = s;
	s->remotes[1].s = s;
	s->remotes[0].name = "release";
	s->remotes[0].subdir = "releases/";
	s->remotes[1].name = "daily";
	s->remotes[1].subdir = "daily/";
	s->dir = strdup(images_dir);
	if (!s->dir)
		goto out_free;
	for (size_t i = 0; i < 2; i++) {
		s->remotes[i].dir = img_strdupf("%s/streams/%s", images_dir, s->remotes[i].name);
		if (!s->remotes[i].dir)
			goto out_free;
	}
	if (img_streams_set_mirror(s, NULL) < 0)
		goto out_free;
	return s;
out_free:
	img_streams_free(s);
	return NULL;
}

void img_streams_free(struct img_streams *s)
{
	if (!s)
		return;
	ev_timer_stop(s->loop, &s->ready_timer);
	while (s->ready) {
		struct img_lookup *l = s->ready;
		lookup_unlink(l);
		lookup_free(l);
	}
	for (size_t i = 0; i < 2; i++) {
		struct img_remote *r = &s->remotes[i];
		while (r->waiting) {
			struct img_lookup *l = r->waiting;
			lookup_unlink(l);
			lookup_free(l);
		}
		remote_drop_data(r);
		free(r->base);
		free(r->dir);
	}
	free(s->dir);
	free(s);
}

int img_streams_set_mirror(struct img_streams *s, const char *mirror_url)
{
	const char *host = mirror_url && *mirror_url ? mirror_url : STREAMS_DEFAULT_HOST;
	size_t len = strlen(host);
	const char *slash = len > 0 && host[len - 1] == '/' ? "" : "/";

	for (size_t i = 0; i < 2; i++) {
		struct img_remote *r = &s->remotes[i];
		char *base = img_strdupf("%s%s%s", host, slash, r->subdir);
		if (!base)
			return PROTO_E_NOMEM;
		if (r->base && strcmp(r->base, base) == 0) {
			free(base);
			continue;
		}
		remote_drop_data(r);
		/* Lookups waiting for the old host get the new one. */
		free(r->base);
		r->base = base;
		if (r->waiting && remote_refresh(s, r) < 0)
			remote_finish_refresh(s, r, PROTO_E_NOMEM, "out of memory");
	}
	return 0;
}

void img_streams_set_ttl(struct img_streams *s, double seconds)
{
	s->ttl = seconds;
}

static struct img_remote *remote_named(struct img_streams *s, const char *name)
{
	for (size_t i = 0; i < 2; i++)
		if (strcmp(s->remotes[i].name, name) == 0)
			return &s->remotes[i];
	return NULL;
}

bool img_streams_has_remote(const struct img_streams *s, const char *name)
{
	return remote_named((struct img_streams *)s, name) != NULL;
}

static struct img_lookup *lookup_start(struct img_streams *s, enum lookup_kind kind,
				       const char *remote, const char *what, unsigned flags,
				       img_lookup_fn resolve_done, image_find_fn find_done, void *ud,
				       char *err, size_t errlen, int *rc)
{
	struct img_remote *r = remote_named(s, remote ? remote : STREAMS_DEFAULT_REMOTE);
	struct img_lookup *l;

	if (!r) {
		snprintf(err, errlen, "unknown remote '%s' (known: release, daily)", remote);
		*rc = PROTO_E_NOT_FOUND;
		return NULL;
	}
	l = calloc(1, sizeof(*l));
	if (!l || !(l->what = strdup(what))) {
		free(l);
		snprintf(err, errlen, "out of memory");
		*rc = PROTO_E_NOMEM;
		return NULL;
	}
	l->s = s;
	l->r = r;
	l->kind = kind;
	l->resolve_done = resolve_done;
	l->find_done = find_done;
	l->flags = flags;
	l->ud = ud;
	if (!r->products && !r->disk_tried)
		remote_load_disk(r);
	if (remote_fresh(s, r) && !(flags & IMAGE_FIND_FORCE_UPDATE)) {
		queue_ready(s, l);
	} else {
		lookup_push(&r->waiting, l);
		if (remote_refresh(s, r) < 0) {
			lookup_unlink(l);
			lookup_free(l);
			snprintf(err, errlen, "out of memory");
			*rc = PROTO_E_NOMEM;
			return NULL;
		}
	}
	*rc = 0;
	return l;
}

struct img_lookup *img_streams_lookup(struct img_streams *s, const char *remote, const char *alias,
				      img_lookup_fn done, void *ud)
{
	char err[IMG_ERRLEN];
	int rc;
	struct img_lookup *l = lookup_start(s, LOOKUP_RESOLVE, remote, alias, 0, done, NULL, ud,
					    err, sizeof(err), &rc);

	if (!l)
		done(ud, rc, err, NULL);
	return l;
}

void img_lookup_cancel(struct img_lookup *l)
{
	if (!l)
		return;
	lookup_unlink(l);
	lookup_free(l);
}

void img_streams_find(struct img_streams *s, const char *remote, const char *query,
		      unsigned flags, image_find_fn done, void *ud)
{
	char err[IMG_ERRLEN];
	int rc;
	struct img_lookup *l = lookup_start(s, LOOKUP_FIND, remote, query, flags, NULL, done, ud,
					    err, sizeof(err), &rc);

	if (!l)
		done(ud, rc, err, NULL, 0);
}
