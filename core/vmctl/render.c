/*
 * One renderer for every command's output: tables, "Key: value" records and
 * CSV are driven by a column list over the broker's result; JSON and YAML
 * show the result as it came, so a new key reaches scripts without a change
 * here.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <yaml.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

#define RENDER_EMPTY "--"

/* ---- cells ---- */

static int render_scalar(const msgpack_object *v, enum render_kind kind, struct strvec *lines)
{
	char buf[256];

	switch (v->type) {
	case MSGPACK_OBJECT_NIL:
		return 0;
	case MSGPACK_OBJECT_BOOLEAN:
		return strvec_push(lines, v->via.boolean ? "yes" : "no");
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (kind == RENDER_SIZE)
			format_size(v->via.u64, buf, sizeof(buf));
		else
			snprintf(buf, sizeof(buf), "%" PRIu64, v->via.u64);
		return strvec_push(lines, buf);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return strvec_pushf(lines, "%" PRId64, v->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return strvec_pushf(lines, "%g", v->via.f64);
	case MSGPACK_OBJECT_STR:
	case MSGPACK_OBJECT_BIN: {
		const char *p = v->type == MSGPACK_OBJECT_STR ? v->via.str.ptr : v->via.bin.ptr;
		uint32_t size = v->type == MSGPACK_OBJECT_STR ? v->via.str.size : v->via.bin.size;
		int rc;

		if (size == 0)
			return 0;
		if (size < sizeof(buf)) {
			/* the common short value: no format string to interpret */
			memcpy(buf, p, size);
			buf[size] = '\0';
			rc = strvec_push(lines, buf);
		} else {
			rc = strvec_pushf(lines, "%.*s", (int)size, p);
		}
		if (rc == 0 && kind == RENDER_STATE)
			lines->v[lines->n - 1][0] = (char)toupper((unsigned char)p[0]);
		return rc;
	}
	default:
		break;
	}
	/* a nested map where a column expected a value: show it compactly */
	if (msgpack_object_print_buffer(buf, sizeof(buf), *v) < 0)
		return 0;
	return strvec_push(lines, buf);
}

static int render_mount(const msgpack_object *m, struct strvec *lines)
{
	char *source = proto_dup_str(m, "source");
	char *target = proto_dup_str(m, "target");
	int rc;

	rc = strvec_pushf(lines, "%s => %s", source != NULL ? source : "?",
			  target != NULL ? target : "?");
	free(source);
	free(target);
	return rc;
}

static int render_network(const msgpack_object *m, struct strvec *lines)
{
	char *name = proto_dup_str(m, "name");
	char *mode = proto_dup_str(m, "mode");
	char *mac = proto_dup_str(m, "mac");
	int rc;

	rc = strvec_pushf(lines, "%s (%s, %s)", name != NULL ? name : "?",
			  mode != NULL ? mode : "auto", mac != NULL ? mac : "?");
	free(name);
	free(mode);
	free(mac);
	return rc;
}

/* The lines of one cell; an empty value gives no lines. */
static int render_cell(const msgpack_object *v, enum render_kind kind, struct strvec *lines)
{
	if (v == NULL)
		return 0;
	if (v->type != MSGPACK_OBJECT_ARRAY)
		return render_scalar(v, kind, lines);
	for (uint32_t i = 0; i < v->via.array.size; i++) {
		const msgpack_object *e = &v->via.array.ptr[i];
		int rc;

		if (kind == RENDER_MOUNTS && e->type == MSGPACK_OBJECT_MAP)
			rc = render_mount(e, lines);
		else if (kind == RENDER_NETWORKS && e->type == MSGPACK_OBJECT_MAP)
			rc = render_network(e, lines);
		else
			rc = render_scalar(e, kind, lines);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Display width of UTF-8 text: count code points, not bytes. */
static size_t render_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

static size_t render_count_columns(const struct render_column *columns)
{
	size_t n = 0;

	while (columns[n].title != NULL)
		n++;
	return n;
}

static bool render_rows_ok(const msgpack_object *rows)
{
	return rows != NULL && rows->type == MSGPACK_OBJECT_ARRAY;
}

static const msgpack_object *render_row(const msgpack_object *rows, uint32_t i)
{
	return &rows->via.array.ptr[i];
}

/* ---- table ---- */

/* cells[row * ncol + col]: the lines of every cell, computed once. */
static int render_collect(const struct render_column *columns, size_t ncol,
			  const msgpack_object *rows, struct strvec **cells_out)
{
	size_t nrows = rows->via.array.size;
	struct strvec *cells = calloc(nrows * ncol + 1, sizeof(*cells));

	if (cells == NULL)
		return PROTO_E_NOMEM;
	for (size_t r = 0; r < nrows; r++) {
		for (size_t c = 0; c < ncol; c++) {
			const msgpack_object *v = proto_map_get(render_row(rows, (uint32_t)r),
								columns[c].key);
			int rc = render_cell(v, columns[c].kind, &cells[r * ncol + c]);

			if (rc < 0) {
				for (size_t k = 0; k < nrows * ncol; k++)
					strvec_free(&cells[k]);
				free(cells);
				return rc;
			}
		}
	}
	*cells_out = cells;
	return 0;
}

static void render_free_cells(struct strvec *cells, size_t n)
{
	for (size_t k = 0; k < n; k++)
		strvec_free(&cells[k]);
	free(cells);
}

static void render_padded(FILE *out, const char *text, size_t width, bool last)
{
	size_t w;

	fputs(text, out);
	if (last)
		return;
	w = render_width(text);
	if (w < width)
		fprintf(out, "%*s", (int)(width - w), "");
}

/* One output line of a table, built in a buffer reused for every line. */
struct render_line {
	char *p;
	size_t len, cap;
};

static int render_line_add(struct render_line *l, const char *s, size_t n, size_t spaces)
{
	if (l->len + n + spaces + 1 > l->cap) {
		size_t cap = (l->len + n + spaces + 1) * 2;
		char *p = realloc(l->p, cap);

		if (p == NULL)
			return PROTO_E_NOMEM;
		l->p = p;
		l->cap = cap;
	}
	memcpy(l->p + l->len, s, n);
	memset(l->p + l->len + n, ' ', spaces);
	l->len += n + spaces;
	l->p[l->len] = '\0';
	return 0;
}

int render_table(FILE *out, const struct render_column *columns, const msgpack_object *rows)
{
	size_t ncol = render_count_columns(columns), nrows;
	size_t *width;
	struct strvec *cells;
	struct render_line line = {0};
	int rc;

	if (!render_rows_ok(rows))
		return PROTO_E_INVALID_ARGUMENT;
	nrows = rows->via.array.size;
	rc = render_collect(columns, ncol, rows, &cells);
	if (rc < 0)
		return rc;
	width = calloc(ncol + 1, sizeof(*width));
	if (width == NULL) {
		render_free_cells(cells, nrows * ncol);
		return PROTO_E_NOMEM;
	}
	for (size_t c = 0; c < ncol; c++) {
		width[c] = render_width(columns[c].title);
		if (width[c] < strlen(RENDER_EMPTY))
			width[c] = strlen(RENDER_EMPTY);
		for (size_t r = 0; r < nrows; r++) {
			const struct strvec *cell = &cells[r * ncol + c];

			for (size_t l = 0; l < cell->n; l++)
				if (render_width(cell->v[l]) > width[c])
					width[c] = render_width(cell->v[l]);
		}
		width[c] += 2; /* the gap between columns */
	}

	for (size_t c = 0; c < ncol; c++)
		render_padded(out, columns[c].title, width[c], c + 1 == ncol);
	fputc('\n', out);
	for (size_t r = 0; r < nrows; r++) {
		size_t height = 1;

		for (size_t c = 0; c < ncol; c++)
			if (cells[r * ncol + c].n > height)
				height = cells[r * ncol + c].n;
		/* a list value (several IPv4 addresses) continues on the next lines */
		for (size_t l = 0; l < height; l++) {
			line.len = 0;
			for (size_t c = 0; c < ncol; c++) {
				const struct strvec *cell = &cells[r * ncol + c];
				const char *text = l < cell->n ? cell->v[l] : (l == 0 ? RENDER_EMPTY : "");
				size_t w = render_width(text);

				rc = render_line_add(&line, text, strlen(text),
						     c + 1 == ncol || w >= width[c] ? 0 : width[c] - w);
				if (rc < 0)
					goto out_width;
			}
			/* a continuation line leaves the later columns blank: no trailing spaces */
			while (line.len > 0 && line.p[line.len - 1] == ' ')
				line.len--;
			fwrite(line.p, 1, line.len, out);
			fputc('\n', out);
		}
	}
out_width:
	free(line.p);
	free(width);
	render_free_cells(cells, nrows * ncol);
	return rc;
}

/* ---- records ---- */

int render_records(FILE *out, const struct render_column *columns, const msgpack_object *rows)
{
	size_t ncol = render_count_columns(columns), label = 0, nrows;
	struct strvec *cells;
	int rc;

	if (!render_rows_ok(rows))
		return PROTO_E_INVALID_ARGUMENT;
	nrows = rows->via.array.size;
	rc = render_collect(columns, ncol, rows, &cells);
	if (rc < 0)
		return rc;
	for (size_t c = 0; c < ncol; c++)
		if (render_width(columns[c].title) + 1 > label)
			label = render_width(columns[c].title) + 1;
	label += 2;

	for (size_t r = 0; r < nrows; r++) {
		if (r > 0)
			fputc('\n', out);
		for (size_t c = 0; c < ncol; c++) {
			const struct strvec *cell = &cells[r * ncol + c];
			char title[128];

			if (cell->n == 0 && columns[c].kind == RENDER_OPTIONAL)
				continue;
			snprintf(title, sizeof(title), "%s:", columns[c].title);
			render_padded(out, title, label, false);
			fputs(cell->n > 0 ? cell->v[0] : RENDER_EMPTY, out);
			fputc('\n', out);
			for (size_t l = 1; l < cell->n; l++) {
				render_padded(out, "", label, false);
				fprintf(out, "%s\n", cell->v[l]);
			}
		}
	}
	render_free_cells(cells, nrows * ncol);
	return 0;
}

/* ---- csv ---- */

void render_csv_field(FILE *out, const char *s)
{
	size_t len = strlen(s);
	bool quote = len > 0 && (isspace((unsigned char)s[0]) || isspace((unsigned char)s[len - 1]));

	if (strpbrk(s, ",\"\r\n") != NULL)
		quote = true;
	if (!quote) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (; *s != '\0'; s++) {
		if (*s == '"')
			fputc('"', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

int render_csv(FILE *out, const struct render_column *columns, const msgpack_object *rows)
{
	size_t ncol = render_count_columns(columns), nrows;
	struct strvec *cells;
	int rc;

	if (!render_rows_ok(rows))
		return PROTO_E_INVALID_ARGUMENT;
	nrows = rows->via.array.size;
	rc = render_collect(columns, ncol, rows, &cells);
	if (rc < 0)
		return rc;
	for (size_t c = 0; c < ncol; c++) {
		if (c > 0)
			fputc(',', out);
		render_csv_field(out, columns[c].title);
	}
	fputc('\n', out);
	for (size_t r = 0; r < nrows; r++) {
		for (size_t c = 0; c < ncol; c++) {
			const struct strvec *cell = &cells[r * ncol + c];
			size_t len = 1;
			char *joined;

			if (c > 0)
				fputc(',', out);
			for (size_t l = 0; l < cell->n; l++)
				len += strlen(cell->v[l]) + 1;
			joined = calloc(len, 1);
			if (joined == NULL) {
				render_free_cells(cells, nrows * ncol);
				return PROTO_E_NOMEM;
			}
			/* a list becomes one field: "10.0.0.2,10.0.0.3" */
			for (size_t l = 0; l < cell->n; l++) {
				if (l > 0)
					strcat(joined, ",");
				strcat(joined, cell->v[l]);
			}
			render_csv_field(out, joined);
			free(joined);
		}
		fputc('\n', out);
	}
	render_free_cells(cells, nrows * ncol);
	return 0;
}

/* ---- json ---- */

static json_t *render_to_json(const msgpack_object *o)
{
	json_t *j;

	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_BOOLEAN:
		return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return json_real((double)o->via.u64);
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return json_real(o->via.f64);
	case MSGPACK_OBJECT_STR:
		return json_stringn_nocheck(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_BIN:
		return json_stringn_nocheck(o->via.bin.ptr, o->via.bin.size);
	case MSGPACK_OBJECT_ARRAY:
		j = json_array();
		for (uint32_t i = 0; j != NULL && i < o->via.array.size; i++) {
			json_t *e = render_to_json(&o->via.array.ptr[i]);

			if (e == NULL || json_array_append_new(j, e) < 0) {
				json_decref(j);
				return NULL;
			}
		}
		return j;
	case MSGPACK_OBJECT_MAP:
		j = json_object();
		for (uint32_t i = 0; j != NULL && i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			char key[256];
			json_t *v;

			if (kv->key.type == MSGPACK_OBJECT_STR)
				snprintf(key, sizeof(key), "%.*s", (int)kv->key.via.str.size,
					 kv->key.via.str.ptr);
			else if (msgpack_object_print_buffer(key, sizeof(key), kv->key) < 0)
				key[0] = '\0';
			v = render_to_json(&kv->val);
			if (v == NULL || json_object_set_new(j, key, v) < 0) {
				json_decref(j);
				return NULL;
			}
		}
		return j;
	default:
		return json_null();
	}
}

int render_json(FILE *out, const msgpack_object *obj)
{
	json_t *j = render_to_json(obj);
	int rc;

	if (j == NULL)
		return PROTO_E_NOMEM;
	rc = json_dumpf(j, out, JSON_INDENT(4) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	json_decref(j);
	if (rc < 0)
		return PROTO_E_IO;
	fputc('\n', out);
	return 0;
}

/* ---- yaml ---- */

bool render_yaml_needs_quotes(const char *s)
{
	static const char *const special[] = {
		"~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE",
		"yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
		"y", "Y", "n", "N", ".inf", ".Inf", ".INF", "-.inf", ".nan", ".NaN", ".NAN",
	};
	char *end;

	if (*s == '\0')
		return true;
	for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
		if (strcmp(s, special[i]) == 0)
			return true;
	/* numbers (ints, floats, 0x.., 1e5) and sexagesimal/time-like "1:30" */
	strtod(s, &end);
	if (*end == '\0')
		return true;
	if (isdigit((unsigned char)s[0]) && strchr(s, ':') != NULL)
		return true;
	return false;
}

static int render_yaml_scalar(yaml_emitter_t *em, const char *text, size_t len, bool string)
{
	yaml_event_t ev;
	char *copy = strndup(text, len);
	yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
	int ok;

	if (copy == NULL)
		return PROTO_E_NOMEM;
	if (string && render_yaml_needs_quotes(copy))
		style = YAML_SINGLE_QUOTED_SCALAR_STYLE;
	ok = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)copy, (int)len, 1, 1,
					  style) &&
	     yaml_emitter_emit(em, &ev);
	free(copy);
	return ok ? 0 : PROTO_E_IO;
}

static int render_yaml_node(yaml_emitter_t *em, const msgpack_object *o)
{
	yaml_event_t ev;
	char buf[64];
	int rc;

	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return render_yaml_scalar(em, "null", 4, false);
	case MSGPACK_OBJECT_BOOLEAN:
		return o->via.boolean ? render_yaml_scalar(em, "true", 4, false)
				      : render_yaml_scalar(em, "false", 5, false);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(buf, sizeof(buf), "%" PRIu64, o->via.u64);
		return render_yaml_scalar(em, buf, strlen(buf), false);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(buf, sizeof(buf), "%" PRId64, o->via.i64);
		return render_yaml_scalar(em, buf, strlen(buf), false);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		snprintf(buf, sizeof(buf), "%.17g", o->via.f64);
		return render_yaml_scalar(em, buf, strlen(buf), false);
	case MSGPACK_OBJECT_STR:
		return render_yaml_scalar(em, o->via.str.ptr, o->via.str.size, true);
	case MSGPACK_OBJECT_BIN:
		return render_yaml_scalar(em, o->via.bin.ptr, o->via.bin.size, true);
	case MSGPACK_OBJECT_ARRAY:
		if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_ANY_SEQUENCE_STYLE) ||
		    !yaml_emitter_emit(em, &ev))
			return PROTO_E_IO;
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			rc = render_yaml_node(em, &o->via.array.ptr[i]);
			if (rc < 0)
				return rc;
		}
		if (!yaml_sequence_end_event_initialize(&ev) || !yaml_emitter_emit(em, &ev))
			return PROTO_E_IO;
		return 0;
	case MSGPACK_OBJECT_MAP:
		if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_ANY_MAPPING_STYLE) ||
		    !yaml_emitter_emit(em, &ev))
			return PROTO_E_IO;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			rc = render_yaml_node(em, &o->via.map.ptr[i].key);
			if (rc == 0)
				rc = render_yaml_node(em, &o->via.map.ptr[i].val);
			if (rc < 0)
				return rc;
		}
		if (!yaml_mapping_end_event_initialize(&ev) || !yaml_emitter_emit(em, &ev))
			return PROTO_E_IO;
		return 0;
	default:
		return render_yaml_scalar(em, "null", 4, false);
	}
}

