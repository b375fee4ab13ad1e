/* instance.exec of the lxd driver: its params, the request to LXD, and the
 * finished operations recorded from LXD 5.0.2 (trimmed). */
#include <string.h>

#include <criterion/criterion.h>

#include "lxd.h"

static char err[512];

/* The metadata of GET /1.0/operations/ID/wait after
 * {"command": ["sh", "-c", "hostname; echo err >&2; exit 3"], "record-output": true}. */
static const char OP_EXIT_3[] =
	"{\"id\":\"64d5f9a3\",\"class\":\"task\",\"description\":\"Executing command\","
	"\"status\":\"Success\",\"status_code\":200,\"metadata\":{\"output\":{"
	"\"1\":\"/1.0/instances/c1/logs/exec_64d5f9a3.stdout\","
	"\"2\":\"/1.0/instances/c1/logs/exec_64d5f9a3.stderr\"},\"return\":3},"
	"\"may_cancel\":false,\"err\":\"\"}";

/* The same of {"command": ["nosuch"]}. */
static const char OP_NOT_FOUND[] =
	"{\"id\":\"01f74565\",\"class\":\"task\",\"description\":\"Executing command\","
	"\"status\":\"Failure\",\"status_code\":400,\"metadata\":{\"output\":{"
	"\"1\":\"/1.0/instances/c1/logs/exec_01f74565.stdout\","
	"\"2\":\"/1.0/instances/c1/logs/exec_01f74565.stderr\"},\"return\":127},"
	"\"may_cancel\":false,\"err\":\"Command not found\"}";

static json_t *load(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);

	cr_assert_not_null(j);
	return j;
}

Test(lxd_exec, return_code_and_output_paths_of_a_finished_command)
{
	json_t *op = load(OP_EXIT_3);
	char paths[2][256], note[256];
	int status = -1;

	cr_assert_eq(lxd_exec_outcome(op, &status, paths, note, sizeof(note), err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(status, 3);
	cr_assert_str_eq(paths[0], "/1.0/instances/c1/logs/exec_64d5f9a3.stdout");
	cr_assert_str_eq(paths[1], "/1.0/instances/c1/logs/exec_64d5f9a3.stderr");
	cr_assert_str_eq(note, "");
	json_decref(op);
}

Test(lxd_exec, a_command_not_found_is_status_127_with_the_reason)
{
	json_t *op = load(OP_NOT_FOUND);
	char paths[2][256], note[256];
	int status = -1;

	cr_assert_eq(lxd_exec_outcome(op, &status, paths, note, sizeof(note), err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(status, 127);
	cr_assert_str_eq(note, "Command not found");
	json_decref(op);
}

Test(lxd_exec, an_operation_still_running_is_a_timeout)
{
	json_t *op = load("{\"status_code\":103,\"description\":\"Executing command\",\"metadata\":null}");
	char paths[2][256], note[256];
	int status = -1;

	cr_assert_eq(lxd_exec_outcome(op, &status, paths, note, sizeof(note), err, sizeof(err)),
		     PROTO_E_TIMEOUT);
	json_decref(op);
}

Test(lxd_exec, a_failure_without_a_return_code_is_lxds_error)
{
	json_t *op = load("{\"status_code\":400,\"description\":\"Executing command\","
			  "\"err\":\"Instance is not running\",\"metadata\":null}");
	char paths[2][256], note[256];
	int status = -1;

	cr_assert_eq(lxd_exec_outcome(op, &status, paths, note, sizeof(note), err, sizeof(err)),
		     PROTO_E_DRIVER);
	cr_assert_not_null(strstr(err, "Instance is not running"), "%s", err);
	json_decref(op);
}

static msgpack_object *unpack(msgpack_sbuffer *sb, msgpack_unpacked *u)
{
	msgpack_unpacked_init(u);
	cr_assert_eq(msgpack_unpack_next(u, sb->data, sb->size, NULL), MSGPACK_UNPACK_SUCCESS);
	return &u->data;
}

Test(lxd_exec, params_become_a_recorded_noninteractive_exec)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked u;
	struct lxd_exec x;
	json_t *req;
	char *body;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 4);
	proto_pack_str(&pk, "argv");
	msgpack_pack_array(&pk, 2);
	proto_pack_str(&pk, "echo");
	proto_pack_str(&pk, "a b");
	proto_pack_str(&pk, "env");
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "LANG", "C");
	proto_pack_kv_str(&pk, "cwd", "/etc");
	proto_pack_str(&pk, "stdin");
	msgpack_pack_bin(&pk, 3);
	msgpack_pack_bin_body(&pk, "x\0y", 3);
	cr_assert_eq(lxd_exec_parse(unpack(&sb, &u), &x, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(x.argc, 2);
	cr_assert(x.has_input);
	cr_assert_eq(x.input_len, 3);
	cr_assert_eq(x.timeout, LXD_EXEC_TIMEOUT);

	body = lxd_exec_body(&x, "/tmp/in");
	req = json_loads(body, 0, NULL);
	cr_assert_not_null(req, "%s", body);
	cr_assert(json_is_false(json_object_get(req, "wait-for-websocket")));
	cr_assert(json_is_true(json_object_get(req, "record-output")));
	cr_assert(json_is_false(json_object_get(req, "interactive")));
	cr_assert_str_eq(json_string_value(json_object_get(req, "cwd")), "/etc");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(req, "environment"), "LANG")),
			 "C");
	/* sh reads the pushed file as stdin, then the command runs with its own words */
	json_t *cmd = json_object_get(req, "command");
	cr_assert_eq(json_array_size(cmd), 7);
	cr_assert_str_eq(json_string_value(json_array_get(cmd, 4)), "/tmp/in");
	cr_assert_str_eq(json_string_value(json_array_get(cmd, 6)), "a b");
	json_decref(req);
	free(body);

	body = lxd_exec_body(&x, NULL);
	req = json_loads(body, 0, NULL);
	cr_assert_eq(json_array_size(json_object_get(req, "command")), 2);
	json_decref(req);
	free(body);
	lxd_exec_free(&x);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
}

Test(lxd_exec, bad_params_are_refused)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked u;
	struct lxd_exec x;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_pack_str(&pk, "argv");
	msgpack_pack_array(&pk, 1);
	proto_pack_str(&pk, "true");
	proto_pack_kv_str(&pk, "cwd", "relative");
	cr_assert_eq(lxd_exec_parse(unpack(&sb, &u), &x, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_not_null(strstr(err, "absolute"), "%s", err);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_clear(&sb);

	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "argv");
	msgpack_pack_array(&pk, 0);
	cr_assert_eq(lxd_exec_parse(unpack(&sb, &u), &x, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
}
