/* vmctl authenticate: give a system-wide broker its passphrase. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <vmproto/proto.h>

#include "vmctl.h"

#define AUTH_PASSPHRASE_MAX 1024

static int authenticate_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_argument authenticate_arguments[] = {
	{ "PASSPHRASE", "The broker's passphrase. Default: asked for on the terminal without "
			"echo, or read as one line from standard input when that is no terminal (a "
			"PASSPHRASE argument is seen by every user's ps)." },
	{ NULL, NULL },
};

static const struct cmd_option authenticate_options[] = {
	CMD_OPTION_WAIT(CLI_WAIT_QUICK),
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_authenticate_entry = {
	.name = "authenticate",
	.usage = "[options] [PASSPHRASE]",
	.summary = "Give a system-wide broker its passphrase.",
	.help = "A broker serves root, its own user and the members of the group vmctl. When "
		"its administrator has set local.passphrase, any other local user may use it "
		"after giving that passphrase once: the broker then records the user's uid, and "
		"lets every later connection of that user in (until the passphrase changes).",
	.arguments = authenticate_arguments,
	.options = authenticate_options,
	.min_args = 0,
	.max_args = 1,
	.wait = CLI_WAIT_QUICK,
	.exec = authenticate_exec,
};

/* One line into buf, without echo when fd is a terminal. */
static int authenticate_read(int fd, bool prompt, char *buf, size_t len)
{
	struct termios saved, quiet;
	bool tty = isatty(fd) && tcgetattr(fd, &saved) == 0;
	size_t n = 0;
	int rc = 0;

	if (tty) {
		quiet = saved;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		quiet.c_lflag |= ECHONL;
		tcsetattr(fd, TCSAFLUSH, &quiet);
	}
	if (prompt)
		fputs("Passphrase: ", stderr);
	for (;;) {
		char c;
		ssize_t got = read(fd, &c, 1);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0 || c == '\n')
			break;
		if (n + 1 >= len) {
			rc = -1;
			break;
		}
		buf[n++] = c;
	}
	buf[n] = '\0';
	if (tty)
		tcsetattr(fd, TCSAFLUSH, &saved);
	return rc;
}

static int authenticate_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	char passphrase[AUTH_PASSPHRASE_MAX + 2];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (a->argc > 0) {
		snprintf(passphrase, sizeof(passphrase), "%s", a->argv[0]);
	} else {
		rc = authenticate_read(STDIN_FILENO, isatty(STDIN_FILENO), passphrase,
				       sizeof(passphrase));
		if (rc < 0)
			return cmd_error(EXIT_USAGE, "the passphrase is longer than %d bytes",
					 AUTH_PASSPHRASE_MAX);
	}
	if (passphrase[0] == '\0')
		return cmd_error(EXIT_USAGE, "the passphrase is empty");
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "passphrase", passphrase);
	explicit_bzero(passphrase, sizeof(passphrase));
	rc = cli_request("authenticate", &sb, 0, &r);
	explicit_bzero(sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	cli_reply_free(&r);
	return rc;
}
