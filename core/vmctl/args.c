/*
 * Command-line parsing against a cmd_entry's option spec, and the local
 * checks every command runs before it talks to the broker. Nothing here does
 * I/O, so the unit tests exercise it directly.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

static int args_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int args_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return PROTO_E_INVALID_ARGUMENT;
}

static size_t args_count_options(const struct cmd_entry *e)
{
	size_t n = 0;

	while (e->options != NULL && e->options[n].name != NULL)
		n++;
	return n;
}

static const struct cmd_option *args_find_long(const struct cmd_entry *e, const char *name,
					       size_t len, size_t *index)
{
	for (size_t i = 0; e->options != NULL && e->options[i].name != NULL; i++) {
		if (strlen(e->options[i].name) == len && strncmp(e->options[i].name, name, len) == 0) {
			*index = i;
			return &e->options[i];
		}
	}
	return NULL;
}

static const struct cmd_option *args_find_short(const struct cmd_entry *e, char c, size_t *index)
{
	for (size_t i = 0; e->options != NULL && e->options[i].name != NULL; i++) {
		if (e->options[i].short_name == c) {
			*index = i;
			return &e->options[i];
		}
	}
	return NULL;
}

size_t args_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[64];

	/* long words are never typos of our short names */
	if (lb + 1 > sizeof(row) / sizeof(row[0]) || la > 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

bool args_close_enough(const char *typed, const char *known)
{
	size_t d = args_distance(typed, known);

	return d <= 2 && d < strlen(known) / 2 + 1;
}

/* ", did you mean '--NAME'?" for a mistyped long option, or "". */
static void args_option_hint(const struct cmd_entry *e, const char *typed, size_t len,
			     char *hint, size_t hintlen)
{
	char word[64];

	hint[0] = '\0';
	if (len >= sizeof(word))
		return;
	snprintf(word, sizeof(word), "%.*s", (int)len, typed);
	for (size_t i = 0; e->options != NULL && e->options[i].name != NULL; i++) {
		if (args_close_enough(word, e->options[i].name)) {
			snprintf(hint, hintlen, "; did you mean '--%s'?", e->options[i].name);
			return;
		}
	}
}

static int args_store(struct cmd_args *a, size_t index, const struct cmd_option *o, char *value,
		      char *err, size_t errlen)
{
	struct opt_slot *slot = &a->opts[index];

	if (slot->count > 0 && !(o->flags & OPT_MULTI) && o->arg == NULL)
		return 0; /* a flag given twice means the same thing */
	slot->count++;
	if (value == NULL)
		return 0;
	if (slot->count > 1 && !(o->flags & OPT_MULTI))
		slot->n_values = 0; /* the last one wins, as with getopt-style tools */
	slot->values[slot->n_values++] = value;
	return 0;
}

/* Free the arrays args_parse allocated and leave a clean struct. */
void args_free(struct cmd_args *a)
{
	for (size_t i = 0; i < a->n_opts; i++)
		free(a->opts[i].values);
	free(a->opts);
	free(a->argv);
	free(a->rest);
	memset(a, 0, sizeof(*a));
}

/* One "--long", "--long=value" word; may consume the next word as the value. */
static int args_parse_long(struct cmd_args *a, int argc, char **argv, int *i, char *err,
			   size_t errlen)
{
	char *word = argv[*i] + 2;
	char *eq = strchr(word, '=');
	size_t len = eq != NULL ? (size_t)(eq - word) : strlen(word);
	size_t index;
	const struct cmd_option *o;

	if (len == 4 && strncmp(word, "help", 4) == 0 && eq == NULL) {
		a->help = true;
		return 0;
	}
	o = args_find_long(a->entry, word, len, &index);
	if (o == NULL) {
		char hint[96];

		args_option_hint(a->entry, word, len, hint, sizeof(hint));
		return args_fail(err, errlen, "unknown option '--%.*s' for '%s'%s", (int)len, word,
				 a->entry->name, hint);
	}
	if (o->arg == NULL) {
		if (eq != NULL)
			return args_fail(err, errlen, "option '--%s' takes no value", o->name);
		return args_store(a, index, o, NULL, err, errlen);
	}
	if (eq != NULL)
		return args_store(a, index, o, eq + 1, err, errlen);
	if (*i + 1 >= argc)
		return args_fail(err, errlen, "option '--%s' needs a value (%s)", o->name, o->arg);
	(*i)++;
	return args_store(a, index, o, argv[*i], err, errlen);
}

/* One "-abc" or "-nVALUE" word; may consume the next word as the value. */
static int args_parse_short(struct cmd_args *a, int argc, char **argv, int *i, char *err,
			    size_t errlen)
{
	char *word = argv[*i];

	for (size_t k = 1; word[k] != '\0'; k++) {
		size_t index;
		const struct cmd_option *o;
		int rc;

		if (word[k] == 'h') {
			a->help = true;
			continue;
		}
		o = args_find_short(a->entry, word[k], &index);
		if (o == NULL)
			return args_fail(err, errlen, "unknown option '-%c' for '%s'", word[k],
					 a->entry->name);
		if (o->arg == NULL) {
			rc = args_store(a, index, o, NULL, err, errlen);
			if (rc < 0)
				return rc;
			continue;
		}
		if (word[k + 1] != '\0')
			return args_store(a, index, o, word + k + 1, err, errlen);
		if (*i + 1 >= argc)
			return args_fail(err, errlen, "option '-%c' needs a value (%s)", o->short_name,
					 o->arg);
		(*i)++;
		return args_store(a, index, o, argv[*i], err, errlen);
	}
	return 0;
}

int args_parse(const struct cmd_entry *e, int argc, char **argv, struct cmd_args *a, char *err,
	       size_t errlen)
{
	bool only_positionals = false;
	int rc = PROTO_E_NOMEM;

	memset(a, 0, sizeof(*a));
	a->entry = e;
	a->n_opts = args_count_options(e);
	a->opts = calloc(a->n_opts + 1, sizeof(*a->opts));
	a->argv = calloc((size_t)argc + 1, sizeof(*a->argv));
	a->rest = calloc((size_t)argc + 1, sizeof(*a->rest));
	if (a->opts == NULL || a->argv == NULL || a->rest == NULL)
		goto out_free;
	for (size_t i = 0; i < a->n_opts; i++) {
		a->opts[i].values = calloc((size_t)argc + 1, sizeof(char *));
		if (a->opts[i].values == NULL)
			goto out_free;
	}

	for (int i = 0; i < argc; i++) {
		char *word = argv[i];
		bool rest_full = (e->flags & CMD_F_REST) && e->max_args >= 0 && a->argc >= e->max_args;

		if (a->nrest > 0 || (rest_full && (only_positionals || word[0] != '-'))) {
			/* exec NAME ls -l: the command starts at the first extra word */
			a->rest[a->nrest++] = word;
			continue;
		}
		if (!only_positionals && strcmp(word, "--") == 0) {
			only_positionals = true;
			if (e->flags & CMD_F_REST) {
				for (int k = i + 1; k < argc; k++)
					a->rest[a->nrest++] = argv[k];
				break;
			}
			continue;
		}
		if (!only_positionals && word[0] == '-' && word[1] == '-') {
			rc = args_parse_long(a, argc, argv, &i, err, errlen);
			if (rc < 0)
				goto out_free;
			continue;
		}
		if (!only_positionals && word[0] == '-' && word[1] != '\0') {
			rc = args_parse_short(a, argc, argv, &i, err, errlen);
			if (rc < 0)
				goto out_free;
			continue;
		}
		a->argv[a->argc++] = word;
	}
	if (a->help)
		return 0; /* help wins over counting arguments */

	if (a->argc < e->min_args) {
		const char *what = "more arguments";

		for (int k = 0; e->arguments != NULL && e->arguments[k].name != NULL; k++) {
			if (k == a->argc) {
				what = e->arguments[k].name;
				break;
			}
		}
		rc = args_fail(err, errlen, "'%s' needs %s", e->name, what);
		goto out_free;
	}
	if (e->max_args >= 0 && a->argc > e->max_args) {
		rc = args_fail(err, errlen, "unexpected argument '%s' for '%s'", a->argv[e->max_args],
			       e->name);
		goto out_free;
	}
	return 0;

out_free:
	if (rc == PROTO_E_NOMEM)
		args_fail(err, errlen, "out of memory");
	args_free(a);
	return rc;
}

static const struct opt_slot *args_slot(const struct cmd_args *a, const char *name)
{
	for (size_t i = 0; i < a->n_opts; i++)
		if (strcmp(a->entry->options[i].name, name) == 0)
			return &a->opts[i];
	return NULL;
}

bool args_has(const struct cmd_args *a, const char *name)
{
	const struct opt_slot *s = args_slot(a, name);

	return s != NULL && s->count > 0;
}

const char *args_get(const struct cmd_args *a, const char *name)
{
	const struct opt_slot *s = args_slot(a, name);

	if (s == NULL || s->n_values == 0)
		return NULL;
	return s->values[s->n_values - 1];
}

char **args_values(const struct cmd_args *a, const char *name, size_t *n)
{
	const struct opt_slot *s = args_slot(a, name);

	*n = s != NULL ? s->n_values : 0;
	return s != NULL ? s->values : NULL;
}

int args_format(const struct cmd_args *a, enum render_format *out, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		enum render_format fmt;
	} formats[] = {
		{ "table", FORMAT_TABLE }, { "json", FORMAT_JSON },
		{ "yaml", FORMAT_YAML },   { "csv", FORMAT_CSV },
	};
	const char *v = args_get(a, "format");

	*out = FORMAT_TABLE;
	if (v == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		if (strcmp(v, formats[i].name) == 0) {
			*out = formats[i].fmt;
			return 0;
		}
	}
	return args_fail(err, errlen, "unknown format '%s' (use table, json, yaml or csv)", v);
}

