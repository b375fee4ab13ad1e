/*
 * Who may use the broker, and `vmctl authenticate`. The broker's own user,
 * root and members of the group "vmctl" (SO_PEERCRED, SO_PEERGROUPS) are
 * let in. When the setting local.passphrase is set (stored as a yescrypt
 * hash by libcrypt's crypt(3)), the socket is opened to every local user,
 * and anyone else may send only `authenticate` (and `version`) until it has
 * given the passphrase; its uid is then recorded in DATA/authenticated-uids,
 * so its later connections are let in too, as Multipass records a client's
 * certificate.
 */
#include <crypt.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"

#define AUTH_GROUP "vmctl"
#define AUTH_MAX_UIDS 4096
#define AUTH_FILE "authenticated-uids"

static struct {
	bool loaded;
	uid_t *uids;
	size_t n;
} auth;

static void auth_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/" AUTH_FILE, B->data_dir);
}

/* One uid a line; a file that cannot be read means nobody was recorded. */
static void auth_load(void)
{
	char path[4200], line[64];
	FILE *f;

	auth.loaded = true;
	auth_path(path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return;
	while (auth.n < AUTH_MAX_UIDS && fgets(line, sizeof(line), f)) {
		char *end;
		unsigned long v = strtoul(line, &end, 10);
		uid_t *grown;

		if (end == line || (*end != '\n' && *end != '\0'))
			continue;
		grown = realloc(auth.uids, (auth.n + 1) * sizeof(*auth.uids));
		if (!grown)
			break;
		auth.uids = grown;
		auth.uids[auth.n++] = (uid_t)v;
	}
	fclose(f);
}

static bool auth_recorded(uid_t uid)
{
	if (!auth.loaded)
		auth_load();
	for (size_t i = 0; i < auth.n; i++)
		if (auth.uids[i] == uid)
			return true;
	return false;
}

static int auth_record(uid_t uid)
{
	char path[4200], *text;
	size_t len = 0;
	uid_t *grown;
	int rc;

	if (auth_recorded(uid))
		return 0;
	if (auth.n >= AUTH_MAX_UIDS)
		return PROTO_E_BUSY;
	grown = realloc(auth.uids, (auth.n + 1) * sizeof(*auth.uids));
	if (!grown)
		return PROTO_E_NOMEM;
	auth.uids = grown;
	auth.uids[auth.n++] = uid;
	text = malloc(auth.n * 12 + 1);
	if (!text)
		return PROTO_E_NOMEM;
	for (size_t i = 0; i < auth.n; i++)
		len += (size_t)sprintf(text + len, "%u\n", (unsigned)auth.uids[i]);
	auth_path(path, sizeof(path));
	rc = atomic_write_file(path, text, len, 0600);
	free(text);
	return rc;
}

void auth_forget_all(void)
{
	char path[4200];

	free(auth.uids);
	auth.uids = NULL;
	auth.n = 0;
	auth.loaded = true;
	auth_path(path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		vlog(LOG_WARN_, "cannot remove %s: %s", path, strerror(errno));
}

bool auth_passphrase_set(void)
{
	const char *hash = settings_get(&B->settings, "local.passphrase");

	return hash && hash[0];
}

/* Is gid among the peer's groups (SO_PEERGROUPS), or its primary one? */
static bool auth_peer_in_group(int fd, gid_t primary, gid_t gid)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);

	if (primary == gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return false;
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == gid)
			return true;
	return false;
}

bool auth_peer_trusted(int fd, uid_t *uid_out)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct group *g;

	*uid_out = (uid_t)-1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred))
		return false;
	*uid_out = cred.uid;
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	g = getgrnam(AUTH_GROUP);
	if (g && auth_peer_in_group(fd, cred.gid, g->gr_gid))
		return true;
	return auth_recorded(cred.uid);
}

bool auth_method_open(const char *method)
{
	return strcmp(method, "authenticate") == 0 || strcmp(method, "version") == 0;
}

int auth_hash(const char *passphrase, char *out, size_t len, char *err, size_t errlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data data;

	memset(&data, 0, sizeof(data));
	if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt))) {
		snprintf(err, errlen, "cannot make a salt for the passphrase: %s", strerror(errno));
		return PROTO_E_INTERNAL;
	}
	if (!crypt_rn(passphrase, salt, &data, sizeof(data)) || data.output[0] == '*' ||
	    strlen(data.output) + 1 > len) {
		snprintf(err, errlen, "cannot hash the passphrase");
		return PROTO_E_INTERNAL;
	}
	snprintf(out, len, "%s", data.output);
	explicit_bzero(&data, sizeof(data));
	return 0;
}

/* Does passphrase match the stored hash? The comparison takes the same
 * time wherever the strings differ. */
static bool auth_check(const char *passphrase, const char *hash)
{
	struct crypt_data data;
	size_t n = strlen(hash);
	unsigned char diff = 0;
	bool ok;

	memset(&data, 0, sizeof(data));
	if (!crypt_rn(passphrase, hash, &data, sizeof(data)) || strlen(data.output) != n) {
		explicit_bzero(&data, sizeof(data));
		return false;
	}
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(data.output[i] ^ hash[i]);
	ok = diff == 0;
	explicit_bzero(&data, sizeof(data));
	return ok;
}

void op_authenticate(struct creq *r, const msgpack_object *p)
{
	const char *hash = settings_get(&B->settings, "local.passphrase");
	char *passphrase = proto_dup_str(p, "passphrase");
	uid_t uid = creq_peer_uid(r);
	int rc;

	if (!hash || !hash[0]) {
		creq_fail(r, PROTO_E_UNAVAILABLE,
			  "this broker takes no passphrase (the setting local.passphrase is not set); "
			  "ask its administrator to add you to the group " AUTH_GROUP);
		goto out_free;
	}
	if (!passphrase || !passphrase[0]) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "authenticate needs the passphrase");
		goto out_free;
	}
	if (!auth_check(passphrase, hash)) {
		vlog(LOG_WARN_, "uid %d gave a wrong passphrase", (int)uid);
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "wrong passphrase");
		goto out_free;
	}
	rc = auth_record(uid);
	if (rc < 0) {
		creq_fail(r, rc, "the passphrase is right, but uid %d could not be recorded: %s",
			  (int)uid, proto_strerror(rc));
		goto out_free;
	}
	creq_trust(r);
	vlog(LOG_INFO_, "uid %d authenticated with the passphrase", (int)uid);
	creq_ok(r, NULL);
out_free:
	if (passphrase)
		explicit_bzero(passphrase, strlen(passphrase));
	free(passphrase);
}
