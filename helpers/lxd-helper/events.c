/*
 * LXD's event stream: GET /1.0/events?type=lifecycle on LXD's socket is a
 * websocket (LXD 5.0 has no long poll), and libcurl here (7.88) has no
 * websocket client, so this is a small one: the upgrade request, then
 * frames read on the helper's loop without blocking (an ev_io), text
 * messages parsed for the instance and the action, pings answered.
 *
 * An event does not carry the state: it tells ops.c that an instance
 * changed, and ops.c asks LXD at once (the poll), which also tells a
 * deleted instance from a stopped one. A stream that breaks is connected
 * again after LXD_EVENTS_RETRY seconds; meanwhile the poll runs as before.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "lxd.h"

#define LXD_EVENTS_RETRY 5.0
#define LXD_EVENTS_BUF_MAX (1u << 20) /* one event is a few kB */

/* ---- frames and events (pure, unit-tested) ---- */

long lxd_ws_frame(const unsigned char *buf, size_t len, struct lxd_ws_frame *f)
{
	uint64_t plen;
	size_t head = 2;
	bool masked;

	if (len < 2)
		return 0;
	f->fin = buf[0] & 0x80;
	f->opcode = buf[0] & 0x0f;
	if (buf[0] & 0x70)
		return -1; /* no extension was negotiated */
	masked = buf[1] & 0x80;
	plen = buf[1] & 0x7f;
	if (plen == 126) {
		if (len < 4)
			return 0;
		plen = (uint64_t)buf[2] << 8 | buf[3];
		head = 4;
	} else if (plen == 127) {
		if (len < 10)
			return 0;
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = plen << 8 | buf[2 + i];
		head = 10;
	}
	if (plen > LXD_EVENTS_BUF_MAX)
		return -1;
	if (masked)
		head += 4;
	if (len < head + plen)
		return 0;
	f->payload = buf + head;
	f->len = (size_t)plen;
	if (masked) { /* a server must not mask, but unmasking costs nothing */
		unsigned char *p = (unsigned char *)buf + head;

		for (size_t i = 0; i < f->len; i++)
			p[i] ^= buf[head - 4 + (i & 3)];
	}
	return (long)(head + plen);
}

size_t lxd_ws_pack(unsigned char *out, size_t cap, int opcode, const void *payload, size_t len,
		   const unsigned char mask[4])
{
	const unsigned char *p = payload;

	/* Control frames only (pong, close): at most 125 bytes. */
	if (len > 125 || cap < 6 + len)
		return 0;
	out[0] = (unsigned char)(0x80 | (opcode & 0x0f));
	out[1] = (unsigned char)(0x80 | len);
	memcpy(out + 2, mask, 4);
	for (size_t i = 0; i < len; i++)
		out[6 + i] = p[i] ^ mask[i & 3];
	return 6 + len;
}

