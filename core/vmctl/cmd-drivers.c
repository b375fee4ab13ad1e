/* vmctl drivers: the drivers this host has, as their helpers describe them. */
#include <string.h>

#include <vmproto/proto.h>

#include "vmctl.h"

static int drivers_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option drivers_options[] = {
	{ "format", 0, "FORMAT", 0, "Output format: table (default), json, yaml or csv." },
	CMD_OPTION_WAIT(CLI_WAIT_DRIVER),
	{ NULL, 0, NULL, 0, NULL },
};

const struct cmd_entry cmd_drivers_entry = {
	.name = "drivers",
	.usage = "[options]",
	.summary = "List the drivers and what their helpers can do.",
	.help = "One row per driver: the seed's five (qemu, libvirt, lxd, hyperv, virtualbox) "
		"and every other vmctl-NAME-helper found in VMCTL_HELPER_PATH or the install's "
		"libexec/vmctl. Helper is the helper's path, or \"not found\"; Usable says "
		"whether it can run on this host now (the reasons are listed below the table); "
		"the scope, version and features (native mounts, extra networks, snapshots, clone, suspend) are what the helper itself says, in its "
		"hello (every helper but the active one's is started once to ask it). A "
		"driver whose helper is found and usable can be chosen with vmctl set "
		"local.driver=NAME.",
	.options = drivers_options,
	.min_args = 0,
	.max_args = 0,
	.wait = CLI_WAIT_DRIVER,
	.exec = drivers_exec,
};

static const struct render_column drivers_columns[] = {
	{ "Driver", "driver", RENDER_TEXT },
	{ "Active", "active", RENDER_TEXT },
	{ "Usable", "usable", RENDER_TEXT },
	{ "Scope", "scope", RENDER_TEXT },
	{ "Version", "version", RENDER_TEXT },
	{ "Mounts", "native_mounts", RENDER_TEXT },
	{ "Networks", "extra_networks", RENDER_TEXT },
	{ "Snapshots", "snapshots", RENDER_TEXT },
	{ "Clone", "clone", RENDER_TEXT },
	{ "Suspend", "suspend", RENDER_TEXT },
	{ "Helper", "helper", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

/* The csv has the reason too; the table lists them below it. */
static const struct render_column drivers_csv_columns[] = {
	{ "Driver", "driver", RENDER_TEXT },
	{ "Active", "active", RENDER_TEXT },
	{ "Usable", "usable", RENDER_TEXT },
	{ "Why", "why", RENDER_TEXT },
	{ "Scope", "scope", RENDER_TEXT },
	{ "Version", "version", RENDER_TEXT },
	{ "Mounts", "native_mounts", RENDER_TEXT },
	{ "Networks", "extra_networks", RENDER_TEXT },
	{ "Snapshots", "snapshots", RENDER_TEXT },
	{ "Clone", "clone", RENDER_TEXT },
	{ "Suspend", "suspend", RENDER_TEXT },
	{ "Helper", "helper", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

static void drivers_print_reasons(const msgpack_object *rows)
{
	bool first = true;

	if (rows == NULL || rows->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t i = 0; i < rows->via.array.size; i++) {
		const msgpack_object *row = &rows->via.array.ptr[i];
		char driver[64] = "", why[2048] = "", helper[16] = "";
		bool usable = true;

		proto_get_bool(row, "usable", &usable);
		proto_get_str(row, "driver", driver, sizeof(driver));
		proto_get_str(row, "why", why, sizeof(why));
		proto_get_str(row, "helper", helper, sizeof(helper));
		/* "not found" in the table says enough (csv and json say more). */
		if (usable || !why[0] || strcmp(helper, "not found") == 0)
			continue;
		if (first)
			printf("\n");
		first = false;
		printf("%s: %s\n", driver, why);
	}
}

static int drivers_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	enum render_format fmt;
	char err[256];
	struct cli_reply r;
	int rc;

	if (args_format(a, &fmt, err, sizeof(err)) < 0)
		return cmd_usage_error(self, "%s", err);
	rc = cli_request("drivers", NULL, 0, &r);
	if (rc != EXIT_OK)
		goto out_reply;
	if (render_result(stdout, fmt, fmt == FORMAT_CSV ? drivers_csv_columns : drivers_columns,
			  false, r.result, "drivers") < 0) {
		rc = cmd_error(EXIT_FAILED, "cannot show the result");
		goto out_reply;
	}
	if (fmt == FORMAT_TABLE)
		drivers_print_reasons(proto_map_get(r.result, "drivers"));
out_reply:
	cli_reply_free(&r);
	return rc;
}
