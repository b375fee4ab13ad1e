/* Checks on what users type: instance names, sizes, MAC addresses, cloud-init user data. */
#include "vmcommon.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include <vmproto/proto.h>

/* Names in messages are cut here so a hostile megabyte never reaches a log. */
#define VALIDATE_SHOWN_MAX 80

static void validate_describe_char(unsigned char c, char *buf, size_t len)
{
	if (isprint(c) && c != ' ')
		snprintf(buf, len, "'%c'", c);
	else if (c == ' ')
		snprintf(buf, len, "a space");
	else
		snprintf(buf, len, "byte 0x%02x", c);
}

int validate_instance_name_n(const char *name, size_t len, char *err, size_t errlen)
{
	return proto_check_name_n(name, len, err, errlen);
}

/* The rule is the protocol's, so that the broker and every helper agree. */
int validate_instance_name(const char *name, char *err, size_t errlen)
{
	return proto_check_name(name, err, errlen);
}

int validate_network_name(const char *name, char *why, size_t whylen)
{
	size_t n = strlen(name);
	char what[32];

	if (n == 0) {
		snprintf(why, whylen, "the name is empty");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (n > NETWORK_NAME_SETTING_MAX) {
		snprintf(why, whylen, "the name has %zu characters, more than %d", n,
			 NETWORK_NAME_SETTING_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x80 && (isalnum(c) || c == '-' || c == '_' || c == '.'))
			continue;
		if (c == ' ' && name[i + 1] != ' ')
			continue;
		if (c == ' ')
			snprintf(why, whylen, "two spaces in a row are not allowed");
		else {
			validate_describe_char(c, what, sizeof(what));
			snprintf(why, whylen, "%s cannot be in a network name", what);
		}
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!isalnum((unsigned char)name[0]) || !isalnum((unsigned char)name[n - 1])) {
		snprintf(why, whylen, "it must start and end with a letter or digit");
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

static int validate_size_error(const char *text, char *err, size_t errlen)
{
	size_t n = strlen(text);

	snprintf(err, errlen,
		 "invalid size \"%.*s%s\": use a whole or decimal number with an optional unit K, M, G or T (e.g. 2048, 512M, 1.5G, 10GiB)",
		 n > VALIDATE_SHOWN_MAX ? VALIDATE_SHOWN_MAX : (int)n, text, n > VALIDATE_SHOWN_MAX ? "..." : "");
	return PROTO_E_INVALID_ARGUMENT;
}

static int validate_size_too_large(const char *text, char *err, size_t errlen)
{
	size_t n = strlen(text);

	snprintf(err, errlen, "size \"%.*s%s\" is too large",
		 n > VALIDATE_SHOWN_MAX ? VALIDATE_SHOWN_MAX : (int)n, text, n > VALIDATE_SHOWN_MAX ? "..." : "");
	return PROTO_E_INVALID_ARGUMENT;
}

int parse_size(const char *text, uint64_t *bytes, char *err, size_t errlen)
{
	const char *p = text;
	unsigned __int128 whole = 0, frac = 0, frac_scale = 1, total;
	uint64_t unit = 1;
	bool has_unit = false, has_frac = false;

	if (!text || !*text) {
		snprintf(err, errlen, "size must not be empty (e.g. 512M, 1.5G, 10GiB)");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!isdigit((unsigned char)*p))
		return validate_size_error(text, err, errlen);
	for (; isdigit((unsigned char)*p); p++) {
		whole = whole * 10 + (unsigned)(*p - '0');
		if (whole > UINT64_MAX)
			return validate_size_too_large(text, err, errlen);
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return validate_size_error(text, err, errlen);
		has_frac = true;
		for (; isdigit((unsigned char)*p); p++) {
			/* Digits past 10^-18 cannot change a byte count below 2^64. */
			if (frac_scale < (unsigned __int128)1000000000000000000ull) {
				frac = frac * 10 + (unsigned)(*p - '0');
				frac_scale *= 10;
			}
		}
	}
	switch (toupper((unsigned char)*p)) {
	case 'K': unit = 1ull << 10; has_unit = true; break;
	case 'M': unit = 1ull << 20; has_unit = true; break;
	case 'G': unit = 1ull << 30; has_unit = true; break;
	case 'T': unit = 1ull << 40; has_unit = true; break;
	default: break;
	}
	if (has_unit) {
		p++;
		if (*p == 'i' || *p == 'I') {
			p++;
			if (*p != 'B' && *p != 'b')
				return validate_size_error(text, err, errlen);
		}
		if (*p == 'B' || *p == 'b')
			p++;
	} else if (*p == 'B' || *p == 'b') {
		p++;
	}
	if (*p != '\0')
		return validate_size_error(text, err, errlen);
	if (has_frac && !has_unit) {
		snprintf(err, errlen, "invalid size \"%s\": a number of bytes must be whole (or add a unit: K, M, G, T)",
			 text);
		return PROTO_E_INVALID_ARGUMENT;
	}

	total = whole * unit + frac * unit / frac_scale;
	if (total > UINT64_MAX)
		return validate_size_too_large(text, err, errlen);
	*bytes = (uint64_t)total;
	return 0;
}

void format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double value = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(buf, len, "%" PRIu64 "B", bytes);
		return;
	}
	while (value >= 1024.0 && u < 5) {
		value /= 1024.0;
		u++;
	}
	snprintf(buf, len, "%.1f%s", value, units[u]);
}

static int validate_yaml_error(const yaml_parser_t *parser, char *err, size_t errlen)
{
	const yaml_mark_t *mark = parser->problem ? &parser->problem_mark : &parser->context_mark;

	if (parser->error == YAML_MEMORY_ERROR) {
		snprintf(err, errlen, "invalid cloud-init user data: out of memory while parsing");
		return PROTO_E_NOMEM;
	}
	if (parser->context)
		snprintf(err, errlen, "invalid cloud-init user data: line %zu, column %zu: %s %s",
			 mark->line + 1, mark->column + 1, parser->problem ? parser->problem : "syntax error",
			 parser->context);
	else
		snprintf(err, errlen, "invalid cloud-init user data: line %zu, column %zu: %s", mark->line + 1,
			 mark->column + 1, parser->problem ? parser->problem : "syntax error");
	return PROTO_E_INVALID_ARGUMENT;
}

int cloudinit_validate(const char *text, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_event_t event;
	bool root_next = false, done = false;
	int rc = 0;

	if (!text)
		return 0;
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "invalid cloud-init user data: out of memory");
		return PROTO_E_NOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));

	while (!done) {
		if (!yaml_parser_parse(&parser, &event)) {
			rc = validate_yaml_error(&parser, err, errlen);
			goto out_parser;
		}
		if (root_next) {
			root_next = false;
			/* An empty document (bare "---", or only comments) is fine. */
			bool empty = event.type == YAML_SCALAR_EVENT && event.data.scalar.length == 0 &&
				     event.data.scalar.plain_implicit;
			if (event.type != YAML_MAPPING_START_EVENT && !empty) {
				const char *kind = event.type == YAML_SEQUENCE_START_EVENT ? "a list"
						   : event.type == YAML_ALIAS_EVENT	   ? "an alias"
											   : "a plain value";
				snprintf(err, errlen,
					 "invalid cloud-init user data: line %zu, column %zu: the top level must be a mapping of keys (e.g. \"packages:\"), not %s",
					 event.start_mark.line + 1, event.start_mark.column + 1, kind);
				rc = PROTO_E_INVALID_ARGUMENT;
				yaml_event_delete(&event);
				goto out_parser;
			}
		}
		if (event.type == YAML_DOCUMENT_START_EVENT)
			root_next = true;
		if (event.type == YAML_STREAM_END_EVENT)
			done = true;
		yaml_event_delete(&event);
	}

