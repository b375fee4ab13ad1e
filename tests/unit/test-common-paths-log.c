/* Where state lives, where the binaries are, and what a log line looks like. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

Test(paths, relative_vmctl_data_is_made_absolute)
{
	char buf[4200], cwd[4096];

	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	setenv("VMCTL_DATA", "./state/vmctl", 1);
	cr_assert_eq(data_dir(buf, sizeof(buf)), 0);
	cr_assert_eq(strncmp(buf, cwd, strlen(cwd)), 0, "%s", buf);
	cr_assert_str_eq(buf + strlen(cwd), strcmp(cwd, "/") ? "/state/vmctl" : "state/vmctl");
	setenv("VMCTL_DATA", ".", 1);
	cr_assert_eq(data_dir(buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, cwd);
}

Test(paths, relative_home_is_not_used)
{
	char buf[4200];

	unsetenv("VMCTL_DATA");
	unsetenv("XDG_DATA_HOME");
	setenv("HOME", "home/dev", 1);
	if (data_dir(buf, sizeof(buf)) == 0)
		cr_assert_eq(buf[0], '/', "%s", buf);
}

/* ---- trusting the data folder and what is in it ---- */

static char trust_dir[] = "/tmp/vmctl-test-trust-XXXXXX";
static char err[1024];

static void trust_setup(void)
{
	cr_assert_not_null(mkdtemp(trust_dir));
}

static void trust_teardown(void)
{
	remove_tree(trust_dir);
}

static void in_dir(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", trust_dir, name);
}

TestSuite(trust, .init = trust_setup, .fini = trust_teardown);

