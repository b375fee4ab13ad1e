/*
 * Readiness of a guest: a cheap look at its SSH port on the loop (probe.c)
 * before an ssh login is spent, and the one login that also waits for
 * cloud-init (readiness.c: the remote command and what its output means).
 */
#ifndef VMCTLD_READINESS_H
#define VMCTLD_READINESS_H

#include <stdbool.h>
#include <stddef.h>

/* ---- readiness.c (pure: unit-tested) ---- */

/* The first line the login prints: from then on SSH is known to work. */
#define READY_UP_MARK "vmctl-ssh-up"

/* The remote command of the readiness login when cloud-init is waited for:
 * it prints READY_UP_MARK, then waits for cloud-init when it runs in this
 * boot, and says how that ended on a line of its own. */
extern const char ready_cloud_init_cmd[];

enum ready_cloud_init {
	READY_CI_UNKNOWN, /* no verdict line: the login ended before it */
	READY_CI_ABSENT,  /* cloud-init does not run in this boot */
	READY_CI_DONE,    /* cloud-init finished; status in *status */
};

/* Has output (captured so far) shown READY_UP_MARK on a line of its own? */
bool ready_output_up(const char *output);
/* The verdict line of the output of ready_cloud_init_cmd. */
enum ready_cloud_init ready_output_cloud_init(const char *output, int *status);

/* ---- probe.c ---- */

enum probe_result {
	PROBE_BANNER, /* an SSH server greeted us */
	PROBE_CLOSED, /* refused, reset or closed before a banner: nothing listens yet */
	PROBE_SILENT, /* connected, but nothing came within the wait */
};

typedef void (*probe_done_fn)(void *ud, enum probe_result result);
struct probe;

/* Can probe_start() reach host (a numeric IPv4 or IPv6 address)? */
bool probe_host_usable(const char *host);
/* Connect to host:port without blocking and wait up to wait_s for the SSH
 * banner. done runs exactly once, never before this returns, unless
 * probe_cancel() is called. NULL when host is not usable or memory is
 * short. */
struct probe *probe_start(const char *host, int port, double wait_s, probe_done_fn done, void *ud);
void probe_cancel(struct probe *p);

#endif
