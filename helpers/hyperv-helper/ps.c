/*
 * PowerShell scripts and their answers. A value from a user reaches a
 * script only through hv_ps_quote(), as one single-quoted literal, in
 * which PowerShell expands nothing ($, backticks, semicolons and newlines
 * are plain text there); the only character that ends such a literal is a
 * single quote, of which PowerShell knows four besides the ASCII one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv.h"

static void buf_grow(struct hv_buf *b, size_t more)
{
	size_t cap;
	char *s;

	if (b->oom || b->len + more + 1 <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	s = realloc(b->s, cap);
	if (!s) {
		b->oom = true;
		return;
	}
	b->s = s;
	b->cap = cap;
}

void hv_buf_raw(struct hv_buf *b, const char *text)
{
	size_t n = strlen(text);

	buf_grow(b, n);
	if (b->oom)
		return;
	memcpy(b->s + b->len, text, n + 1);
	b->len += n;
}

void hv_buf_fmt(struct hv_buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(small)) {
		b->oom = true; /* only numbers and fixed words go through here */
		return;
	}
	hv_buf_raw(b, small);
}

void hv_buf_q(struct hv_buf *b, const char *value)
{
	char *q = hv_ps_quote(value ? value : "");

	if (!q) {
		b->oom = true;
		return;
	}
	hv_buf_raw(b, q);
	free(q);
}

char *hv_buf_take(struct hv_buf *b)
{
	char *s = b->s;

	if (b->oom || !s) {
		free(s);
		s = NULL;
	}
	b->s = NULL;
	b->len = b->cap = 0;
	b->oom = false;
	return s;
}

void hv_buf_free(struct hv_buf *b)
{
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
}

/* The length of a quote character at s (0: none): ' or U+2018..U+201B in UTF-8. */
static size_t quote_len(const unsigned char *s)
{
	if (s[0] == '\'')
		return 1;
	if (s[0] == 0xE2 && s[1] == 0x80 && s[2] >= 0x98 && s[2] <= 0x9B)
		return 3;
	return 0;
}

char *hv_ps_quote(const char *value)
{
	size_t n = strlen(value), o = 0;
	char *q = malloc(2 * n + 3);
	const unsigned char *s = (const unsigned char *)value;

	if (!q)
		return NULL;
	q[o++] = '\'';
	while (*s) {
		size_t ql = quote_len(s);

		if (ql) {
			/* Doubled, a quote character stands for itself. */
			memcpy(q + o, s, ql);
			memcpy(q + o + ql, s, ql);
			o += 2 * ql;
			s += ql;
			continue;
		}
		q[o++] = (char)*s++;
	}
	q[o++] = '\'';
	q[o] = '\0';
	return q;
}

char *hv_ps_wrap(const char *body)
{
	struct hv_buf b = {0};

	hv_buf_raw(&b, "$ErrorActionPreference='Stop';$ProgressPreference='SilentlyContinue';"
		       "[Console]::OutputEncoding=[Text.Encoding]::UTF8;try{");
	hv_buf_raw(&b, body);
	hv_buf_raw(&b, "}catch{$e=$_;[pscustomobject]@{Error=[pscustomobject]@{"
		       "Message=$e.Exception.Message;FullyQualifiedErrorId=$e.FullyQualifiedErrorId;"
		       "CategoryInfo=$e.CategoryInfo.ToString();"
		       "Category=$e.CategoryInfo.Category.ToString()}}" HV_JSON ";exit 1}");
	return hv_buf_take(&b);
}

void hv_ps_argv(const char *ps, const char *script, char *argv[6])
{
	argv[0] = (char *)ps;
	argv[1] = "-NoProfile";
	argv[2] = "-NonInteractive";
	argv[3] = "-Command";
	argv[4] = (char *)script;
	argv[5] = NULL;
}

static void copy_str(const json_t *o, const char *key, char *buf, size_t len)
{
	const char *v = json_string_value(json_object_get(o, key));

	snprintf(buf, len, "%s", v ? v : "");
}

