/*
 * A look at a guest's SSH port that costs no process and never blocks the
 * loop: a non-blocking connect, then up to wait_s for the "SSH-" banner.
 *
 * Behind QEMU's user-mode network the connect itself always succeeds (QEMU
 * accepts it, then tries the guest), so only what comes back tells: the
 * banner (sshd answers), a close or reset (the guest refused: its network is
 * up, sshd is not listening yet) or silence (the guest's network is not up,
 * or sshd is too slow to greet within the wait).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "readiness.h"

#define PROBE_BUF 256

struct probe {
	int fd;
	bool connected;
	enum probe_result result; /* for an early end, reported from the loop */
	ev_io io_w;
	ev_timer timer_w;
	char buf[PROBE_BUF];
	size_t len;
	probe_done_fn done;
	void *ud;
};

static int probe_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	return PROTO_E_INVALID_ARGUMENT;
}

bool probe_host_usable(const char *host)
{
	struct sockaddr_storage ss;
	socklen_t len;

	return host && probe_addr(host, 22, &ss, &len) == 0;
}

static void probe_free(struct probe *p)
{
	ev_io_stop(B->loop, &p->io_w);
	ev_timer_stop(B->loop, &p->timer_w);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}

static void probe_finish(struct probe *p, enum probe_result result)
{
	probe_done_fn done = p->done;
	void *ud = p->ud;

	probe_free(p);
	done(ud, result);
}

/* Lines before the banner are allowed (RFC 4253 4.2); only a line that
 * starts with "SSH-" is one. */
static bool probe_has_banner(const struct probe *p)
{
	const char *line = p->buf;
	const char *end = p->buf + p->len;

	while (line < end) {
		size_t left = (size_t)(end - line);

		if (left >= 4 && memcmp(line, "SSH-", 4) == 0)
			return true;
		line = memchr(line, '\n', left);
		if (!line)
			break;
		line++;
	}
	return false;
}

static void probe_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct probe *p = w->data;
	ssize_t n;

	if (!p->connected) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
			probe_finish(p, PROBE_CLOSED);
			return;
		}
		p->connected = true;
		ev_io_stop(loop, w);
		ev_io_set(w, p->fd, EV_READ);
		ev_io_start(loop, w);
		return;
	}
	n = read(p->fd, p->buf + p->len, sizeof(p->buf) - 1 - p->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		probe_finish(p, PROBE_CLOSED);
		return;
	}
	p->len += (size_t)n;
	p->buf[p->len] = '\0';
	if (probe_has_banner(p)) {
		probe_finish(p, PROBE_BANNER);
		return;
	}
	/* A full buffer with no banner in it is not sshd: as good as closed. */
	if (p->len == sizeof(p->buf) - 1)
		probe_finish(p, PROBE_CLOSED);
}

static void probe_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct probe *p = w->data;

	/* fd < 0: the connect failed at once and the result waited for the loop. */
	probe_finish(p, p->fd < 0 ? p->result : PROBE_SILENT);
}

struct probe *probe_start(const char *host, int port, double wait_s, probe_done_fn done, void *ud)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct probe *p;

	if (!host || probe_addr(host, port, &ss, &sslen) < 0)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->done = done;
	p->ud = ud;
	ev_io_init(&p->io_w, probe_on_io, -1, EV_WRITE);
	p->io_w.data = p;
	ev_timer_init(&p->timer_w, probe_on_timer, wait_s > 0 ? wait_s : 0, 0);
	p->timer_w.data = p;
	p->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd >= 0 && connect(p->fd, (struct sockaddr *)&ss, sslen) < 0 &&
	    errno != EINPROGRESS) {
		close(p->fd);
		p->fd = -1;
	}
	if (p->fd < 0) {
		/* Refused at once (nothing listens on the host side yet): say so
		 * from the loop, never before returning. */
		p->result = PROBE_CLOSED;
		ev_timer_set(&p->timer_w, 0, 0);
		ev_timer_start(B->loop, &p->timer_w);
		return p;
	}
	ev_io_set(&p->io_w, p->fd, EV_WRITE);
	ev_io_start(B->loop, &p->io_w);
	ev_timer_start(B->loop, &p->timer_w);
	return p;
}

void probe_cancel(struct probe *p)
{
	if (p)
		probe_free(p);
}
