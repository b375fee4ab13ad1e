/* One-line log records on stderr: "2026-11-27T10:00:00Z vmctld INFO: text". */
#include "vmcommon.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char log_name[32] = "vmctl";

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

void vlog(enum log_level level, const char *fmt, ...)
{
	char line[4096];
	struct tm tm;
	time_t now;
	va_list ap;
	size_t n, i;
	int saved_errno = errno;
	const char *debug;

	/* Debug records are for people chasing a problem, who ask for them. */
	debug = getenv("VMCTL_DEBUG");
	if (level == LOG_DEBUG_ && (!debug || !*debug || !strcmp(debug, "0")))
		return;

	now = time(NULL);
	gmtime_r(&now, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ ", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, "%s %s: ", log_name, log_level_name(level));
	if (n < sizeof(line)) {
		errno = saved_errno; /* so %m in fmt names the caller's error */
		va_start(ap, fmt);
		vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
	}
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		n--;
	/* One record, one line: a message with newlines must not forge others. */
	for (i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	/* A single write keeps records from different processes whole. */
	while (write(STDERR_FILENO, line, n) < 0 && errno == EINTR)
		;
	errno = saved_errno;
}