Test(trust, a_private_folder_of_ours_is_trusted)
{
	cr_assert_eq(chmod(trust_dir, 0700), 0);
	cr_assert_eq(path_check_trusted(trust_dir, S_IFDIR, "the data folder", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(chmod(trust_dir, 0755), 0);
	cr_assert_eq(path_check_trusted(trust_dir, S_IFDIR, "the data folder", err, sizeof(err)), 0, "%s", err);
}

Test(trust, a_folder_others_can_write_is_refused)
{
	cr_assert_eq(chmod(trust_dir, 0777), 0);
	cr_assert_eq(path_check_trusted(trust_dir, S_IFDIR, "the data folder", err, sizeof(err)),
		     PROTO_E_INVALID_STATE);
	cr_assert(strstr(err, "refusing the data folder ") && strstr(err, "is writable by others (mode 0777)") &&
			  strstr(err, "set VMCTL_DATA"),
		  "%s", err);
	cr_assert_eq(chmod(trust_dir, 0770), 0);
	cr_assert_eq(path_check_trusted(trust_dir, S_IFDIR, "the data folder", err, sizeof(err)),
		     PROTO_E_INVALID_STATE);
	cr_assert(strstr(err, "is writable by its group (mode 0770)"), "%s", err);
}

Test(trust, a_folder_of_another_user_is_refused)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to give a folder away");
	cr_assert_eq(chown(trust_dir, 65534, 65534), 0);
	cr_assert_eq(path_check_trusted(trust_dir, S_IFDIR, "the data folder", err, sizeof(err)),
		     PROTO_E_INVALID_STATE);
	cr_assert(strstr(err, "is owned by uid 65534, not by you (uid 0)"), "%s", err);
	cr_assert_eq(chown(trust_dir, 0, 0), 0);
}

Test(trust, a_missing_folder_is_not_found)
{
	char path[300];

	in_dir(path, sizeof(path), "nothing");
	cr_assert_eq(path_check_trusted(path, S_IFDIR, "the data folder", err, sizeof(err)), PROTO_E_NOT_FOUND);
}

Test(trust, a_socket_must_be_a_socket)
{
	char path[300];

	in_dir(path, sizeof(path), "vmctld.sock");
	cr_assert_eq(symlink("/etc/passwd", path), 0);
	cr_assert_eq(path_check_trusted(path, S_IFSOCK, "the socket", err, sizeof(err)), PROTO_E_INVALID_STATE);
	cr_assert(strstr(err, "it is not a unix socket"), "%s", err);
}

Test(trust, a_file_is_created_private)
{
	char path[300];
	struct stat st;
	int fd;

	in_dir(path, sizeof(path), "vmctld.log");
	fd = open_private_file(path, O_WRONLY | O_CREAT | O_APPEND, "the log", err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	close(fd);
	/* And opened again. */
	fd = open_private_file(path, O_WRONLY | O_CREAT | O_APPEND, "the log", err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	close(fd);
}

Test(trust, a_symlinked_file_is_refused_and_its_target_untouched)
{
	char path[300], target[300];
	struct stat st;

	in_dir(target, sizeof(target), "secret");
	in_dir(path, sizeof(path), "vmctld.log");
	cr_assert_eq(atomic_write_file(target, "root only\n", 10, 0600), 0);
	cr_assert_eq(symlink(target, path), 0);
	cr_assert_eq(open_private_file(path, O_WRONLY | O_CREAT | O_APPEND, "the log", err, sizeof(err)),
		     PROTO_E_INVALID_STATE);
	cr_assert(strstr(err, "refusing the log ") && strstr(err, "it is a symbolic link"), "%s", err);
	cr_assert_eq(stat(target, &st), 0);
	cr_assert_eq(st.st_size, 10);
}

Test(trust, a_fifo_or_a_shared_file_is_refused)
{
	char path[300];

	in_dir(path, sizeof(path), "vmctld.lock");
	cr_assert_eq(mkfifo(path, 0600), 0);
	cr_assert_eq(open_private_file(path, O_RDWR | O_CREAT, "the lock", err, sizeof(err)), PROTO_E_INVALID_STATE);
	cr_assert(strstr(err, "is not a regular file"), "%s", err);
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(atomic_write_file(path, "", 0, 0666), 0);
	cr_assert_eq(chmod(path, 0666), 0);
	cr_assert_eq(open_private_file(path, O_RDWR | O_CREAT, "the lock", err, sizeof(err)), PROTO_E_INVALID_STATE);
	cr_assert(strstr(err, "is writable by others (mode 0666)"), "%s", err);
}

Test(trust, a_file_of_another_user_is_refused)
{
	char path[300];
	int fd;

	if (geteuid() != 0)
		cr_skip_test("needs root to give a file away");
	in_dir(path, sizeof(path), "vmctld.log");
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(chown(path, 65534, 65534), 0);
	cr_assert_eq(open_private_file(path, O_WRONLY | O_APPEND, "the log", err, sizeof(err)), PROTO_E_INVALID_STATE);
	cr_assert(strstr(err, "is owned by uid 65534, not by you (uid 0)"), "%s", err);
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

/* ---- the broker's log: repeats, rotation, rate limiting ---- */

/* Point stderr at a new file in a new folder; returns the file's path. */
static char log_dir[64];
static const char *log_to_file(void)
{
	static char path[128];
	int fd;

	snprintf(log_dir, sizeof(log_dir), "/tmp/vmctl-test-log-XXXXXX");
	cr_assert_not_null(mkdtemp(log_dir));
	snprintf(path, sizeof(path), "%s/vmctld.log", log_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	cr_assert_geq(fd, 0);
	dup2(fd, STDERR_FILENO);
	close(fd);
	return path;
}

static char *slurp(const char *path)
{
	char *out = NULL;
	size_t len;

	cr_assert_eq(read_file(path, 1 << 24, &out, &len), 0, "reading %s", path);
	return out;
}

static size_t count_lines(const char *text)
{
	size_t n = 0;

	for (; *text; text++)
		n += *text == '\n';
	return n;
}

Test(log, repeated_records_are_written_once_then_counted)
{
	const char *path = log_to_file();
	char *out;

	vlog_set_name("vmctld");
	vlog_collapse_repeats(true);
	vlog(LOG_WARN_, "first");
	for (int i = 0; i < 1000; i++)
		vlog(LOG_WARN_, "accept: %s", "Too many open files");
	vlog(LOG_INFO_, "something else");
	out = slurp(path);
	cr_assert_eq(count_lines(out), 4, "log:\n%s", out);
	assert_matches(out, "WARN: first\n[^\n]*WARN: accept: Too many open files\n"
			    "[^\n]*INFO: … the last line repeated 999 times\n"
			    "[^\n]*INFO: something else\n$");
	free(out);
	remove_tree(log_dir);
}

Test(log, a_pending_repeat_count_is_written_by_flush)
{
	const char *path = log_to_file();
	char *out;

	vlog_collapse_repeats(true);
	vlog(LOG_INFO_, "same");
	vlog(LOG_INFO_, "same");
	vlog_flush();
	vlog_flush();
	out = slurp(path);
	assert_matches(out, "INFO: same\n[^\n]*INFO: … the last line repeated 1 time\n$");
	free(out);
	remove_tree(log_dir);
}

Test(log, repeats_are_written_without_collapsing_by_default)
{
	const char *path = log_to_file();
	char *out;

	vlog(LOG_INFO_, "same");
	vlog(LOG_INFO_, "same");
	out = slurp(path);
	cr_assert_eq(count_lines(out), 2);
	free(out);
	remove_tree(log_dir);
}

Test(log, a_text_past_4kib_is_cut_and_says_so)
{
	char *big = malloc(10000), *out;

	memset(big, 'x', 9999);
	big[9999] = '\0';
	out = capture_log(LOG_INFO_, big);
	cr_assert_leq(strlen(out), 4096);
	assert_matches(out, "xxxx \\[cut\\]\n$");
	free(out);
	free(big);
}

Test(log, the_file_is_rotated_by_size_keeping_one_old_file)
{
	const char *path = log_to_file();
	char old[160], line[101];
	struct stat st;
	char *out;

	memset(line, 'y', 100);
	line[100] = '\0';
	vlog_set_file(path, 4000);
	for (int i = 0; i < 1000; i++)
		vlog(LOG_INFO_, "%d %s", i, line);
	snprintf(old, sizeof(old), "%s.1", path);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_leq(st.st_size, 4000 + 200);
	cr_assert_eq(stat(old, &st), 0);
	cr_assert_geq(st.st_size, 4000);
	cr_assert_leq(st.st_size, 4000 + 200);
	out = slurp(path);
	assert_matches(out, "^[^\n]*INFO: log rotated at 4000 bytes; the earlier records are in "
			    "/tmp/vmctl-test-log-[^/]*/vmctld.log.1\n");
	assert_matches(out, "INFO: 999 y+\n$");
	free(out);
	/* Only the one old file is kept. */
	snprintf(old, sizeof(old), "%s.2", path);
	cr_assert_neq(stat(old, &st), 0);
	remove_tree(log_dir);
}

Test(log, rotation_counts_what_the_file_held_already)
{
	const char *path = log_to_file();
	char old[160];
	struct stat st;

	for (int i = 0; i < 50; i++)
		vlog(LOG_INFO_, "%080d", i);
	vlog_set_file(path, 4000);
	vlog(LOG_INFO_, "one more");
	snprintf(old, sizeof(old), "%s.1", path);
	cr_assert_eq(stat(old, &st), 0, "a file already past the size was not rotated");
	remove_tree(log_dir);
}

Test(ratelimit, lets_a_burst_through_per_window_and_counts_the_rest)
{
	struct log_ratelimit rl = {.interval_s = 10, .burst = 3};
	int allowed = 0;

	for (int t = 0; t < 8; t++)
		allowed += log_ratelimit_allow(&rl, 100 + t * 0.5);
	cr_assert_eq(allowed, 3);
	cr_assert_eq(log_ratelimit_window_end(&rl), 110);
	cr_assert_eq(log_ratelimit_take(&rl), 5);
	cr_assert_eq(log_ratelimit_take(&rl), 0);
	/* The next window starts with the next event after 110. */
	cr_assert(log_ratelimit_allow(&rl, 110.5));
	cr_assert_eq(log_ratelimit_window_end(&rl), 120.5);
	cr_assert(log_ratelimit_allow(&rl, 111));
	cr_assert(log_ratelimit_allow(&rl, 112));
	cr_assert_not(log_ratelimit_allow(&rl, 113));
	cr_assert_eq(log_ratelimit_take(&rl), 1);
}

Test(ratelimit, a_clock_going_back_opens_a_new_window)
{
	struct log_ratelimit rl = {.interval_s = 10, .burst = 1};

	cr_assert(log_ratelimit_allow(&rl, 100));
	cr_assert_not(log_ratelimit_allow(&rl, 101));
	cr_assert(log_ratelimit_allow(&rl, 50));
}
