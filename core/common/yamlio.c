/* The libyaml layer shared by settings.c and registry.c (see yamlio.h). */
#include "yamlio.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <vmproto/proto.h>

int yio_reader_open(struct yio_reader *r, const char *text, size_t len, const char *what, char *err,
		    size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->what = what;
	r->err = err;
	r->errlen = errlen;
	if (!yaml_parser_initialize(&r->parser)) {
		snprintf(err, errlen, "%s: out of memory", what);
		return PROTO_E_NOMEM;
	}
	yaml_parser_set_input_string(&r->parser, (const unsigned char *)text, len);
	return 0;
}

int yio_next(struct yio_reader *r)
{
	if (r->have_ev) {
		yaml_event_delete(&r->ev);
		r->have_ev = false;
	}
	if (!yaml_parser_parse(&r->parser, &r->ev)) {
		const yaml_parser_t *p = &r->parser;
		const yaml_mark_t *mark = p->problem ? &p->problem_mark : &p->context_mark;

		if (p->error == YAML_MEMORY_ERROR) {
			snprintf(r->err, r->errlen, "%s: out of memory", r->what);
			return PROTO_E_NOMEM;
		}
		snprintf(r->err, r->errlen, "%s: line %zu, column %zu: %s%s%s", r->what, mark->line + 1,
			 mark->column + 1, p->problem ? p->problem : "not valid YAML", p->context ? " " : "",
			 p->context ? p->context : "");
		return PROTO_E_INVALID_ARGUMENT;
	}
	r->have_ev = true;
	/* Nothing we write uses aliases; refusing them keeps hostile files simple. */
	if (r->ev.type == YAML_ALIAS_EVENT)
		return yio_fail(r, "aliases (*name) are not allowed here");
	return 0;
}

int yio_fail(struct yio_reader *r, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	size_t line = 0, column = 0;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->have_ev) {
		line = r->ev.start_mark.line;
		column = r->ev.start_mark.column;
	} else {
		line = r->parser.mark.line;
		column = r->parser.mark.column;
	}
	snprintf(r->err, r->errlen, "%s: line %zu, column %zu: %s", r->what, line + 1, column + 1, msg);
	return PROTO_E_INVALID_ARGUMENT;
}

int yio_begin(struct yio_reader *r, bool *empty)
{
	int rc;

	*empty = false;
	if ((rc = yio_next(r)) < 0)
		return rc;
	if (r->ev.type != YAML_STREAM_START_EVENT)
		return yio_fail(r, "expected the start of the file");
	if ((rc = yio_next(r)) < 0)
		return rc;
	if (r->ev.type == YAML_STREAM_END_EVENT) {
		*empty = true;
		return 0;
	}
	if (r->ev.type != YAML_DOCUMENT_START_EVENT)
		return yio_fail(r, "expected a YAML document");
	return yio_next(r);
}

int yio_end(struct yio_reader *r)
{
	int rc;

	if ((rc = yio_next(r)) < 0)
		return rc;
	if (r->ev.type != YAML_DOCUMENT_END_EVENT)
		return yio_fail(r, "unexpected content after the top-level mapping");
	if ((rc = yio_next(r)) < 0)
		return rc;
	if (r->ev.type != YAML_STREAM_END_EVENT)
		return yio_fail(r, "only one YAML document is allowed");
	return 0;
}

bool yio_is_scalar(const struct yio_reader *r)
{
	return r->have_ev && r->ev.type == YAML_SCALAR_EVENT;
}

const char *yio_scalar(const struct yio_reader *r)
{
	return (const char *)r->ev.data.scalar.value;
}

bool yio_scalar_is_null(const struct yio_reader *r)
{
	const char *v = yio_scalar(r);

	if (!r->ev.data.scalar.plain_implicit)
		return false;
	return !*v || !strcmp(v, "~") || !strcasecmp(v, "null");
}

void yio_reader_close(struct yio_reader *r)
{
	if (r->have_ev)
		yaml_event_delete(&r->ev);
	r->have_ev = false;
	yaml_parser_delete(&r->parser);
}

