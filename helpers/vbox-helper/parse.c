/*
 * What VBoxManage prints, parsed. The formats are the real tool's; where
 * each was taken from is in tests/fixtures/vbox/README.md.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vbox.h"

/* The line starting at p into buf (without its end of line); the start of
 * the next line, or NULL at the end. */
static const char *next_line(const char *p, char *buf, size_t len)
{
	size_t n = 0;

	if (!p || !*p)
		return NULL;
	while (*p && *p != '\n') {
		if (*p != '\r' && n + 1 < len)
			buf[n++] = *p;
		p++;
	}
	buf[n] = '\0';
	return *p ? p + 1 : p;
}

static char *unquote(const char *v)
{
	size_t len = strlen(v);
	char *out = malloc(len + 1), *o = out;

	if (!out)
		return NULL;
	if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
		for (size_t i = 1; i + 1 < len; i++) {
			if (v[i] == '\\' && i + 2 < len)
				i++;
			*o++ = v[i];
		}
		*o = '\0';
	} else {
		memcpy(out, v, len + 1);
	}
	return out;
}

int vbox_kvs_parse(const char *text, struct vbox_kvs *out)
{
	char line[4096];
	const char *p = text;

	out->v = NULL;
	out->n = 0;
	while ((p = next_line(p, line, sizeof(line)))) {
		char *eq = strchr(line, '='), *key, *value;
		struct vbox_kv *grown;

		if (!eq || eq == line)
			continue;
		*eq = '\0';
		key = unquote(line); /* keys with spaces are quoted: "SATA-0-0"="..." */
		value = unquote(eq + 1);
		grown = realloc(out->v, (out->n + 1) * sizeof(*grown));
		if (!key || !value || !grown) {
			free(key);
			free(value);
			if (grown)
				out->v = grown;
			vbox_kvs_free(out);
			return PROTO_E_NOMEM;
		}
		out->v = grown;
		out->v[out->n].key = key;
		out->v[out->n].value = value;
		out->n++;
	}
	return 0;
}

void vbox_kvs_free(struct vbox_kvs *kvs)
{
	for (size_t i = 0; i < kvs->n; i++) {
		free(kvs->v[i].key);
		free(kvs->v[i].value);
	}
	free(kvs->v);
	kvs->v = NULL;
	kvs->n = 0;
}

const char *vbox_kvs_get(const struct vbox_kvs *kvs, const char *key)
{
	for (size_t i = 0; i < kvs->n; i++)
		if (!strcmp(kvs->v[i].key, key))
			return kvs->v[i].value;
	return NULL;
}

enum proto_state vbox_state_of(const char *s)
{
	static const struct {
		const char *vbox;
		enum proto_state state;
	} map[] = {
		{"running", PROTO_STATE_RUNNING},
		{"poweroff", PROTO_STATE_STOPPED},
		{"aborted", PROTO_STATE_STOPPED},
		{"saved", PROTO_STATE_SUSPENDED},
		{"paused", PROTO_STATE_SUSPENDED},
		{"starting", PROTO_STATE_STARTING},
		{"restoring", PROTO_STATE_STARTING},
		{"stopping", PROTO_STATE_STOPPING},
		{"saving", PROTO_STATE_SUSPENDING},
	};

	for (size_t i = 0; s && i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(s, map[i].vbox))
			return map[i].state;
	return PROTO_STATE_UNKNOWN; /* stuck, gurumeditation, aborted-saved, ... */
}

int vbox_forward_port(const struct vbox_kvs *info, const char *rule)
{
	size_t rlen = strlen(rule);

	for (size_t i = 0; i < info->n; i++) {
		const char *v = info->v[i].value;
		char f[6][128];
		int n = 0;

		if (strncmp(info->v[i].key, "Forwarding(", 11) || strncmp(v, rule, rlen) ||
		    v[rlen] != ',')
			continue;
		/* name,proto,hostip,hostport,guestip,guestport */
		memset(f, 0, sizeof(f));
		for (const char *p = v; n < 6; n++) {
			const char *c = strchr(p, ',');
			size_t l = c ? (size_t)(c - p) : strlen(p);

			snprintf(f[n], sizeof(f[n]), "%.*s", (int)(l < 127 ? l : 127), p);
			if (!c) {
				n++;
				break;
			}
			p = c + 1;
		}
		if (n == 6) {
			long port = strtol(f[3], NULL, 10);

			if (port > 0 && port < 65536)
				return (int)port;
		}
	}
	return 0;
}

