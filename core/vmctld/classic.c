/*
 * Classic mounts at run time: one session per mounted folder of a running
 * instance, a pair of the broker's children joined by a socket pair:
 *
 *   sftp-server -d SOURCE  <==socketpair==>  ssh ubuntu@GUEST 'sshfs -o slave ...'
 *
 * sftp-server serves the host folder on its stdin/stdout; sshfs in the guest
 * speaks SFTP on the SSH channel. Nothing listens anywhere. Both children
 * die with the broker (PR_SET_PDEATHSIG), and so does the guest's sshfs with
 * its SSH session; the broker establishes them again when it starts
 * (classic_resume_all). A session whose processes end while its instance
 * runs is started again with the helpers' backoff, unless the guest cannot
 * run sshfs at all; umount ends it on purpose. Nothing here waits: the
 * children run under ev_child, the guest's answer is read under ev_io.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vmproto/vmh.h>

#include "broker.h"

#define CLASSIC_ERR_MAX 4096
#define CLASSIC_KILL_AFTER 5.0 /* SIGTERM, then SIGKILL after this long */

enum classic_phase {
	CLASSIC_INFO,    /* asking the helper where SSH listens */
	CLASSIC_RUNNING, /* ssh and sftp-server run (mounted once the mark came) */
	CLASSIC_BACKOFF, /* ended; started again when the timer fires */
	CLASSIC_FAILED,  /* the guest cannot run it: not retried until the next start */
	CLASSIC_ENDING,  /* being ended on purpose; freed once both are reaped */
};

/* Someone waiting for one or more sessions to be mounted (or to fail). */
struct classic_wait {
	size_t pending;
	int err;
	char msg[2048];
	mount_done_fn done;
	void *ud;
};

struct classic_session {
	struct classic_session *next;
	uint64_t id;
	unsigned gen;
	char name[INSTANCE_NAME_MAX + 1];
	char source[1100], target[1100], uid_map[512], gid_map[512];
	char host[64], port[16];
	enum classic_phase phase;
	bool mounted;
	pid_t ssh_pid, sftp_pid;
	ev_child ssh_w, sftp_w;
	int ssh_status;
	int err_fd;
	ev_io err_w;
	char err[CLASSIC_ERR_MAX + 1];
	size_t err_len;
	ev_timer timer_w; /* backoff, or the SIGKILL after SIGTERM */
	unsigned backoff_ms;
	ev_tstamp up_since;
	char problem[600]; /* why it is not mounted, for info */
	struct classic_wait *wait;       /* told once it is mounted or fails */
	struct classic_wait *end_wait;   /* told once both processes are reaped */
};

static struct classic_session *sessions;
static uint64_t next_id = 1;

static void classic_start(struct classic_session *s);

static void wait_report(struct classic_wait *w, int err, const char *msg)
{
	if (!w)
		return;
	if (err < 0) {
		size_t used = strlen(w->msg);

		w->err = err;
		snprintf(w->msg + used, sizeof(w->msg) - used, "%s%s", used ? "; " : "", msg);
	}
	if (--w->pending == 0) {
		mount_done_fn done = w->done;
		void *ud = w->ud;
		int e = w->err;
		char msgcopy[2048];

		snprintf(msgcopy, sizeof(msgcopy), "%s", w->msg);
		free(w);
		if (done)
			done(ud, e, e < 0 ? msgcopy : NULL);
	}
}

static struct classic_wait *wait_new(mount_done_fn done, void *ud)
{
	struct classic_wait *w = calloc(1, sizeof(*w));

	if (w) {
		w->done = done;
		w->ud = ud;
		w->pending = 1; /* held by the caller until all sessions are asked */
	}
	return w;
}

static struct classic_session *session_find(const char *name, const char *target)
{
	for (struct classic_session *s = sessions; s; s = s->next)
		if (s->gen == B->scope_gen && !strcmp(s->name, name) && !strcmp(s->target, target))
			return s;
	return NULL;
}

