/* The hyperv driver's PowerShell quoting and the parsing of its answers
 * (recorded ConvertTo-Json outputs in tests/fixtures/hyperv). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "hv.h"

static char *fixture(const char *name)
{
	char path[512];
	static char buf[16384];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", HV_FIXTURES, name);
	f = fopen(path, "r");
	cr_assert(f, "fixture %s", path);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* PowerShell's rule for a single-quoted string literal (about_Quoting_Rules):
 * it ends at a quote character (', U+2018..U+201B) that is not doubled; a
 * doubled one stands for one. Decodes lit into out; returns how many bytes
 * of lit the literal took. */
static size_t ps_literal(const char *lit, char *out)
{
	const unsigned char *s = (const unsigned char *)lit;
	size_t i = 0, o = 0;

	cr_assert_eq(s[0], '\'');
	i = 1;
	for (;;) {
		size_t q = s[i] == '\'' ? 1
			   : (s[i] == 0xE2 && s[i + 1] == 0x80 && s[i + 2] >= 0x98 &&
			      s[i + 2] <= 0x9B) ? 3 : 0;

		cr_assert(s[i], "the literal never ends: %s", lit);
		if (q) {
			size_t q2 = s[i + q] == '\'' ? 1
				    : (s[i + q] == 0xE2 && s[i + q + 1] == 0x80 &&
				       s[i + q + 2] >= 0x98 && s[i + q + 2] <= 0x9B) ? 3 : 0;

			if (!q2) {
				out[o] = '\0';
				return i + q;
			}
			memcpy(out + o, s + i, q); /* a doubled quote is one (the first kind) */
			o += q;
			i += q + q2;
			continue;
		}
		out[o++] = (char)s[i++];
	}
}

/* The quoted value is one literal, to its last byte, and means value. */
static void assert_inert(const char *value)
{
	char *q = hv_ps_quote(value), out[1024];
	size_t used;

	cr_assert(q);
	used = ps_literal(q, out);
	cr_assert_eq(used, strlen(q), "the literal of [%s] ends early: %s", value, q);
	cr_assert_str_eq(out, value);
	free(q);
}

Test(quote, plain)
{
	char *q = hv_ps_quote("web");

	cr_assert_str_eq(q, "'web'");
	free(q);
	q = hv_ps_quote("");
	cr_assert_str_eq(q, "''");
	free(q);
}

Test(quote, single_quotes_doubled)
{
	char *q = hv_ps_quote("it's");

	cr_assert_str_eq(q, "'it''s'");
	free(q);
	assert_inert("'");
	assert_inert("''");
	assert_inert("a'b'c'");
}

Test(quote, typographic_quotes_doubled)
{
	/* U+2018, U+2019, U+201A, U+201B end a literal too. */
	char *q = hv_ps_quote("a\u2018b\u2019c\u201Ad\u201Be");

	cr_assert_str_eq(q, "'a\u2018\u2018b\u2019\u2019c\u201A\u201Ad\u201B\u201Be'");
	free(q);
	assert_inert("\u2019;Remove-Item C:\\ -Recurse;\u2019");
	/* Double quotes (and their typographic kin) are plain in a '...' literal. */
	q = hv_ps_quote("\"\u201C\u201D");
	cr_assert_str_eq(q, "'\"\u201C\u201D'");
	free(q);
}

Test(quote, dollar_backtick_semicolon_newline_stay_text)
{
	char *q = hv_ps_quote("$env:USERNAME `n $(Get-Date); x\ny\r\n");

	cr_assert_str_eq(q, "'$env:USERNAME `n $(Get-Date); x\ny\r\n'");
	free(q);
	assert_inert("$x;`;\n$(Stop-Computer)");
}

Test(quote, unicode_passes_through)
{
	char *q = hv_ps_quote("C:\\Users\\Jürgen\\Документы\\日本");

	cr_assert_str_eq(q, "'C:\\Users\\Jürgen\\Документы\\日本'");
	free(q);
	assert_inert("é\u2018ü\u201B😀");
}

