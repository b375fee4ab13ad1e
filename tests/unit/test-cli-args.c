/* vmctl's command-line parsing and the local checks run before the broker is asked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <criterion/criterion.h>

#include <vmproto/proto.h>

#include "vmctl.h"

static int fake_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	return 0;
}

static const struct cmd_option fake_options[] = {
	{ "name", 'n', "NAME", 0, "name" },
	{ "cpus", 'c', "NUMBER", 0, "cpus" },
	{ "force", 'f', NULL, 0, "force" },
	{ "recursive", 'r', NULL, 0, "recursive" },
	{ "uid-map", 'u', "H:G", OPT_MULTI, "maps" },
	{ "all", 0, NULL, 0, "all" },
	{ "format", 0, "FORMAT", 0, "format" },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument fake_arguments[] = {
	{ "SOURCE", "from" },
	{ "TARGET", "to" },
	{ NULL, NULL },
};

static const struct cmd_entry fake_entry = {
	.name = "fake",
	.usage = "[options] SOURCE [TARGET]",
	.summary = "A command for the tests.",
	.options = fake_options,
	.arguments = fake_arguments,
	.min_args = 1,
	.max_args = 2,
	.exec = fake_exec,
};

static const struct cmd_entry names_entry = {
	.name = "names",
	.usage = "NAME...|--all",
	.summary = "names",
	.options = fake_options,
	.min_args = 0,
	.max_args = -1,
	.exec = fake_exec,
};

static int parse(const struct cmd_entry *e, struct cmd_args *a, char *err, size_t errlen,
		 const char *const *words)
{
	static char *argv[32];
	int argc = 0;

	for (; words[argc] != NULL; argc++)
		argv[argc] = (char *)words[argc];
	argv[argc] = NULL;
	return args_parse(e, argc, argv, a, err, errlen);
}

#define PARSE(e, a, err, ...) \
	parse(e, a, err, sizeof(err), (const char *const[]){ __VA_ARGS__, NULL })

Test(cli_args, long_option_with_separate_value)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "--name", "web", "src"), 0);
	cr_assert_str_eq(args_get(&a, "name"), "web");
	cr_assert_eq(a.argc, 1);
	cr_assert_str_eq(a.argv[0], "src");
	args_free(&a);
}

Test(cli_args, long_option_with_equals_value)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "src", "--name=my-vm", "--cpus=4"), 0);
	cr_assert_str_eq(args_get(&a, "name"), "my-vm");
	cr_assert_str_eq(args_get(&a, "cpus"), "4");
	args_free(&a);
}

Test(cli_args, short_options_cluster_and_attached_value)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "-rf", "-nweb", "-c", "2", "src"), 0);
	cr_assert(args_has(&a, "recursive"));
	cr_assert(args_has(&a, "force"));
	cr_assert_str_eq(args_get(&a, "name"), "web");
	cr_assert_str_eq(args_get(&a, "cpus"), "2");
	cr_assert_not(args_has(&a, "all"));
	args_free(&a);
}

Test(cli_args, unknown_long_option_is_named)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "--bogus", "src"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "unknown option '--bogus' for 'fake'");
}

Test(cli_args, unknown_short_option_is_named)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "-rz", "src"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "unknown option '-z' for 'fake'");
}

Test(cli_args, missing_value_is_reported)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "src", "--name"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "option '--name' needs a value (NAME)");
	cr_assert_eq(PARSE(&fake_entry, &a, err, "src", "-c"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "option '-c' needs a value (NUMBER)");
}

Test(cli_args, flag_refuses_a_value)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "src", "--force=yes"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "option '--force' takes no value");
}

Test(cli_args, missing_positional_names_it)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "--force"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "'fake' needs SOURCE");
}

Test(cli_args, extra_positional_is_named)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "a", "b", "c"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "unexpected argument 'c' for 'fake'");
}

Test(cli_args, help_wins_over_missing_arguments)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "--help"), 0);
	cr_assert(a.help);
	args_free(&a);
	cr_assert_eq(PARSE(&fake_entry, &a, err, "-h"), 0);
	cr_assert(a.help);
	args_free(&a);
}

Test(cli_args, repeated_multi_option_keeps_every_value)
{
	struct cmd_args a;
	char err[256];
	size_t n;
	char **v;

	cr_assert_eq(PARSE(&fake_entry, &a, err, "-u", "1000:1000", "src", "--uid-map=0:0"), 0);
	v = args_values(&a, "uid-map", &n);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(v[0], "1000:1000");
	cr_assert_str_eq(v[1], "0:0");
	args_free(&a);
}

Test(cli_args, repeated_single_option_last_wins)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "-n", "one", "src", "-n", "two"), 0);
	cr_assert_str_eq(args_get(&a, "name"), "two");
	args_free(&a);
}

Test(cli_args, double_dash_ends_options)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "--", "-weird-file", "--force"), 0);
	cr_assert_eq(a.argc, 2);
	cr_assert_str_eq(a.argv[0], "-weird-file");
	cr_assert_not(args_has(&a, "force"));
	args_free(&a);
}

Test(cli_args, exec_takes_the_command_after_double_dash)
{
	const struct cmd_entry *e = cmd_find("exec");
	struct cmd_args a;
	char err[256];

	cr_assert_not_null(e);
	cr_assert_eq(PARSE(e, &a, err, "web", "--", "ls", "-l", "--color", "a b"), 0);
	cr_assert_eq(a.argc, 1);
	cr_assert_str_eq(a.argv[0], "web");
	cr_assert_eq(a.nrest, 4);
	cr_assert_str_eq(a.rest[0], "ls");
	cr_assert_str_eq(a.rest[2], "--color");
	cr_assert_str_eq(a.rest[3], "a b");
	args_free(&a);
}

Test(cli_args, exec_takes_the_command_without_double_dash)
{
	const struct cmd_entry *e = cmd_find("exec");
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(e, &a, err, "web", "uname", "-a"), 0);
	cr_assert_eq(a.nrest, 2);
	cr_assert_str_eq(a.rest[0], "uname");
	cr_assert_str_eq(a.rest[1], "-a");
	args_free(&a);
}

Test(cli_args, names_or_all_refuses_both_and_neither)
{
	struct cmd_args a;
	char err[256];
	bool all;

	cr_assert_eq(PARSE(&names_entry, &a, err, "--all", "web"), 0);
	cr_assert_eq(args_names_or_all(&a, &all, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "give instance names or --all, not both");
	args_free(&a);

	cr_assert_eq(PARSE(&names_entry, &a, err, "--force"), 0);
	cr_assert_eq(args_names_or_all(&a, &all, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "'names' needs an instance name (or --all)");
	args_free(&a);

	cr_assert_eq(PARSE(&names_entry, &a, err, "--all"), 0);
	cr_assert_eq(args_names_or_all(&a, &all, err, sizeof(err)), 0);
	cr_assert(all);
	args_free(&a);
}

Test(cli_args, names_are_validated)
{
	struct cmd_args a;
	char err[256];
	bool all;

	cr_assert_eq(PARSE(&names_entry, &a, err, "web", "Bad_Name"), 0);
	cr_assert_eq(args_names_or_all(&a, &all, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "Bad_Name") != NULL, "error should name the culprit: %s", err);
	args_free(&a);
}

Test(cli_args, format_values)
{
	struct cmd_args a;
	char err[256];
	enum render_format f;

	cr_assert_eq(PARSE(&names_entry, &a, err, "--format", "csv"), 0);
	cr_assert_eq(args_format(&a, &f, err, sizeof(err)), 0);
	cr_assert_eq(f, FORMAT_CSV);
	args_free(&a);
	cr_assert_eq(PARSE(&names_entry, &a, err, "x"), 0);
	cr_assert_eq(args_format(&a, &f, err, sizeof(err)), 0);
	cr_assert_eq(f, FORMAT_TABLE);
	args_free(&a);
	cr_assert_eq(PARSE(&names_entry, &a, err, "--format=xml"), 0);
	cr_assert_eq(args_format(&a, &f, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "unknown format 'xml' (use table, json, yaml or csv)");
	args_free(&a);
}

Test(cli_args, whole_numbers)
{
	char err[256];
	uint64_t v;

	cr_assert_eq(args_parse_uint("--cpus", "4", 1, 64, &v, err, sizeof(err)), 0);
	cr_assert_eq(v, 4);
	cr_assert_eq(args_parse_uint("--cpus", "0", 1, 64, &v, err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "--cpus must be between 1 and 64, not 0");
	cr_assert_eq(args_parse_uint("--cpus", "2x", 1, 64, &v, err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "--cpus must be a whole number, not '2x'");
	cr_assert_eq(args_parse_uint("--timeout", "-5", 1, 64, &v, err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(args_parse_uint("--timeout", "99999999999999999999999", 1, 64, &v, err,
				     sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
}

Test(cli_args, snapshot_names)
{
	char err[256];

	cr_assert_eq(args_validate_snapshot_name("before-upgrade2", err, sizeof(err)), 0);
	cr_assert_eq(args_validate_snapshot_name("2nd", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "snapshot name '2nd' must start with a letter");
	cr_assert_eq(args_validate_snapshot_name("a.b", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(args_validate_snapshot_name("ab-", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(args_validate_snapshot_name("", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
}

Test(cli_args, id_maps)
{
	char err[256];
	uint32_t h, g;

	cr_assert_eq(args_parse_id_map("1000:0", &h, &g, err, sizeof(err)), 0);
	cr_assert_eq(h, 1000);
	cr_assert_eq(g, 0);
	cr_assert_eq(args_parse_id_map("1000", &h, &g, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "HOST:GUEST") != NULL);
	cr_assert_eq(args_parse_id_map("a:1", &h, &g, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(args_parse_id_map("1:", &h, &g, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(args_parse_id_map("1:4294967296", &h, &g, err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
}

Test(cli_args, instance_paths_and_host_paths)
{
	size_t len;
	const char *path;

	cr_assert(args_split_instance_path("web:/etc/hosts", &len, &path));
	cr_assert_eq(len, 3);
	cr_assert_str_eq(path, "/etc/hosts");
	cr_assert(args_split_instance_path("web:", &len, &path));
	cr_assert_str_eq(path, "");
	cr_assert_not(args_split_instance_path("/tmp/a:b", &len, &path));
	cr_assert_not(args_split_instance_path("./web:x", &len, &path));
	cr_assert_not(args_split_instance_path("dir/web:x", &len, &path));
	cr_assert_not(args_split_instance_path("plain.txt", &len, &path));
	cr_assert_not(args_split_instance_path(":x", &len, &path));
}

Test(cli_args, shell_quote_leaves_plain_words)
{
	char *q = shell_quote("/usr/bin/ls");

	cr_assert_str_eq(q, "/usr/bin/ls");
	free(q);
}

Test(cli_args, shell_quote_spaces_quotes_and_empty)
{
	char *q;

	q = shell_quote("a b");
	cr_assert_str_eq(q, "'a b'");
	free(q);
	q = shell_quote("it's");
	cr_assert_str_eq(q, "'it'\\''s'");
	free(q);
	q = shell_quote("");
	cr_assert_str_eq(q, "''");
	free(q);
}

/* What the guest's shell does with the joined command: every word comes back whole. */
Test(cli_args, shell_join_survives_a_real_shell)
{
	char *words[] = { "printf", "[%s]\\n", "a b", "it's", "$HOME", "*", "", "x\"y", "back\\slash",
			  "semi;colon", "new\nline" };
	char *joined = shell_join(words, sizeof(words) / sizeof(words[0]));
	char *quoted, *cmd = NULL, out[512];
	size_t got;
	FILE *p;

	cr_assert_not_null(joined);
	quoted = shell_quote(joined);
	cr_assert_neq(asprintf(&cmd, "sh -c %s", quoted), -1);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	got = fread(out, 1, sizeof(out) - 1, p);
	out[got] = '\0';
	cr_assert_eq(pclose(p), 0);
	cr_assert_str_eq(out, "[a b]\n[it's]\n[$HOME]\n[*]\n[]\n[x\"y]\n[back\\slash]\n"
			      "[semi;colon]\n[new\nline]\n");
	free(joined);
	free(quoted);
	free(cmd);
}

