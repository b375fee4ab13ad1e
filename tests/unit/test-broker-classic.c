/* The guest's half of a classic mount (core/vmctld/classic-script.c). */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <vmproto/vmh.h>

#include "broker.h"

Test(classic, script_mounts_the_source_in_slave_mode_at_the_target)
{
	char *s = classic_guest_script("/home/dev/src", "/home/ubuntu/src", "1000:1000,0:0", NULL);

	cr_assert_not_null(s);
	cr_assert_not_null(strstr(s, "exec sudo sshfs ':/home/dev/src' \"$t\" -o slave,"), "%s", s);
	cr_assert_not_null(strstr(s, "t='/home/ubuntu/src'"), "%s", s);
	cr_assert_not_null(strstr(s, "idmap=file"), "%s", s);
	cr_assert_not_null(strstr(s, "for p in 1000:1000 0:0; do"), "%s", s);
	cr_assert_not_null(strstr(s, "echo " CLASSIC_MOUNTED_MARK), "%s", s);
	/* Nothing but sshfs may write to stdout: it is the SFTP channel. */
	cr_assert_eq(strncmp(s, "exec 3>&1 1>&2\n", 15), 0, "%s", s);
	free(s);
}

Test(classic, a_guest_without_sshfs_is_told_how_to_install_it)
{
	char buf[600];

	classic_describe_exit(CLASSIC_EXIT_NO_SSHFS << 8, "", buf, sizeof(buf));
	cr_assert_not_null(strstr(buf, "has no sshfs"), "%s", buf);
	cr_assert_not_null(strstr(buf, "apt install sshfs"), "%s", buf);
}

Test(classic, other_ends_quote_the_last_line_the_guest_wrote)
{
	char buf[600];

	classic_describe_exit(1 << 8, "first\nread: Connection reset by peer\n", buf, sizeof(buf));
	cr_assert_str_eq(buf, "sshfs in the guest ended (ssh exited with status 1): read: Connection "
			 "reset by peer");
}

/* ---- sftp-server confined to the shared folder (classic_sftp_ruleset) ---- */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { FXP_INIT = 1, FXP_OPEN = 3, FXP_STATUS = 101, FXP_HANDLE = 102 };
enum { FXF_READ = 1, FXF_WRITE = 2, FXF_CREAT = 8 };

static const char *sftp_server(void)
{
	static const char *const places[] = { "/usr/lib/openssh/sftp-server",
					      "/usr/libexec/openssh/sftp-server", NULL };

	for (size_t i = 0; places[i]; i++)
		if (access(places[i], X_OK) == 0)
			return places[i];
	cr_assert_fail("no sftp-server on this host (package openssh-sftp-server)");
	return NULL;
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void read_all(int fd, unsigned char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);

		cr_assert_gt(r, 0, "sftp-server closed the channel");
		got += (size_t)r;
	}
}

/* One reply: its type, and in *code the status code of an FXP_STATUS. */
static int sftp_reply(int fd, uint32_t *code)
{
	unsigned char head[5], body[4096];
	uint32_t len;

	read_all(fd, head, 5);
	len = get32(head);
	cr_assert(len >= 1 && len - 1 <= sizeof(body));
	read_all(fd, body, len - 1);
	if (head[4] == FXP_STATUS)
		*code = get32(body + 4);
	return head[4];
}

/* FXP_OPEN of path; the reply's type (FXP_HANDLE or FXP_STATUS). */
static int sftp_open(int fd, uint32_t id, const char *path, uint32_t pflags, uint32_t *code)
{
	unsigned char msg[512];
	size_t plen = strlen(path), len = 1 + 4 + 4 + plen + 4 + 4;

	put32(msg, (uint32_t)len);
	msg[4] = FXP_OPEN;
	put32(msg + 5, id);
	put32(msg + 9, (uint32_t)plen);
	memcpy(msg + 13, path, plen);
	put32(msg + 13 + plen, pflags);
	put32(msg + 17 + plen, 0); /* no attributes */
	cr_assert_eq(write(fd, msg, 4 + len), (ssize_t)(4 + len));
	return sftp_reply(fd, code);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

Test(classic, sftp_server_serves_the_shared_folder_and_nothing_else)
{
	char shared[] = "/tmp/vmctl-classic-shared-XXXXXX", other[] = "/tmp/vmctl-classic-other-XXXXXX";
	char path[256], why[256];
	const char *sftp = sftp_server();
	unsigned char init[9];
	uint32_t code = 0;
	int sv[2], ruleset, status;
	pid_t pid;

	cr_assert_not_null(mkdtemp(shared));
	cr_assert_not_null(mkdtemp(other));
	snprintf(path, sizeof(path), "%s/inside", shared);
	write_file(path, "shared\n");
	snprintf(path, sizeof(path), "%s/secret", other);
	write_file(path, "secret\n");

	ruleset = classic_sftp_ruleset(sftp, shared, why, sizeof(why));
	cr_assert_geq(ruleset, 0, "cannot confine sftp-server here: %s", why);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(sv[1], 0);
		dup2(sv[1], 1);
		if (vmh_landlock_enforce(ruleset) < 0)
			_exit(126);
		execl(sftp, sftp, "-e", "-l", "ERROR", "-d", shared, (char *)NULL);
		_exit(127);
	}
	close(ruleset);
	close(sv[1]);

	put32(init, 5);
	init[4] = FXP_INIT;
	put32(init + 5, 3);
	cr_assert_eq(write(sv[0], init, sizeof(init)), (ssize_t)sizeof(init));
	cr_assert_eq(sftp_reply(sv[0], &code), 2, "no SSH_FXP_VERSION from a confined sftp-server");

	/* Inside: read a file, make one. */
	snprintf(path, sizeof(path), "%s/inside", shared);
	cr_assert_eq(sftp_open(sv[0], 1, path, FXF_READ, &code), FXP_HANDLE, "status %u", code);
	snprintf(path, sizeof(path), "%s/made", shared);
	cr_assert_eq(sftp_open(sv[0], 2, path, FXF_WRITE | FXF_CREAT, &code), FXP_HANDLE,
		     "status %u", code);
	/* Outside: a file the broker's user may read, a folder it may write. */
	snprintf(path, sizeof(path), "%s/secret", other);
	cr_assert_eq(sftp_open(sv[0], 3, path, FXF_READ, &code), FXP_STATUS);
	cr_assert_eq(code, 3, "reading outside the folder: status %u, not PERMISSION_DENIED", code);
	snprintf(path, sizeof(path), "%s/planted", other);
	cr_assert_eq(sftp_open(sv[0], 4, path, FXF_WRITE | FXF_CREAT, &code), FXP_STATUS);
	cr_assert_eq(code, 3, "writing outside the folder: status %u", code);
	cr_assert_eq(sftp_open(sv[0], 5, "/etc/hostname", FXF_READ, &code), FXP_STATUS);
	cr_assert_eq(code, 3, "reading /etc/hostname: status %u", code);

	close(sv[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	snprintf(path, sizeof(path), "%s/planted", other);
	cr_assert_neq(access(path, F_OK), 0, "a file was made outside the shared folder");
	snprintf(path, sizeof(path), "rm -rf '%s' '%s'", shared, other);
	cr_assert_eq(system(path), 0);
}
