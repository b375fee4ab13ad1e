/* The helpers' child runner: output, status, deadlines, tasks and their codes. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <ev.h>

#include <vmproto/vmh.h>

struct got {
	bool done;
	int status, signal;
	bool timed_out;
	int code;
	char output[256];
};

static void on_done(void *ud, const struct vmh_run_result *r)
{
	struct got *g = ud;

	g->done = true;
	g->status = r->status;
	g->signal = r->signal;
	g->timed_out = r->timed_out;
	g->code = vmh_task_code(r);
	snprintf(g->output, sizeof(g->output), "%s", r->output ? r->output : "");
}

static void wait_done(struct got *g)
{
	while (!g->done)
		ev_run(vmh_loop(), EVRUN_ONCE);
}

TestSuite(run, .timeout = 30);

Test(run, output_and_status_come_back_without_blocking_the_loop)
{
	char *argv[] = {"sh", "-c", "echo out; echo err >&2; read x; exit 3", NULL};
	struct got g = {0};

	cr_assert_eq(vmh_run(argv, NULL, on_done, &g), 0);
	cr_expect_not(g.done, "the callback comes from the loop, not from vmh_run");
	wait_done(&g);
	cr_expect_eq(g.status, 3);
	cr_expect_eq(g.signal, 0);
	cr_expect_not(g.timed_out);
	/* stdin is /dev/null: read returns at once. */
	cr_expect_str_eq(g.output, "out\nerr");
}

Test(run, a_child_past_its_deadline_is_killed)
{
	char *argv[] = {"sleep", "30", NULL};
	struct vmh_run_opts opts = {.timeout_s = 0.2};
	struct got g = {0};

	cr_assert_eq(vmh_run(argv, &opts, on_done, &g), 0);
	wait_done(&g);
	cr_expect(g.timed_out);
	cr_expect_eq(g.signal, SIGKILL);
	cr_expect_eq(g.status, -1);
	cr_expect_eq(g.code, PROTO_E_TIMEOUT);
}

Test(run, a_missing_program_says_so)
{
	char *argv[] = {"vmctl-no-such-program", NULL};
	struct got g = {0};

	cr_assert_eq(vmh_run(argv, NULL, on_done, &g), 0);
	wait_done(&g);
	cr_expect_eq(g.status, 127);
	cr_expect(strstr(g.output, "cannot run vmctl-no-such-program"), "%s", g.output);
}

static int task_ok(void *arg, char *err, size_t errlen)
{
	return 0;
}

static int task_busy(void *arg, char *err, size_t errlen)
{
	snprintf(err, errlen, "the %s is busy", (const char *)arg);
	return PROTO_E_BUSY;
}

static int task_crash(void *arg, char *err, size_t errlen)
{
	raise(SIGKILL);
	return 0;
}

Test(run, a_task_gives_back_its_code_and_message)
{
	struct got ok = {0}, busy = {0}, crash = {0};

	cr_assert_eq(vmh_run_task(task_ok, NULL, 10, on_done, &ok), 0);
	cr_assert_eq(vmh_run_task(task_busy, "monitor", 10, on_done, &busy), 0);
	cr_assert_eq(vmh_run_task(task_crash, NULL, 10, on_done, &crash), 0);
	wait_done(&ok);
	wait_done(&busy);
	wait_done(&crash);
	cr_expect_eq(ok.code, 0);
	cr_expect_eq(busy.code, PROTO_E_BUSY);
	cr_expect_str_eq(busy.output, "the monitor is busy");
	cr_expect_eq(crash.code, PROTO_E_DRIVER, "a task that dies is a driver error");
}

/* ---- vmh_run_wait: blocking, before the loop serves ---- */

Test(run_wait, gives_the_output_and_the_exit_status)
{
	char *const argv[] = { "sh", "-c", "echo out; echo err >&2; exit 3", NULL };
	char out[64];

	cr_assert_eq(vmh_run_wait(argv, 10, out, sizeof(out)), 3);
	cr_assert_str_eq(out, "out\nerr\n");
}

Test(run_wait, keeps_what_fits)
{
	char *const argv[] = { "sh", "-c", "echo 0123456789", NULL };
	char out[5];

	cr_assert_eq(vmh_run_wait(argv, 10, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "0123");
}

Test(run_wait, kills_a_child_past_its_deadline)
{
	char *const argv[] = { "sh", "-c", "echo started; exec sleep 30", NULL };
	char out[64];

	cr_assert_eq(vmh_run_wait(argv, 0.5, out, sizeof(out)), -1);
	cr_assert_str_eq(out, "started\n");
}

Test(run_wait, a_missing_program_is_minus_one)
{
	char *const argv[] = { "vmctl-no-such-program", NULL };
	char out[16];

	cr_assert_eq(vmh_run_wait(argv, 5, out, sizeof(out)), -1);
	cr_assert_str_eq(out, "");
}