Test(cli_args, edit_distance)
{
	cr_assert_eq(args_distance("list", "list"), 0);
	cr_assert_eq(args_distance("lst", "list"), 1);
	cr_assert_eq(args_distance("lsit", "list"), 2);
	cr_assert_eq(args_distance("", "abc"), 3);
	cr_assert(args_close_enough("memroy", "memory"));
	cr_assert(args_close_enough("luanch", "launch"));
	cr_assert_not(args_close_enough("xyz", "set"));
	cr_assert_not(args_close_enough("ab", "ls"));
}

Test(cli_args, unknown_long_option_suggests_a_close_one)
{
	struct cmd_args a;
	char err[256];

	cr_assert_eq(PARSE(&fake_entry, &a, err, "src", "--nmae", "x"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "unknown option '--nmae' for 'fake'; did you mean '--name'?");
}

Test(cli_args, a_setting_key_with_a_huge_instance_name_is_refused_for_its_length)
{
	static char key[400];
	char err[256];

	cr_assert_eq(args_validate_key("local.driver", 12, err, sizeof(err)), 0);
	cr_assert_eq(args_validate_key("local.web.cpus", 14, err, sizeof(err)), 0);
	cr_assert_eq(args_validate_key("local.web.snap1.comment", 23, err, sizeof(err)), 0);
	memcpy(key, "local.", 6);
	memset(key + 6, 'a', 300);
	strcpy(key + 306, ".cpus");
	cr_assert_eq(args_validate_key(key, strlen(key), err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "names are at most 63 characters long (this one has 300)"), "%s", err);
	/* any other key that long is no setting */
	memset(key, 'x', 300);
	key[300] = '\0';
	cr_assert_eq(args_validate_key(key, 300, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "keys are at most 255 bytes"), "%s", err);
}