static struct classic_session *session_by_id(uint64_t id)
{
	for (struct classic_session *s = sessions; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void session_free(struct classic_session *s)
{
	struct classic_session **pp;

	for (pp = &sessions; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	ev_timer_stop(B->loop, &s->timer_w);
	if (s->err_fd >= 0) {
		ev_io_stop(B->loop, &s->err_w);
		close(s->err_fd);
	}
	wait_report(s->wait, PROTO_E_INVALID_STATE, "the mount was ended before it was established");
	if (s->end_wait)
		wait_report(s->end_wait, 0, NULL);
	free(s);
}

/* The record's classic mount at target, or NULL. */
static const struct mount_record *classic_record(const char *name, const char *target,
						 struct instance_record **rec_out)
{
	struct instance_record *rec = registry_find(&B->reg, name);

	if (rec_out)
		*rec_out = rec;
	for (size_t i = 0; rec && !rec->deleted && i < rec->n_classic_mounts; i++)
		if (!strcmp(rec->classic_mounts[i].target, target))
			return &rec->classic_mounts[i];
	return NULL;
}

/* Should this session run now? Its instance runs and still has the mount. */
static bool session_wanted(const struct classic_session *s)
{
	struct instance_record *rec;

	if (s->gen != B->scope_gen || B->shutting_down)
		return false;
	if (!classic_record(s->name, s->target, &rec))
		return false;
	return rec->state == PROTO_STATE_RUNNING;
}

/* ---- the two processes ---- */

/* In the child after fork: only async-signal-safe calls until exec. */
static void classic_exec(char *const argv[], int in_fd, int out_fd, int err_fd, pid_t parent,
			 int ruleset_fd)
{
	sigset_t none;

	/* Die with the broker, so that no orphan serves the folder. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	dup2(in_fd, 0);
	dup2(out_fd, 1);
	dup2(err_fd, 2);
	if (ruleset_fd >= 0 && vmh_landlock_enforce(ruleset_fd) < 0)
		_exit(126);
	execvp(argv[0], argv);
	_exit(127);
}

/* ruleset_fd >= 0: the child is confined to it (Landlock) before exec. */
static pid_t classic_spawn(char *const argv[], int in_fd, int out_fd, int err_fd, int ruleset_fd)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid == 0)
		classic_exec(argv, in_fd, out_fd, err_fd, parent, ruleset_fd);
	return pid;
}

/* classic_sftp_ruleset(), or -1 where the kernel cannot confine: the mount
 * then works unconfined, and the log says so once. */
static int classic_ruleset(const char *sftp, const char *source)
{
	static bool warned;
	char why[256];
	int fd = classic_sftp_ruleset(sftp, source, why, sizeof(why));

	if (fd < 0 && !warned) {
		vlog(LOG_WARN_, "classic mounts are not confined to their folders: %s", why);
		warned = true;
	}
	return fd;
}

/* Where OpenSSH's sftp-server is: $VMCTL_SFTP_SERVER, else the usual places. */
static const char *classic_sftp_server(void)
{
	static const char *const places[] = {
		"/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
		"/usr/libexec/sftp-server", "/usr/lib/ssh/sftp-server", NULL,
	};
	const char *env = getenv("VMCTL_SFTP_SERVER");

	if (env && env[0])
		return access(env, X_OK) == 0 ? env : NULL;
	for (size_t i = 0; places[i]; i++)
		if (access(places[i], X_OK) == 0)
			return places[i];
	return NULL;
}

static void session_ended(struct classic_session *s);

static void session_on_err(struct ev_loop *loop, ev_io *w, int revents)
{
	struct classic_session *s = w->data;
	char buf[2048];
	ssize_t n = read(s->err_fd, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ev_io_stop(loop, w);
		close(s->err_fd);
		s->err_fd = -1;
		return;
	}
	if (s->err_len + (size_t)n > CLASSIC_ERR_MAX) {
		/* Keep the end: the last lines say why it ended. */
		size_t drop = s->err_len + (size_t)n - CLASSIC_ERR_MAX;

		if (drop > s->err_len)
			drop = s->err_len;
		memmove(s->err, s->err + drop, s->err_len - drop);
		s->err_len -= drop;
		if ((size_t)n > CLASSIC_ERR_MAX)
			n = CLASSIC_ERR_MAX;
	}
	memcpy(s->err + s->err_len, buf, (size_t)n);
	s->err_len += (size_t)n;
	s->err[s->err_len] = '\0';
	if (!s->mounted && strstr(s->err, CLASSIC_MOUNTED_MARK)) {
		char *mark = strstr(s->err, CLASSIC_MOUNTED_MARK);

		s->mounted = true;
		s->up_since = ev_now(loop);
		s->problem[0] = '\0';
		/* What came before the mark is of no more interest. */
		s->err_len = strlen(mark + strlen(CLASSIC_MOUNTED_MARK));
		memmove(s->err, mark + strlen(CLASSIC_MOUNTED_MARK), s->err_len + 1);
		vlog(LOG_INFO_, "%s: classic mount of %s at %s is active", s->name, s->source,
		     s->target);
		wait_report(s->wait, 0, NULL);
		s->wait = NULL;
	}
}

static void session_on_ssh_exit(struct ev_loop *loop, ev_child *w, int revents)
{
	struct classic_session *s = w->data;

	ev_child_stop(loop, w);
	s->ssh_pid = 0;
	s->ssh_status = w->rstatus;
	/* sftp-server ends at the EOF; make sure. */
	if (s->sftp_pid > 0)
		kill(s->sftp_pid, SIGTERM);
	else
		session_ended(s);
}

static void session_on_sftp_exit(struct ev_loop *loop, ev_child *w, int revents)
{
	struct classic_session *s = w->data;

	ev_child_stop(loop, w);
	s->sftp_pid = 0;
	if (s->ssh_pid > 0)
		kill(s->ssh_pid, SIGTERM);
	else
		session_ended(s);
}

static void session_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct classic_session *s = w->data;

	if (s->phase == CLASSIC_ENDING) {
		if (s->ssh_pid > 0)
			kill(s->ssh_pid, SIGKILL);
		if (s->sftp_pid > 0)
			kill(s->sftp_pid, SIGKILL);
		return;
	}
	if (s->phase != CLASSIC_BACKOFF)
		return;
	if (!session_wanted(s)) {
		session_free(s);
		return;
	}
	classic_start(s);
}

/* Both processes are reaped: end the session, or start it again. */
static void session_ended(struct classic_session *s)
{
	bool was_mounted = s->mounted;
	char why[600];

	/* What they wrote last is in the pipe already. */
	for (int i = 0; i < 8 && s->err_fd >= 0; i++)
		session_on_err(B->loop, &s->err_w, 0);
	ev_timer_stop(B->loop, &s->timer_w);
	if (s->phase == CLASSIC_ENDING) {
		vlog(LOG_INFO_, "%s: classic mount at %s ended", s->name, s->target);
		session_free(s);
		return;
	}
	classic_describe_exit(s->ssh_status, s->err, why, sizeof(why));
	snprintf(s->problem, sizeof(s->problem), "%s", why);
	vlog(LOG_WARN_, "%s: classic mount at %s: %s", s->name, s->target, why);
	s->mounted = false;
	if (s->wait) {
		char msg[900];

		snprintf(msg, sizeof(msg), "could not mount %s at %s:%s: %s", s->source, s->name,
			 s->target, why);
		wait_report(s->wait, PROTO_E_DRIVER, msg);
		s->wait = NULL;
	}
	if (!session_wanted(s)) {
		session_free(s);
		return;
	}
	if (WIFEXITED(s->ssh_status) && (WEXITSTATUS(s->ssh_status) == CLASSIC_EXIT_NO_SSHFS ||
					 WEXITSTATUS(s->ssh_status) == CLASSIC_EXIT_NO_FUSE)) {
		s->phase = CLASSIC_FAILED;
		return;
	}
	s->backoff_ms = backoff_next_ms(s->backoff_ms,
					was_mounted ? ev_now(B->loop) - s->up_since : 0.0);
	s->phase = CLASSIC_BACKOFF;
	ev_timer_set(&s->timer_w, s->backoff_ms / 1000.0, 0);
	ev_timer_start(B->loop, &s->timer_w);
}

static int session_run(struct classic_session *s, char *why, size_t whylen)
{
	const char *sftp = classic_sftp_server();
	char login[128], *script;
	int sv[2], errp[2];
	int rc = PROTO_E_IO;

	if (!sftp) {
		snprintf(why, whylen, "OpenSSH's sftp-server is not installed on this host (package "
			 "openssh-sftp-server; or set VMCTL_SFTP_SERVER)");
		return PROTO_E_UNAVAILABLE;
	}
	script = classic_guest_script(s->source, s->target, s->uid_map, s->gid_map);
	if (!script) {
		snprintf(why, whylen, "out of memory");
		return PROTO_E_NOMEM;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(why, whylen, "cannot make a socket pair: %s", strerror(errno));
		goto out_script;
	}
	if (pipe2(errp, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "cannot make a pipe: %s", strerror(errno));
		goto out_sv;
	}
	snprintf(login, sizeof(login), "ubuntu@%s", s->host);
	{
		char *ssh_argv[] = {
			"ssh", "-F", "/dev/null", "-T", "-i", B->ssh_key, "-o", "IdentitiesOnly=yes",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o",
			"StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
			"LogLevel=ERROR", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
			"-p", s->port, login, script, NULL,
		};
		char *sftp_argv[] = { (char *)sftp, "-e", "-l", "ERROR", "-d", s->source, NULL };

		int ruleset = classic_ruleset(sftp, s->source);

		s->sftp_pid = classic_spawn(sftp_argv, sv[1], sv[1], errp[1], ruleset);
		if (ruleset >= 0)
			close(ruleset);
		if (s->sftp_pid < 0) {
			s->sftp_pid = 0;
			snprintf(why, whylen, "cannot start %s: %s", sftp, strerror(errno));
			goto out_errp;
		}
		s->ssh_pid = classic_spawn(ssh_argv, sv[0], sv[0], errp[1], -1);
		if (s->ssh_pid < 0) {
			s->ssh_pid = 0;
			snprintf(why, whylen, "cannot start ssh: %s", strerror(errno));
			kill(s->sftp_pid, SIGKILL);
			/* reaped by its watcher below */
		}
	}
	ev_child_init(&s->sftp_w, session_on_sftp_exit, s->sftp_pid, 0);
	s->sftp_w.data = s;
	ev_child_start(B->loop, &s->sftp_w);
	if (s->ssh_pid > 0) {
		ev_child_init(&s->ssh_w, session_on_ssh_exit, s->ssh_pid, 0);
		s->ssh_w.data = s;
		ev_child_start(B->loop, &s->ssh_w);
	} else {
		s->ssh_status = 127 << 8;
	}
	s->err_len = 0;
	s->err[0] = '\0';
	s->err_fd = errp[0];
	fcntl(s->err_fd, F_SETFL, fcntl(s->err_fd, F_GETFL) | O_NONBLOCK);
	ev_io_init(&s->err_w, session_on_err, s->err_fd, EV_READ);
	s->err_w.data = s;
	ev_io_start(B->loop, &s->err_w);
	close(errp[1]);
	close(sv[0]);
	close(sv[1]);
	free(script);
	s->phase = CLASSIC_RUNNING;
	s->mounted = false;
	vlog(LOG_INFO_, "%s: classic mount of %s at %s: sftp-server %d, ssh %d", s->name, s->source,
	     s->target, (int)s->sftp_pid, (int)s->ssh_pid);
	return 0;

out_errp:
	close(errp[0]);
	close(errp[1]);
out_sv:
	close(sv[0]);
	close(sv[1]);
out_script:
	free(script);
	return rc;
}

/* The helper said where SSH listens (or could not). */
static void session_on_info(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct classic_session *s = session_by_id((uint64_t)(uintptr_t)ud);
	int64_t port = 0;
	char why[600];
	int rc;

	if (!s || s->phase != CLASSIC_INFO)
		return;
	if (!session_wanted(s)) {
		session_free(s);
		return;
	}
	if (err < 0) {
		snprintf(why, sizeof(why), "the %s driver does not say where SSH of %s listens: %s",
			 B->driver, s->name, errmsg);
		rc = err;
		goto out_fail;
	}
	snprintf(s->host, sizeof(s->host), "127.0.0.1");
	proto_get_str(result, "ssh_host", s->host, sizeof(s->host));
	if (proto_get_int(result, "ssh_port", &port) < 0 || port <= 0 || port > 65535) {
		snprintf(why, sizeof(why), "the %s driver does not say where SSH of %s listens",
			 B->driver, s->name);
		rc = PROTO_E_UNAVAILABLE;
		goto out_fail;
	}
	snprintf(s->port, sizeof(s->port), "%lld", (long long)port);
	rc = session_run(s, why, sizeof(why));
	if (rc == 0)
		return;
out_fail:
	snprintf(s->problem, sizeof(s->problem), "%s", why);
	vlog(LOG_WARN_, "%s: classic mount at %s: %s", s->name, s->target, why);
	s->phase = CLASSIC_FAILED;
	{
		char msg[900];

		snprintf(msg, sizeof(msg), "could not mount %s at %s:%s: %s", s->source, s->name,
			 s->target, why);
		wait_report(s->wait, rc, msg);
		s->wait = NULL;
	}
}

static void classic_start(struct classic_session *s)
{
	struct instance_record *rec = registry_find(&B->reg, s->name);

	s->phase = CLASSIC_INFO;
	if (!rec || !opx_call(rec, "instance.info", BROKER_SHORT_DEADLINE, session_on_info,
			      (void *)(uintptr_t)s->id)) {
		s->phase = CLASSIC_FAILED;
		snprintf(s->problem, sizeof(s->problem), "could not ask the %s driver where SSH "
			 "listens", B->driver);
		wait_report(s->wait, PROTO_E_NOMEM, s->problem);
		s->wait = NULL;
	}
}

/* Make (or restart) the session of one recorded mount; w, if any, hears of it. */
static void classic_establish_one(const char *name, const struct mount_record *m,
				  struct classic_wait *w)
{
	struct classic_session *s = session_find(name, m->target);