int args_names_or_all(const struct cmd_args *a, bool *all, char *err, size_t errlen)
{
	*all = args_has(a, "all");
	if (*all && a->argc > 0)
		return args_fail(err, errlen, "give instance names or --all, not both");
	if (!*all && a->argc == 0)
		return args_fail(err, errlen, "'%s' needs an instance name (or --all)", a->entry->name);
	for (int i = 0; i < a->argc; i++) {
		int rc = validate_instance_name(a->argv[i], err, errlen);

		if (rc < 0)
			return rc;
	}
	return 0;
}

int args_parse_uint(const char *what, const char *text, uint64_t min, uint64_t max, uint64_t *out,
		    char *err, size_t errlen)
{
	char *end;
	unsigned long long v;

	if (text == NULL || !isdigit((unsigned char)text[0]))
		return args_fail(err, errlen, "%s must be a whole number, not '%s'", what,
				 text != NULL ? text : "");
	errno = 0;
	v = strtoull(text, &end, 10);
	if (*end != '\0' || errno == ERANGE)
		return args_fail(err, errlen, "%s must be a whole number, not '%s'", what, text);
	if (v < min || v > max)
		return args_fail(err, errlen, "%s must be between %llu and %llu, not %llu", what,
				 (unsigned long long)min, (unsigned long long)max, v);
	*out = v;
	return 0;
}

