/* Where state lives, where the binaries are, and what a log line looks like. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmproto/proto.h>

#include "vmcommon.h"

Test(paths, vmctl_data_wins)
{
	char buf[256];

	setenv("VMCTL_DATA", "/srv/vmctl", 1);
	setenv("XDG_DATA_HOME", "/xdg", 1);
	cr_assert_eq(data_dir(buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/srv/vmctl");
}

Test(paths, xdg_data_home_is_next)
{
	char buf[256];

	unsetenv("VMCTL_DATA");
	setenv("XDG_DATA_HOME", "/xdg", 1);
	cr_assert_eq(data_dir(buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/xdg/vmctl");
}

Test(paths, home_is_the_fallback)
{
	char buf[256];

	unsetenv("VMCTL_DATA");
	unsetenv("XDG_DATA_HOME");
	setenv("HOME", "/home/dev", 1);
	cr_assert_eq(data_dir(buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/home/dev/.local/share/vmctl");
}

Test(paths, relative_xdg_data_home_is_ignored)
{
	char buf[256];

	unsetenv("VMCTL_DATA");
	setenv("XDG_DATA_HOME", "relative", 1);
	setenv("HOME", "/home/dev", 1);
	cr_assert_eq(data_dir(buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "/home/dev/.local/share/vmctl");
}

Test(paths, small_buffer_is_refused)
{
	char buf[8];

	setenv("VMCTL_DATA", "/a/rather/long/path", 1);
	cr_assert_eq(data_dir(buf, sizeof(buf)), PROTO_E_INVALID_ARGUMENT);
}

Test(paths, exe_dir_is_the_folder_of_this_test)
{
	char dir[4096], self[4096], want[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	cr_assert_gt(n, 0);
	self[n] = '\0';
	snprintf(want, sizeof(want), "%.*s", (int)(strrchr(self, '/') - self), self);
	cr_assert_eq(exe_dir(dir, sizeof(dir)), 0);
	cr_assert_str_eq(dir, want);
}

/* Run vlog with stderr sent to a file; return what was written. */
static char *capture_log(enum log_level level, const char *text)
{
	char tmpl[] = "/tmp/vmctl-test-log-XXXXXX";
	int fd = mkstemp(tmpl), saved = dup(STDERR_FILENO);
	char *out = NULL;
	size_t len;

	cr_assert_geq(fd, 0);
	dup2(fd, STDERR_FILENO);
	vlog(level, "%s", text);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	cr_assert_eq(read_file(tmpl, 1 << 20, &out, &len), 0);
	unlink(tmpl);
	return out;
}

static void assert_matches(const char *text, const char *pattern)
{
	regex_t re;

	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	cr_assert_eq(regexec(&re, text, 0, NULL, 0), 0, "\"%s\" does not match %s", text, pattern);
	regfree(&re);
}

Test(log, line_has_timestamp_name_and_level)
{
	char *out;

	vlog_set_name("vmctld");
	out = capture_log(LOG_INFO_, "broker started");
	assert_matches(out, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z vmctld INFO: broker started\n$");
	free(out);
}

Test(log, levels_are_named)
{
	char *out;

	vlog_set_name("vmctl-qemu-helper");
	out = capture_log(LOG_WARN_, "w");
	assert_matches(out, "Z vmctl-qemu-helper WARN: w\n$");
	free(out);
	out = capture_log(LOG_ERROR_, "e");
	assert_matches(out, "Z vmctl-qemu-helper ERROR: e\n$");
	free(out);
}

Test(log, newlines_in_the_text_stay_on_one_line)
{
	char *out = capture_log(LOG_ERROR_, "first\nsecond\n");

	assert_matches(out, "ERROR: first second\n$");
	cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1);
	free(out);
}

Test(log, debug_only_when_asked)
{
	char *out;

	unsetenv("VMCTL_DEBUG");
	out = capture_log(LOG_DEBUG_, "hidden");
	cr_assert_str_eq(out, "");
	free(out);
	setenv("VMCTL_DEBUG", "1", 1);
	out = capture_log(LOG_DEBUG_, "shown");
	assert_matches(out, "DEBUG: shown\n$");
	free(out);
}
