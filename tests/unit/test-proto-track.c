/* What the SDK keeps per instance: busy claims and the states last told. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <vmproto/vmh.h>

static char err[256];

TestSuite(track, .fini = vmh_track_reset);

Test(track, a_claim_shows_its_state_and_refuses_a_second)
{
	enum proto_state st = PROTO_STATE_UNKNOWN;

	cr_expect_not(vmh_busy("web", NULL));
	cr_assert_eq(vmh_busy_claim("web", PROTO_STATE_STARTING, err, sizeof(err)), 0);
	cr_expect(vmh_busy("web", &st));
	cr_expect_eq(st, PROTO_STATE_STARTING);
	cr_expect_eq(vmh_busy_claim("web", PROTO_STATE_STOPPING, err, sizeof(err)), PROTO_E_BUSY);
	cr_expect_str_eq(err, "instance 'web' is busy starting");
	cr_expect(vmh_busy("web", &st));
	cr_expect_eq(st, PROTO_STATE_STARTING, "the refused claim changed nothing");
	/* Claims are per instance. */
	cr_expect_eq(vmh_busy_claim("db", PROTO_STATE_STOPPED, err, sizeof(err)), 0);
	vmh_busy_release("web");
	cr_expect_not(vmh_busy("web", NULL));
	cr_expect(vmh_busy("db", NULL));
	cr_expect_eq(vmh_busy_claim("web", PROTO_STATE_STOPPING, err, sizeof(err)), 0);
	vmh_busy_release("nobody");
}

Test(track, states_are_remembered_per_instance_until_forgotten)
{
	enum proto_state st = PROTO_STATE_UNKNOWN;

	cr_expect_not(vmh_state_last("web", &st));
	vmh_state_seen("web", PROTO_STATE_STOPPED);
	cr_expect(vmh_state_last("web", &st));
	cr_expect_eq(st, PROTO_STATE_STOPPED);
	/* Without a broker the notification goes nowhere but is remembered. */
	vmh_state_notify("web", PROTO_STATE_RUNNING);
	cr_expect(vmh_state_last("web", &st));
	cr_expect_eq(st, PROTO_STATE_RUNNING);
	cr_expect_not(vmh_state_last("db", NULL));
	vmh_state_forget("web");
	cr_expect_not(vmh_state_last("web", NULL));
}

Test(track, a_claim_and_a_state_live_side_by_side)
{
	enum proto_state st;

	vmh_state_seen("web", PROTO_STATE_STOPPED);
	cr_assert_eq(vmh_busy_claim("web", PROTO_STATE_STARTING, err, sizeof(err)), 0);
	vmh_state_forget("web");
	cr_expect(vmh_busy("web", &st), "forgetting the state keeps the claim");
	vmh_state_seen("web", PROTO_STATE_RUNNING);
	vmh_busy_release("web");
	cr_expect(vmh_state_last("web", &st), "releasing the claim keeps the state");
	cr_expect_eq(st, PROTO_STATE_RUNNING);
}

struct seen {
	int n;
	int running;
};

static void count(void *ud, const char *name, enum proto_state state)
{
	struct seen *s = ud;

	s->n++;
	s->running += state == PROTO_STATE_RUNNING;
	/* What a helper whose hypervisor went away does. */
	vmh_state_notify(name, PROTO_STATE_UNKNOWN);
}

Test(track, each_visits_every_remembered_instance_and_may_change_it)
{
	struct seen s = {0};
	char name[16];
	enum proto_state st;

	/* Enough to make the table grow a few times. */
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "vm%d", i);
		vmh_state_seen(name, i % 2 ? PROTO_STATE_RUNNING : PROTO_STATE_STOPPED);
	}
	cr_assert_eq(vmh_busy_claim("claimed-only", PROTO_STATE_STARTING, err, sizeof(err)), 0);
	vmh_state_each(count, &s);
	cr_expect_eq(s.n, 1000, "only instances with a state are visited");
	cr_expect_eq(s.running, 500);
	cr_expect(vmh_state_last("vm7", &st));
	cr_expect_eq(st, PROTO_STATE_UNKNOWN);
}

static void forget_stopped(void *ud, const char *name, enum proto_state state)
{
	if (state == PROTO_STATE_STOPPED)
		vmh_state_forget(name);
}

Test(track, each_may_forget_the_instance_it_is_given)
{
	char name[16];
	int left = 0;

	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "vm%d", i);
		vmh_state_seen(name, i % 4 ? PROTO_STATE_RUNNING : PROTO_STATE_STOPPED);
	}
	vmh_state_each(forget_stopped, NULL);
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "vm%d", i);
		left += vmh_state_last(name, NULL);
	}
	cr_expect_eq(left, 150);
}