	if (s && (s->phase == CLASSIC_RUNNING || s->phase == CLASSIC_INFO)) {
		/* Up or coming up: nothing to wait for here. */
		return;
	}
	if (s && s->phase == CLASSIC_ENDING)
		return;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s) {
			if (w) {
				w->pending++;
				wait_report(w, PROTO_E_NOMEM, "out of memory");
			}
			return;
		}
		s->id = next_id++;
		s->gen = B->scope_gen;
		s->err_fd = -1;
		snprintf(s->name, sizeof(s->name), "%s", name);
		snprintf(s->source, sizeof(s->source), "%s", m->source);
		snprintf(s->target, sizeof(s->target), "%s", m->target);
		snprintf(s->uid_map, sizeof(s->uid_map), "%s", m->uid_map ? m->uid_map : "");
		snprintf(s->gid_map, sizeof(s->gid_map), "%s", m->gid_map ? m->gid_map : "");
		ev_timer_init(&s->timer_w, session_on_timer, 0, 0);
		s->timer_w.data = s;
		s->next = sessions;
		sessions = s;
	}
	ev_timer_stop(B->loop, &s->timer_w);
	s->backoff_ms = 0;
	if (w) {
		w->pending++;
		s->wait = w;
	}
	classic_start(s);
}

bool classic_establish(const char *name, const char *target, mount_done_fn done, void *ud)
{
	struct instance_record *rec = registry_find(&B->reg, name);
	struct classic_wait *w;

	if (!rec || rec->deleted || rec->n_classic_mounts == 0)
		return false;
	w = wait_new(done, ud);
	if (!w)
		return false;
	for (size_t i = 0; i < rec->n_classic_mounts; i++)
		if (!target || !strcmp(rec->classic_mounts[i].target, target))
			classic_establish_one(name, &rec->classic_mounts[i], w);
	wait_report(w, 0, NULL);
	return true;
}

