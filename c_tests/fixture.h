/* A tiny Arrow producer for the C tests: arrays built by hand, with a
 * release callback that counts its calls, and a CHECK macro. */
#ifndef ARROW_DLPACK_TEST_FIXTURE_H
#define ARROW_DLPACK_TEST_FIXTURE_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arrow_dlpack.h"

static int failures = 0;

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                     \
    }                                                                 \
  } while (0)

#define CHECK_STATUS(err, expected)                                              \
  do {                                                                           \
    if ((err).status != (expected)) {                                            \
      fprintf(stderr, "%s:%d: status %d (%s), expected %d: %s\n", __FILE__, __LINE__, \
              (int)(err).status, arrow_dlpack_status_string((err).status),      \
              (int)(expected), (err).message);                                   \
      failures++;                                                                \
    }                                                                            \
  } while (0)

/* One array and its schema; `releases` counts calls of array.release. */
typedef struct Fixture {
  struct ArrowArray array;
  struct ArrowSchema schema;
  const void* buffers[2];
  struct ArrowArray* child_arrays[1];
  struct ArrowSchema* child_schemas[1];
  atomic_int releases;
} Fixture;

static inline void fixture_release_array(struct ArrowArray* array) {
  atomic_fetch_add((atomic_int*)array->private_data, 1);
  array->release = NULL;
}

static inline void fixture_release_schema(struct ArrowSchema* schema) { schema->release = NULL; }

/* A primitive array of `length` elements of `format` over `values`. */
static inline void fixture_init(Fixture* f, const char* format, int64_t length, const void* values) {
  memset(f, 0, sizeof(*f));
  atomic_init(&f->releases, 0);
  f->buffers[0] = NULL;
  f->buffers[1] = values;
  f->array.length = length;
  f->array.null_count = 0;
  f->array.offset = 0;
  f->array.n_buffers = 2;
  f->array.buffers = f->buffers;
  f->array.release = fixture_release_array;
  f->array.private_data = &f->releases;
  f->schema.format = format;
  f->schema.release = fixture_release_schema;
}

/* Makes `parent` a `+w:N` array of `length` rows over `child`. */
static inline void fixture_list(Fixture* parent, const char* format, int64_t length, Fixture* child) {
  fixture_init(parent, format, length, NULL);
  parent->array.n_buffers = 1;
  parent->array.n_children = 1;
  parent->schema.n_children = 1;
  parent->child_arrays[0] = &child->array;
  parent->child_schemas[0] = &child->schema;
  parent->array.children = parent->child_arrays;
  parent->schema.children = parent->child_schemas;
}

static inline int finish(const char* name) {
  if (failures) {
    fprintf(stderr, "%s: %d failure(s)\n", name, failures);
    return 1;
  }
  printf("%s: ok\n", name);
  return 0;
}

#endif