/* The last line of output that holds a JSON document: PowerShell may print
 * warnings (WARNING: ...) before it. */
static const char *last_json_line(const char *out)
{
	const char *found = NULL, *line = out;

	while (line && *line) {
		const char *p = line;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '{' || *p == '[')
			found = p;
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return found;
}

int hv_ps_parse(const char *output, int status, json_t **rows, struct hv_pserr *e)
{
	const char *doc = last_json_line(output ? output : "");
	json_error_t jerr;
	json_t *j, *err;

	memset(e, 0, sizeof(*e));
	*rows = NULL;
	if (!doc) {
		if (status == 0) {
			*rows = json_array(); /* a pipeline that wrote nothing */
			return *rows ? 0 : PROTO_E_NOMEM;
		}
		snprintf(e->message, sizeof(e->message), "PowerShell %s%s%.900s",
			 status < 0 ? "was killed" : "failed", output && *output ? ": " : "",
			 output ? output : "");
		return PROTO_E_DRIVER;
	}
	j = json_loadb(doc, strcspn(doc, "\r\n"), 0, &jerr);
	if (!j) {
		snprintf(e->message, sizeof(e->message), "PowerShell answered what is not JSON (%s): %.600s",
			 jerr.text, doc);
		return PROTO_E_DRIVER;
	}
	err = json_object_get(j, "Error");
	if (json_is_object(err)) {
		copy_str(err, "Message", e->message, sizeof(e->message));
		copy_str(err, "FullyQualifiedErrorId", e->fqid, sizeof(e->fqid));
		copy_str(err, "CategoryInfo", e->category_info, sizeof(e->category_info));
		copy_str(err, "Category", e->category, sizeof(e->category));
		if (!e->message[0])
			snprintf(e->message, sizeof(e->message), "PowerShell failed (%s)", e->fqid);
		json_decref(j);
		return hv_ps_error_code(e);
	}
	if (status != 0) {
		snprintf(e->message, sizeof(e->message), "PowerShell failed (exit status %d): %.600s",
			 status, doc);
		json_decref(j);
		return PROTO_E_DRIVER;
	}
	if (json_is_array(j)) {
		*rows = j;
		return 0;
	}
	*rows = json_array();
	if (!*rows || json_array_append_new(*rows, j) < 0) {
		json_decref(*rows);
		*rows = NULL;
		return PROTO_E_NOMEM;
	}
	return 0;
}

int hv_ps_error_code(const struct hv_pserr *e)
{
	if (!strcmp(e->category, "ObjectNotFound"))
		return PROTO_E_NOT_FOUND;
	/* Get-VM -Name of a VM Hyper-V lacks: InvalidArgument, "unable to find". */
	if (!strncmp(e->fqid, "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM", 59))
		return PROTO_E_NOT_FOUND;
	if (!strcmp(e->category, "ResourceExists"))
		return PROTO_E_ALREADY_EXISTS;
	if (!strcmp(e->category, "PermissionDenied") || !strcmp(e->category, "SecurityError"))
		return PROTO_E_UNAVAILABLE;
	if (!strcmp(e->category, "OperationTimeout"))
		return PROTO_E_TIMEOUT;
	return PROTO_E_DRIVER;
}

enum proto_state hv_vm_state(const json_t *state)
{
	static const struct {
		int number;
		const char *name;
		enum proto_state state;
	} map[] = {
		{2, "Running", PROTO_STATE_RUNNING},
		{3, "Off", PROTO_STATE_STOPPED},
		{4, "Stopping", PROTO_STATE_STOPPING},
		{6, "Saved", PROTO_STATE_SUSPENDED},
		{9, "Paused", PROTO_STATE_SUSPENDED},
		{10, "Starting", PROTO_STATE_STARTING},
		{11, "Reset", PROTO_STATE_RESTARTING},
		{32773, "Saving", PROTO_STATE_SUSPENDING},
		{32776, "Pausing", PROTO_STATE_SUSPENDING},
		{32777, "Resuming", PROTO_STATE_STARTING},
		{32779, "FastSaved", PROTO_STATE_SUSPENDED},
		{32780, "FastSaving", PROTO_STATE_SUSPENDING},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (json_is_integer(state) && json_integer_value(state) == map[i].number)
			return map[i].state;
		if (json_is_string(state) && !strcmp(json_string_value(state), map[i].name))
			return map[i].state;
	}
	return PROTO_STATE_UNKNOWN;
}

