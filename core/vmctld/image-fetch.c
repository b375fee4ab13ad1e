/*
 * HTTP transfers for the image resolver: libcurl's multi interface driven by
 * the broker's libev loop (curl tells us which sockets and which timeout to
 * watch; libev tells curl when they are ready). Nothing here blocks.
 * Each transfer hashes its body with SHA-256 as it arrives and retries
 * transient failures with exponential backoff. A file transfer cut short
 * resumes where it stopped (an HTTP range request), so the hash simply goes
 * on; a server that ignores ranges makes it start over.
 */
#include "image-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ev.h>
#include <openssl/evp.h>
#include <vmproto/proto.h>

struct img_fetcher {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;
	struct img_fetch_tuning tuning;
	struct img_xfer *xfers; /* every live transfer, for img_fetcher_free */
	int in_curl;            /* > 0 while libcurl may be calling us back */
};

struct img_sock {
	ev_io io;
	struct img_fetcher *f;
};

struct img_xfer {
	struct img_fetcher *f;
	struct img_xfer *next, *prev;
	CURL *easy;
	char *url;
	int fd;
	size_t mem_max;
	uint64_t expect_size;
	char *mem;
	size_t mem_len, mem_cap;
	EVP_MD_CTX *md;
	uint64_t bytes;
	uint64_t resume_from; /* bytes kept from earlier attempts (files only) */
	bool no_resume;       /* the server ignored a range request */
	int attempt;
	bool in_multi;
	bool cancelled;
	int write_err; /* errno of a failed write to fd, or -1 for "too large" */
	ev_timer retry;
	img_xfer_progress_fn progress;
	img_xfer_done_fn done;
	void *ud;
	char curl_err[CURL_ERROR_SIZE];
	char errmsg[IMG_ERRLEN];
};

static const struct img_fetch_tuning default_tuning = {
	.attempts = 3,
	.backoff = 1.0,
	.low_speed_time = 30,
	.low_speed_limit = 1024,
	.connect_timeout = 30,
};

/* ---- libev <-> libcurl plumbing ---- */

static void fetcher_check_done(struct img_fetcher *f);

static void fetcher_socket_action(struct img_fetcher *f, curl_socket_t s, int flags)
{
	int running;

	f->in_curl++;
	curl_multi_socket_action(f->multi, s, flags, &running);
	f->in_curl--;
	fetcher_check_done(f);
}

static void sock_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct img_sock *sk = w->data;
	int flags = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);

	fetcher_socket_action(sk->f, w->fd, flags);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	fetcher_socket_action(w->data, CURL_SOCKET_TIMEOUT, 0);
}

static int curl_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct img_fetcher *f = userp;
	struct img_sock *sk = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (sk) {
			ev_io_stop(f->loop, &sk->io);
			curl_multi_assign(f->multi, s, NULL);
			free(sk);
		}
		return 0;
	}
	if (!sk) {
		sk = calloc(1, sizeof(*sk));
		if (!sk)
			return -1;
		sk->f = f;
		sk->io.data = sk;
		curl_multi_assign(f->multi, s, sk);
	} else {
		ev_io_stop(f->loop, &sk->io);
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	ev_io_init(&sk->io, sock_cb, s, events);
	sk->io.data = sk;
	ev_io_start(f->loop, &sk->io);
	return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct img_fetcher *f = userp;

	ev_timer_stop(f->loop, &f->timer);
	if (timeout_ms >= 0) {
		/* Even a 0 timeout goes through the loop: libcurl must not be
		 * re-entered from this callback. */
		ev_timer_set(&f->timer, (double)timeout_ms / 1000.0, 0.);
		ev_timer_start(f->loop, &f->timer);
	}
	return 0;
}