static bool is_ipv4(const char *s)
{
	int a, b, c, d;
	char extra;

	return sscanf(s, "%d.%d.%d.%d%c", &a, &b, &c, &d, &extra) == 4 && a >= 0 && a < 256 &&
	       b >= 0 && b < 256 && c >= 0 && c < 256 && d >= 0 && d < 256;
}

size_t vbox_guest_ipv4(const char *text, char out[][64], size_t max)
{
	static const char prefix[] = "/VirtualBox/GuestInfo/Net/";
	char line[1024];
	const char *p = text;
	struct {
		long slot;
		char ip[64];
	} found[32];
	size_t n = 0;

	while (n < 32 && (p = next_line(p, line, sizeof(line)))) {
		char *at = strstr(line, prefix), *end, *value;
		long slot;

		if (!at)
			continue;
		slot = strtol(at + sizeof(prefix) - 1, &end, 10);
		if (end == at + sizeof(prefix) - 1 || strncmp(end, "/V4/IP", 6))
			continue;
		end += 6;
		if (strncmp(end, ", value: ", 9) == 0) { /* 6.1 and older */
			value = end + 9;
			char *comma = strchr(value, ',');

			if (comma)
				*comma = '\0';
		} else { /* 7.x: NAME = 'VALUE' @ TIME */
			char *q = strchr(end, '\'');

			if (!q)
				continue;
			value = q + 1;
			q = strchr(value, '\'');
			if (!q)
				continue;
			*q = '\0';
		}
		if (!is_ipv4(value))
			continue;
		found[n].slot = slot;
		snprintf(found[n].ip, sizeof(found[n].ip), "%s", value);
		n++;
	}
	/* By NIC number: NIC 1 (the NAT one) first. */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && found[j - 1].slot > found[j].slot; j--) {
			__typeof__(found[0]) t = found[j];

			found[j] = found[j - 1];
			found[j - 1] = t;
		}
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		snprintf(out[i], 64, "%s", found[i].ip);
	return n;
}

bool vbox_list_vms_has(const char *text, const char *name)
{
	char line[1024];
	const char *p = text;
	size_t len = strlen(name);

	while ((p = next_line(p, line, sizeof(line))))
		if (line[0] == '"' && !strncmp(line + 1, name, len) && !strncmp(line + 1 + len, "\" {", 3))
			return true;
	return false;
}

