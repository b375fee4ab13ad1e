/* The lxd driver's parsing of LXD's answers, against answers recorded from
 * LXD 5.0.2 (trimmed to the fields the driver reads). */
#include <string.h>

#include <criterion/criterion.h>

#include "lxd.h"

static char err[512];

/* GET /1.0/instances/c1/state of a running container. */
static const char STATE_RUNNING[] =
	"{\"type\":\"sync\",\"status\":\"Success\",\"status_code\":200,\"operation\":\"\","
	"\"error_code\":0,\"error\":\"\",\"metadata\":{\"status\":\"Running\",\"status_code\":103,"
	"\"disk\":{},\"memory\":{\"usage\":31821824},\"network\":{"
	"\"lo\":{\"addresses\":[{\"family\":\"inet\",\"address\":\"127.0.0.1\",\"netmask\":\"8\","
	"\"scope\":\"local\"}]},"
	"\"extra0\":{\"addresses\":[{\"family\":\"inet\",\"address\":\"192.168.7.20\",\"netmask\":"
	"\"24\",\"scope\":\"global\"}]},"
	"\"eth0\":{\"addresses\":[{\"family\":\"inet6\",\"address\":\"fe80::216:3eff:fe1c:1\","
	"\"netmask\":\"64\",\"scope\":\"link\"},{\"family\":\"inet\",\"address\":\"10.99.0.109\","
	"\"netmask\":\"24\",\"scope\":\"global\"}],\"hwaddr\":\"52:54:00:12:34:56\"}},"
	"\"pid\":28790,\"processes\":23}}";

/* PUT /1.0/instances/c1/state {"action":"start"}. */
static const char ASYNC_START[] =
	"{\"type\":\"async\",\"status\":\"Operation created\",\"status_code\":100,"
	"\"operation\":\"/1.0/operations/9c3b1a4e-43c4-4c1e-a1b6-0c8e3a1f2a10\",\"error_code\":0,"
	"\"error\":\"\",\"metadata\":{\"id\":\"9c3b1a4e-43c4-4c1e-a1b6-0c8e3a1f2a10\","
	"\"class\":\"task\",\"description\":\"Starting instance\",\"status\":\"Running\","
	"\"status_code\":103,\"err\":\"\"}}";

/* GET /1.0/instances/nope. */
static const char NOT_FOUND[] =
	"{\"type\":\"error\",\"status\":\"\",\"status_code\":0,\"operation\":\"\",\"error_code\":404,"
	"\"error\":\"Instance not found\",\"metadata\":null}";

/* GET /1.0/operations/ID/wait of a start that failed. */
static const char OP_FAILED[] =
	"{\"type\":\"sync\",\"status\":\"Success\",\"status_code\":200,\"operation\":\"\","
	"\"error_code\":0,\"error\":\"\",\"metadata\":{\"id\":\"9c3b\",\"class\":\"task\","
	"\"description\":\"Starting instance\",\"status\":\"Failure\",\"status_code\":400,"
	"\"err\":\"Failed to start device \\\"eth0\\\": Parent device \\\"vmctlbr0\\\" doesn't exist\"}}";

TestSuite(lxd_api, .timeout = 10);

Test(lxd_api, a_sync_answer_gives_the_state_and_the_addresses_eth0_first)
{
	struct lxd_resp r;
	char ip[4][64];

	cr_assert_eq(lxd_parse(STATE_RUNNING, strlen(STATE_RUNNING), 200, &r, err, sizeof(err)), 0,
		     "%s", err);
	cr_expect_eq(r.kind, LXD_SYNC);
	cr_expect_eq(r.code, 200);
	cr_expect_eq(lxd_state_of(json_string_value(json_object_get(r.metadata, "status"))),
		     PROTO_STATE_RUNNING);
	cr_assert_eq(lxd_state_ipv4(r.metadata, ip, 4), 2);
	cr_expect_str_eq(ip[0], "10.99.0.109");
	cr_expect_str_eq(ip[1], "192.168.7.20");
	cr_expect_eq(json_integer_value(json_object_get(r.metadata, "pid")), 28790);
	lxd_resp_free(&r);
}

