/* vmctl version: versions of vmctl, the broker and the active driver. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int version_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option version_options[] = {
	{ "format", 0, "FORMAT", 0, "Output format: table (default), json or yaml." },
	CMD_OPTION_WAIT(CLI_WAIT_QUICK),
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_version_entry = {
	.name = "version",
	.usage = "[options]",
	.summary = "Show version details.",
	.help = "Prints the versions of vmctl and vmctld, the active driver with its helper's "
		"version, and the protocol version. When the helper is not ready, the driver line "
		"says what the broker knows instead: starting, restarting (and what it died of), "
		"missing or unusable (and why).",
	.options = version_options,
	.min_args = 0,
	.max_args = 0,
	.wait = CLI_WAIT_QUICK,
	.exec = version_exec,
};

/* {vmctl: VERSION, ...the broker's answer} for json and yaml. */
static int version_render(enum render_format fmt, const msgpack_object *result)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked up;
	uint32_t n = result->type == MSGPACK_OBJECT_MAP ? result->via.map.size : 0;
	int rc = PROTO_E_INTERNAL;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, n + 1);
	proto_pack_kv_str(&pk, "vmctl", VMCTL_VERSION);
	for (uint32_t i = 0; i < n; i++) {
		msgpack_pack_object(&pk, result->via.map.ptr[i].key);
		msgpack_pack_object(&pk, result->via.map.ptr[i].val);
	}
	msgpack_unpacked_init(&up);
	if (msgpack_unpack_next(&up, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS)
		rc = fmt == FORMAT_JSON ? render_json(stdout, &up.data)
					: render_yaml(stdout, &up.data);
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static int version_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	enum render_format fmt;
	char err[256], vmctld[64] = "?", driver[32] = "?", helper[64] = "", state[32] = "";
	char problem[1400] = "";
	int64_t protocol = 0;
	struct cli_reply r;
	int rc;

	if (args_format(a, &fmt, err, sizeof(err)) < 0 || fmt == FORMAT_CSV)
		return cmd_usage_error(self, "%s",
				       fmt == FORMAT_CSV ? "version has no csv format" : err);
	if (fmt == FORMAT_TABLE) {
		printf("vmctl     %s\n", VMCTL_VERSION);
		fflush(stdout);
	}
	rc = cli_request("version", NULL, 0, &r);
	if (rc != EXIT_OK)
		goto out_reply;
	if (fmt != FORMAT_TABLE) {
		if (version_render(fmt, r.result) < 0)
			rc = cmd_error(EXIT_FAILED, "cannot show the result");
		goto out_reply;
	}
	proto_get_str(r.result, "vmctld", vmctld, sizeof(vmctld));
	proto_get_str(r.result, "driver", driver, sizeof(driver));
	proto_get_str(r.result, "helper_version", helper, sizeof(helper));
	proto_get_int(r.result, "protocol", &protocol);
	proto_get_str(r.result, "helper_state", state, sizeof(state));
	proto_get_str(r.result, "helper_problem", problem, sizeof(problem));
	printf("vmctld    %s\n", vmctld);
	if (helper[0] != '\0')
		printf("driver    %s (helper %s)\n", driver, helper);
	else if (state[0] != '\0' && problem[0] != '\0')
		printf("driver    %s (helper %s: %s)\n", driver, state, problem);
	else if (state[0] != '\0')
		printf("driver    %s (helper %s)\n", driver, state);
	else
		printf("driver    %s\n", driver);
	printf("protocol  %" PRId64 "\n", protocol);
out_reply:
	cli_reply_free(&r);
	return rc;
}
