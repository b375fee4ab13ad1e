/*
 * The broker's SSH key pair, DATA/ssh/id_ed25519: loaded at start-up when it
 * exists, else made with ssh-keygen in the background once the broker
 * listens; launch and clone wait for it (keys_ensure()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"

static int keys_load_pub(char *err, size_t errlen)
{
	char path[4300];
	char *text = NULL;
	size_t len = 0;
	int rc;

	snprintf(path, sizeof(path), "%s.pub", B->ssh_key);
	rc = read_file(path, 16384, &text, &len);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, proto_strerror(rc));
		return rc;
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = '\0';
	if (len == 0 || strchr(text, '\n')) {
		free(text);
		snprintf(err, errlen, "%s does not hold one public key", path);
		return PROTO_E_INVALID_ARGUMENT;
	}
	free(B->ssh_pubkey);
	B->ssh_pubkey = text;
	return 0;
}

static bool keys_present(void)
{
	char pub[4300];

	snprintf(pub, sizeof(pub), "%s.pub", B->ssh_key);
	return access(B->ssh_key, R_OK) == 0 && access(pub, R_OK) == 0;
}

/* ssh-keygen refuses to overwrite; a half-made pair is removed first. */
static void keys_prepare(char **argv_out[])
{
	static char *argv[] = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmctl",
			       "-f", NULL, NULL};
	char pub[4300];

	snprintf(pub, sizeof(pub), "%s.pub", B->ssh_key);
	unlink(B->ssh_key);
	unlink(pub);
	argv[9] = B->ssh_key;
	*argv_out = argv;
}

static int keys_ensure_sync(char *err, size_t errlen)
{
	char dir[4100];
	char **argv;
	int rc, status;

	snprintf(dir, sizeof(dir), "%s/ssh", B->data_dir);
	snprintf(B->ssh_key, sizeof(B->ssh_key), "%s/id_ed25519", dir);
	rc = mkdir_p(dir, 0700);
	if (rc < 0) {
		snprintf(err, errlen, "cannot create %s: %s", dir, proto_strerror(rc));
		return rc;
	}
	if (!keys_present()) {
		keys_prepare(&argv);
		vlog(LOG_INFO_, "creating the SSH key pair %s", B->ssh_key);
		status = child_run_sync(argv);
		if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			snprintf(err, errlen, "ssh-keygen could not create %s (is openssh-client installed?)",
				 B->ssh_key);
			return PROTO_E_IO;
		}
	}
	return keys_load_pub(err, errlen);
}

struct keys_waiter {
	struct keys_waiter *next;
	void (*done)(void *ud, int err, const char *errmsg);
	void *ud;
};
static struct keys_waiter *keys_waiters;
static bool keygen_running;

static void keys_on_keygen(void *ud, int status, const char *out)
{
	char err[1024] = "";
	int rc = PROTO_E_IO;

	keygen_running = false;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		rc = keys_load_pub(err, sizeof(err));
	else
		snprintf(err, sizeof(err), "ssh-keygen could not create %.400s: %.400s", B->ssh_key, out);
	while (keys_waiters) {
		struct keys_waiter *w = keys_waiters;

		keys_waiters = w->next;
		w->done(w->ud, rc, err);
		free(w);
	}
}

void keys_ensure(void (*done)(void *ud, int err, const char *errmsg), void *ud)
{
	struct keys_waiter *w;
	char err[1024];
	char **argv;

	if (keys_present() && B->ssh_pubkey) {
		done(ud, 0, NULL);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		done(ud, PROTO_E_NOMEM, "out of memory");
		return;
	}
	w->done = done;
	w->ud = ud;
	w->next = keys_waiters;
	keys_waiters = w;
	if (keygen_running)
		return;
	keys_prepare(&argv);
	vlog(LOG_INFO_, "the SSH key pair is missing; creating %s", B->ssh_key);
	if (!child_run(argv, NULL, 60.0, keys_on_keygen, NULL, err, sizeof(err))) {
		keys_waiters = w->next;
		free(w);
		done(ud, PROTO_E_IO, err);
		return;
	}
	keygen_running = true;
}

/* Load the SSH key pair if it exists. Making one takes ssh-keygen a good
 * part of a second: *later says it is to be made once the broker listens
 * (keys_ensure() makes a launch wait for it). */
int keys_init(bool *later, char *err, size_t errlen)
{
	char pub[4300];
	int rc;

	snprintf(B->ssh_key, sizeof(B->ssh_key), "%s/ssh/id_ed25519", B->data_dir);
	snprintf(pub, sizeof(pub), "%s.pub", B->ssh_key);
	*later = access(B->ssh_key, R_OK) != 0 || access(pub, R_OK) != 0;
	if (!*later)
		return keys_ensure_sync(err, errlen);
	snprintf(pub, sizeof(pub), "%s/ssh", B->data_dir);
	rc = mkdir_p(pub, 0700);
	if (rc < 0)
		snprintf(err, errlen, "cannot create %s: %s", pub, proto_strerror(rc));
	return rc;
}
