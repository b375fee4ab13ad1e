/* vmctl's output: tables, records, CSV, JSON, YAML and the progress line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include <vmproto/proto.h>

#include "vmctl.h"

/* A result like the broker's answer to `list`, kept alive for the test. */
static msgpack_sbuffer sb;
static msgpack_unpacked up;
static char *text;
static size_t text_len;

static void pack_instance(msgpack_packer *pk, const char *name, const char *state,
			  const char *const *ipv4, const char *image)
{
	size_t n = 0;

	while (ipv4 != NULL && ipv4[n] != NULL)
		n++;
	msgpack_pack_map(pk, 6);
	proto_pack_kv_str(pk, "name", name);
	proto_pack_kv_str(pk, "state", state);
	proto_pack_str(pk, "ipv4");
	msgpack_pack_array(pk, n);
	for (size_t i = 0; i < n; i++)
		proto_pack_str(pk, ipv4[i]);
	proto_pack_kv_str(pk, "image", image);
	proto_pack_kv_uint(pk, "memory", 1ull << 30);
	proto_pack_kv_str(pk, "scope", "qemu");
}

static const msgpack_object *list_result(void)
{
	msgpack_packer pk;
	static const char *const web_ips[] = { "10.0.0.2", "10.0.0.3", NULL };
	static const char *const none[] = { NULL };

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "instances");
	msgpack_pack_array(&pk, 2);
	pack_instance(&pk, "web", "running", web_ips, "Debian 12, \"bookworm\"");
	pack_instance(&pk, "database-1", "stopped", none, "24.04");
	msgpack_unpacked_init(&up);
	cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
	return &up.data;
}

static FILE *capture(void)
{
	FILE *f = open_memstream(&text, &text_len);

	cr_assert_not_null(f);
	return f;
}

static void cleanup(void)
{
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
	free(text);
	text = NULL;
}

static const struct render_column columns[] = {
	{ "Name", "name", RENDER_TEXT },
	{ "State", "state", RENDER_STATE },
	{ "IPv4", "ipv4", RENDER_TEXT },
	{ "Image", "image", RENDER_TEXT },
	{ NULL, NULL, RENDER_TEXT },
};

TestSuite(cli_render, .fini = cleanup);

Test(cli_render, table_aligns_columns_and_continues_lists)
{
	const msgpack_object *res = list_result();
	FILE *f = capture();

	cr_assert_eq(render_result(f, FORMAT_TABLE, columns, false, res, "instances"), 0);
	fclose(f);
	cr_assert_str_eq(text, "Name        State    IPv4      Image\n"
			       "web         Running  10.0.0.2  Debian 12, \"bookworm\"\n"
			       "                     10.0.0.3\n"
			       "database-1  Stopped  --        24.04\n");
}

Test(cli_render, table_of_nothing_has_only_the_header)
{
	msgpack_object empty = { .type = MSGPACK_OBJECT_ARRAY };
	FILE *f = capture();

	cr_assert_eq(render_table(f, columns, &empty), 0);
	fclose(f);
	cr_assert_str_eq(text, "Name  State  IPv4  Image\n");
}

Test(cli_render, records_for_info)
{
	static const struct render_column info[] = {
		{ "Name", "name", RENDER_TEXT },
		{ "Memory", "memory", RENDER_SIZE },
		{ "IPv4", "ipv4", RENDER_TEXT },
		{ "Created", "created", RENDER_TEXT },
		{ NULL, NULL, RENDER_TEXT },
	};
	const msgpack_object *res = list_result();
	FILE *f = capture();

	cr_assert_eq(render_result(f, FORMAT_TABLE, info, true, res, "instances"), 0);
	fclose(f);
	cr_assert_str_eq(text, "Name:     web\n"
			       "Memory:   1.0GiB\n"
			       "IPv4:     10.0.0.2\n"
			       "          10.0.0.3\n"
			       "Created:  --\n"
			       "\n"
			       "Name:     database-1\n"
			       "Memory:   1.0GiB\n"
			       "IPv4:     --\n"
			       "Created:  --\n");
}

Test(cli_render, csv_quotes_what_needs_quoting)
{
	const msgpack_object *res = list_result();
	FILE *f = capture();

	cr_assert_eq(render_result(f, FORMAT_CSV, columns, false, res, "instances"), 0);
	fclose(f);
	cr_assert_str_eq(text, "Name,State,IPv4,Image\n"
			       "web,Running,\"10.0.0.2,10.0.0.3\",\"Debian 12, \"\"bookworm\"\"\"\n"
			       "database-1,Stopped,,24.04\n");
}

Test(cli_render, csv_field_rules)
{
	FILE *f = capture();

	render_csv_field(f, "plain");
	fputc('|', f);
	render_csv_field(f, "line\nbreak");
	fputc('|', f);
	render_csv_field(f, " padded");
	fputc('|', f);
	render_csv_field(f, "");
	fclose(f);
	cr_assert_str_eq(text, "plain|\"line\nbreak\"|\" padded\"|");
}

Test(cli_render, json_is_the_whole_result)
{
	const msgpack_object *res = list_result();
	FILE *f = capture();
	json_error_t jerr;
	json_t *j, *inst;

	cr_assert_eq(render_result(f, FORMAT_JSON, columns, false, res, "instances"), 0);
	fclose(f);
	j = json_loads(text, 0, &jerr);
	cr_assert_not_null(j, "not JSON: %s\n%s", jerr.text, text);
	inst = json_array_get(json_object_get(j, "instances"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(inst, "state")), "running");
	cr_assert_eq(json_integer_value(json_object_get(inst, "memory")), 1ll << 30);
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(inst, "ipv4"), 1)),
			 "10.0.0.3");
	cr_assert_str_eq(json_string_value(json_object_get(inst, "image")),
			 "Debian 12, \"bookworm\"");
	/* key order is kept, as the broker sent it */
	cr_assert(strstr(text, "\"name\"") < strstr(text, "\"state\""));
	json_decref(j);
}

