/*
 * LXD's REST API: its answers parsed (unit-tested against recorded ones) and
 * the transport, libcurl's easy interface on LXD's unix socket. Blocking:
 * called on the SDK's work threads only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "lxd.h"

/* ---- answers ---- */

void lxd_resp_free(struct lxd_resp *r)
{
	free(r->error);
	free(r->operation);
	json_decref(r->metadata);
	memset(r, 0, sizeof(*r));
}

static char *dup_json_str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s && s[0] ? strdup(s) : NULL;
}

static int code_of_http(int status)
{
	if (status == 404)
		return PROTO_E_NOT_FOUND;
	if (status == 409)
		return PROTO_E_ALREADY_EXISTS;
	return PROTO_E_DRIVER;
}

int lxd_parse(const char *body, size_t len, long http, struct lxd_resp *r, char *err,
	      size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	const char *type;
	int rc = 0;

	memset(r, 0, sizeof(*r));
	r->http = http;
	root = json_loadb(body ? body : "", len, 0, &jerr);
	if (!root || !json_is_object(root)) {
		snprintf(err, errlen, "LXD answered something that is not its JSON (HTTP %ld): %s", http,
			 root ? "not an object" : jerr.text);
		json_decref(root);
		return PROTO_E_DRIVER;
	}
	type = json_string_value(json_object_get(root, "type"));
	r->error = dup_json_str(root, "error");
	r->operation = dup_json_str(root, "operation");
	r->metadata = json_incref(json_object_get(root, "metadata"));
	if (json_is_null(r->metadata)) {
		json_decref(r->metadata);
		r->metadata = NULL;
	}
	if (type && !strcmp(type, "sync")) {
		r->kind = LXD_SYNC;
		r->code = (int)json_integer_value(json_object_get(root, "status_code"));
	} else if (type && !strcmp(type, "async")) {
		r->kind = LXD_ASYNC;
		r->code = (int)json_integer_value(json_object_get(root, "status_code"));
		if (!r->operation) {
			snprintf(err, errlen, "LXD answered async without an operation (HTTP %ld)", http);
			rc = PROTO_E_DRIVER;
		}
	} else {
		r->kind = LXD_ERROR;
		r->code = (int)json_integer_value(json_object_get(root, "error_code"));
		if (r->code == 0)
			r->code = (int)http;
		snprintf(err, errlen, "LXD: %s (status %d)", r->error ? r->error : "unknown error",
			 r->code);
		rc = code_of_http(r->code);
	}
	json_decref(root);
	return rc;
}

int lxd_operation_result(const json_t *op, char *err, size_t errlen)
{
	json_int_t code = json_integer_value(json_object_get(op, "status_code"));
	const char *why = json_string_value(json_object_get(op, "err"));
	const char *desc = json_string_value(json_object_get(op, "description"));

	if (code == 200)
		return 0;
	if (code == 100 || code == 103 || code == 105) { /* created, running, pending */
		snprintf(err, errlen, "LXD's operation %s is still running", desc ? desc : "");
		return PROTO_E_TIMEOUT;
	}
	snprintf(err, errlen, "%s%s%s", desc ? desc : "LXD's operation", why && why[0] ? ": " : " failed",
		 why && why[0] ? why : "");
	return PROTO_E_DRIVER;
}

enum proto_state lxd_state_of(const char *status)
{
	static const struct {
		const char *lxd;
		enum proto_state state;
	} map[] = {
		{ "Running", PROTO_STATE_RUNNING },   { "Stopped", PROTO_STATE_STOPPED },
		{ "Frozen", PROTO_STATE_SUSPENDED },  { "Starting", PROTO_STATE_STARTING },
		{ "Stopping", PROTO_STATE_STOPPING }, { "Freezing", PROTO_STATE_SUSPENDING },
		{ "Thawed", PROTO_STATE_RUNNING },
	};

	for (size_t i = 0; status && i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(status, map[i].lxd))
			return map[i].state;
	return PROTO_STATE_UNKNOWN;
}

static size_t ipv4_of_iface(const json_t *iface, char out[][64], size_t n, size_t max)
{
	const json_t *addrs = json_object_get(iface, "addresses");
	size_t i;
	json_t *a;

	json_array_foreach(addrs, i, a) {
		const char *family = json_string_value(json_object_get(a, "family"));
		const char *scope = json_string_value(json_object_get(a, "scope"));
		const char *addr = json_string_value(json_object_get(a, "address"));

		if (n >= max)
			break;
		if (!family || strcmp(family, "inet") || !addr || (scope && strcmp(scope, "global")))
			continue;
		snprintf(out[n++], 64, "%s", addr);
	}
	return n;
}