Test(quote, injection_name_refused_and_inert)
{
	static const char *evil = "a';Remove-Item C:\\ -Recurse;'";
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked u;
	struct vmh_instance inst;
	char err[256], *q;

	/* The name rule refuses it before any script is made... */
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_str(&pk, "name", evil);
	proto_pack_kv_str(&pk, "dir", "/tmp/x");
	msgpack_unpacked_init(&u);
	cr_assert_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
	cr_assert_eq(vmh_instance_parse(&u.data, &inst, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
	/* ... and quoting alone makes it one inert literal. */
	q = hv_ps_quote(evil);
	cr_assert_str_eq(q, "'a'';Remove-Item C:\\ -Recurse;'''");
	free(q);
	assert_inert(evil);
	/* In a whole script, the name appears only inside its literal. */
	q = hv_script_start(evil);
	cr_assert(strstr(q, "Start-VM -Name 'a'';Remove-Item C:\\ -Recurse;''';"));
	free(q);
}

Test(parse, one_object_is_a_row)
{
	json_t *rows;
	struct hv_pserr e;
	char ip[64];

	cr_assert_eq(hv_ps_parse(fixture("get-vm-running.json"), 0, &rows, &e), 0);
	cr_assert_eq(json_array_size(rows), 1);
	cr_assert_eq(hv_vm_state(json_object_get(json_array_get(rows, 0), "State")),
		     PROTO_STATE_RUNNING);
	hv_first_ipv4(json_array_get(rows, 0), ip, sizeof(ip));
	cr_assert_str_eq(ip, "172.20.144.5");
	json_decref(rows);
}

Test(parse, array_of_vms_and_their_states)
{
	json_t *rows;
	struct hv_pserr e;
	char ip[64];

	cr_assert_eq(hv_ps_parse(fixture("get-vm-all.json"), 0, &rows, &e), 0);
	cr_assert_eq(json_array_size(rows), 4);
	cr_assert_eq(hv_vm_state(json_object_get(json_array_get(rows, 1), "State")),
		     PROTO_STATE_STOPPED);
	cr_assert_eq(hv_vm_state(json_object_get(json_array_get(rows, 2), "State")),
		     PROTO_STATE_SUSPENDED);
	cr_assert_eq(hv_vm_state(json_object_get(json_array_get(rows, 3), "State")),
		     PROTO_STATE_SUSPENDED);
	hv_first_ipv4(json_array_get(rows, 1), ip, sizeof(ip));
	cr_assert_str_eq(ip, "");
	json_decref(rows);
}

Test(parse, warning_lines_before_the_json_are_skipped)
{
	json_t *rows;
	struct hv_pserr e;
	char ip[64];

	cr_assert_eq(hv_ps_parse(fixture("get-vm-warning.json"), 0, &rows, &e), 0);
	hv_first_ipv4(json_array_get(rows, 0), ip, sizeof(ip));
	cr_assert_str_eq(ip, "172.20.144.9"); /* one address: unwrapped to a string */
	json_decref(rows);
}

Test(parse, no_output_is_no_rows)
{
	json_t *rows;
	struct hv_pserr e;

	cr_assert_eq(hv_ps_parse("", 0, &rows, &e), 0);
	cr_assert_eq(json_array_size(rows), 0);
	json_decref(rows);
}

Test(parse, error_records)
{
	json_t *rows;
	struct hv_pserr e;

	cr_assert_eq(hv_ps_parse(fixture("error-get-vm-notfound.json"), 1, &rows, &e),
		     PROTO_E_NOT_FOUND);
	cr_assert_null(rows);
	cr_assert_str_eq(e.message, "Hyper-V was unable to find a virtual machine with name \"web\".");
	cr_assert_str_eq(e.fqid, "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM");
	cr_assert_str_eq(e.category_info, "InvalidArgument: (web:String) [Get-VM], VirtualizationException");
	cr_assert_str_eq(e.category, "InvalidArgument");
	cr_assert_eq(hv_ps_parse(fixture("error-remove-vm-notfound.json"), 1, &rows, &e),
		     PROTO_E_NOT_FOUND);
	cr_assert_eq(hv_ps_parse(fixture("error-start-vm-state.json"), 1, &rows, &e),
		     PROTO_E_DRIVER);
	cr_assert_str_eq(e.category, "InvalidOperation");
	cr_assert_eq(hv_ps_parse(fixture("error-get-vmhost-denied.json"), 1, &rows, &e),
		     PROTO_E_UNAVAILABLE);
}

Test(parse, not_json)
{
	json_t *rows;
	struct hv_pserr e;

	cr_assert_eq(hv_ps_parse("The term 'Get-VM' is not recognized", 1, &rows, &e),
		     PROTO_E_DRIVER);
	cr_assert(strstr(e.message, "is not recognized"));
	cr_assert_eq(hv_ps_parse("{\"Name\":", 0, &rows, &e), PROTO_E_DRIVER);
	cr_assert(strstr(e.message, "not JSON"));
	/* JSON, but PowerShell failed without an error record. */
	cr_assert_eq(hv_ps_parse("{\"Name\":\"web\"}", 2, &rows, &e), PROTO_E_DRIVER);
}

Test(state, numbers_and_names)
{
	json_t *j = json_integer(32773);

	cr_assert_eq(hv_vm_state(j), PROTO_STATE_SUSPENDING);
	json_decref(j);
	j = json_string("Off");
	cr_assert_eq(hv_vm_state(j), PROTO_STATE_STOPPED);
	json_decref(j);
	j = json_integer(1); /* Other */
	cr_assert_eq(hv_vm_state(j), PROTO_STATE_UNKNOWN);
	json_decref(j);
	cr_assert_eq(hv_vm_state(NULL), PROTO_STATE_UNKNOWN);
}

Test(mac, plain_upper_hex)
{
	char out[13];

	hv_mac_plain("52:54:00:ab:cd:0e", out);
	cr_assert_str_eq(out, "525400ABCD0E");
}

Test(probe, verdicts)
{
	char why[512];

	cr_assert_null(hv_probe_verdict(fixture("probe-ok.json"), 0, why, sizeof(why)));
	cr_assert_not_null(hv_probe_verdict(fixture("probe-no-feature.json"), 0, why, sizeof(why)));
	cr_assert(strstr(why, "Hyper-V feature is off"), "%s", why);
	cr_assert_not_null(hv_probe_verdict(fixture("probe-not-admin.json"), 0, why, sizeof(why)));
	cr_assert(strstr(why, "DESKTOP-7Q1\\dev is not in the Hyper-V Administrators group"), "%s",
		  why);
	cr_assert_not_null(
		hv_probe_verdict(fixture("error-get-vmhost-denied.json"), 1, why, sizeof(why)));
	cr_assert(strstr(why, "Hyper-V refuses this user"), "%s", why);
	cr_assert_not_null(hv_probe_verdict("", -1, why, sizeof(why)));
	cr_assert(strstr(why, "Hyper-V does not answer"), "%s", why);
}
