/* The SDK's worker threads: work off the loop's thread, done back on it. */
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <ev.h>

#include <vmproto/vmh.h>

struct job {
	pthread_t loop_thread, work_thread, done_thread;
	int gate[2]; /* the work waits for a byte, so the loop must run first */
	bool done;
	bool loop_ran_meanwhile;
};

static void job_work(void *arg)
{
	struct job *j = arg;
	char c;

	j->work_thread = pthread_self();
	(void)!read(j->gate[0], &c, 1);
}

static void job_done(void *arg)
{
	struct job *j = arg;

	j->done_thread = pthread_self();
	j->done = true;
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct job *j = t->data;

	(void)loop;
	(void)revents;
	j->loop_ran_meanwhile = true;
	(void)!write(j->gate[1], "x", 1);
}

TestSuite(work, .timeout = 30);

Test(work, work_runs_on_another_thread_and_done_on_the_loop)
{
	struct job j = {.loop_thread = pthread_self()};
	ev_timer t;

	cr_assert_eq(pipe(j.gate), 0);
	cr_assert_eq(vmh_work(job_work, job_done, &j), 0);
	cr_expect_not(j.done, "done comes from the loop, not from vmh_work");
	/* The work blocks until a timer of the loop fires: the loop is not blocked. */
	ev_timer_init(&t, on_timer, 0.01, 0);
	t.data = &j;
	ev_timer_start(vmh_loop(), &t);
	while (!j.done)
		ev_run(vmh_loop(), EVRUN_ONCE);
	cr_expect(j.loop_ran_meanwhile);
	cr_expect_not(pthread_equal(j.work_thread, j.loop_thread));
	cr_expect(pthread_equal(j.done_thread, j.loop_thread));
	close(j.gate[0]);
	close(j.gate[1]);
}

static void count_done(void *arg)
{
	(*(int *)arg)++;
}

static void nothing(void *arg)
{
	(void)arg;
}

Test(work, the_loop_waits_for_pending_work_and_then_ends)
{
	int n = 0;

	for (int i = 0; i < 8; i++)
		cr_assert_eq(vmh_work(nothing, count_done, &n), 0);
	/* Nothing else is active: ev_run returns once every done has run. */
	ev_run(vmh_loop(), 0);
	cr_expect_eq(n, 8);
}

Test(work, no_function_is_refused)
{
	cr_expect_eq(vmh_work(NULL, nothing, NULL), PROTO_E_INVALID_ARGUMENT);
	cr_expect_eq(vmh_work(nothing, NULL, NULL), PROTO_E_INVALID_ARGUMENT);
}
