/*
 * A short QMP conversation over the VM's unix socket: read the greeting,
 * negotiate capabilities, run one command, close. Every step shares one
 * deadline, so a wedged qemu costs at most timeout_s.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qh.h"

#define QMP_LINE_MAX (1024 * 1024)

struct qmp {
	int fd;
	double deadline;
	char *buf;
	size_t len, cap;
};

static double qmp_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int qmp_wait(struct qmp *q, short events)
{
	struct pollfd p = {.fd = q->fd, .events = events};
	int left, rc;

	for (;;) {
		left = (int)((q->deadline - qmp_now()) * 1000);
		if (left <= 0)
			return PROTO_E_TIMEOUT;
		rc = poll(&p, 1, left);
		if (rc > 0)
			return 0;
		if (rc == 0)
			return PROTO_E_TIMEOUT;
		if (errno != EINTR)
			return PROTO_E_IO;
	}
}

/* The next JSON message (one per line). */
static int qmp_read(struct qmp *q, json_t **msg)
{
	for (;;) {
		char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;

		if (nl) {
			json_error_t jerr;
			size_t line = (size_t)(nl - q->buf) + 1;

			*msg = json_loadb(q->buf, line, 0, &jerr);
			memmove(q->buf, q->buf + line, q->len - line);
			q->len -= line;
			if (!*msg || !json_is_object(*msg)) {
				json_decref(*msg);
				*msg = NULL;
				return PROTO_E_PROTOCOL;
			}
			return 0;
		}
		if (q->len + 4096 > q->cap) {
			size_t cap = q->cap ? q->cap * 2 : 8192;
			char *nb;

			if (cap > QMP_LINE_MAX)
				return PROTO_E_PROTOCOL;
			nb = realloc(q->buf, cap);
			if (!nb)
				return PROTO_E_NOMEM;
			q->buf = nb;
			q->cap = cap;
		}
		int rc = qmp_wait(q, POLLIN);
		if (rc < 0)
			return rc;
		ssize_t n = read(q->fd, q->buf + q->len, q->cap - q->len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return PROTO_E_UNAVAILABLE;
		q->len += (size_t)n;
	}
}

static int qmp_send(struct qmp *q, const char *cmd, json_t *args)
{
	json_t *msg = json_pack("{s:s}", "execute", cmd);
	char *text;
	size_t len, off = 0;
	int rc = 0;

	if (!msg)
		return PROTO_E_NOMEM;
	if (args)
		json_object_set(msg, "arguments", args);
	text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!text)
		return PROTO_E_NOMEM;
	/* qemu parses a JSON stream; the newline helps line-based peers and logs. */
	len = strlen(text);
	char *line = realloc(text, len + 2);
	if (!line) {
		free(text);
		return PROTO_E_NOMEM;
	}
	text = line;
	text[len++] = '\n';
	text[len] = '\0';
	while (off < len) {
		rc = qmp_wait(q, POLLOUT);
		if (rc < 0)
			break;
		ssize_t n = send(q->fd, text + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			rc = PROTO_E_UNAVAILABLE;
			break;
		}
		off += (size_t)n;
	}
	free(text);
	return rc;
}

/* Wait for the answer to the last command, skipping asynchronous events. */
static int qmp_answer(struct qmp *q, json_t **ret, char *err, size_t errlen)
{
	for (;;) {
		json_t *msg = NULL, *v;
		int rc = qmp_read(q, &msg);

		if (rc < 0)
			return rc;
		if ((v = json_object_get(msg, "return"))) {
			if (ret)
				*ret = json_incref(v);
			json_decref(msg);
			return 0;
		}
		if ((v = json_object_get(msg, "error"))) {
			const char *desc = json_string_value(json_object_get(v, "desc"));

			snprintf(err, errlen, "%s", desc ? desc : "qemu refused the command");
			json_decref(msg);
			return PROTO_E_DRIVER;
		}
		json_decref(msg);
	}
}

static int qmp_connect(struct qmp *q, const char *sock_path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (strlen(sock_path) >= sizeof(sa.sun_path))
		return PROTO_E_INVALID_ARGUMENT;
	strcpy(sa.sun_path, sock_path);
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (q->fd < 0)
		return PROTO_E_IO;
	if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EAGAIN)
		return PROTO_E_UNAVAILABLE;
	return qmp_wait(q, POLLOUT);
}

int qh_qmp(const char *sock_path, const char *cmd, json_t *args, double timeout_s,
	   json_t **ret, char *err, size_t errlen)
{
	struct qmp q = {.fd = -1, .deadline = qmp_now() + timeout_s};
	json_t *greeting = NULL;
	int rc;

	if (ret)
		*ret = NULL;
	rc = qmp_connect(&q, sock_path);
	if (rc < 0) {
		snprintf(err, errlen, "cannot connect to qemu's monitor %s", sock_path);
		goto out_close;
	}
	rc = qmp_read(&q, &greeting);
	if (rc == 0 && !json_object_get(greeting, "QMP"))
		rc = PROTO_E_PROTOCOL;
	json_decref(greeting);
	if (rc == 0)
		rc = qmp_send(&q, "qmp_capabilities", NULL);
	if (rc == 0)
		rc = qmp_answer(&q, NULL, err, errlen);
	if (rc == 0)
		rc = qmp_send(&q, cmd, args);
	if (rc == 0)
		rc = qmp_answer(&q, ret, err, errlen);
	if (rc == PROTO_E_TIMEOUT)
		snprintf(err, errlen, "qemu's monitor did not answer '%s' within %.1f s", cmd,
			 timeout_s);
	else if (rc < 0 && rc != PROTO_E_DRIVER)
		snprintf(err, errlen, "qemu's monitor broke off during '%s'", cmd);
out_close:
	if (q.fd >= 0)
		close(q.fd);
	free(q.buf);
	return rc;
}

int qh_hmp(const char *sock_path, const char *line, double timeout_s, char *err, size_t errlen)
{
	json_t *args = json_pack("{s:s}", "command-line", line);
	json_t *ret = NULL;
	int rc;

	if (!args)
		return PROTO_E_NOMEM;
	rc = qh_qmp(sock_path, "human-monitor-command", args, timeout_s, &ret, err, errlen);
	json_decref(args);
	/* HMP reports failures as text in a successful answer. */
	if (rc == 0 && json_string_length(ret) > 0) {
		snprintf(err, errlen, "%s", json_string_value(ret));
		size_t n = strlen(err);
		while (n && (err[n - 1] == '\n' || err[n - 1] == '\r'))
			err[--n] = '\0';
		rc = PROTO_E_DRIVER;
	}
	json_decref(ret);
	return rc;
}