static int yio_write_handler(void *data, unsigned char *bytes, size_t size)
{
	struct yio_writer *w = data;

	if (w->len + size + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		char *grown;

		while (w->len + size + 1 > cap)
			cap *= 2;
		grown = realloc(w->buf, cap);
		if (!grown)
			return 0;
		w->buf = grown;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, bytes, size);
	w->len += size;
	w->buf[w->len] = '\0';
	return 1;
}

static void yio_emit_or(struct yio_writer *w, yaml_event_t *ev, int init_ok, int init_error)
{
	if (w->rc < 0) {
		if (init_ok)
			yaml_event_delete(ev);
		return;
	}
	if (!init_ok) {
		w->rc = init_error;
		return;
	}
	/* yaml_emitter_emit takes ownership of the event, success or not. */
	if (!yaml_emitter_emit(&w->emitter, ev))
		w->rc = w->emitter.error == YAML_MEMORY_ERROR || w->emitter.error == YAML_WRITER_ERROR
				? PROTO_E_NOMEM
				: PROTO_E_INTERNAL;
}

static void yio_emit(struct yio_writer *w, yaml_event_t *ev, int init_ok)
{
	yio_emit_or(w, ev, init_ok, PROTO_E_NOMEM);
}

int yio_writer_open(struct yio_writer *w)
{
	yaml_event_t ev;

	memset(w, 0, sizeof(*w));
	if (!yaml_emitter_initialize(&w->emitter))
		return PROTO_E_NOMEM;
	yaml_emitter_set_output(&w->emitter, yio_write_handler, w);
	yaml_emitter_set_unicode(&w->emitter, 1);
	yaml_emitter_set_width(&w->emitter, -1);
	yaml_emitter_set_indent(&w->emitter, 2);
	yio_emit(w, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
	yio_emit(w, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
	return w->rc;
}

void yio_map_start(struct yio_writer *w)
{
	yaml_event_t ev;

	yio_emit(w, &ev, yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
}

void yio_map_end(struct yio_writer *w)
{
	yaml_event_t ev;

	yio_emit(w, &ev, yaml_mapping_end_event_initialize(&ev));
}

void yio_seq_start(struct yio_writer *w)
{
	yaml_event_t ev;

	yio_emit(w, &ev, yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE));
}

void yio_seq_end(struct yio_writer *w)
{
	yaml_event_t ev;

	yio_emit(w, &ev, yaml_sequence_end_event_initialize(&ev));
}

static void yio_scalar_styled(struct yio_writer *w, const char *text, yaml_scalar_style_t style)
{
	yaml_event_t ev;

	/* Besides memory, a scalar fails only on text that is not UTF-8. */
	yio_emit_or(w, &ev,
		    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1, 1,
						 style),
		    PROTO_E_INVALID_ARGUMENT);
}

void yio_plain(struct yio_writer *w, const char *text)
{
	yio_scalar_styled(w, text, YAML_ANY_SCALAR_STYLE);
}

/* Would a YAML 1.1/1.2 reader take this plain text for something other than a string? */
static bool yio_looks_typed(const char *s)
{
	static const char *const words[] = { "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n" };

	if (!*s)
		return true;
	if (isdigit((unsigned char)s[0]) || s[0] == '+' || s[0] == '-' || s[0] == '.')
		return true;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strcasecmp(s, words[i]))
			return true;
	return false;
}

void yio_string(struct yio_writer *w, const char *text)
{
	yio_scalar_styled(w, text, yio_looks_typed(text) ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
}

int yio_writer_finish(struct yio_writer *w, const char **data, size_t *len)
{
	yaml_event_t ev;

	yio_emit(w, &ev, yaml_document_end_event_initialize(&ev, 1));
	yio_emit(w, &ev, yaml_stream_end_event_initialize(&ev));
	if (w->rc == 0 && !yaml_emitter_flush(&w->emitter))
		w->rc = PROTO_E_NOMEM;
	if (w->rc < 0)
		return w->rc;
	*data = w->buf ? w->buf : "";
	*len = w->len;
	return 0;
}

void yio_writer_close(struct yio_writer *w)
{
	yaml_emitter_delete(&w->emitter);
	free(w->buf);
	w->buf = NULL;
}