struct img_fetcher *img_fetcher_new(struct ev_loop *loop)
{
	static bool curl_ready;
	struct img_fetcher *f;

	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return NULL;
		curl_ready = true;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->loop = loop;
	f->tuning = default_tuning;
	f->multi = curl_multi_init();
	if (!f->multi) {
		free(f);
		return NULL;
	}
	ev_timer_init(&f->timer, timer_cb, 0., 0.);
	f->timer.data = f;
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
	return f;
}

static void xfer_free(struct img_xfer *x);

void img_fetcher_free(struct img_fetcher *f)
{
	if (!f)
		return;
	while (f->xfers)
		xfer_free(f->xfers);
	ev_timer_stop(f->loop, &f->timer);
	curl_multi_cleanup(f->multi);
	free(f);
}

void img_fetcher_tune(struct img_fetcher *f, const struct img_fetch_tuning *t)
{
	f->tuning = *t;
	if (f->tuning.attempts < 1)
		f->tuning.attempts = 1;
}

const struct img_fetch_tuning *img_fetcher_tuning(const struct img_fetcher *f)
{
	return &f->tuning;
}

/* ---- one transfer ---- */

static void xfer_free(struct img_xfer *x)
{
	struct img_fetcher *f = x->f;

	if (x->in_multi)
		curl_multi_remove_handle(f->multi, x->easy);
	ev_timer_stop(f->loop, &x->retry);
	if (x->prev)
		x->prev->next = x->next;
	else
		f->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
	curl_easy_cleanup(x->easy);
	EVP_MD_CTX_free(x->md);
	free(x->mem);
	free(x->url);
	free(x);
}

static size_t xfer_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	struct img_xfer *x = ud;
	size_t len = size * nmemb;

	if (x->cancelled)
		return 0;
	if (x->fd >= 0) {
		const char *p = data;
		size_t left = len;
		while (left > 0) {
			ssize_t n = write(x->fd, p, left);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				x->write_err = errno;
				return 0;
			}
			p += n;
			left -= (size_t)n;
		}
	} else {
		if (x->mem_len + len > x->mem_max) {
			x->write_err = -1;
			return 0;
		}
		if (x->mem_len + len + 1 > x->mem_cap) {
			size_t cap = x->mem_cap ? x->mem_cap : 65536;
			while (cap < x->mem_len + len + 1)
				cap *= 2;
			char *m = realloc(x->mem, cap);
			if (!m) {
				x->write_err = ENOMEM;
				return 0;
			}
			x->mem = m;
			x->mem_cap = cap;
		}
		memcpy(x->mem + x->mem_len, data, len);
		x->mem_len += len;
		x->mem[x->mem_len] = '\0';
	}
	EVP_DigestUpdate(x->md, data, len);
	x->bytes += len;
	return len;
}

static int xfer_progress_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			    curl_off_t ulnow)
{
	struct img_xfer *x = ud;
	curl_off_t speed = 0;
	uint64_t total = dltotal > 0 ? x->resume_from + (uint64_t)dltotal : x->expect_size;

	if (x->cancelled)
		return 1;
	if (x->progress && dlnow > 0) {
		curl_easy_getinfo(x->easy, CURLINFO_SPEED_DOWNLOAD_T, &speed);
		x->progress(x->ud, x->resume_from + (uint64_t)dlnow, total, (double)speed);
	}
	return x->cancelled ? 1 : 0;
}

static int xfer_reset_body(struct img_xfer *x)
{
	x->bytes = 0;
	x->mem_len = 0;
	x->write_err = 0;
	x->curl_err[0] = '\0';
	if (x->fd >= 0 && (ftruncate(x->fd, 0) < 0 || lseek(x->fd, 0, SEEK_SET) < 0))
		return PROTO_E_IO;
	if (EVP_DigestInit_ex(x->md, EVP_sha256(), NULL) != 1)
		return PROTO_E_INTERNAL;
	return 0;
}