size_t lxd_state_ipv4(const json_t *state, char out[][64], size_t max)
{
	const json_t *net = json_object_get(state, "network");
	const char *name;
	json_t *iface;
	size_t n = 0;

	if (!json_is_object(net))
		return 0;
	n = ipv4_of_iface(json_object_get(net, "eth0"), out, n, max);
	json_object_foreach((json_t *)net, name, iface) {
		if (!strcmp(name, "eth0") || !strcmp(name, "lo"))
			continue;
		n = ipv4_of_iface(iface, out, n, max);
	}
	return n;
}

/* ---- transport ---- */

#define LXD_BODY_MAX (32u << 20)

struct body {
	char *s;
	size_t len;
	bool too_big;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct body *b = ud;
	size_t n = size * nmemb;
	char *grown;

	if (b->len + n > LXD_BODY_MAX) {
		b->too_big = true;
		return 0;
	}
	grown = realloc(b->s, b->len + n + 1);
	if (!grown)
		return 0;
	b->s = grown;
	memcpy(b->s + b->len, data, n);
	b->len += n;
	b->s[b->len] = '\0';
	return n;
}

/* The options every request to LXD's socket has; url receives its URL. */
static void lxd_easy_setup(CURL *c, const char *socket_path, const char *method, const char *path,
			   char *url, size_t urllen, char *cerr, double timeout_s)
{
	snprintf(url, urllen, "http://lxd%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	if (timeout_s > 0)
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
}

/* 0 when cc is CURLE_OK; else the error, in err, of a request that got no
 * answer (why: libcurl's error text, or the caller's). */
static int lxd_curl_failure(CURLcode cc, const char *socket_path, const char *method,
			    const char *path, double timeout_s, const char *why, char *err,
			    size_t errlen)
{
	const char *text = why && why[0] ? why : curl_easy_strerror(cc);

	if (cc == CURLE_OK)
		return 0;
	if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST) {
		snprintf(err, errlen, "LXD socket %s: %s; is lxd running?", socket_path, text);
		return PROTO_E_UNAVAILABLE;
	}
	if (cc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(err, errlen, "LXD did not answer %s %s within %.0f s", method, path, timeout_s);
		return PROTO_E_TIMEOUT;
	}
	snprintf(err, errlen, "LXD %s %s: %s", method, path, text);
	return PROTO_E_DRIVER;
}

/* One request: a JSON body, a file as the body (upload), or a split
 * image as multipart/form-data (split). */
static int lxd_request(const char *socket_path, const char *method, const char *path,
		       const char *body, const char *upload, const struct lxd_split *split,
		       double timeout_s, struct lxd_resp *r, char *err, size_t errlen)
{
	struct body got = { 0 };
	struct curl_slist *headers = NULL;
	char url[4200], cerr[CURL_ERROR_SIZE] = "";
	curl_mime *mime = NULL;
	FILE *up = NULL;
	long http = 0;
	CURL *c;
	CURLcode cc;
	int rc;

	memset(r, 0, sizeof(*r));
	c = curl_easy_init();
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return PROTO_E_NOMEM;
	}
	lxd_easy_setup(c, socket_path, method, path, url, sizeof(url), cerr, timeout_s);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
	if (split) {
		curl_mimepart *part;

		mime = curl_mime_init(c);
		part = mime ? curl_mime_addpart(mime) : NULL;
		if (!part || curl_mime_name(part, "metadata") != CURLE_OK ||
		    curl_mime_filename(part, "metadata.tar") != CURLE_OK ||
		    curl_mime_data(part, split->metadata, split->metadata_len) != CURLE_OK ||
		    !(part = curl_mime_addpart(mime)) ||
		    curl_mime_name(part, split->rootfs_part) != CURLE_OK ||
		    curl_mime_filedata(part, split->rootfs) != CURLE_OK) {
			snprintf(err, errlen, "cannot make the upload of %s", split->rootfs);
			rc = PROTO_E_NOMEM;
			goto out_cleanup;
		}
		curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	} else if (upload) {
		struct stat st;

		up = fopen(upload, "rb");
		if (!up || fstat(fileno(up), &st) < 0) {
			snprintf(err, errlen, "cannot read %s: %s", upload, strerror(errno));
			rc = PROTO_E_IO;
			goto out_cleanup;
		}
		headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READDATA, up);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)st.st_size);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	} else if (body) {
		headers = curl_slist_append(headers, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (headers)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	cc = curl_easy_perform(c);
	rc = lxd_curl_failure(cc, socket_path, method, path, timeout_s,
			      got.too_big ? "answer too large" : cerr, err, errlen);
	if (rc < 0)
		goto out_cleanup;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
	rc = lxd_parse(got.s, got.len, http, r, err, errlen);
out_cleanup:
	if (up)
		fclose(up);
	curl_slist_free_all(headers);
	curl_easy_cleanup(c);
	curl_mime_free(mime);
	free(got.s);
	return rc;
}

int lxd_call(const char *socket_path, const char *method, const char *path, const char *body,
	     const char *upload, double timeout_s, struct lxd_resp *r, char *err, size_t errlen)
{
	return lxd_request(socket_path, method, path, body, upload, NULL, timeout_s, r, err, errlen);
}

/* After an answer of call: its operation awaited, when it is async. */
static int lxd_await(const char *socket_path, int rc, double timeout_s, struct lxd_resp *r,
		     char *err, size_t errlen)
{
	char wait_path[512];
	struct lxd_resp op;

	if (rc < 0 || r->kind != LXD_ASYNC)
		return rc;
	/* The operation: LXD holds the request until it ends or the timeout. */
	snprintf(wait_path, sizeof(wait_path), "%s/wait?timeout=%d", r->operation,
		 timeout_s > 0 ? (int)timeout_s : -1);
	rc = lxd_call(socket_path, "GET", wait_path, NULL, NULL, timeout_s > 0 ? timeout_s + 5 : 0,
		      &op, err, errlen);
	if (rc == 0)
		rc = lxd_operation_result(op.metadata, err, errlen);
	if (rc == 0) {
		json_decref(r->metadata);
		r->metadata = json_incref(op.metadata);
	}
	lxd_resp_free(&op);
	return rc;
}

/* ---- raw transfers: files and an exec's recorded output ---- */

struct raw_body {
	char *s;
	size_t len, max;
	bool truncated;
};

static size_t on_raw_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct raw_body *b = ud;
	size_t n = size * nmemb, take = n;
	char *grown;

	if (b->len + take > b->max) {
		take = b->max - b->len;
		b->truncated = true;
	}
	grown = realloc(b->s, b->len + take + 1);
	if (!grown)
		return 0;
	b->s = grown;
	memcpy(b->s + b->len, data, take);
	b->len += take;
	b->s[b->len] = '\0';
	/* Past max: stop the transfer (lxd_raw takes that as the end). */
	return b->truncated ? 0 : n;
}