int args_validate_key(const char *key, size_t len, char *err, size_t errlen)
{
	if (len > 6 && strncmp(key, "local.", 6) == 0) {
		const char *part = key + 6, *dot = memchr(part, '.', len - 6);

		/* no setting has a part this long: it names an instance */
		if (dot != NULL && (size_t)(dot - part) > INSTANCE_NAME_MAX)
			return validate_instance_name_n(part, (size_t)(dot - part), err, errlen);
	}
	if (len > ARGS_KEY_MAX)
		return args_fail(err, errlen,
				 "unknown setting \"%.80s...\": keys are at most %d bytes (vmctl get "
				 "--keys lists them)",
				 key, ARGS_KEY_MAX);
	return 0;
}

int args_validate_snapshot_name(const char *name, char *err, size_t errlen)
{
	size_t len = strlen(name);

	if (len == 0)
		return args_fail(err, errlen, "the snapshot name is empty");
	if (len > 63)
		return args_fail(err, errlen, "snapshot name '%s' is longer than 63 characters", name);
	if (!isalpha((unsigned char)name[0]))
		return args_fail(err, errlen, "snapshot name '%s' must start with a letter", name);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!isalnum(c) && c != '-')
			return args_fail(err, errlen,
					 "snapshot name '%s' may contain only letters, digits and "
					 "hyphens",
					 name);
	}
	if (name[len - 1] == '-')
		return args_fail(err, errlen, "snapshot name '%s' must not end with a hyphen", name);
	return 0;
}