void hv_first_ipv4(const json_t *row, char *buf, size_t len)
{
	const json_t *ips = json_object_get(row, "IPAddresses");
	size_t i;
	json_t *ip;

	buf[0] = '\0';
	if (json_is_string(ips)) { /* one address: ConvertTo-Json may unwrap it */
		if (!strchr(json_string_value(ips), ':'))
			snprintf(buf, len, "%s", json_string_value(ips));
		return;
	}
	json_array_foreach(ips, i, ip) {
		const char *s = json_string_value(ip);

		if (s && *s && !strchr(s, ':')) {
			snprintf(buf, len, "%s", s);
			return;
		}
	}
}

void hv_mac_plain(const char *mac, char out[13])
{
	size_t o = 0;

	for (const char *p = mac; *p && o < 12; p++)
		if (*p != ':' && *p != '-')
			out[o++] = (char)(*p >= 'a' && *p <= 'f' ? *p - 'a' + 'A' : *p);
	out[o] = '\0';
}

/* Hyper-V Administrators and Administrators, by their well-known SIDs (the
 * group names are translated on localized Windows). */
char *hv_script_probe(void)
{
	return hv_ps_wrap(
		"$p=[Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent();"
		"$m=[bool](Get-Command -Name Get-VMHost -ErrorAction SilentlyContinue);"
		"[pscustomobject]@{Module=$m;"
		"User=[Security.Principal.WindowsIdentity]::GetCurrent().Name;"
		"HyperVAdministrator=$p.IsInRole([Security.Principal.SecurityIdentifier]'S-1-5-32-578');"
		"Administrator=$p.IsInRole([Security.Principal.SecurityIdentifier]'S-1-5-32-544');"
		"VMHost=$(if($m){Get-VMHost|Select-Object Name,VirtualMachinePath,VirtualHardDiskPath}"
		"else{$null})}" HV_JSON);
}

const char *hv_probe_verdict(const char *output, int status, char *why, size_t whylen)
{
	struct hv_pserr e;
	json_t *rows, *row;
	const char *user;
	int rc = hv_ps_parse(output, status, &rows, &e);

	if (rc < 0) {
		if (!strcmp(e.category, "PermissionDenied") || strstr(e.message, "permission"))
			snprintf(why, whylen, "Hyper-V refuses this user (%s): add it to the Hyper-V "
				 "Administrators group and sign in again", e.message);
		else
			snprintf(why, whylen, "Hyper-V does not answer: %s", e.message);
		return why;
	}
	row = json_array_get(rows, 0);
	user = json_string_value(json_object_get(row, "User"));
	if (!json_is_true(json_object_get(row, "Module"))) {
		snprintf(why, whylen, "the Hyper-V feature is off or this Windows has none (it needs "
			 "Windows 10/11 Pro, Enterprise or Server): Enable-WindowsOptionalFeature "
			 "-Online -FeatureName Microsoft-Hyper-V-All");
	} else if (!json_is_true(json_object_get(row, "HyperVAdministrator")) &&
		   !json_is_true(json_object_get(row, "Administrator"))) {
		snprintf(why, whylen, "%s is not in the Hyper-V Administrators group "
			 "(Add-LocalGroupMember -SID S-1-5-32-578 -Member %s, then sign in again)",
			 user ? user : "this user", user ? user : "USER");
	} else if (!json_is_object(json_object_get(row, "VMHost"))) {
		snprintf(why, whylen, "Get-VMHost gave no host: is the Hyper-V Virtual Machine "
			 "Management service (vmms) running?");
	} else {
		json_decref(rows);
		return NULL;
	}
	json_decref(rows);
	return why;
}