int lxd_event_parse(const char *text, size_t len, char *name, size_t namelen, char *action,
		    size_t actionlen)
{
	json_t *root = json_loadb(text, len, 0, NULL);
	const json_t *meta = json_object_get(root, "metadata");
	const char *type = json_string_value(json_object_get(root, "type"));
	const char *act = json_string_value(json_object_get(meta, "action"));
	const char *src = json_string_value(json_object_get(meta, "source"));
	static const char prefix[] = "/1.0/instances/";
	size_t n;
	int rc = -1;

	if (!type || strcmp(type, "lifecycle") || !act || strncmp(act, "instance-", 9) || !src ||
	    strncmp(src, prefix, sizeof(prefix) - 1))
		goto out;
	src += sizeof(prefix) - 1;
	n = strcspn(src, "/?"); /* a snapshot's or a backup's source goes on */
	if (n == 0 || n >= namelen)
		goto out;
	memcpy(name, src, n);
	name[n] = '\0';
	snprintf(action, actionlen, "%s", act);
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* ---- the connection, on the loop ---- */

static char ev_socket[4096];
static lxd_event_fn ev_changed;
static int ev_fd = -1;
static ev_io ev_read;
static ev_timer ev_retry;
static unsigned char *ev_buf;
static size_t ev_len;
static bool ev_upgraded, ev_logged_down, ev_stopping;
static char *ev_msg; /* a text message in fragments */
static size_t ev_msg_len;

static void events_connect(void);

static void events_close(const char *why)
{
	if (ev_fd >= 0) {
		ev_ref(vmh_loop()); /* the watcher was unref'd when it started */
		ev_io_stop(vmh_loop(), &ev_read);
		close(ev_fd);
		ev_fd = -1;
	}
	free(ev_buf);
	ev_buf = NULL;
	ev_len = 0;
	free(ev_msg);
	ev_msg = NULL;
	ev_msg_len = 0;
	if (ev_upgraded || !ev_logged_down)
		vmh_log(VMH_WARN, "LXD's event stream: %s; states are polled until it is back", why);
	ev_logged_down = true;
	ev_upgraded = false;
	if (!ev_stopping && !ev_is_active(&ev_retry)) {
		ev_timer_set(&ev_retry, LXD_EVENTS_RETRY, 0);
		ev_timer_start(vmh_loop(), &ev_retry);
		ev_unref(vmh_loop());
	}
}

static void events_send(const unsigned char *data, size_t len)
{
	/* Small control frames on an idle socket: a short write is a broken stream. */
	if (send(ev_fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
		events_close("cannot answer LXD");
}

static void events_message(const char *text, size_t len)
{
	char name[PROTO_NAME_MAX + 1], action[64];

	if (lxd_event_parse(text, len, name, sizeof(name), action, sizeof(action)) < 0)
		return;
	vmh_log(VMH_DEBUG, "%s: LXD event %s", name, action);
	ev_changed(name, action);
}

/* Every whole frame in the buffer; false when the stream is closed. */
static bool events_frames(void)
{
	static const unsigned char mask[4] = { 0x5c, 0x21, 0x7e, 0x03 };
	size_t off = 0;

	for (;;) {
		struct lxd_ws_frame f;
		unsigned char out[140];
		long n = lxd_ws_frame(ev_buf + off, ev_len - off, &f);
		char *grown;

		if (n == 0)
			break;
		if (n < 0) {
			events_close("LXD sent a frame this helper cannot read");
			return false;
		}
		off += (size_t)n;
		switch (f.opcode) {
		case 0x0: /* continuation */
		case 0x1: /* text */
			if (f.opcode == 0x1 && ev_msg_len == 0 && f.fin) {
				events_message((const char *)f.payload, f.len);
				break;
			}
			if (ev_msg_len + f.len > LXD_EVENTS_BUF_MAX ||
			    !(grown = realloc(ev_msg, ev_msg_len + f.len + 1))) {
				events_close("an event too large");
				return false;
			}
			ev_msg = grown;
			memcpy(ev_msg + ev_msg_len, f.payload, f.len);
			ev_msg_len += f.len;
			if (f.fin) {
				events_message(ev_msg, ev_msg_len);
				ev_msg_len = 0;
			}
			break;
		case 0x8: /* close */
			events_close("LXD closed it");
			return false;
		case 0x9: /* ping */
			if (f.len <= 125) {
				events_send(out, lxd_ws_pack(out, sizeof(out), 0xA, f.payload, f.len, mask));
				if (ev_fd < 0)
					return false;
			}
			break;
		default: /* binary, pong: nothing for us */
			break;
		}
	}
	memmove(ev_buf, ev_buf + off, ev_len - off);
	ev_len -= off;
	return true;
}

static void on_events_read(struct ev_loop *loop, ev_io *w, int revents)
{
	unsigned char *grown;
	ssize_t n;

	(void)loop;
	(void)w;
	(void)revents;
	if (ev_len == LXD_EVENTS_BUF_MAX) {
		events_close("LXD sent more than this helper reads at once");
		return;
	}
	grown = realloc(ev_buf, LXD_EVENTS_BUF_MAX);
	if (!grown) {
		events_close("out of memory");
		return;
	}
	ev_buf = grown;
	n = recv(ev_fd, ev_buf + ev_len, LXD_EVENTS_BUF_MAX - ev_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		events_close(n == 0 ? "LXD closed the connection" : strerror(errno));
		return;
	}
	ev_len += (size_t)n;
	if (!ev_upgraded) {
		unsigned char *end = memmem(ev_buf, ev_len, "\r\n\r\n", 4);
		size_t head;

		if (!end) {
			if (ev_len > 16384)
				events_close("LXD's answer to the upgrade has no end");
			return;
		}
		head = (size_t)(end - ev_buf) + 4;
		if (ev_len < 12 || memcmp(ev_buf, "HTTP/1.1 101", 12) != 0) {
			char first[128];
			size_t l = strcspn((const char *)ev_buf, "\r\n");

			snprintf(first, sizeof(first), "LXD refused the websocket: %.*s",
				 (int)(l < 100 ? l : 100), (const char *)ev_buf);
			events_close(first);
			return;
		}
		memmove(ev_buf, ev_buf + head, ev_len - head);
		ev_len -= head;
		ev_upgraded = true;
		ev_logged_down = false;
		vmh_log(VMH_INFO, "following LXD's lifecycle events (%s)", ev_socket);
		/* What changed while the stream was down is caught by one poll now. */
		ev_changed(NULL, "connected");
		if (ev_fd < 0)
			return;
	}
	events_frames();
}

static void events_connect(void)
{
	static const char req[] = "GET /1.0/events?type=lifecycle HTTP/1.1\r\n"
				  "Host: lxd\r\n"
				  "Upgrade: websocket\r\n"
				  "Connection: Upgrade\r\n"
				  "Sec-WebSocket-Key: dm1jdGwtbHhkLWhlbHBlcg==\r\n"
				  "Sec-WebSocket-Version: 13\r\n"
				  "\r\n";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char why[256];

	if (strlen(ev_socket) >= sizeof(sa.sun_path)) {
		events_close("the socket's path is too long for a unix socket");
		return;
	}
	memcpy(sa.sun_path, ev_socket, strlen(ev_socket) + 1);
	ev_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (ev_fd < 0) {
		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		events_close(why);
		return;
	}
	/* A unix socket connects at once or not at all (EAGAIN: backlog full). */
	if (connect(ev_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    send(ev_fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1)) {
		snprintf(why, sizeof(why), "cannot connect to %s: %s", ev_socket, strerror(errno));
		close(ev_fd);
		ev_fd = -1;
		events_close(why);
		return;
	}
	ev_io_init(&ev_read, on_events_read, ev_fd, EV_READ);
	ev_io_start(vmh_loop(), &ev_read);
	/* The stream alone must not keep the helper's loop alive. */
	ev_unref(vmh_loop());
}

static void on_events_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)t;
	(void)revents;
	ev_ref(loop);
	events_connect();
}

void lxd_events_start(const char *socket_path, lxd_event_fn changed)
{
	snprintf(ev_socket, sizeof(ev_socket), "%s", socket_path);
	ev_changed = changed;
	ev_stopping = false;
	ev_timer_init(&ev_retry, on_events_retry, LXD_EVENTS_RETRY, 0);
	events_connect();
}

bool lxd_events_connected(void)
{
	return ev_upgraded;
}

void lxd_events_stop(void)
{
	ev_stopping = true;
	if (ev_is_active(&ev_retry)) {
		ev_ref(vmh_loop());
		ev_timer_stop(vmh_loop(), &ev_retry);
	}
	if (ev_fd >= 0) {
		ev_ref(vmh_loop());
		ev_io_stop(vmh_loop(), &ev_read);
		close(ev_fd);
		ev_fd = -1;
	}
	free(ev_buf);
	ev_buf = NULL;
	ev_len = 0;
	free(ev_msg);
	ev_msg = NULL;
	ev_msg_len = 0;
	ev_upgraded = false;
}