static void session_end(struct classic_session *s, struct classic_wait *w)
{
	if (w) {
		w->pending++;
		s->end_wait = w;
	}
	if (s->phase != CLASSIC_RUNNING) {
		session_free(s);
		return;
	}
	s->phase = CLASSIC_ENDING;
	if (s->ssh_pid > 0)
		kill(s->ssh_pid, SIGTERM);
	if (s->sftp_pid > 0)
		kill(s->sftp_pid, SIGTERM);
	ev_timer_set(&s->timer_w, CLASSIC_KILL_AFTER, 0);
	ev_timer_start(B->loop, &s->timer_w);
}

/* ---- umount ---- */

struct classic_umount {
	uint64_t id;
	mount_done_fn done;
	void *ud;
};

static void umount_on_ended(void *ud, int err, const char *errmsg)
{
	struct classic_umount *u = ud;

	u->done(u->ud, 0, NULL);
	free(u);
}

static void umount_on_guest(void *ud, int status, const char *out)
{
	struct classic_umount *u = ud;
	struct classic_session *s = session_by_id(u->id);
	struct classic_wait *w;

	if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		vlog(LOG_WARN_, "classic umount in the guest: %.300s", out);
	w = s ? wait_new(umount_on_ended, u) : NULL;
	if (!w) {
		umount_on_ended(u, 0, NULL);
		return;
	}
	session_end(s, w);
	wait_report(w, 0, NULL);
}

