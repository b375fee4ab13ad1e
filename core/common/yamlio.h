/*
 * Internal to libvmcommon: the small layer over libyaml that the settings
 * file and the instance registry share. Readers walk events and report
 * problems as "FILE: line L, column C: what"; writers collect the first
 * failure so call sites need not check every event.
 */
#ifndef VMCTL_COMMON_YAMLIO_H
#define VMCTL_COMMON_YAMLIO_H

#include <stdbool.h>
#include <stddef.h>

#include <yaml.h>

struct yio_reader {
	yaml_parser_t parser;
	yaml_event_t ev; /* the current event, valid after yio_next() returned 0 */
	bool have_ev;
	const char *what; /* file name for messages */
	char *err;
	size_t errlen;
};

int yio_reader_open(struct yio_reader *r, const char *text, size_t len, const char *what, char *err,
		    size_t errlen);
/* Advance to the next event. 0, or a negative code with the message set. */
int yio_next(struct yio_reader *r);
/* Set "FILE: line L, column C: <fmt>" at the current event; PROTO_E_INVALID_ARGUMENT. */
int yio_fail(struct yio_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Consume stream and document start. *empty: the file holds no document. */
int yio_begin(struct yio_reader *r, bool *empty);
/* After the root node: document end, then stream end (one document only). */
int yio_end(struct yio_reader *r);
/* The current event is a scalar. */
bool yio_is_scalar(const struct yio_reader *r);
const char *yio_scalar(const struct yio_reader *r);
/* A plain (unquoted) empty, "~" or "null" scalar: YAML's null. */
bool yio_scalar_is_null(const struct yio_reader *r);
void yio_reader_close(struct yio_reader *r);

struct yio_writer {
	yaml_emitter_t emitter;
	char *buf;
	size_t len, cap;
	int rc; /* first failure, sticky */
};

int yio_writer_open(struct yio_writer *w);
void yio_map_start(struct yio_writer *w);
void yio_map_end(struct yio_writer *w);
void yio_seq_start(struct yio_writer *w);
void yio_seq_end(struct yio_writer *w);
/* A key or other text that never needs quoting for our readers. */
void yio_plain(struct yio_writer *w, const char *text);
/* A string value, quoted when it would otherwise read as a number, bool or null. */
void yio_string(struct yio_writer *w, const char *text);
/* Finish the document; on success data and len hold the text (owned by w). */
int yio_writer_finish(struct yio_writer *w, const char **data, size_t *len);
void yio_writer_close(struct yio_writer *w);

#endif
