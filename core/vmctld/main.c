/*
 * vmctld start-up and shut-down: the lock, the socket, detaching, signals.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "image.h"

#define SHUTDOWN_GRACE 8.0 /* seconds the helper gets to answer "shutdown" */
/* Helpers' --describe runs this long after the broker is ready, so that it
 * competes with neither the helper's start nor the first commands (the
 * libvirt helper alone loads 60 libraries); refusals before that name the
 * other drivers from the seed's table. */
#define DESCRIBE_DELAY 3.0
/* Bytes of a start-up error handed to the process that waits in detach(). */
#define STARTUP_ERROR_MAX 2048
/* DATA/vmctld.log is renamed vmctld.log.1 (replacing the one before) once it
 * holds this much, so the two never take more than twice this on disk. */
#define BROKER_LOG_MAX_BYTES (10u * 1024 * 1024)

static struct broker broker_state = {.listen_fd = -1};
struct broker *B = &broker_state;

static void usage(FILE *f)
{
	fprintf(f, "usage: vmctld [--detach] [--foreground]\n"
		   "  --detach      run in the background once listening (log in $VMCTL_DATA/vmctld.log)\n"
		   "  --foreground  stay attached to the terminal, log on stderr (the default)\n");
}

/* Take DATA/vmctld.lock. 0 with *fd, 1 if another broker holds it. */
static int take_lock(int *fd_out)
{
	char path[4200];
	int fd;

	char err[4400];

	snprintf(path, sizeof(path), "%s/vmctld.lock", B->data_dir);
	fd = open_private_file(path, O_RDWR | O_CREAT, "the lock", err, sizeof(err));
	if (fd < 0) {
		fprintf(stderr, "vmctld: %s\n", err);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		close(fd);
		if (e == EWOULDBLOCK)
			return 1;
		fprintf(stderr, "vmctld: cannot lock %s: %s\n", path, strerror(e));
		return -1;
	}
	*fd_out = fd;
	return 0;
}

/* Fork; the parent waits on a pipe until the child says it listens ("R")
 * or why it could not start ("E" and a sentence), which the parent prints
 * on its stderr: vmctl, starting the broker on demand, reads it there and
 * shows it to the user. Returns in the child with the write end in
 * *ready_fd. */
static int detach(int *ready_fd)
{
	char log_path[4200], err[4400];
	int pipefd[2];
	pid_t pid;
	int logfd, nullfd;

	/* Opened before forking, so that a refusal reaches whoever started us. */
	snprintf(log_path, sizeof(log_path), "%s/vmctld.log", B->data_dir);
	logfd = open_private_file(log_path, O_WRONLY | O_CREAT | O_APPEND, "the log", err, sizeof(err));
	if (logfd < 0) {
		fprintf(stderr, "vmctld: %s\n", err);
		return -1;
	}

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		fprintf(stderr, "vmctld: pipe: %s\n", strerror(errno));
		close(logfd);
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "vmctld: fork: %s\n", strerror(errno));
		close(logfd);
		return -1;
	}
	if (pid > 0) {
		char msg[STARTUP_ERROR_MAX + 2];
		size_t got = 0;
		ssize_t n;

		close(pipefd[1]);
		while (got < sizeof(msg) - 1) {
			n = read(pipefd[0], msg + got, sizeof(msg) - 1 - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		msg[got] = '\0';
		if (got >= 1 && msg[0] == 'R')
			_exit(0);
		if (got > 1 && msg[0] == 'E')
			fprintf(stderr, "vmctld: %s\n", msg + 1);
		else
			fprintf(stderr, "vmctld: the broker failed to start\n");
		fprintf(stderr, "vmctld: see %s/vmctld.log\n", B->data_dir);
		_exit(1);
	}
	close(pipefd[0]);
	setsid();
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nullfd < 0) {
		fprintf(stderr, "vmctld: cannot open /dev/null: %s\n", strerror(errno));
		return -1;
	}
	dup2(nullfd, 0);
	dup2(logfd, 1);
	dup2(logfd, 2);
	close(nullfd);
	close(logfd);
	vlog_set_file(log_path, BROKER_LOG_MAX_BYTES);
	*ready_fd = pipefd[1];
	return 0;
}

