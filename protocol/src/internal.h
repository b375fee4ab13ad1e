/* Shared between the files of libvmproto; not installed. */
#ifndef VMPROTO_INTERNAL_H
#define VMPROTO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <vmproto/proto.h>

/*
 * Where a skim stopped inside an incomplete message, so that a stream reader
 * can resume when more bytes arrive instead of rescanning from the start.
 * left[d] counts the objects still expected at nesting level d (level 0 is
 * the message itself).
 */
struct skim_state {
	size_t pos;
	unsigned depth;
	uint32_t left[PROTO_MAX_DEPTH + 1];
};

/* Not part of the library's ABI. */
#define VMPROTO_HIDDEN __attribute__((visibility("hidden")))

/* skim.c */
VMPROTO_HIDDEN void skim_reset(struct skim_state *st);
/* Same results as proto_skim(), resuming from *st over a buffer that has only
 * grown since the last call. */
VMPROTO_HIDDEN long skim_resume(struct skim_state *st, const char *buf, size_t len, const char **why);

#endif
