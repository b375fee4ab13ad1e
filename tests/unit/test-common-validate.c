/* Instance names, sizes, durations and cloud-init user data as a user types them. */
#include <criterion/criterion.h>
#include <string.h>

#include <vmproto/proto.h>

#include "vmcommon.h"

static char err[512];

static int name_check(const char *name)
{
	err[0] = '\0';
	return validate_instance_name(name, err, sizeof(err));
}

Test(names, valid_names_are_accepted)
{
	cr_assert_eq(name_check("a"), 0);
	cr_assert_eq(name_check("primary"), 0);
	cr_assert_eq(name_check("web-01"), 0);
	cr_assert_eq(name_check("x1-2-3y"), 0);
}

Test(names, sixty_three_characters_are_accepted)
{
	char name[64];

	memset(name, 'a', 63);
	name[63] = '\0';
	cr_assert_eq(name_check(name), 0);
}

Test(names, sixty_four_characters_are_too_long)
{
	char name[65];

	memset(name, 'a', 64);
	name[64] = '\0';
	cr_assert_eq(name_check(name), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "at most 63 characters"), "message: %s", err);
	cr_assert(strstr(err, "this one has 64"), "message: %s", err);
}

Test(names, huge_name_message_is_cut)
{
	static char name[100000];

	memset(name, 'b', sizeof(name) - 1);
	cr_assert_eq(name_check(name), PROTO_E_INVALID_ARGUMENT);
	cr_assert_lt(strlen(err), 300);
	cr_assert(strstr(err, "...\""), "message: %s", err);
}

Test(names, a_name_in_a_longer_text_is_checked_whole)
{
	static char spec[400];

	/* "NAME:PATH": only the name's bytes count */
	cr_assert_eq(validate_instance_name_n("web:/srv", 3, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(validate_instance_name_n("Web:/srv", 3, err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "upper case"), "message: %s", err);
	/* a 300-character name is refused for its length, not cut to fit */
	memset(spec, 'a', 300);
	strcpy(spec + 300, ":/srv");
	cr_assert_eq(validate_instance_name_n(spec, 300, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "names are at most 63 characters long (this one has 300)"),
		  "message: %s", err);
	cr_assert_lt(strlen(err), 250);
	cr_assert_eq(validate_instance_name_n("we\0b", 4, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "0x00"), "message: %s", err);
}

Test(names, empty_name_is_refused)
{
	cr_assert_eq(name_check(""), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "instance name must not be empty");
}

Test(names, underscore_is_refused_and_named)
{
	cr_assert_eq(name_check("my_vm"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "invalid instance name \"my_vm\": '_' is not allowed; names may contain only lower "
			      "case letters, digits and hyphens");
}

Test(names, space_dot_and_slash_are_refused)
{
	cr_assert_eq(name_check("my vm"), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "a space is not allowed"), "message: %s", err);
	cr_assert_eq(name_check("a.b"), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "'.' is not allowed"), "message: %s", err);
	cr_assert_eq(name_check("../etc"), PROTO_E_INVALID_ARGUMENT);
}

Test(names, control_byte_is_shown_as_hex)
{
	cr_assert_eq(name_check("ab\x01"), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "byte 0x01 is not allowed"), "message: %s", err);
}