int lxd_raw(const char *socket_path, const char *method, const char *path, const void *body,
	    size_t body_len, const char *const *headers, size_t max, double timeout_s, char **out,
	    size_t *out_len, bool *truncated, char *err, size_t errlen)
{
	struct raw_body got = { .max = max };
	struct curl_slist *hl = NULL;
	char url[4200], cerr[CURL_ERROR_SIZE] = "";
	long http = 0;
	CURL *c;
	CURLcode cc;
	int rc = 0;

	if (out) {
		*out = NULL;
		*out_len = 0;
		*truncated = false;
	}
	c = curl_easy_init();
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return PROTO_E_NOMEM;
	}
	lxd_easy_setup(c, socket_path, method, path, url, sizeof(url), cerr, timeout_s);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_raw_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
	for (size_t i = 0; headers && headers[i]; i++)
		hl = curl_slist_append(hl, headers[i]);
	if (body) {
		hl = curl_slist_append(hl, "Content-Type: application/octet-stream");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	if (hl)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	cc = curl_easy_perform(c);
	if (cc == CURLE_WRITE_ERROR && got.truncated)
		cc = CURLE_OK;
	rc = lxd_curl_failure(cc, socket_path, method, path, timeout_s, cerr, err, errlen);
	if (rc < 0)
		goto out_cleanup;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
	if (http >= 300) {
		struct lxd_resp r;

		/* An error is LXD's JSON, whatever the request. */
		rc = lxd_parse(got.s, got.len, http, &r, err, errlen);
		if (rc == 0) {
			snprintf(err, errlen, "LXD %s %s: HTTP %ld", method, path, http);
			rc = PROTO_E_DRIVER;
		}
		lxd_resp_free(&r);
		goto out_cleanup;
	}
	if (out) {
		*out = got.s;
		*out_len = got.len;
		*truncated = got.truncated;
		got.s = NULL;
	}
out_cleanup:
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	free(got.s);
	return rc;
}

int lxd_sync(const char *socket_path, const char *method, const char *path, const char *body,
	     const char *upload, double timeout_s, struct lxd_resp *r, char *err, size_t errlen)
{
	int rc = lxd_call(socket_path, method, path, body, upload, timeout_s, r, err, errlen);

	return lxd_await(socket_path, rc, timeout_s, r, err, errlen);
}

int lxd_sync_split(const char *socket_path, const char *path, const struct lxd_split *split,
		   double timeout_s, struct lxd_resp *r, char *err, size_t errlen)
{
	int rc = lxd_request(socket_path, "POST", path, NULL, NULL, split, timeout_s, r, err, errlen);

	return lxd_await(socket_path, rc, timeout_s, r, err, errlen);
}