/* Start-up failed after detach(): log why, and hand the sentence to the
 * process waiting in detach(). */
static int startup_failed(int ready_fd, const char *err)
{
	size_t len = strnlen(err, STARTUP_ERROR_MAX), done = 0;

	vlog(LOG_ERROR_, "%s", err);
	if (ready_fd < 0)
		return 1;
	if (write(ready_fd, "E", 1) == 1) {
		while (done < len) {
			ssize_t n = write(ready_fd, err + done, len - done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			done += (size_t)n;
		}
	}
	close(ready_fd);
	return 1;
}

/* Relative folders in VMCTL_HELPER_PATH, made absolute before the broker
 * moves to "/" (helper.c reads the variable whenever it looks for helpers). */
static int helper_path_absolute(void)
{
	const char *env = getenv("VMCTL_HELPER_PATH");
	char *copy, *save = NULL, *out;
	size_t used = 0, cap;
	int rc = 0;

	if (!env || !*env)
		return 0;
	cap = strlen(env) * 2 + 4200;
	copy = strdup(env);
	out = calloc(1, cap);
	if (!copy || !out) {
		rc = -1;
		goto out_free;
	}
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char abs[4200];

		if (path_absolute(d, abs, sizeof(abs)) < 0 || used + strlen(abs) + 2 > cap)
			continue;
		used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? ":" : "", abs);
	}
	rc = setenv("VMCTL_HELPER_PATH", out, 1);
out_free:
	free(copy);
	free(out);
	return rc;
}

static void broker_exit_now(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void broker_on_helper_stopped(void *ud)
{
	ev_timer_stop(B->loop, &B->exit_timer);
	ev_break(B->loop, EVBREAK_ALL);
}

void broker_shutdown(void)
{
	if (B->shutting_down)
		return;
	B->shutting_down = true;
	vlog(LOG_INFO_, "shutting down (running instances keep running)");
	client_close_all();
	ev_timer_init(&B->exit_timer, broker_exit_now, SHUTDOWN_GRACE, 0);
	ev_timer_start(B->loop, &B->exit_timer);
	if (B->helper)
		helper_stop(B->helper, broker_on_helper_stopped, NULL);
	else
		ev_break(B->loop, EVBREAK_ALL);
}

static void broker_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	vlog(LOG_INFO_, "got signal %d", w->signum);
	broker_shutdown();
}

static ev_timer describe_w;

static void broker_on_describe_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	if (!B->shutting_down)
		helper_describe_all();
}