bool classic_unmount(const char *name, const char *target, mount_done_fn done, void *ud)
{
	struct classic_session *s = session_find(name, target);
	struct classic_umount *u;
	char cmd[1400], err[256];

	if (!s)
		return false;
	if (s->phase != CLASSIC_RUNNING || !s->host[0]) {
		session_free(s);
		return false;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return false;
	u->id = s->id;
	u->done = done;
	u->ud = ud;
	/* The guest unmounts first, so that sshfs ends cleanly; a folder in use
	 * is detached lazily. Then the processes end (session_end). */
	snprintf(cmd, sizeof(cmd), "t='%s'; sudo umount \"$t\" 2>/dev/null || sudo umount -l \"$t\"",
		 s->target);
	if (!child_run_ssh(s->host, s->port, 10, cmd, 60.0, umount_on_guest, u, err, sizeof(err)))
		umount_on_guest(u, 1 << 8, err);
	return true;
}

void classic_forget(const char *name, const char *target)
{
	struct classic_session *s = session_find(name, target);

	if (s)
		session_end(s, NULL);
}

/* ---- the instance's life ---- */

void classic_instance_down(const char *name)
{
	struct classic_session *s = sessions, *next;

	for (; s; s = next) {
		next = s->next;
		if (!strcmp(s->name, name))
			session_end(s, NULL);
	}
}

static void classic_on_resumed(void *ud, int err, const char *errmsg)
{
	if (err < 0)
		vlog(LOG_WARN_, "%s", errmsg);
}

void classic_resume_all(void)
{
	for (size_t i = 0; i < B->reg.n; i++) {
		struct instance_record *rec = &B->reg.v[i];

		if (!rec->deleted && rec->n_classic_mounts && rec->state == PROTO_STATE_RUNNING)
			classic_establish(rec->name, NULL, classic_on_resumed, NULL);
	}
}

void classic_stop_all(void)
{
	while (sessions) {
		struct classic_session *s = sessions;

		if (s->ssh_pid > 0)
			kill(s->ssh_pid, SIGKILL);
		if (s->sftp_pid > 0)
			kill(s->sftp_pid, SIGKILL);
		ev_child_stop(B->loop, &s->ssh_w);
		ev_child_stop(B->loop, &s->sftp_w);
		s->wait = NULL;
		s->end_wait = NULL;
		session_free(s);
	}
}

const char *classic_status(const char *name, const char *target, char *buf, size_t len)
{
	struct classic_session *s = session_find(name, target);
	struct instance_record *rec = registry_find(&B->reg, name);

	if (!s) {
		snprintf(buf, len, "%s", rec && rec->state == PROTO_STATE_RUNNING
						? "not mounted" : "mounted at the next start");
		return buf;
	}
	switch (s->phase) {
	case CLASSIC_RUNNING:
		if (s->mounted) {
			snprintf(buf, len, "active");
			break;
		}
		/* fall through */
	case CLASSIC_INFO:
		snprintf(buf, len, "being mounted");
		break;
	case CLASSIC_BACKOFF:
		snprintf(buf, len, "restarting: %s", s->problem);
		break;
	case CLASSIC_FAILED:
		snprintf(buf, len, "failed: %s", s->problem);
		break;
	case CLASSIC_ENDING:
		snprintf(buf, len, "being unmounted");
		break;
	}
	return buf;
}