static int xfer_begin(struct img_xfer *x)
{
	int rc = 0;

	/* Keep what arrived if the file can simply be continued. */
	if (x->fd >= 0 && x->bytes > 0 && !x->no_resume && x->write_err == 0) {
		x->resume_from = x->bytes;
		x->curl_err[0] = '\0';
	} else {
		x->resume_from = 0;
		rc = xfer_reset_body(x);
	}
	if (rc < 0)
		return rc;
	curl_easy_setopt(x->easy, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)x->resume_from);
	x->attempt++;
	if (curl_multi_add_handle(x->f->multi, x->easy) != CURLM_OK)
		return PROTO_E_INTERNAL;
	x->in_multi = true;
	return 0;
}

static void xfer_finish(struct img_xfer *x, int err)
{
	struct img_xfer_result r = { .err = err };
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[65] = "";
	char errmsg[IMG_ERRLEN];

	if (err == 0) {
		EVP_DigestFinal_ex(x->md, md, &mdlen);
		for (unsigned int i = 0; i < mdlen && i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		r.sha256 = hex;
		r.body = x->fd < 0 ? (x->mem ? x->mem : "") : NULL;
		r.body_len = x->mem_len;
		r.bytes = x->bytes;
	} else {
		snprintf(errmsg, sizeof(errmsg), "%s", x->errmsg);
		r.errmsg = errmsg;
	}
	img_xfer_done_fn done = x->done;
	void *ud = x->ud;
	/* Free first, so done may start new transfers or free the fetcher. */
	char *keep_mem = x->mem;
	x->mem = NULL;
	xfer_free(x);
	done(ud, &r);
	free(keep_mem);
}

static void xfer_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct img_xfer *x = w->data;
	int rc = xfer_begin(x);

	if (rc < 0) {
		snprintf(x->errmsg, sizeof(x->errmsg), "download of %s failed: cannot restart the transfer",
			 x->url);
		xfer_finish(x, rc);
	}
}

/* Classify a finished attempt: 0 on success, else the error with x->errmsg set
 * and *transient telling whether another attempt may help. */
static int xfer_outcome(struct img_xfer *x, CURLcode cc, bool *transient)
{
	const struct img_fetch_tuning *t = &x->f->tuning;
	const char *detail = x->curl_err[0] ? x->curl_err : curl_easy_strerror(cc);
	long status = 0;
	curl_off_t clen = -1;

	*transient = false;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	switch (cc) {
	case CURLE_OK:
		return 0;
	case CURLE_HTTP_RETURNED_ERROR:
		snprintf(x->errmsg, sizeof(x->errmsg), "download of %s failed: the server answered HTTP %ld",
			 x->url, status);
		if (status == 404 || status == 410)
			return PROTO_E_NOT_FOUND;
		*transient = status >= 500 || status == 408 || status == 429;
		return *transient ? PROTO_E_UNAVAILABLE : PROTO_E_DRIVER;
	case CURLE_WRITE_ERROR:
		if (x->write_err == -1) {
			snprintf(x->errmsg, sizeof(x->errmsg),
				 "download of %s failed: the response is larger than %zu bytes", x->url,
				 x->mem_max);
			return PROTO_E_DRIVER;
		}
		snprintf(x->errmsg, sizeof(x->errmsg), "download of %s failed: cannot write the file: %s",
			 x->url, strerror(x->write_err ? x->write_err : EIO));
		return PROTO_E_IO;
	case CURLE_PARTIAL_FILE:
		curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
		if (clen > 0)
			snprintf(x->errmsg, sizeof(x->errmsg),
				 "download of %s was cut short: received %llu of %llu bytes", x->url,
				 (unsigned long long)x->bytes,
				 (unsigned long long)(x->resume_from + (uint64_t)clen));
		else
			snprintf(x->errmsg, sizeof(x->errmsg), "download of %s was cut short: %s", x->url,
				 detail);
		*transient = true;
		return PROTO_E_UNAVAILABLE;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(x->errmsg, sizeof(x->errmsg),
			 "download of %s failed: the server stopped sending (under %ld bytes/s for %ld s): %s",
			 x->url, t->low_speed_limit, t->low_speed_time, detail);
		*transient = true;
		return PROTO_E_UNAVAILABLE;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_SSL_CONNECT_ERROR:
		snprintf(x->errmsg, sizeof(x->errmsg), "download of %s failed: %s", x->url, detail);
		*transient = true;
		return PROTO_E_UNAVAILABLE;
	case CURLE_RANGE_ERROR:
		/* Asked to resume, the server sent the whole file again: start over. */
		snprintf(x->errmsg, sizeof(x->errmsg),
			 "download of %s failed: the server cannot resume a transfer", x->url);
		x->no_resume = true;
		*transient = true;
		return PROTO_E_UNAVAILABLE;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		snprintf(x->errmsg, sizeof(x->errmsg), "cannot download %s: %s", x->url, detail);
		return PROTO_E_INVALID_ARGUMENT;
	default:
		snprintf(x->errmsg, sizeof(x->errmsg), "download of %s failed: %s", x->url, detail);
		return PROTO_E_UNAVAILABLE;
	}
}

