/*
 * The guest's half of a classic mount: the shell script the broker runs over
 * SSH. It checks for sshfs and /dev/fuse, clears a mount a dead session left
 * behind, writes the id maps as sshfs's idmap=file wants them (guest NAME:
 * host ID, one a line) and execs `sshfs -o slave`, whose stdin and stdout
 * are the SSH channel, joined on the host to sftp-server. Everything else
 * the script says goes to stderr, where a background loop writes
 * CLASSIC_MOUNTED_MARK once the folder is mounted.
 *
 * Paths come checked by the broker (absolute, no quote, no control
 * character), so single quotes are enough.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <vmproto/vmh.h>

#include "broker.h"

/* The maps, as shell words: "1000:1000,0:0" -> "1000:1000 0:0". */
static void classic_map_words(const char *map, char *buf, size_t len)
{
	size_t i;

	snprintf(buf, len, "%s", map ? map : "");
	for (i = 0; buf[i]; i++)
		if (buf[i] == ',')
			buf[i] = ' ';
}

char *classic_guest_script(const char *source, const char *target, const char *uid_map,
			   const char *gid_map)
{
	static const char fmt[] =
		"exec 3>&1 1>&2\n"
		"s=$(command -v sshfs) && [ -f \"$s\" ] && [ -x \"$s\" ] || exit %d\n"
		"[ -e /dev/fuse ] || sudo modprobe fuse 2>/dev/null || :\n"
		"[ -e /dev/fuse ] || exit %d\n"
		"t='%s'\n"
		"te=$(printf '%%s' \"$t\" | sed 's/\\\\/\\\\134/g; s/ /\\\\040/g')\n"
		"at() { grep -qF \" $te fuse.sshfs \" /proc/mounts; }\n"
		"if at; then sudo umount -l \"$t\"; fi\n"
		"sudo mkdir -p \"$t\" || exit %d\n"
		"u=; g=\n"
		"for p in %s; do n=$(getent passwd \"${p#*:}\" | cut -d: -f1); "
		"[ -z \"$n\" ] || u=\"$u$n:${p%%%%:*}\n\"; done\n"
		"for p in %s; do n=$(getent group \"${p#*:}\" | cut -d: -f1); "
		"[ -z \"$n\" ] || g=\"$g$n:${p%%%%:*}\n\"; done\n"
		"d=$(sudo mktemp -d) || exit %d\n"
		"printf %%s \"$u\" | sudo tee \"$d/uid\" >/dev/null || exit %d\n"
		"printf %%s \"$g\" | sudo tee \"$d/gid\" >/dev/null || exit %d\n"
		"me=$$\n"
		"( while [ -d /proc/$me ]; do if at; then echo %s; break; fi; sleep 0.2; done; "
		"sleep 1; sudo rm -rf \"$d\" ) </dev/null &\n"
		"exec sudo sshfs ':%s' \"$t\" -o slave,allow_other,idmap=file,nomap=ignore,"
		"uidfile=\"$d/uid\",gidfile=\"$d/gid\" 1>&3 3>&-\n";
	char uids[600], gids[600];
	size_t len;
	char *s;

	classic_map_words(uid_map, uids, sizeof(uids));
	classic_map_words(gid_map, gids, sizeof(gids));
	len = sizeof(fmt) + strlen(source) + strlen(target) + strlen(uids) + strlen(gids) + 64;
	s = malloc(len);
	if (!s)
		return NULL;
	snprintf(s, len, fmt, CLASSIC_EXIT_NO_SSHFS, CLASSIC_EXIT_NO_FUSE, target, CLASSIC_EXIT_SETUP,
		 uids, gids, CLASSIC_EXIT_SETUP, CLASSIC_EXIT_SETUP, CLASSIC_EXIT_SETUP,
		 CLASSIC_MOUNTED_MARK, source);
	return s;
}

void classic_describe_exit(int status, const char *stderr_text, char *buf, size_t len)
{
	char how[64];
	const char *last = stderr_text ? stderr_text : "";
	size_t n = strlen(last);

	/* The last line sshfs or ssh wrote says most. */
	while (n > 0 && (last[n - 1] == '\n' || last[n - 1] == '\r'))
		n--;
	{
		size_t start = n;

		while (start > 0 && last[start - 1] != '\n')
			start--;
		last += start;
		n -= start;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == CLASSIC_EXIT_NO_SSHFS) {
		snprintf(buf, len, "the guest has no sshfs, which classic mounts need; install it in "
			 "the guest (vmctl exec NAME -- sudo apt install sshfs) or use --type native");
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == CLASSIC_EXIT_NO_FUSE) {
		snprintf(buf, len, "the guest has no /dev/fuse (its kernel lacks FUSE, or the "
			 "instance may not use it), which classic mounts need; use --type native");
		return;
	}
	util_describe_status(status, how, sizeof(how));
	if (n)
		snprintf(buf, len, "sshfs in the guest ended (ssh %s): %.*s", how, (int)(n > 400 ? 400 : n),
			 last);
	else
		snprintf(buf, len, "sshfs in the guest ended (ssh %s)", how);
}

int classic_sftp_ruleset(const char *sftp, const char *source, char *why, size_t whylen)
{
	const struct vmh_landlock_rule rules[] = {
		{ source, VMH_LANDLOCK_READ | VMH_LANDLOCK_WRITE, false },
		{ sftp, VMH_LANDLOCK_EXEC, false },
		{ "/lib", VMH_LANDLOCK_EXEC, true },
		{ "/lib64", VMH_LANDLOCK_EXEC, true },
		{ "/usr/lib", VMH_LANDLOCK_EXEC, true },
		{ "/usr/lib64", VMH_LANDLOCK_EXEC, true },
		{ "/usr/local/lib", VMH_LANDLOCK_EXEC, true },
		{ "/etc/ld.so.cache", VMH_LANDLOCK_READ, true },
		{ "/etc/localtime", VMH_LANDLOCK_READ, true },
		/* sftp-server opens /dev/null and looks its user up when it starts */
		{ "/dev/null", VMH_LANDLOCK_READ | VMH_LANDLOCK_WRITE, false },
		{ "/etc/nsswitch.conf", VMH_LANDLOCK_READ, true },
		{ "/etc/passwd", VMH_LANDLOCK_READ, true },
		{ "/etc/group", VMH_LANDLOCK_READ, true },
	};

	return vmh_landlock_prepare(rules, sizeof(rules) / sizeof(rules[0]), why, whylen);
}
