/* Shared by the qemu driver's unit tests. */
#ifndef QHTEST_H
#define QHTEST_H

#include <msgpack.h>

#include "qh.h"

/* Build a msgpack object from JSON text (the test's own zone). */
const msgpack_object *qhtest_obj(const char *json);
/* Release every object built so far. */
void qhtest_free(void);
/* A fresh temporary folder (removed by qhtest_rmdir). */
char *qhtest_tmpdir(void);
void qhtest_rmdir(char *dir);
/* Does argv hold `opt value` as two consecutive entries? */
int qhtest_has_pair(char **argv, const char *opt, const char *value);
/* Does argv hold this exact entry? */
int qhtest_has(char **argv, const char *arg);

#endif
