/*
 * The image resolver against a real HTTP server on loopback
 * (tools/test-http-server.py), which logs every request so the tests can
 * count what reached it.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <vmproto/proto.h>

#include "image.h"

#define UBUNTU_FIXTURE VMCTL_SOURCE_DIR "/tests/fixtures/simplestreams/ubuntu"
#define NOBLE_DISK "/releases/server/releases/noble/release-20240523.1/ubuntu-24.04-server-cloudimg-amd64.img"
#define FAST_DISK "/releases/server/releases/fast/release-20261127/vmctl-fast-amd64.img"

static char tmp[PATH_MAX], www[PATH_MAX + 8], images[PATH_MAX + 8], src[PATH_MAX + 8];
static char log_path[PATH_MAX + 16], rules_path[PATH_MAX + 16];
static char mirror[64];
static pid_t server_pid = -1;
static int port;
static struct ev_loop *loop;

/* ---- fixtures ---- */

static void run(const char *cmd)
{
	int rc = system(cmd);
	cr_assert_eq(rc, 0, "command failed (%d): %s", rc, cmd);
}

/* The system interpreter: a version-manager shim in PATH can cost seconds per start. */
static const char *python(void)
{
	return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

static void setup(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/vmctl-test-image-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
	snprintf(www, sizeof(www), "%s/www", tmp);
	snprintf(images, sizeof(images), "%s/images", tmp);
	snprintf(src, sizeof(src), "%s/src", tmp);
	snprintf(log_path, sizeof(log_path), "%s/requests.log", tmp);
	snprintf(rules_path, sizeof(rules_path), "%s/rules.json", tmp);
	cr_assert_eq(mkdir(www, 0755), 0);
	cr_assert_eq(mkdir(src, 0755), 0);
	loop = ev_loop_new(EVFLAG_AUTO);
	cr_assert_not_null(loop);
}

static void teardown(void)
{
	char cmd[PATH_MAX + 32];

	if (server_pid > 0) {
		kill(server_pid, SIGTERM);
		waitpid(server_pid, NULL, 0);
		server_pid = -1;
	}
	if (loop)
		ev_loop_destroy(loop);
	loop = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
}

TestSuite(image, .init = setup, .fini = teardown, .timeout = 40);

static void server_start(const char *root)
{
	char port_file[PATH_MAX + 16], script[PATH_MAX];

	snprintf(port_file, sizeof(port_file), "%s/port", tmp);
	snprintf(script, sizeof(script), "%s/tools/test-http-server.py", VMCTL_SOURCE_DIR);
	server_pid = fork();
	cr_assert_geq(server_pid, 0);
	if (server_pid == 0) {
		/* Do not outlive a test process that crashed or timed out. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execlp(python(), "python3", script, "--root", root, "--port-file", port_file, "--log",
		       log_path, "--rules", rules_path, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			int ok = fscanf(f, "%d", &port);
			fclose(f);
			if (ok == 1) {
				snprintf(mirror, sizeof(mirror), "http://127.0.0.1:%d/", port);
				return;
			}
		}
		usleep(25000);
	}
	cr_assert_fail("the test HTTP server did not start");
}

static void set_rules(const char *json)
{
	FILE *f = fopen(rules_path, "w");

	cr_assert_not_null(f);
	fputs(json, f);
	fclose(f);
}

/* Requests the server logged for exactly this path. */
static int requests(const char *path)
{
	FILE *f = fopen(log_path, "r");
	char line[1024], method[16], p[900];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%15s %899s", method, p) == 2 && strcmp(p, path) == 0)
			n++;
	fclose(f);
	return n;
}

static int all_requests(void)
{
	FILE *f = fopen(log_path, "r");
	char line[1024];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n++;
	fclose(f);
	return n;
}

/* A fake qcow2 disk (a version 3 header's magic, then random bytes) at src/NAME.qcow2. */
static void make_disk(const char *name, size_t size)
{
	char path[PATH_MAX + 64];
	unsigned char *buf = malloc(size);
	int fd;

	cr_assert_not_null(buf);
	snprintf(path, sizeof(path), "%s/%s.qcow2", src, name);
	fd = open("/dev/urandom", O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(read(fd, buf, size), (ssize_t)size);
	close(fd);
	memcpy(buf, "QFI\xfb\0\0\0\3", 8);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(buf, 1, size, f), size);
	fclose(f);
	free(buf);
}

/* src/NAME: size zero bytes with magic (mlen bytes) at offset; path_out gets its path. */
static void make_signed(const char *name, size_t size, size_t offset, const void *magic,
			size_t mlen, char *path_out, size_t outlen)
{
	unsigned char *buf = calloc(1, size ? size : 1);
	FILE *f;

	cr_assert_not_null(buf);
	cr_assert_leq(offset + mlen, size);
	if (mlen)
		memcpy(buf + offset, magic, mlen);
	snprintf(path_out, outlen, "%s/%s", src, name);
	f = fopen(path_out, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(buf, 1, size, f), size);
	fclose(f);
	free(buf);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "cannot write %s", path);
	fputs(text, f);
	fclose(f);
}

static void publish(const char *names)
{
	char cmd[4 * PATH_MAX];

	snprintf(cmd, sizeof(cmd),
		 "%s '%s/tools/publish-streams.py' --out '%s' --serial 20261127 '%s' %s 2>/dev/null",
		 python(), VMCTL_SOURCE_DIR, www, src, names);
	run(cmd);
}

static void sha256_file(const char *path, char hex[65])
{
	unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
	unsigned int len;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	FILE *f = fopen(path, "rb");
	size_t n;

	cr_assert_not_null(f, "cannot open %s", path);
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(ctx, buf, n);
	fclose(f);
	EVP_DigestFinal_ex(ctx, md, &len);
	EVP_MD_CTX_free(ctx);
	for (unsigned int i = 0; i < len; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
}

/* Files in images/ other than the streams cache and the URL index. */
static int cached_files(void)
{
	DIR *d = opendir(images);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    strcmp(e->d_name, "streams") == 0 || strcmp(e->d_name, "urls.json") == 0)
			continue;
		n++;
	}
	closedir(d);
	return n;
}

/* ---- driving the resolver ---- */

struct result {
	bool done;
	int err;
	char errmsg[1024];
	struct image_spec *spec;
	int progress_calls;
	double last_fraction;
	char progress_text[256];
	char *packed;
	size_t packed_len;
};

static void on_done(void *ud, int err, const char *errmsg, const struct image_spec *spec)
{
	struct result *r = ud;

	cr_assert_not(r->done, "done ran twice");
	r->done = true;
	r->err = err;
	snprintf(r->errmsg, sizeof(r->errmsg), "%s", errmsg ? errmsg : "");
	if (err == 0) {
		cr_assert_not_null(spec);
		r->spec = image_spec_dup(spec);
	}
}

static void on_progress(void *ud, double fraction, const char *text)
{
	struct result *r = ud;

	r->progress_calls++;
	r->last_fraction = fraction;
	if (strncmp(text, "Retrieving", 10) == 0)
		snprintf(r->progress_text, sizeof(r->progress_text), "%s", text);
}

static void on_find(void *ud, int err, const char *errmsg, const char *packed, size_t len)
{
	struct result *r = ud;

	r->done = true;
	r->err = err;
	snprintf(r->errmsg, sizeof(r->errmsg), "%s", errmsg ? errmsg : "");
	if (err == 0) {
		r->packed = malloc(len);
		memcpy(r->packed, packed, len);
		r->packed_len = len;
	}
}

static void wait_for(struct result *a, struct result *b)
{
	ev_tstamp start = ev_time();

	while (!(a->done && (!b || b->done))) {
		cr_assert_lt(ev_time() - start, 30.0, "the resolver did not answer within 30 s");
		ev_run(loop, EVRUN_ONCE);
	}
}

static void result_free(struct result *r)
{
	image_spec_free(r->spec);
	free(r->packed);
	memset(r, 0, sizeof(*r));
}

static struct image_cache *cache_new(void)
{
	struct image_cache *c = image_cache_new(loop, images);
	struct image_tuning t = { .attempts = 2, .backoff = 0.05, .stall_seconds = 2 };

	cr_assert_not_null(c);
	image_cache_tune(c, &t);
	if (mirror[0])
		image_cache_set_mirror(c, mirror);
	return c;
}

static void resolve(struct image_cache *c, const char *what, struct result *r)
{
	image_resolve(c, what, on_progress, on_done, r);
	wait_for(r, NULL);
}

/* ---- find ---- */

struct found {
	char name[64], remote[64], version[64], description[128], aliases[256];
};

static size_t unpack_find(const struct result *r, struct found *out, size_t max)
{
	msgpack_unpacked u;
	size_t n = 0;

	msgpack_unpacked_init(&u);
	cr_assert_eq(msgpack_unpack_next(&u, r->packed, r->packed_len, NULL), MSGPACK_UNPACK_SUCCESS);
	const msgpack_object *images_arr = proto_map_get(&u.data, "images");
	cr_assert_not_null(images_arr);
	cr_assert_eq(images_arr->type, MSGPACK_OBJECT_ARRAY);
	for (uint32_t i = 0; i < images_arr->via.array.size && n < max; i++, n++) {
		const msgpack_object *im = &images_arr->via.array.ptr[i];
		const msgpack_object *al = proto_map_get(im, "aliases");
		cr_assert_eq(proto_get_str(im, "name", out[n].name, sizeof(out[n].name)), 0);
		cr_assert_eq(proto_get_str(im, "remote", out[n].remote, sizeof(out[n].remote)), 0);
		cr_assert_eq(proto_get_str(im, "version", out[n].version, sizeof(out[n].version)), 0);
		cr_assert_eq(proto_get_str(im, "description", out[n].description,
					   sizeof(out[n].description)), 0);
		cr_assert(al && al->type == MSGPACK_OBJECT_ARRAY);
		out[n].aliases[0] = '\0';
		for (uint32_t j = 0; j < al->via.array.size; j++) {
			char a[64];
			cr_assert_eq(proto_obj_str(&al->via.array.ptr[j], a, sizeof(a)), 0);
			strcat(out[n].aliases, j ? "," : "");
			strcat(out[n].aliases, a);
		}
	}
	msgpack_unpacked_destroy(&u);
	return n;
}

Test(image, find_by_alias_in_ubuntu_layout)
{
	struct result r = { 0 };
	struct found f[8];
	struct image_cache *c;

	server_start(UBUNTU_FIXTURE);
	c = cache_new();
	image_find(c, "noble", on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, 0, "find failed: %s", r.errmsg);
	cr_assert_eq(unpack_find(&r, f, 8), 1);
	cr_expect_str_eq(f[0].name, "24.04");
	cr_expect_str_eq(f[0].remote, "release");
	cr_expect_str_eq(f[0].version, "20240523.1", "the newest version is shown");
	cr_expect_str_eq(f[0].description, "Ubuntu 24.04 LTS");
	cr_expect_str_eq(f[0].aliases, "default,lts,n,noble");
	result_free(&r);

	/* Everything supported for this architecture: not 16.04, not arm64. */
	image_find(c, "", on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, 0, "find failed: %s", r.errmsg);
	cr_assert_eq(unpack_find(&r, f, 8), 2);
	cr_expect_str_eq(f[0].name, "24.04");
	cr_expect_str_eq(f[1].name, "22.04");
	cr_expect_str_eq(f[1].aliases, "j,jammy");
	result_free(&r);

	/* The index was fetched once and is reused within its refresh interval. */
	cr_expect_eq(requests("/releases/streams/v1/index.json"), 1);
	cr_expect_eq(requests("/releases/streams/v1/com.ubuntu.cloud:released:download.json"), 1);
	image_cache_free(c);
}

Test(image, find_show_unsupported_adds_them_marked)
{
	struct result r = { 0 };
	struct found f[8];
	struct image_cache *c;

	server_start(UBUNTU_FIXTURE);
	c = cache_new();
	image_find_with(c, "", IMAGE_FIND_UNSUPPORTED, on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, 0, "find failed: %s", r.errmsg);
	cr_assert_eq(unpack_find(&r, f, 8), 3);
	cr_expect_str_eq(f[0].name, "24.04");
	cr_expect_str_eq(f[1].name, "22.04");
	cr_expect_str_eq(f[2].name, "16.04");
	cr_expect(memmem(r.packed, r.packed_len, "\xa9supported\xa2no", 13) != NULL,
		  "16.04 is not marked unsupported");
	result_free(&r);
	image_cache_free(c);
}

Test(image, find_force_update_fetches_again_and_never_answers_stale)
{
	struct result r = { 0 };
	struct image_cache *c;

	server_start(UBUNTU_FIXTURE);
	c = cache_new();
	image_find(c, "noble", on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, 0, "find failed: %s", r.errmsg);
	result_free(&r);
	image_find_with(c, "noble", IMAGE_FIND_FORCE_UPDATE, on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, 0, "find failed: %s", r.errmsg);
	result_free(&r);
	cr_expect_eq(requests("/releases/streams/v1/index.json"), 2,
		     "--force-update did not fetch the index again");

	/* The mirror goes away: a forced update fails, a plain find is served. */
	kill(server_pid, SIGTERM);
	waitpid(server_pid, NULL, 0);
	server_pid = -1;
	image_find_with(c, "noble", IMAGE_FIND_FORCE_UPDATE, on_find, &r);
	wait_for(&r, NULL);
	cr_expect_lt(r.err, 0, "a forced update answered without the remote");
	cr_expect(strstr(r.errmsg, "index.json") != NULL, "message: %s", r.errmsg);
	result_free(&r);
	image_find(c, "noble", on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, 0, "find failed: %s", r.errmsg);
	result_free(&r);
	image_cache_free(c);
}

Test(image, find_on_a_remote_the_mirror_lacks_fails_clearly)
{
	struct result r = { 0 };
	struct image_cache *c;

	server_start(UBUNTU_FIXTURE);
	c = cache_new();
	image_find(c, "daily:noble", on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, PROTO_E_NOT_FOUND, "%d %s", r.err, r.errmsg);
	cr_expect(strstr(r.errmsg, "/daily/streams/v1/index.json") && strstr(r.errmsg, "HTTP 404"),
		  "message: %s", r.errmsg);
	result_free(&r);
	image_find(c, "nosuch:noble", on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, PROTO_E_NOT_FOUND);
	cr_expect(strstr(r.errmsg, "unknown remote 'nosuch'"), "message: %s", r.errmsg);
	result_free(&r);
	image_cache_free(c);
}

/* ---- resolve by alias ---- */

Test(image, resolve_by_alias_downloads_the_newest_version_verified)
{
	struct result r = { 0 };
	char want[65], got[65], expect_path[PATH_MAX + 100];
	struct image_cache *c;

	server_start(UBUNTU_FIXTURE);
	c = cache_new();
	resolve(c, "release:noble", &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	sha256_file(UBUNTU_FIXTURE NOBLE_DISK, want);
	snprintf(expect_path, sizeof(expect_path), "%s/%s.qcow2", images, want);
	cr_expect_str_eq(r.spec->disk, expect_path);
	sha256_file(r.spec->disk, got);
	cr_expect_str_eq(got, want);
	cr_expect_str_eq(r.spec->sha256, want);
	cr_expect_str_eq(r.spec->format, "qcow2");
	cr_expect_str_eq(r.spec->source, "release:noble");
	cr_expect_str_eq(r.spec->description, "Ubuntu 24.04 LTS");
	cr_expect_null(r.spec->kernel);
	cr_expect_eq(requests(NOBLE_DISK), 1);
	result_free(&r);

	/* Another alias of the same product: the same cached file, no download. */
	resolve(c, "lts", &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	cr_expect_str_eq(r.spec->disk, expect_path);
	cr_expect_str_eq(r.spec->source, "release:lts");
	cr_expect_eq(requests(NOBLE_DISK), 1);
	result_free(&r);
	image_cache_free(c);
}

Test(image, cached_image_makes_no_http_request)
{
	struct result r = { 0 };
	struct image_cache *c;
	char first[PATH_MAX];
	int before;

	make_disk("fast", 300000);
	publish("fast=debian-test");
	server_start(www);
	c = cache_new();
	resolve(c, "debian-test", &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	snprintf(first, sizeof(first), "%s", r.spec->disk);
	result_free(&r);
	image_cache_free(c);

	/* A new broker over the same cache folder. */
	before = all_requests();
	cr_assert_gt(before, 0);
	c = cache_new();
	resolve(c, "release:fast", &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	cr_expect_str_eq(r.spec->disk, first);
	cr_expect_eq(all_requests(), before, "a cached image must not cause any request");
	result_free(&r);
	image_cache_free(c);
}

Test(image, concurrent_resolves_share_one_download)
{
	struct result a = { 0 }, b = { 0 };
	struct image_cache *c;

	make_disk("fast", 4 << 20);
	publish("fast");
	set_rules("{\"" FAST_DISK "\": {\"mode\": \"slow\", \"rate\": 8388608}}");
	server_start(www);
	c = cache_new();
	image_resolve(c, "fast", on_progress, on_done, &a);
	image_resolve(c, "release:fast", on_progress, on_done, &b);
	wait_for(&a, &b);
	cr_assert_eq(a.err, 0, "first resolve failed: %s", a.errmsg);
	cr_assert_eq(b.err, 0, "second resolve failed: %s", b.errmsg);
	cr_expect_str_eq(a.spec->disk, b.spec->disk);
	cr_expect_eq(requests(FAST_DISK), 1, "the server saw %d GETs of the disk",
		     requests(FAST_DISK));
	cr_expect_eq(requests("/releases/streams/v1/index.json"), 1);
	/* Both watched the one download. */
	cr_expect_gt(a.progress_calls, 1);
	cr_expect_gt(b.progress_calls, 1);
	cr_expect_eq(a.last_fraction, 1.0);
	cr_expect(strstr(a.progress_text, "Retrieving image: ") && strstr(a.progress_text, "%") &&
		  strstr(a.progress_text, "/s"), "progress text: %s", a.progress_text);
	result_free(&a);
	result_free(&b);
	image_cache_free(c);
}

Test(image, cancelled_resolve_never_answers_and_the_other_still_does)
{
	struct result a = { 0 }, b = { 0 };
	struct image_cache *c;
	struct image_op *op;

	make_disk("fast", 1 << 20);
	publish("fast");
	server_start(www);
	c = cache_new();
	op = image_resolve(c, "fast", on_progress, on_done, &a);
	cr_assert_not_null(op);
	image_resolve(c, "fast", on_progress, on_done, &b);
	image_op_cancel(op);
	wait_for(&b, NULL);
	cr_assert_eq(b.err, 0, "resolve failed: %s", b.errmsg);
	cr_expect_not(a.done, "a cancelled op must not call back");
	result_free(&b);
	image_cache_free(c);
}

/* ---- verification and failures ---- */

Test(image, sha256_mismatch_is_refused_and_nothing_cached)
{
	struct result r = { 0 };
	struct image_cache *c;
	char path[3 * PATH_MAX];

	make_disk("fast", 200000);
	publish("fast");
	/* Same size, other bytes: what a corrupted mirror would serve. */
	snprintf(path, sizeof(path), "%s%s", www, FAST_DISK);
	unlink(path);
	make_disk("other", 200000);
	snprintf(path, sizeof(path), "cp '%s/other.qcow2' '%s%s'", src, www, FAST_DISK);
	run(path);
	server_start(www);
	c = cache_new();
	resolve(c, "fast", &r);
	cr_assert_eq(r.err, PROTO_E_DRIVER, "%d: %s", r.err, r.errmsg);
	cr_expect(strstr(r.errmsg, "sha256") && strstr(r.errmsg, FAST_DISK), "message: %s", r.errmsg);
	cr_expect_eq(cached_files(), 0, "nothing may be left in the cache");
	image_cache_free(c);
}

Test(image, truncated_download_is_refused_after_retrying)
{
	struct result r = { 0 };
	struct image_cache *c;

	make_disk("fast", 1 << 20);
	publish("fast");
	set_rules("{\"" FAST_DISK "\": {\"mode\": \"truncate\", \"bytes\": 300000}}");
	server_start(www);
	c = cache_new();
	resolve(c, "fast", &r);
	cr_assert_eq(r.err, PROTO_E_UNAVAILABLE, "%d: %s", r.err, r.errmsg);
	cr_expect(strstr(r.errmsg, "cut short") && strstr(r.errmsg, FAST_DISK), "message: %s",
		  r.errmsg);
	cr_expect_eq(requests(FAST_DISK), 2, "a transient failure is retried (attempts = 2)");
	cr_expect_eq(cached_files(), 0, "nothing may be left in the cache");
	image_cache_free(c);
}

Test(image, stalled_server_is_given_up)
{
	struct result r = { 0 };
	struct image_cache *c;
	struct image_tuning t = { .attempts = 1, .stall_seconds = 1 };

	make_disk("fast", 1 << 20);
	publish("fast");
	set_rules("{\"" FAST_DISK "\": {\"mode\": \"stall\", \"bytes\": 65536}}");
	server_start(www);
	c = cache_new();
	image_cache_tune(c, &t);
	resolve(c, "fast", &r);
	cr_assert_eq(r.err, PROTO_E_UNAVAILABLE, "%d: %s", r.err, r.errmsg);
	cr_expect(strstr(r.errmsg, "stopped sending") && strstr(r.errmsg, FAST_DISK), "message: %s",
		  r.errmsg);
	cr_expect_eq(cached_files(), 0);
	image_cache_free(c);
}

static int closed_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

Test(image, server_down_is_unavailable)
{
	struct result r = { 0 };
	struct image_cache *c;
	char url[128], where[64];
	int p = closed_port();

	snprintf(mirror, sizeof(mirror), "http://127.0.0.1:%d/", p);
	snprintf(where, sizeof(where), "127.0.0.1:%d", p);
	c = cache_new();
	resolve(c, "noble", &r);
	cr_assert_eq(r.err, PROTO_E_UNAVAILABLE, "%d: %s", r.err, r.errmsg);
	cr_expect(strstr(r.errmsg, where) && strstr(r.errmsg, "index.json"), "message: %s", r.errmsg);
	cr_expect(strstr(r.errmsg, "refused") || strstr(r.errmsg, "connect"), "message: %s", r.errmsg);
	result_free(&r);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/disk.img", p);
	resolve(c, url, &r);
	cr_assert_eq(r.err, PROTO_E_UNAVAILABLE, "%d: %s", r.err, r.errmsg);
	cr_expect(strstr(r.errmsg, url), "message: %s", r.errmsg);
	cr_expect_eq(cached_files(), 0);
	result_free(&r);
	image_cache_free(c);
}

Test(image, http_404_is_not_found)
{
	struct result r = { 0 };
	struct image_cache *c;
	char url[128];

	server_start(UBUNTU_FIXTURE);
	c = cache_new();
	snprintf(url, sizeof(url), "%smissing.img", mirror);
	resolve(c, url, &r);
	cr_assert_eq(r.err, PROTO_E_NOT_FOUND, "%d: %s", r.err, r.errmsg);
	cr_expect(strstr(r.errmsg, "HTTP 404") && strstr(r.errmsg, url), "message: %s", r.errmsg);
	cr_expect_eq(requests("/missing.img"), 1, "a 404 is not retried");
	result_free(&r);

	resolve(c, "nosuch", &r);
	cr_assert_eq(r.err, PROTO_E_NOT_FOUND, "%d: %s", r.err, r.errmsg);
	cr_expect(strstr(r.errmsg, "no image 'nosuch'"), "message: %s", r.errmsg);
	cr_expect_eq(cached_files(), 0);
	result_free(&r);
	image_cache_free(c);
}

Test(image, http_404_of_a_stream_item)
{
	struct result r = { 0 };
	struct image_cache *c;

	make_disk("fast", 100000);
	publish("fast");
	set_rules("{\"" FAST_DISK "\": {\"mode\": \"status\", \"status\": 404}}");
	server_start(www);
	c = cache_new();
	resolve(c, "fast", &r);
	cr_assert_eq(r.err, PROTO_E_NOT_FOUND, "%d: %s", r.err, r.errmsg);
	cr_expect(strstr(r.errmsg, FAST_DISK) && strstr(r.errmsg, "HTTP 404"), "message: %s", r.errmsg);
	cr_expect_eq(cached_files(), 0);
	image_cache_free(c);
}

/* ---- direct URLs, direct boot ---- */

Test(image, direct_url_is_cached_by_its_sha256_and_reused)
{
	struct result r = { 0 };
	struct image_cache *c;
	char url[PATH_MAX], want[65], path[3 * PATH_MAX];
	int before;

	make_disk("plain", 250000);
	snprintf(path, sizeof(path), "cp '%s/plain.qcow2' '%s/plain.qcow2'", src, www);
	run(path);
	server_start(www);
	c = cache_new();
	snprintf(url, sizeof(url), "%splain.qcow2", mirror);
	resolve(c, url, &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	snprintf(path, sizeof(path), "%s/plain.qcow2", src);
	sha256_file(path, want);
	snprintf(path, sizeof(path), "%s/%s.qcow2", images, want);
	cr_expect_str_eq(r.spec->disk, path);
	cr_expect_str_eq(r.spec->sha256, want);
	cr_expect_str_eq(r.spec->source, url);
	cr_expect_str_eq(r.spec->format, "qcow2");
	result_free(&r);
	image_cache_free(c);

	before = all_requests();
	c = cache_new();
	resolve(c, url, &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	cr_expect_str_eq(r.spec->disk, path);
	cr_expect_eq(all_requests(), before, "the second launch must not download again");
	result_free(&r);
	image_cache_free(c);
}

Test(image, stream_kernel_initrd_and_cmdline_for_direct_boot)
{
	struct result r = { 0 };
	struct image_cache *c;
	char path[PATH_MAX + 64], want[65], expect[PATH_MAX + 100];

	make_disk("fast", 100000);
	snprintf(path, sizeof(path), "%s/fast.vmlinuz", src);
	write_text(path, "not really a kernel\n");
	snprintf(path, sizeof(path), "%s/fast.initrd", src);
	write_text(path, "not really an initrd\n");
	snprintf(path, sizeof(path), "%s/fast.cmdline", src);
	write_text(path, "console=ttyS0 root=/dev/vda rw\n");
	publish("fast");
	server_start(www);
	c = cache_new();
	resolve(c, "fast", &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	snprintf(path, sizeof(path), "%s/fast.vmlinuz", src);
	sha256_file(path, want);
	snprintf(expect, sizeof(expect), "%s/%s.vmlinuz", images, want);
	cr_expect_str_eq(r.spec->kernel, expect);
	snprintf(path, sizeof(path), "%s/fast.initrd", src);
	sha256_file(path, want);
	snprintf(expect, sizeof(expect), "%s/%s.initrd", images, want);
	cr_expect_str_eq(r.spec->initrd, expect);
	cr_expect_str_eq(r.spec->cmdline, "console=ttyS0 root=/dev/vda rw");
	cr_expect_str_eq(r.spec->description, "Debian 12 test image fast");
	result_free(&r);
	image_cache_free(c);
}

/* ---- local images ---- */

Test(image, local_disk_with_direct_boot_files)
{
	struct result r = { 0 };
	struct image_cache *c;
	char path[PATH_MAX + 64], url[PATH_MAX + 80], expect[PATH_MAX + 64];

	make_disk("local", 4096);
	snprintf(path, sizeof(path), "%s/local.vmlinuz", src);
	write_text(path, "k");
	snprintf(path, sizeof(path), "%s/local.cmdline", src);
	write_text(path, "console=ttyS0\n");
	c = cache_new();
	snprintf(path, sizeof(path), "%s/local.qcow2", src);
	snprintf(url, sizeof(url), "file://%s", path);
	cr_assert_null(image_resolve(c, url, on_progress, on_done, &r), "a local file answers at once");
	cr_assert(r.done);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	cr_expect_str_eq(r.spec->disk, path);
	cr_expect_str_eq(r.spec->format, "qcow2");
	snprintf(expect, sizeof(expect), "%s/local.vmlinuz", src);
	cr_expect_str_eq(r.spec->kernel, expect);
	cr_expect_null(r.spec->initrd);
	cr_expect_str_eq(r.spec->cmdline, "console=ttyS0");
	cr_expect_str_eq(r.spec->source, url);
	cr_expect_str_eq(r.spec->description, "local.qcow2");
	cr_expect_null(r.spec->sha256);
	result_free(&r);

	make_signed("raw.img", 4096, 510, "\x55\xaa", 2, path, sizeof(path));
	resolve(c, path, &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	cr_expect_str_eq(r.spec->format, "raw");
	cr_expect_null(r.spec->kernel);
	result_free(&r);
	cr_expect_eq(cached_files(), 0, "local images are used in place");
	image_cache_free(c);
}

/* Raw disks are told by a partition table or a file system, as the firmware
 * or a direct-boot kernel would find them. */
Test(image, local_disks_of_every_known_layout_are_used)
{
	static const struct {
		const char *name;
		size_t size, offset;
		const char *magic;
		size_t mlen;
		const char *format;
	} disks[] = {
		{ "mbr.img", 1 << 20, 510, "\x55\xaa", 2, "raw" },
		{ "gpt.img", 1 << 20, 512, "EFI PART", 8, "raw" },
		{ "ext4.img", 1 << 20, 1080, "\x53\xef", 2, "raw" },
		{ "iso.img", 1 << 20, 32769, "CD001", 5, "raw" },
		{ "v2.qcow2", 4096, 0, "QFI\xfb\0\0\0\2", 8, "qcow2" },
		{ "v3.qcow2", 4096, 0, "QFI\xfb\0\0\0\3", 8, "qcow2" },
	};
	struct image_cache *c = cache_new();
	char path[PATH_MAX + 64];

	for (size_t i = 0; i < sizeof(disks) / sizeof(disks[0]); i++) {
		struct result r = { 0 };

		make_signed(disks[i].name, disks[i].size, disks[i].offset, disks[i].magic,
			    disks[i].mlen, path, sizeof(path));
		resolve(c, path, &r);
		cr_expect_eq(r.err, 0, "%s refused: %s", disks[i].name, r.errmsg);
		if (r.err == 0)
			cr_expect_str_eq(r.spec->format, disks[i].format, "%s", disks[i].name);
		result_free(&r);
	}
	image_cache_free(c);
}

/* An LXD unified tarball is an image (of the lxd driver's); any other tar is not. */
Test(image, lxd_unified_tarball_is_an_image_of_format_lxd)
{
	struct image_cache *c = cache_new();
	char cmd[3 * PATH_MAX], path[PATH_MAX + 64];
	struct result r = { 0 };

	snprintf(cmd, sizeof(cmd),
		 "cd %s && mkdir -p t/rootfs/etc && echo 'architecture: x86_64' >t/metadata.yaml && "
		 "echo x >t/rootfs/etc/hostname && tar -C t -cf lxd.tar metadata.yaml rootfs && "
		 "tar -C t --format=pax -cf lxd-pax.tar metadata.yaml rootfs && "
		 "tar -C t -cf other.tar rootfs metadata.yaml", src);
	cr_assert_eq(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/lxd.tar", src);
	resolve(c, path, &r);
	cr_assert_eq(r.err, 0, "%s", r.errmsg);
	cr_expect_str_eq(r.spec->format, "lxd");
	result_free(&r);
	/* GNU tar with --xattrs writes a pax header first. */
	snprintf(path, sizeof(path), "%s/lxd-pax.tar", src);
	resolve(c, path, &r);
	cr_assert_eq(r.err, 0, "%s", r.errmsg);
	cr_expect_str_eq(r.spec->format, "lxd");
	result_free(&r);
	snprintf(path, sizeof(path), "%s/other.tar", src);
	resolve(c, path, &r);
	cr_expect_eq(r.err, PROTO_E_INVALID_ARGUMENT);
	cr_expect(strstr(r.errmsg, "a tar archive"), "%s", r.errmsg);
	result_free(&r);
	image_cache_free(c);
}

/* Any readable file used to become the instance's backing disk. */
#define SHADOW "root:$6$Mo3pCzUy$O4o1z0jQ.Y:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n"

Test(image, local_files_that_are_not_disks_are_refused)
{
	static const struct {
		const char *name;
		size_t size, offset;
		const char *magic;
		size_t mlen;
		const char *why;
	} files[] = {
		{ "shadow", sizeof(SHADOW) - 1, 0, SHADOW, sizeof(SHADOW) - 1, "holds text" },
		{ "empty.img", 0, 0, "", 0, "is empty" },
		{ "zeros.img", 1 << 20, 0, "", 0, "no partition table" },
		{ "disk.img.gz", 4096, 0, "\x1f\x8b\x08", 3, "gzip" },
		{ "disk.vmdk", 4096, 0, "KDMV", 4, "VMDK" },
		{ "old.qcow", 4096, 0, "QFI\xfb\0\0\0\1", 8, "version 1" },
		{ "short.qcow2", 40, 0, "QFI\xfb\0\0\0\3", 8, "cut short" },
	};
	struct image_cache *c = cache_new();
	char path[PATH_MAX + 64], url[PATH_MAX + 80];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct result r = { 0 };

		make_signed(files[i].name, files[i].size, files[i].offset, files[i].magic,
			    files[i].mlen, path, sizeof(path));
		resolve(c, path, &r);
		cr_expect_eq(r.err, PROTO_E_INVALID_ARGUMENT, "%s: %d %s", files[i].name, r.err,
			     r.errmsg);
		cr_expect(strstr(r.errmsg, path) && strstr(r.errmsg, "not a disk image") &&
			  strstr(r.errmsg, files[i].why), "%s: message: %s", files[i].name, r.errmsg);
		result_free(&r);

		snprintf(url, sizeof(url), "file://%s", path);
		resolve(c, url, &r);
		cr_expect_eq(r.err, PROTO_E_INVALID_ARGUMENT, "%s: %d %s", url, r.err, r.errmsg);
		cr_expect(strstr(r.errmsg, files[i].why), "%s: message: %s", url, r.errmsg);
		result_free(&r);
	}
	image_cache_free(c);
}

/* A download is checked before it goes into the cache. */
Test(image, downloaded_file_that_is_not_a_disk_is_refused)
{
	struct result r = { 0 };
	struct image_cache *c;
	char url[PATH_MAX], path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/passwd", www);
	write_text(path, "root:x:0:0:root:/root:/bin/bash\n");
	server_start(www);
	c = cache_new();
	snprintf(url, sizeof(url), "%spasswd", mirror);
	resolve(c, url, &r);
	cr_assert_eq(r.err, PROTO_E_INVALID_ARGUMENT, "%d: %s", r.err, r.errmsg);
	cr_expect(strstr(r.errmsg, url) && strstr(r.errmsg, "not a disk image") &&
		  strstr(r.errmsg, "holds text"), "message: %s", r.errmsg);
	cr_expect_eq(cached_files(), 0, "the refused download was kept in the cache");
	result_free(&r);
	image_cache_free(c);
}

Test(image, local_missing_file_is_not_found)
{
	struct result r = { 0 };
	struct image_cache *c = cache_new();
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/nope.qcow2", src);
	resolve(c, path, &r);
	cr_assert_eq(r.err, PROTO_E_NOT_FOUND);
	cr_expect(strstr(r.errmsg, path) && strstr(r.errmsg, "does not exist"), "message: %s", r.errmsg);
	result_free(&r);

	resolve(c, "ftp://example.org/x.img", &r);
	cr_assert_eq(r.err, PROTO_E_INVALID_ARGUMENT);
	cr_expect(strstr(r.errmsg, "unsupported image URL"), "message: %s", r.errmsg);
	result_free(&r);
	image_cache_free(c);
}

/* ---- housekeeping ---- */

Test(image, prune_keeps_images_in_use_and_recent_ones)
{
	struct result r = { 0 };
	struct image_cache *c;
	char cmd[3 * PATH_MAX], url[PATH_MAX], disk[PATH_MAX];
	const char *in_use[] = { disk, NULL };

	make_disk("plain", 50000);
	snprintf(cmd, sizeof(cmd), "cp '%s/plain.qcow2' '%s/plain.qcow2'", src, www);
	run(cmd);
	server_start(www);
	c = cache_new();
	snprintf(url, sizeof(url), "%splain.qcow2", mirror);
	resolve(c, url, &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	snprintf(disk, sizeof(disk), "%s", r.spec->disk);
	result_free(&r);

	cr_expect_eq(image_cache_prune(c, NULL, 3600), 0, "a file used just now is kept");
	cr_expect_eq(image_cache_prune(c, in_use, -1), 0, "a file an instance uses is kept");
	cr_expect_eq(access(disk, F_OK), 0);
	cr_expect_eq(image_cache_prune(c, NULL, -1), 1);
	cr_expect_neq(access(disk, F_OK), 0, "the unused image is gone");

	/* The URL index no longer leads anywhere: the next launch downloads again. */
	resolve(c, url, &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	cr_expect_str_eq(r.spec->disk, disk);
	cr_expect_eq(requests("/plain.qcow2"), 2);
	result_free(&r);
	image_cache_free(c);
}

Test(image, leftover_partial_downloads_are_removed_at_start)
{
	char partial[PATH_MAX + 32];
	struct image_cache *c;

	cr_assert_eq(mkdir(images, 0755), 0);
	snprintf(partial, sizeof(partial), "%s/.partial-abc123", images);
	write_text(partial, "half a disk");
	c = cache_new();
	cr_expect_neq(access(partial, F_OK), 0, "%s should have been removed", partial);
	image_cache_free(c);
}

/* ---- the Ubuntu layout in detail ---- */

Test(image, ubuntu_layout_disk_item_choice_and_architecture)
{
	struct result r = { 0 };
	struct image_cache *c;
	char want[65];

	server_start(UBUNTU_FIXTURE);
	c = cache_new();
	/* 16.04 offers only uefi1.img; unsupported products still resolve. */
	resolve(c, "xenial", &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	sha256_file(UBUNTU_FIXTURE "/releases/server/releases/xenial/release-20210429/"
				   "ubuntu-16.04-server-cloudimg-amd64.img", want);
	cr_expect_str_eq(r.spec->sha256, want);
	result_free(&r);

	/* jammy exists for amd64 and arm64: this host gets amd64. */
	resolve(c, "22.04", &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	sha256_file(UBUNTU_FIXTURE "/releases/server/releases/jammy/release-20240514/"
				   "ubuntu-22.04-server-cloudimg-amd64.img", want);
	cr_expect_str_eq(r.spec->sha256, want);
	cr_expect_eq(requests("/releases/server/releases/jammy/release-20240514/"
			      "ubuntu-22.04-server-cloudimg-arm64.img"), 0);
	result_free(&r);
	image_cache_free(c);
}

Test(image, index_is_refreshed_after_its_interval_and_kept_when_the_remote_is_down)
{
	struct result r = { 0 };
	struct image_cache *c;
	struct image_tuning t = { .index_ttl = 0.5 };

	server_start(UBUNTU_FIXTURE);
	c = cache_new();
	image_cache_tune(c, &t);
	image_find(c, "noble", on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, 0, "find failed: %s", r.errmsg);
	result_free(&r);
	cr_expect_eq(requests("/releases/streams/v1/index.json"), 1);

	usleep(700000);
	image_find(c, "noble", on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, 0, "find failed: %s", r.errmsg);
	result_free(&r);
	cr_expect_eq(requests("/releases/streams/v1/index.json"), 2, "refreshed after the interval");

	/* The mirror goes away: the last index still answers. */
	kill(server_pid, SIGTERM);
	waitpid(server_pid, NULL, 0);
	server_pid = -1;
	usleep(700000);
	image_find(c, "noble", on_find, &r);
	wait_for(&r, NULL);
	cr_assert_eq(r.err, 0, "find failed: %s", r.errmsg);
	struct found f[2];
	cr_expect_eq(unpack_find(&r, f, 2), 1);
	result_free(&r);
	image_cache_free(c);
}

/* ---- resuming ---- */

/* Log lines for path whose status (and range) match exactly. */
static int requests_with(const char *path, const char *status_and_range)
{
	FILE *f = fopen(log_path, "r");
	char line[1024], want[1024];
	int n = 0;

	if (!f)
		return 0;
	snprintf(want, sizeof(want), "GET %s %s\n", path, status_and_range);
	while (fgets(line, sizeof(line), f))
		n += strcmp(line, want) == 0;
	fclose(f);
	return n;
}

Test(image, cut_download_resumes_where_it_stopped)
{
	struct result r = { 0 };
	struct image_cache *c;
	char path[PATH_MAX + 64], want[65];

	make_disk("fast", 1 << 20);
	publish("fast");
	set_rules("{\"" FAST_DISK "\": {\"mode\": \"truncate\", \"bytes\": 300000, \"times\": 1}}");
	server_start(www);
	c = cache_new();
	resolve(c, "fast", &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	snprintf(path, sizeof(path), "%s/fast.qcow2", src);
	sha256_file(path, want);
	cr_expect_str_eq(r.spec->sha256, want);
	sha256_file(r.spec->disk, want);
	cr_expect_str_eq(r.spec->sha256, want, "the resumed file is whole");
	cr_expect_eq(requests(FAST_DISK), 2);
	cr_expect_eq(requests_with(FAST_DISK, "206 bytes=300000-"), 1,
		     "the second request asks for the rest only");
	result_free(&r);
	image_cache_free(c);
}

Test(image, server_ignoring_ranges_makes_the_download_start_over)
{
	struct result r = { 0 };
	struct image_cache *c;
	struct image_tuning t = { .attempts = 3 };
	char path[PATH_MAX + 64], want[65];

	make_disk("fast", 1 << 20);
	publish("fast");
	set_rules("{\"" FAST_DISK "\": {\"mode\": \"truncate\", \"bytes\": 300000, \"times\": 1, "
		  "\"ranges\": false}}");
	server_start(www);
	c = cache_new();
	image_cache_tune(c, &t);
	resolve(c, "fast", &r);
	cr_assert_eq(r.err, 0, "resolve failed: %s", r.errmsg);
	snprintf(path, sizeof(path), "%s/fast.qcow2", src);
	sha256_file(path, want);
	cr_expect_str_eq(r.spec->sha256, want);
	cr_expect_eq(requests_with(FAST_DISK, "200"), 3, "cut, refused resume, whole file: %d GETs",
		     requests(FAST_DISK));

	cr_expect_eq(cached_files(), 1);
	result_free(&r);
	image_cache_free(c);
}