Test(cli_render, yaml_quotes_strings_that_would_change_type)
{
	const msgpack_object *res = list_result();
	FILE *f = capture();

	cr_assert_eq(render_result(f, FORMAT_YAML, columns, false, res, "instances"), 0);
	fclose(f);
	/* "24.04" is a string (an image alias), not a float */
	cr_assert(strstr(text, "image: '24.04'") != NULL, "%s", text);
	cr_assert(strstr(text, "memory: 1073741824") != NULL, "%s", text);
	cr_assert(strstr(text, "ipv4: []") != NULL, "%s", text);
	cr_assert(strstr(text, "- 10.0.0.3") != NULL, "%s", text);
	cr_assert(strstr(text, "state: running") != NULL, "%s", text);
}

Test(cli_render, yaml_quoting_rules)
{
	cr_assert(render_yaml_needs_quotes("24.04"));
	cr_assert(render_yaml_needs_quotes("yes"));
	cr_assert(render_yaml_needs_quotes("null"));
	cr_assert(render_yaml_needs_quotes(""));
	cr_assert(render_yaml_needs_quotes("0x1f"));
	cr_assert(render_yaml_needs_quotes("12:30"));
	cr_assert_not(render_yaml_needs_quotes("running"));
	cr_assert_not(render_yaml_needs_quotes("10.0.0.2"));
	cr_assert_not(render_yaml_needs_quotes("Debian 12"));
}

Test(cli_render, mounts_and_states_in_cells)
{
	static const struct render_column cols[] = {
		{ "State", "state", RENDER_STATE },
		{ "Mounts", "mounts", RENDER_MOUNTS },
		{ NULL, NULL, RENDER_TEXT },
	};
	msgpack_packer pk;
	FILE *f;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_str(&pk, "state", "suspended");
	proto_pack_str(&pk, "mounts");
	msgpack_pack_array(&pk, 2);
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_str(&pk, "source", "/home/me/src");
	proto_pack_kv_str(&pk, "target", "/src");
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_str(&pk, "source", "/data");
	proto_pack_kv_str(&pk, "target", "/mnt/data");
	msgpack_unpacked_init(&up);
	cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
	f = capture();
	cr_assert_eq(render_records(f, cols, &up.data), 0);
	fclose(f);
	cr_assert_str_eq(text, "State:   Suspended\n"
			       "Mounts:  /home/me/src => /src\n"
			       "         /data => /mnt/data\n");
}

Test(cli_render, networks_in_cells)
{
	static const struct render_column cols[] = {
		{ "Networks", "networks", RENDER_NETWORKS },
		{ NULL, NULL, RENDER_TEXT },
	};
	msgpack_packer pk;
	FILE *f;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "networks");
	msgpack_pack_array(&pk, 2);
	msgpack_pack_map(&pk, 3);
	proto_pack_kv_str(&pk, "name", "br0");
	proto_pack_kv_str(&pk, "mode", "auto");
	proto_pack_kv_str(&pk, "mac", "52:54:00:aa:bb:cc");
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_str(&pk, "name", "br1");
	proto_pack_kv_str(&pk, "mode", "manual");
	msgpack_unpacked_init(&up);
	cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
	f = capture();
	cr_assert_eq(render_records(f, cols, &up.data), 0);
	fclose(f);
	cr_assert_str_eq(text, "Networks:  br0 (auto, 52:54:00:aa:bb:cc)\n"
			       "           br1 (manual, ?)\n");
}

Test(cli_render, rows_must_be_an_array)
{
	msgpack_object not_rows = { .type = MSGPACK_OBJECT_NIL };
	FILE *f = capture();

	cr_assert_eq(render_table(f, columns, &not_rows), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(render_csv(f, columns, &not_rows), PROTO_E_INVALID_ARGUMENT);
	fclose(f);
}

Test(cli_progress, bar_shows_the_fraction)
{
	char line[256];

	progress_format(line, sizeof(line), "Downloading image", 0.5, 80);
	cr_assert_str_eq(line, "Downloading image [===============>              ]  50%");
}

Test(cli_progress, bar_shrinks_on_a_narrow_terminal)
{
	char line[256];

	progress_format(line, sizeof(line), "Downloading image", 0.5, 40);
	cr_assert_eq(strlen(line), 39, "'%s'", line);
	cr_assert_str_eq(line, "Downloading image [=======>      ]  50%");
}

Test(cli_progress, keeps_speed_and_eta_from_the_text)
{
	char line[256];

	progress_format(line, sizeof(line), "Downloading 12.5MiB/s ETA 0:07", 0.25, 80);
	cr_assert(strstr(line, "Downloading 12.5MiB/s ETA 0:07 [") == line, "'%s'", line);
	cr_assert(strstr(line, "]  25%") != NULL, "'%s'", line);
}

Test(cli_progress, long_text_is_clipped_not_the_percent)
{
	char line[256];
	char longtext[200];

	memset(longtext, 'x', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	progress_format(line, sizeof(line), longtext, 1.0, 40);
	cr_assert_eq(strlen(line), 39, "'%s'", line);
	cr_assert(strstr(line, "] 100%") != NULL, "'%s'", line);
}

Test(cli_progress, unknown_fraction_shows_text_only)
{
	char line[256];

	progress_format(line, sizeof(line), "Waiting for SSH", -1, 80);
	cr_assert_str_eq(line, "Waiting for SSH");
}
