/* vmctl wait-ready: wait until the broker and its driver's helper are ready. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

#define WAIT_READY_DEFAULT 300
#define WAIT_READY_POLL 0.25 /* seconds between looks */

static int wait_ready_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option wait_ready_options[] = {
	{ "timeout", 0, "SECONDS", 0,
	  "Give up after this many seconds (default 300); vmctl then exits with status 5." },
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_wait_ready_entry = {
	.name = "wait-ready",
	.usage = "[options]",
	.summary = "Wait until vmctl can take commands.",
	.help = "Returns once the broker answers (starting it, unless VMCTL_NO_AUTOSTART is set, "
		"in which case it waits for one to appear) and the helper of the active driver "
		"(the setting local.driver) has started and answered its handshake. A helper "
		"that is missing or unusable on this host is an error at once (exit 1), with "
		"the reason, rather than a wait: waiting would not change it.",
	.options = wait_ready_options,
	.min_args = 0,
	.max_args = 0,
	.exec = wait_ready_exec,
};

static double wait_ready_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_ready_sleep(void)
{
	struct timespec ts = { 0, (long)(WAIT_READY_POLL * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Does something accept connections on the broker's socket? (Quietly: the
 * request that follows says what is wrong, if anything.) */
static bool wait_ready_socket_answers(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[4096];
	int fd;
	bool ok;

	if (data_dir(dir, sizeof(dir)) < 0 ||
	    (size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/vmctld.sock", dir) >=
		    sizeof(sa.sun_path))
		return true; /* let the request explain */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true;
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EACCES;
	close(fd);
	return ok;
}

static int wait_ready_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *no_start = getenv("VMCTL_NO_AUTOSTART");
	bool autostart = no_start == NULL || no_start[0] == '\0' || strcmp(no_start, "0") == 0;
	uint64_t timeout = WAIT_READY_DEFAULT;
	char err[256], state[32], problem[1400], driver[64];
	double deadline;
	int rc;

	if (args_get(a, "timeout") != NULL &&
	    args_parse_uint("--timeout", args_get(a, "timeout"), 1, 7 * 86400, &timeout, err,
			    sizeof(err)) < 0)
		return cmd_usage_error(self, "%s", err);
	deadline = wait_ready_now() + (double)timeout;
	while (!autostart && !wait_ready_socket_answers()) {
		if (wait_ready_now() >= deadline)
			return cmd_error(EXIT_TIMEOUT, "no broker answered within %llu seconds (and "
					 "VMCTL_NO_AUTOSTART keeps vmctl from starting one)",
					 (unsigned long long)timeout);
		wait_ready_sleep();
	}
	for (;;) {
		double left = deadline - wait_ready_now();
		struct cli_reply r;

		rc = cli_request("version", NULL, left > 1 ? left : 1, &r);
		if (rc != EXIT_OK) {
			cli_reply_free(&r);
			return rc;
		}
		state[0] = problem[0] = driver[0] = '\0';
		proto_get_str(r.result, "helper_state", state, sizeof(state));
		proto_get_str(r.result, "helper_problem", problem, sizeof(problem));
		proto_get_str(r.result, "driver", driver, sizeof(driver));
		cli_reply_free(&r);
		/* A broker that does not say is one from before helper states. */
		if (state[0] == '\0' || strcmp(state, "ready") == 0)
			return EXIT_OK;
		if (strcmp(state, "missing") == 0 || strcmp(state, "unusable") == 0)
			return cmd_error(EXIT_FAILED, "the %s driver cannot be used: %s", driver,
					 problem[0] != '\0' ? problem : state);
		if (wait_ready_now() >= deadline)
			return cmd_error(EXIT_TIMEOUT, "the helper of the %s driver is still %s after "
					 "%llu seconds%s%s", driver, state,
					 (unsigned long long)timeout, problem[0] != '\0' ? ": " : "",
					 problem);
		wait_ready_sleep();
	}
}