Test(lxd_api, an_async_answer_names_its_operation)
{
	struct lxd_resp r;

	cr_assert_eq(lxd_parse(ASYNC_START, strlen(ASYNC_START), 202, &r, err, sizeof(err)), 0, "%s",
		     err);
	cr_expect_eq(r.kind, LXD_ASYNC);
	cr_expect_eq(r.code, 100);
	cr_expect_str_eq(r.operation, "/1.0/operations/9c3b1a4e-43c4-4c1e-a1b6-0c8e3a1f2a10");
	/* While it runs, its outcome is a timeout, not a success. */
	cr_expect_eq(lxd_operation_result(r.metadata, err, sizeof(err)), PROTO_E_TIMEOUT);
	lxd_resp_free(&r);
}

Test(lxd_api, an_error_answer_gives_its_status_code_and_text)
{
	struct lxd_resp r;

	cr_assert_eq(lxd_parse(NOT_FOUND, strlen(NOT_FOUND), 404, &r, err, sizeof(err)),
		     PROTO_E_NOT_FOUND);
	cr_expect_eq(r.kind, LXD_ERROR);
	cr_expect_eq(r.code, 404);
	cr_expect_str_eq(err, "LXD: Instance not found (status 404)");
	cr_expect_null(r.metadata);
	lxd_resp_free(&r);
}

Test(lxd_api, a_failed_operation_gives_lxds_reason)
{
	struct lxd_resp r;

	cr_assert_eq(lxd_parse(OP_FAILED, strlen(OP_FAILED), 200, &r, err, sizeof(err)), 0);
	cr_expect_eq(lxd_operation_result(r.metadata, err, sizeof(err)), PROTO_E_DRIVER);
	cr_expect_str_eq(err, "Starting instance: Failed to start device \"eth0\": Parent device "
			      "\"vmctlbr0\" doesn't exist");
	lxd_resp_free(&r);
}

Test(lxd_api, an_error_other_than_404_or_409_is_a_driver_error)
{
	static const char conflict[] = "{\"type\":\"error\",\"error_code\":409,\"error\":"
				       "\"Instance \\\"c1\\\" already exists\",\"metadata\":null}";
	static const char busy[] = "{\"type\":\"error\",\"error_code\":400,\"error\":"
				   "\"The instance is already stopped\",\"metadata\":null}";
	struct lxd_resp r;

	cr_expect_eq(lxd_parse(conflict, strlen(conflict), 409, &r, err, sizeof(err)),
		     PROTO_E_ALREADY_EXISTS);
	lxd_resp_free(&r);
	cr_expect_eq(lxd_parse(busy, strlen(busy), 400, &r, err, sizeof(err)), PROTO_E_DRIVER);
	cr_expect_str_eq(err, "LXD: The instance is already stopped (status 400)");
	lxd_resp_free(&r);
}

Test(lxd_api, what_is_not_lxds_json_is_refused)
{
	struct lxd_resp r;

	cr_expect_eq(lxd_parse("<html>", 6, 502, &r, err, sizeof(err)), PROTO_E_DRIVER);
	cr_expect(strstr(err, "not its JSON (HTTP 502)"), "%s", err);
	lxd_resp_free(&r);
	cr_expect_eq(lxd_parse("[1]", 3, 200, &r, err, sizeof(err)), PROTO_E_DRIVER);
	lxd_resp_free(&r);
}

Test(lxd_api, lxd_statuses_map_onto_the_protocols_states)
{
	cr_expect_eq(lxd_state_of("Stopped"), PROTO_STATE_STOPPED);
	cr_expect_eq(lxd_state_of("Frozen"), PROTO_STATE_SUSPENDED);
	cr_expect_eq(lxd_state_of("Error"), PROTO_STATE_UNKNOWN);
	cr_expect_eq(lxd_state_of(NULL), PROTO_STATE_UNKNOWN);
}