Test(names, leading_digit_is_refused)
{
	cr_assert_eq(name_check("1vm"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "invalid instance name \"1vm\": names must start with a letter");
}

Test(names, leading_hyphen_is_refused)
{
	cr_assert_eq(name_check("-vm"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "invalid instance name \"-vm\": names must start with a letter");
}

Test(names, trailing_hyphen_is_refused)
{
	cr_assert_eq(name_check("vm-"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "invalid instance name \"vm-\": names must not end with a hyphen");
}

Test(names, upper_case_is_refused_with_a_hint)
{
	cr_assert_eq(name_check("MyVM"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "invalid instance name \"MyVM\": upper case letters are not allowed (try \"myvm\")");
}

static uint64_t size_ok(const char *text)
{
	uint64_t bytes = 12345;

	err[0] = '\0';
	cr_assert_eq(parse_size(text, &bytes, err, sizeof(err)), 0, "parse_size(\"%s\"): %s", text, err);
	return bytes;
}

static void size_bad(const char *text)
{
	uint64_t bytes = 12345;

	err[0] = '\0';
	cr_assert_eq(parse_size(text, &bytes, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT, "\"%s\" was accepted",
		     text);
	cr_assert_eq(bytes, 12345, "output written for \"%s\"", text);
	cr_assert_neq(err[0], '\0');
}

Test(sizes, plain_number_is_bytes)
{
	cr_assert_eq(size_ok("2048"), 2048);
	cr_assert_eq(size_ok("0"), 0);
	cr_assert_eq(size_ok("2048B"), 2048);
}

Test(sizes, each_suffix_is_a_power_of_1024)
{
	cr_assert_eq(size_ok("1024K"), 1024ull << 10);
	cr_assert_eq(size_ok("512M"), 512ull << 20);
	cr_assert_eq(size_ok("1G"), 1ull << 30);
	cr_assert_eq(size_ok("2T"), 2ull << 40);
}

Test(sizes, b_and_ib_spellings_are_accepted)
{
	cr_assert_eq(size_ok("10GiB"), 10ull << 30);
	cr_assert_eq(size_ok("10GB"), 10ull << 30);
	cr_assert_eq(size_ok("10gib"), 10ull << 30);
	cr_assert_eq(size_ok("512m"), 512ull << 20);
	cr_assert_eq(size_ok("4KiB"), 4096);
}

Test(sizes, decimals_are_exact)
{
	cr_assert_eq(size_ok("1.5G"), 3ull << 29);
	cr_assert_eq(size_ok("0.5K"), 512);
	cr_assert_eq(size_ok("2.25M"), (9ull << 20) / 4);
	cr_assert_eq(size_ok("1.000000000000000000000001G"), 1ull << 30);
}

Test(sizes, unknown_suffix_is_refused_with_a_hint)
{
	size_bad("1Q");
	cr_assert_str_eq(err, "invalid size \"1Q\": use a whole or decimal number with an optional unit K, M, G or "
			      "T (e.g. 2048, 512M, 1.5G, 10GiB)");
}

Test(sizes, empty_is_refused)
{
	size_bad("");
	cr_assert_str_eq(err, "size must not be empty (e.g. 512M, 1.5G, 10GiB)");
}

Test(sizes, junk_is_refused)
{
	size_bad("-1");
	size_bad("+1G");
	size_bad("G");
	size_bad("1.");
	size_bad(".5G");
	size_bad("1 G");
	size_bad(" 1G");
	size_bad("1G ");
	size_bad("1GiBB");
	size_bad("1Gi");
	size_bad("1iB");
	size_bad("0x10");
	size_bad("1e9");
	size_bad("1,5G");
}

Test(sizes, fraction_of_a_byte_is_refused)
{
	size_bad("1.5");
	cr_assert(strstr(err, "must be whole"), "message: %s", err);
}

Test(sizes, overflow_is_refused)
{
	cr_assert_eq(size_ok("18446744073709551615"), UINT64_MAX);
	size_bad("18446744073709551616");
	cr_assert_str_eq(err, "size \"18446744073709551616\" is too large");
	size_bad("16777216T");
	size_bad("17179869184G");
	size_bad("99999999999999999999999999999999999999999");
	cr_assert(strstr(err, "is too large"), "message: %s", err);
}

Test(sizes, formatting_uses_binary_units)
{
	char buf[32];

	format_size(1ull << 30, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1.0GiB");
	format_size(512ull << 20, buf, sizeof(buf));
	cr_assert_str_eq(buf, "512.0MiB");
	format_size(3ull << 29, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1.5GiB");
	format_size(100, buf, sizeof(buf));
	cr_assert_str_eq(buf, "100B");
}

Test(durations, units_convert_to_seconds)
{
	uint64_t s;

	cr_assert_eq(parse_duration("90s", &s, err, sizeof(err)), 0);
	cr_assert_eq(s, 90);
	cr_assert_eq(parse_duration("30m", &s, err, sizeof(err)), 0);
	cr_assert_eq(s, 1800);
	cr_assert_eq(parse_duration("6h", &s, err, sizeof(err)), 0);
	cr_assert_eq(s, 21600);
	cr_assert_eq(parse_duration("30d", &s, err, sizeof(err)), 0);
	cr_assert_eq(s, 30 * 86400);
	cr_assert_eq(parse_duration("2w", &s, err, sizeof(err)), 0);
	cr_assert_eq(s, 14 * 86400);
	cr_assert_eq(parse_duration("never", &s, err, sizeof(err)), 0);
	cr_assert_eq(s, 0);
}

Test(durations, junk_and_overflow_are_refused)
{
	static const char *const bad[] = { "", "6", "h", "0h", "-1h", "6hours", "1.5h", "6 h", "99999999999999999999w", "Never" };
	uint64_t s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(parse_duration(bad[i], &s, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT, "\"%s\"", bad[i]);
	cr_assert(strstr(err, "use a positive number with a unit s, m, h, d or w"), "message: %s", err);
}

static int cloudinit(const char *text)
{
	err[0] = '\0';
	return cloudinit_validate(text, err, sizeof(err));
}

Test(cloudinit, mapping_with_header_is_valid)
{
	cr_assert_eq(cloudinit("#cloud-config\n"
			       "hostname: web\n"
			       "packages: [nginx, curl]\n"
			       "users:\n"
			       "  - name: dev\n"
			       "    ssh_authorized_keys: [\"ssh-ed25519 AAAA\"]\n"),
		     0, "%s", err);
}

Test(cloudinit, empty_and_comment_only_are_valid)
{
	cr_assert_eq(cloudinit(""), 0, "%s", err);
	cr_assert_eq(cloudinit("#cloud-config\n"), 0, "%s", err);
	cr_assert_eq(cloudinit("---\n"), 0, "%s", err);
}

Test(cloudinit, syntax_error_names_its_line)
{
	cr_assert_eq(cloudinit("#cloud-config\n"
			       "hostname: web\n"
			       "packages:\n"
			       "  - nginx\n"
			       " bad: [unclosed\n"),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strncmp(err, "invalid cloud-init user data: line 5, column", 44) == 0, "message: %s", err);
}

Test(cloudinit, tab_indentation_error_names_its_line)
{
	cr_assert_eq(cloudinit("a: 1\nb:\n\t- x\n"), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "line 3, column"), "message: %s", err);
}

Test(cloudinit, list_at_top_level_is_refused)
{
	cr_assert_eq(cloudinit("#cloud-config\n- a\n- b\n"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "invalid cloud-init user data: line 2, column 1: the top level must be a mapping of "
			      "keys (e.g. \"packages:\"), not a list");
}

Test(cloudinit, plain_text_is_refused)
{
	cr_assert_eq(cloudinit("just some words\n"), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "not a plain value"), "message: %s", err);
}

Test(cloudinit, second_document_is_checked_too)
{
	cr_assert_eq(cloudinit("a: 1\n---\n- x\n"), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "line 3"), "message: %s", err);
}

static const char *shown(const char *text, size_t n)
{
	static char buf[128];

	shown_text(text, n, buf, sizeof(buf));
	return buf;
}

Test(shown_text, plain_text_is_kept)
{
	cr_assert_str_eq(shown("running", 7), "running");
	cr_assert_str_eq(shown("", 0), "");
}

Test(shown_text, control_characters_quotes_and_nul_are_escaped)
{
	cr_assert_str_eq(shown("running\n; rm", 12), "running\\n; rm");
	cr_assert_str_eq(shown("a\tb\rc", 5), "a\\tb\\x0dc");
	cr_assert_str_eq(shown("a\0b", 3), "a\\x00b");
	cr_assert_str_eq(shown("say \"hi\" \\o/", 12), "say \\x22hi\\x22 \\x5co/");
}

Test(shown_text, long_text_is_cut)
{
	char text[100];

	memset(text, 'x', sizeof(text));
	cr_assert_eq(strlen(shown(text, sizeof(text))), SHOWN_TEXT_MAX + 3);
	cr_assert(strstr(shown(text, sizeof(text)), "x..."));
}

/* The broker and the helpers (vmh_instance_parse) check names and limits
 * with libvmproto's one rule, so that they cannot disagree. */
Test(names, the_rule_and_limits_are_the_protocols)
{
	static const char *const names[] = {"a", "web-01", "", "Web", "a_b", "1a", "a-", "a.b"};
	char proto_err[512];

	cr_expect_eq(INSTANCE_NAME_MAX, PROTO_NAME_MAX);
	cr_expect_eq(MIN_MEMORY, PROTO_MEMORY_MIN);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		proto_err[0] = '\0';
		cr_expect_eq(name_check(names[i]), proto_check_name(names[i], proto_err, sizeof(proto_err)),
			     "%s", names[i]);
		cr_expect_str_eq(err, proto_err, "%s", names[i]);
	}
}