static int args_parse_id(const char *text, size_t len, uint32_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 10)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)text[i]))
			return -1;
		v = v * 10 + (uint64_t)(text[i] - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int args_parse_id_map(const char *text, uint32_t *host, uint32_t *guest, char *err, size_t errlen)
{
	const char *colon = strchr(text, ':');

	if (colon == NULL || args_parse_id(text, (size_t)(colon - text), host) < 0 ||
	    args_parse_id(colon + 1, strlen(colon + 1), guest) < 0)
		return args_fail(err, errlen,
				 "invalid id mapping '%s': expected HOST:GUEST, two numeric ids", text);
	return 0;
}

bool args_split_instance_path(const char *spec, size_t *name_len, const char **path)
{
	const char *colon = strchr(spec, ':');
	const char *slash = strchr(spec, '/');

	if (colon == NULL || colon == spec || spec[0] == '/' || spec[0] == '.')
		return false;
	if (slash != NULL && slash < colon)
		return false;
	*name_len = (size_t)(colon - spec);
	*path = colon + 1;
	return true;
}

static bool shell_is_plain(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (!isalnum(c) && strchr("@%+=:,./_-", c) == NULL)
			return false;
	}
	return true;
}

char *shell_quote(const char *s)
{
	size_t quotes = 0, len = strlen(s);
	char *out, *p;

	if (shell_is_plain(s))
		return strdup(s);
	for (const char *q = s; *q != '\0'; q++)
		quotes += *q == '\'';
	/* 'it'\''s': every quote becomes four characters */
	out = malloc(len + quotes * 3 + 3);
	if (out == NULL)
		return NULL;
	p = out;
	*p++ = '\'';
	for (const char *q = s; *q != '\0'; q++) {
		if (*q == '\'') {
			memcpy(p, "'\\''", 4);
			p += 4;
		} else {
			*p++ = *q;
		}
	}
	*p++ = '\'';
	*p = '\0';
	return out;
}

char *shell_join(char *const *argv, int argc)
{
	size_t cap = 1, len = 0;
	char *out = malloc(cap);

	if (out == NULL)
		return NULL;
	out[0] = '\0';
	for (int i = 0; i < argc; i++) {
		char *q = shell_quote(argv[i]);
		size_t qlen;
		char *grown;

		if (q == NULL)
			goto out_free;
		qlen = strlen(q);
		grown = realloc(out, cap + qlen + 1);
		if (grown == NULL) {
			free(q);
			goto out_free;
		}
		out = grown;
		cap += qlen + 1;
		if (i > 0)
			out[len++] = ' ';
		memcpy(out + len, q, qlen);
		len += qlen;
		out[len] = '\0';
		free(q);
	}
	return out;

out_free:
	free(out);
	return NULL;
}

void strvec_init(struct strvec *sv)
{
	sv->v = NULL;
	sv->n = 0;
	sv->cap = 0;
}

int strvec_push(struct strvec *sv, const char *s)
{
	char *copy;

	if (sv->n + 2 > sv->cap) {
		size_t cap = sv->cap == 0 ? 16 : sv->cap * 2;
		char **grown = realloc(sv->v, cap * sizeof(*grown));

		if (grown == NULL)
			return PROTO_E_NOMEM;
		sv->v = grown;
		sv->cap = cap;
	}
	copy = strdup(s);
	if (copy == NULL)
		return PROTO_E_NOMEM;
	sv->v[sv->n++] = copy;
	sv->v[sv->n] = NULL;
	return 0;
}

int strvec_pushf(struct strvec *sv, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int rc, n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return PROTO_E_NOMEM;
	rc = strvec_push(sv, s);
	free(s);
	return rc;
}

void strvec_free(struct strvec *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	strvec_init(sv);
}