/* "Key:   value" into key and value (trimmed); false for other lines. */
static bool colon_line(char *line, char **key, char **value)
{
	char *c = strchr(line, ':');
	char *e;

	if (!c || c == line)
		return false;
	*c = '\0';
	*key = line;
	*value = c + 1;
	while (**value == ' ' || **value == '\t')
		(*value)++;
	e = *value + strlen(*value);
	while (e > *value && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return true;
}

size_t vbox_ifaces_parse(const char *text, struct vbox_iface *out, size_t max)
{
	char line[1024];
	const char *p = text;
	size_t n = 0;
	bool open = false;

	while ((p = next_line(p, line, sizeof(line)))) {
		char *key, *value;

		if (!line[0]) {
			open = false;
			continue;
		}
		if (!colon_line(line, &key, &value))
			continue;
		if (!strcmp(key, "Name")) {
			if (n == max)
				break;
			memset(&out[n], 0, sizeof(out[n]));
			snprintf(out[n].name, sizeof(out[n].name), "%s", value);
			n++;
			open = true;
		} else if (open && !strcmp(key, "Status")) {
			snprintf(out[n - 1].status, sizeof(out[n - 1].status), "%s", value);
		} else if (open && !strcmp(key, "MediumType")) {
			snprintf(out[n - 1].medium, sizeof(out[n - 1].medium), "%s", value);
		}
	}
	return n;
}

size_t vbox_snaps_parse(const char *text, struct vbox_snap *out, size_t max)
{
	struct vbox_kvs kvs;
	size_t n = 0;

	if (vbox_kvs_parse(text, &kvs) < 0)
		return 0;
	for (size_t i = 0; i < kvs.n && n < max; i++) {
		const char *key = kvs.v[i].key;
		const char *suffix;
		char want[160];
		const char *desc;

		if (strncmp(key, "SnapshotName", 12))
			continue;
		suffix = key + 12; /* "", "-1", "-1-1", ... */
		if (*suffix && *suffix != '-')
			continue;
		memset(&out[n], 0, sizeof(out[n]));
		snprintf(out[n].name, sizeof(out[n].name), "%s", kvs.v[i].value);
		snprintf(want, sizeof(want), "SnapshotDescription%s", suffix);
		desc = vbox_kvs_get(&kvs, want);
		if (desc)
			snprintf(out[n].description, sizeof(out[n].description), "%s", desc);
		/* The parent's key is this one without its last "-N". */
		const char *last = strrchr(suffix, '-');

		if (last) {
			snprintf(want, sizeof(want), "SnapshotName%.*s", (int)(last - suffix), suffix);
			const char *parent = vbox_kvs_get(&kvs, want);

			if (parent)
				snprintf(out[n].parent, sizeof(out[n].parent), "%s", parent);
		}
		n++;
	}
	vbox_kvs_free(&kvs);
	return n;
}

int vbox_error_of(const char *output, char *msg, size_t msglen)
{
	static const struct {
		const char *name;
		int code;
	} codes[] = {
		{"VBOX_E_OBJECT_NOT_FOUND", PROTO_E_NOT_FOUND},
		{"VBOX_E_INVALID_VM_STATE", PROTO_E_INVALID_STATE},
		{"VBOX_E_INVALID_OBJECT_STATE", PROTO_E_INVALID_STATE},
		{"VBOX_E_FILE_ERROR", PROTO_E_IO},
		{"VBOX_E_OBJECT_IN_USE", PROTO_E_BUSY},
		{"VBOX_E_TIMEOUT", PROTO_E_TIMEOUT},
		{"E_ACCESSDENIED", PROTO_E_UNAVAILABLE},
	};
	static const char tag[] = "VBoxManage: error: ";
	const char *e = output ? strstr(output, tag) : NULL;
	size_t n = 0;

	if (msglen)
		msg[0] = '\0';
	if (e) {
		e += sizeof(tag) - 1;
		while (e[n] && e[n] != '\n' && e[n] != '\r')
			n++;
		snprintf(msg, msglen, "%.*s", (int)n, e);
	} else if (output) {
		/* No error line: the output's first line says what happened. */
		while (output[n] && output[n] != '\n')
			n++;
		snprintf(msg, msglen, "%.*s", (int)n, output);
	}
	for (size_t i = 0; output && i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *c = strstr(output, codes[i].name);
		size_t l = strlen(codes[i].name);

		if (c && !isalnum((unsigned char)c[l]) && c[l] != '_')
			return codes[i].code;
	}
	return PROTO_E_DRIVER;
}

int vbox_version_parse(const char *text, int *major, int *minor)
{
	char line[256];
	const char *p = text;

	while ((p = next_line(p, line, sizeof(line)))) {
		int a, b;

		if (isdigit((unsigned char)line[0]) && sscanf(line, "%d.%d", &a, &b) == 2) {
			*major = a;
			*minor = b;
			return 0;
		}
	}
	return PROTO_E_INVALID_ARGUMENT;
}

double vbox_progress_of(const char *text)
{
	double best = -1;

	for (const char *p = text; p && (p = strchr(p, '%')); p++) {
		const char *s = p;
		double v;

		/* "(12.50/100%)": the number before "/100" */
		if (s - text >= 4 && !strncmp(s - 4, "/100", 4)) {
			s -= 4;
			const char *b = s;

			while (b > text && (isdigit((unsigned char)b[-1]) || b[-1] == '.'))
				b--;
			if (b < s && sscanf(b, "%lf", &v) == 1)
				best = v / 100.0;
			continue;
		}
		/* "...40%" */
		const char *b = s;

		while (b > text && isdigit((unsigned char)b[-1]))
			b--;
		if (b < s && sscanf(b, "%lf", &v) == 1)
			best = v / 100.0;
	}
	if (best > 1)
		best = 1;
	return best;
}