static int render_yaml_write(void *data, unsigned char *buffer, size_t size)
{
	return fwrite(buffer, 1, size, data) == size;
}

int render_yaml(FILE *out, const msgpack_object *obj)
{
	yaml_emitter_t em;
	yaml_event_t ev;
	int rc = PROTO_E_IO;

	if (!yaml_emitter_initialize(&em))
		return PROTO_E_NOMEM;
	yaml_emitter_set_output(&em, render_yaml_write, out);
	yaml_emitter_set_unicode(&em, 1);
	yaml_emitter_set_width(&em, -1);
	if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) ||
	    !yaml_emitter_emit(&em, &ev))
		goto out_emitter;
	if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) ||
	    !yaml_emitter_emit(&em, &ev))
		goto out_emitter;
	rc = render_yaml_node(&em, obj);
	if (rc < 0)
		goto out_emitter;
	rc = PROTO_E_IO;
	if (!yaml_document_end_event_initialize(&ev, 1) || !yaml_emitter_emit(&em, &ev))
		goto out_emitter;
	if (!yaml_stream_end_event_initialize(&ev) || !yaml_emitter_emit(&em, &ev))
		goto out_emitter;
	rc = yaml_emitter_flush(&em) ? 0 : PROTO_E_IO;
out_emitter:
	yaml_emitter_delete(&em);
	return rc;
}

/* ---- dispatch ---- */

int render_result(FILE *out, enum render_format fmt, const struct render_column *columns,
		  bool records, const msgpack_object *result, const char *key)
{
	const msgpack_object *rows;
	static const msgpack_object empty = { .type = MSGPACK_OBJECT_ARRAY };

	switch (fmt) {
	case FORMAT_JSON:
		return render_json(out, result);
	case FORMAT_YAML:
		return render_yaml(out, result);
	default:
		break;
	}
	rows = proto_map_get(result, key);
	if (rows == NULL || rows->type == MSGPACK_OBJECT_NIL)
		rows = &empty;
	if (fmt == FORMAT_CSV)
		return render_csv(out, columns, rows);
	return records ? render_records(out, columns, rows) : render_table(out, columns, rows);
}
