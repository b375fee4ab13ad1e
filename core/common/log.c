/*
 * One-line log records on stderr: "2026-11-27T10:00:00Z vmctld INFO: text".
 *
 * The broker's log must stay readable and bounded whatever floods it: it can
 * collapse repeated records (vlog_collapse_repeats) and rotate its file by
 * size (vlog_set_file); callers that forward text they do not control rate
 * it with a log_ratelimit first.
 */
#include "vmcommon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static char log_name[32] = "vmctl";

/* Repeat collapsing: the last record written, without its time. */
static struct {
	bool on;
	char last[LOG_LINE_MAX];
	size_t last_len;
	unsigned long repeats; /* equal records not written since */
	time_t since;          /* when last (or the last count of it) was written */
} log_repeat;

/* Rotation: stderr is this file. */
static struct {
	char path[4096];
	size_t max_bytes; /* 0: no rotation */
	size_t size;
} log_file;

void vlog_set_name(const char *name)
{
	if (name && *name)
		snprintf(log_name, sizeof(log_name), "%s", name);
}

static const char *log_level_name(enum log_level level)
{
	switch (level) {
	case LOG_DEBUG_: return "DEBUG";
	case LOG_INFO_: return "INFO";
	case LOG_WARN_: return "WARN";
	case LOG_ERROR_: return "ERROR";
	}
	return "INFO";
}

/* Format one record into line (LOG_LINE_MAX bytes): its length with the
 * final newline, and in *head the length of the time stamp before "NAME". */
static size_t log_format(char *line, size_t *head, time_t now, enum log_level level,
			 const char *fmt, va_list ap)
{
	static const char cut[] = " [cut]";
	struct tm tm;
	size_t n, i;
	int want, saved_errno = errno;

	gmtime_r(&now, &tm);
	n = strftime(line, LOG_LINE_MAX, "%Y-%m-%dT%H:%M:%SZ ", &tm);
	*head = n;
	n += (size_t)snprintf(line + n, LOG_LINE_MAX - n, "%s %s: ", log_name, log_level_name(level));
	if (n >= LOG_LINE_MAX - sizeof(cut))
		n = LOG_LINE_MAX - sizeof(cut);
	errno = saved_errno; /* so %m in fmt names the caller's error */
	want = vsnprintf(line + n, LOG_LINE_MAX - n, fmt, ap);
	if (want > 0 && (size_t)want >= LOG_LINE_MAX - n)
		memcpy(line + LOG_LINE_MAX - sizeof(cut) - 1, cut, sizeof(cut));
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		n--;
	/* One record, one line: a message with newlines must not forge others. */
	for (i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	return n;
}

static void log_write_raw(const char *line, size_t n)
{
	/* A single write keeps records from different processes whole. */
	while (write(STDERR_FILENO, line, n) < 0 && errno == EINTR)
		;
	log_file.size += n;
}

static void log_emit(time_t now, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* PATH -> PATH.1 (the one before is lost), and a new PATH on stderr and stdout. */
static void log_rotate(time_t now)
{
	char old[sizeof(log_file.path) + 4];
	int fd;

	log_file.size = 0; /* tried again after max_bytes more, should this fail */
	snprintf(old, sizeof(old), "%s.1", log_file.path);
	if (rename(log_file.path, old) < 0)
		return;
	fd = open(log_file.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return; /* the records go on into PATH.1 */
	dup2(fd, STDERR_FILENO);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	log_emit(now, LOG_INFO_, "log rotated at %zu bytes; the earlier records are in %s",
		 log_file.max_bytes, old);
}

static void log_write(time_t now, const char *line, size_t n)
{
	log_write_raw(line, n);
	if (log_file.max_bytes > 0 && log_file.size >= log_file.max_bytes)
		log_rotate(now);
}

static void log_emit(time_t now, enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	size_t head, n;
	va_list ap;

	va_start(ap, fmt);
	n = log_format(line, &head, now, level, fmt, ap);
	va_end(ap);
	log_write(now, line, n);
}

static void log_write_repeats(time_t now)
{
	unsigned long n = log_repeat.repeats;

	if (n == 0)
		return;
	log_repeat.repeats = 0;
	log_repeat.since = now;
	log_emit(now, LOG_INFO_, "… the last line repeated %lu time%s", n, n == 1 ? "" : "s");
}

void vlog(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	size_t n, head;
	time_t now;
	va_list ap;
	int saved_errno = errno;
	const char *debug;

	/* Debug records are for people chasing a problem, who ask for them. */
	debug = getenv("VMCTL_DEBUG");
	if (level == LOG_DEBUG_ && (!debug || !*debug || !strcmp(debug, "0")))
		return;

	now = time(NULL);
	va_start(ap, fmt);
	errno = saved_errno;
	n = log_format(line, &head, now, level, fmt, ap);
	va_end(ap);
	if (log_repeat.on) {
		const char *body = line + head;
		size_t len = n - head;

		if (len == log_repeat.last_len && memcmp(body, log_repeat.last, len) == 0) {
			log_repeat.repeats++;
			if (now - log_repeat.since >= LOG_REPEAT_REPORT_S)
				log_write_repeats(now);
			errno = saved_errno;
			return;
		}
		log_write_repeats(now);
		memcpy(log_repeat.last, body, len);
		log_repeat.last_len = len;
		log_repeat.since = now;
	}
	log_write(now, line, n);
	errno = saved_errno;
}

void vlog_collapse_repeats(bool on)
{
	vlog_flush();
	log_repeat.on = on;
	log_repeat.last_len = 0;
}

void vlog_flush(void)
{
	int saved_errno = errno;

	log_write_repeats(time(NULL));
	errno = saved_errno;
}

void vlog_set_file(const char *path, size_t max_bytes)
{
	struct stat st;

	log_file.max_bytes = 0;
	if (!path || snprintf(log_file.path, sizeof(log_file.path), "%s", path) >=
			     (int)sizeof(log_file.path))
		return;
	log_file.size = fstat(STDERR_FILENO, &st) == 0 ? (size_t)st.st_size : 0;
	log_file.max_bytes = max_bytes;
}

/* ---- rate limiting ---- */

bool log_ratelimit_allow(struct log_ratelimit *rl, double now)
{
	if (rl->in_window == 0 || now - rl->window_start >= rl->interval_s ||
	    now < rl->window_start) {
		rl->window_start = now;
		rl->in_window = 0;
	}
	if (rl->in_window < rl->burst) {
		rl->in_window++;
		return true;
	}
	rl->suppressed++;
	return false;
}

unsigned long log_ratelimit_take(struct log_ratelimit *rl)
{
	unsigned long n = rl->suppressed;

	rl->suppressed = 0;
	return n;
}

double log_ratelimit_window_end(const struct log_ratelimit *rl)
{
	return rl->window_start + rl->interval_s;
}