static void broker_on_keys(void *ud, int err, const char *errmsg)
{
	if (err < 0)
		vlog(LOG_WARN_, "%s; the next launch tries again", errmsg);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"detach", no_argument, NULL, 'd'},
		{"foreground", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	bool want_detach = false, foreground = false, keys_later = false;
	char err[2048];
	char images_dir[4200];
	int lock_fd = -1, ready_fd = -1;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "dfhV", opts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			want_detach = true;
			break;
		case 'f':
			foreground = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("vmctld %s\n", VMCTL_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	vlog_set_name("vmctld");
	/* A record repeated in a loop (a failing accept, a chatty helper) is
	 * written once and counted. */
	vlog_collapse_repeats(true);
	atexit(vlog_flush);
	signal(SIGPIPE, SIG_IGN);
	umask(077);

	if (data_dir(B->data_dir, sizeof(B->data_dir)) < 0) {
		fprintf(stderr, "vmctld: cannot tell the data folder: set VMCTL_DATA or HOME\n");
		return 1;
	}
	rc = mkdir_p(B->data_dir, 0700);
	if (rc < 0) {
		fprintf(stderr, "vmctld: cannot create %s: %s\n", B->data_dir, proto_strerror(rc));
		return 1;
	}
	/* Whoever can write there can make us write anywhere we can. */
	if (path_check_trusted(B->data_dir, S_IFDIR, "the data folder", err, sizeof(err)) < 0) {
		fprintf(stderr, "vmctld: %s\n", err);
		return 1;
	}
	/* Every path is absolute from here on: keep no folder busy. */
	if (helper_path_absolute() < 0 || chdir("/") < 0) {
		fprintf(stderr, "vmctld: cannot leave the working folder: %s\n", strerror(errno));
		return 1;
	}
	rc = take_lock(&lock_fd);
	if (rc == 1) {
		fprintf(stderr, "vmctld: another vmctld already serves %s\n", B->data_dir);
		return 0;
	}
	if (rc < 0)
		return 1;
	if (want_detach && !foreground && detach(&ready_fd) < 0)
		return 1;

	if (getenv("VMCTL_HELPER_DEADLINE"))
		B->deadline_cap = strtod(getenv("VMCTL_HELPER_DEADLINE"), NULL);
	if (exe_dir(B->exe_dir, sizeof(B->exe_dir)) < 0)
		snprintf(B->exe_dir, sizeof(B->exe_dir), "/usr/bin");
	snprintf(B->sock_path, sizeof(B->sock_path), "%s/vmctld.sock", B->data_dir);
	B->loop = ev_default_loop(EVFLAG_AUTO);
	if (!B->loop)
		return startup_failed(ready_fd, "cannot create the event loop");
	vlog(LOG_INFO_, "vmctld %s starting (pid %d, data %s)", VMCTL_VERSION, (int)getpid(),
	     B->data_dir);
	if (config_load(err, sizeof(err)) < 0 || switch_init(err, sizeof(err)) < 0 ||
	    keys_init(&keys_later, err, sizeof(err)) < 0 ||
	    client_listen(err, sizeof(err)) < 0)
		return startup_failed(ready_fd, err);
	snprintf(images_dir, sizeof(images_dir), "%s/images", B->data_dir);
	mkdir_p(images_dir, 0700);
	B->images = image_cache_new(B->loop, images_dir);
	if (!B->images) {
		snprintf(err, sizeof(err), "cannot set up the image cache in %s", images_dir);
		return startup_failed(ready_fd, err);
	}
	image_cache_set_mirror(B->images, settings_get(&B->settings, "local.image.mirror"));
	prune_start();
	ev_signal_init(&B->sigterm_w, broker_on_signal, SIGTERM);
	ev_signal_start(B->loop, &B->sigterm_w);
	ev_signal_init(&B->sigint_w, broker_on_signal, SIGINT);
	ev_signal_start(B->loop, &B->sigint_w);

	vlog(LOG_INFO_, "listening on %s", B->sock_path);
	if (ready_fd >= 0) {
		ssize_t n = write(ready_fd, "R", 1);

		(void)n;
		close(ready_fd);
	}
	switch_start_helper();
	if (keys_later)
		keys_ensure(broker_on_keys, NULL);
	ev_timer_init(&describe_w, broker_on_describe_timer, DESCRIBE_DELAY, 0);
	ev_timer_start(B->loop, &describe_w);
	ev_run(B->loop, 0);
	ev_timer_stop(B->loop, &describe_w);

	unlink(B->sock_path);
	classic_stop_all();
	{
		struct helper *h = B->helper;

		/* Callbacks run while it is freed must not find it active. */
		B->helper = NULL;
		helper_free(h);
	}
	helper_errpipes_free();
	prune_stop();
	image_cache_free(B->images);
	registry_free(&B->reg);
	settings_free(&B->settings);
	free(B->ssh_pubkey);
	drivers_free();
	while (B->busy)
		busy_remove(B->busy->name);
	vlog(LOG_INFO_, "stopped");
	close(lock_fd);
	return 0;
}