static void xfer_attempt_done(struct img_xfer *x, CURLcode cc)
{
	bool transient;
	int err;

	curl_multi_remove_handle(x->f->multi, x->easy);
	x->in_multi = false;
	if (x->cancelled) {
		xfer_free(x);
		return;
	}
	err = xfer_outcome(x, cc, &transient);
	if (err == 0 || !transient || x->attempt >= x->f->tuning.attempts) {
		if (err < 0 && x->attempt > 1) {
			size_t n = strlen(x->errmsg);
			snprintf(x->errmsg + n, sizeof(x->errmsg) - n, " (after %d attempts)", x->attempt);
		}
		xfer_finish(x, err);
		return;
	}
	double delay = x->f->tuning.backoff;
	for (int i = 1; i < x->attempt; i++)
		delay *= 2;
	ev_timer_set(&x->retry, delay, 0.);
	ev_timer_start(x->f->loop, &x->retry);
}

static void fetcher_check_done(struct img_fetcher *f)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(f->multi, &left))) {
		struct img_xfer *x = NULL;
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		if (x)
			xfer_attempt_done(x, msg->data.result);
	}
}

struct img_xfer *img_xfer_start(struct img_fetcher *f, const char *url, int fd, size_t mem_max,
				uint64_t expect_size, img_xfer_progress_fn progress,
				img_xfer_done_fn done, void *ud)
{
	const struct img_fetch_tuning *t = &f->tuning;
	struct img_xfer *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->f = f;
	x->fd = fd;
	x->mem_max = mem_max;
	x->expect_size = expect_size;
	x->progress = progress;
	x->done = done;
	x->ud = ud;
	x->url = strdup(url);
	x->md = EVP_MD_CTX_new();
	x->easy = curl_easy_init();
	ev_timer_init(&x->retry, xfer_retry_cb, 0., 0.);
	x->retry.data = x;
	x->next = f->xfers;
	if (f->xfers)
		f->xfers->prev = x;
	f->xfers = x;
	if (!x->url || !x->md || !x->easy)
		goto out_free;

	curl_easy_setopt(x->easy, CURLOPT_URL, url);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->curl_err);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, xfer_write_cb);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_XFERINFOFUNCTION, xfer_progress_cb);
	curl_easy_setopt(x->easy, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(x->easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(x->easy, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "vmctl/0.1.0");
	curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT, t->connect_timeout);
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_LIMIT, t->low_speed_limit);
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_TIME, t->low_speed_time);
	if (xfer_begin(x) < 0)
		goto out_free;
	return x;
out_free:
	xfer_free(x);
	return NULL;
}

void img_xfer_cancel(struct img_xfer *x)
{
	if (!x)
		return;
	if (x->f->in_curl > 0 && x->in_multi) {
		/* Inside a libcurl callback the handle cannot be removed: make the
		 * write/progress callbacks abort it; it is freed when it ends. */
		x->cancelled = true;
		return;
	}
	xfer_free(x);
}