out_parser:
	yaml_parser_delete(&parser);
	return rc;
}

int validate_mac(const char *mac, char *err, size_t errlen)
{
	unsigned first;

	for (int i = 0; i < 17; i++) {
		bool colon = i % 3 == 2;

		if (colon ? mac[i] != ':' : !isxdigit((unsigned char)mac[i]))
			goto out_syntax;
	}
	if (mac[17] != '\0')
		goto out_syntax;
	sscanf(mac, "%2x", &first);
	if (first & 1) {
		snprintf(err, errlen, "MAC address '%s' is a multicast address; give a unicast one "
			 "(the first byte even, like 52:54:00:12:34:56)", mac);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!strcmp(mac, "00:00:00:00:00:00")) {
		snprintf(err, errlen, "MAC address '%s' is not usable", mac);
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;

out_syntax:
	snprintf(err, errlen, "'%.40s' is not a MAC address (six hex pairs like 52:54:00:12:34:56)",
		 mac);
	return PROTO_E_INVALID_ARGUMENT;
}

void shown_text(const char *text, size_t n, char *buf, size_t len)
{
	size_t used = 0, i;

	if (len == 0)
		return;
	for (i = 0; i < n && i < SHOWN_TEXT_MAX && used + 5 < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\n')
			used += (size_t)snprintf(buf + used, len - used, "\\n");
		else if (c == '\t')
			used += (size_t)snprintf(buf + used, len - used, "\\t");
		else if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
			used += (size_t)snprintf(buf + used, len - used, "\\x%02x", c);
		else
			buf[used++] = (char)c;
	}
	if (i < n && used + 4 < len)
		used += (size_t)snprintf(buf + used, len - used, "...");
	buf[used < len ? used : len - 1] = '\0';
}

int parse_duration(const char *text, uint64_t *seconds, char *err, size_t errlen)
{
	static const struct {
		char unit;
		uint64_t seconds;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { 'w', 604800 } };
	uint64_t count = 0;
	const char *p = text;

	if (text && !strcmp(text, "never")) {
		*seconds = 0;
		return 0;
	}
	if (!text || !isdigit((unsigned char)*p))
		goto out_invalid;
	for (; isdigit((unsigned char)*p); p++) {
		if (count > (UINT64_MAX - 9) / 10)
			goto out_invalid;
		count = count * 10 + (uint64_t)(*p - '0');
	}
	if (count == 0 || !p[0] || p[1])
		goto out_invalid;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (*p != units[i].unit)
			continue;
		if (count > UINT64_MAX / units[i].seconds)
			goto out_invalid;
		*seconds = count * units[i].seconds;
		return 0;
	}

out_invalid:
	snprintf(err, errlen,
		 "invalid duration \"%.*s\": use a positive number with a unit s, m, h, d or w (e.g. 30m, 6h, 7d), or \"never\"",
		 VALIDATE_SHOWN_MAX, text ? text : "");
	return PROTO_E_INVALID_ARGUMENT;
}
