/* Training epochs in C: a stream of record batches (here made by hand; in
 * practice DuckDB, ADBC or any Arrow producer) becomes shuffled, resumable
 * batches of DLPack tensors. Two epochs, every row once in each; then a
 * state taken mid-epoch resumes a second loader exactly.
 *
 *   cc examples/c/loader.c -Iinclude target/release/libarrow_dlpack.so -o loader
 */
#include <stdio.h>
#include <string.h>

#include "arrow_dlpack.h"

#define CHUNKS 4
#define PER 25
#define ROWS (CHUNKS * PER)

/* The producer: CHUNKS record batches {id: int64, x: float32}. */
typedef struct Producer {
  int64_t id[ROWS];
  float x[ROWS];
  const void* buffers[CHUNKS][2][2];
  const void* parent_buffers[1];
  struct ArrowArray columns[CHUNKS][2];
  struct ArrowArray* children[CHUNKS][2];
  struct ArrowSchema fields[2];
  struct ArrowSchema* field_ptrs[2];
  int next;
} Producer;

static void release_array(struct ArrowArray* a) { a->release = NULL; }
static void release_parent(struct ArrowArray* a) {
  for (int64_t j = 0; j < a->n_children; j++) a->children[j]->release(a->children[j]);
  a->release = NULL;
}
static void release_schema(struct ArrowSchema* s) { s->release = NULL; }

static int get_schema(struct ArrowArrayStream* s, struct ArrowSchema* out) {
  Producer* p = (Producer*)s->private_data;
  p->fields[0] = (struct ArrowSchema){"l", "id", NULL, 0, 0, NULL, NULL, release_schema, NULL};
  p->fields[1] = (struct ArrowSchema){"f", "x", NULL, 0, 0, NULL, NULL, release_schema, NULL};
  p->field_ptrs[0] = &p->fields[0];
  p->field_ptrs[1] = &p->fields[1];
  *out = (struct ArrowSchema){"+s", "", NULL, 0, 2, p->field_ptrs, NULL, release_schema, NULL};
  return 0;
}

static int get_next(struct ArrowArrayStream* s, struct ArrowArray* out) {
  Producer* p = (Producer*)s->private_data;
  memset(out, 0, sizeof(*out));
  if (p->next == CHUNKS) return 0; /* release NULL: the end */
  int c = p->next++;
  for (int j = 0; j < 2; j++) {
    p->buffers[c][j][0] = NULL;
    p->buffers[c][j][1] = j == 0 ? (const void*)(p->id + c * PER) : (const void*)(p->x + c * PER);
    p->columns[c][j] = (struct ArrowArray){PER, 0, 0, 2, 0, p->buffers[c][j], NULL, NULL, release_array, NULL};
    p->children[c][j] = &p->columns[c][j];
  }
  p->parent_buffers[0] = NULL;
  *out = (struct ArrowArray){PER, 0, 0, 1, 2, p->parent_buffers, p->children[c], NULL, release_parent, NULL};
  return 0;
}

static const char* last_error(struct ArrowArrayStream* s) {
  (void)s;
  return NULL;
}
static void release_stream(struct ArrowArrayStream* s) { s->release = NULL; }

static ArrowDlpackLoader* open_loader(Producer* p, struct ArrowArrayStream* stream) {
  memset(p, 0, sizeof(*p));
  for (int i = 0; i < ROWS; i++) {
    p->id[i] = i;
    p->x[i] = (float)i / 10;
  }
  *stream = (struct ArrowArrayStream){get_schema, get_next, last_error, release_stream, p};
  ArrowDlpackLoaderOptions options;
  memset(&options, 0, sizeof(options)); /* in order, one rank, nothing ahead */
  options.batch_size = 16;
  options.shuffle = 1;
  options.seed = 42;
  options.row_ids = 1;
  options.prefetch = 2; /* two batches made ahead on the library's thread */
  ArrowDlpackError error;
  ArrowDlpackLoader* loader = arrow_dlpack_loader_new(stream, &options, &error);
  if (!loader) fprintf(stderr, "%s: %s\n", arrow_dlpack_status_string(error.status), error.message);
  return loader;
}

/* The next batch's row numbers appended to `rows`; 0 at the epoch's end,
 * -1 on failure. */
static int next_rows(ArrowDlpackLoader* loader, int64_t* rows, int* n) {
  ArrowDlpackBatch batch;
  ArrowDlpackError error;
  if (arrow_dlpack_loader_next(loader, &batch, &error) != ARROW_DLPACK_OK) {
    fprintf(stderr, "%s\n", error.message);
    return -1;
  }
  int got = batch.n_outputs > 0;
  for (int64_t k = 0; k < batch.n_outputs; k++) {
    const ArrowDlpackOutput* o = &batch.outputs[k];
    if (strcmp(o->name, "_row") != 0) continue;
    const int64_t* r = (const int64_t*)o->tensors[0]->dl_tensor.data;
    for (int64_t i = 0; i < batch.rows; i++) rows[(*n)++] = r[i];
  }
  arrow_dlpack_batch_release(&batch); /* deletes the tensors not taken */
  return got;
}

int main(void) {
  Producer p;
  struct ArrowArrayStream stream;
  ArrowDlpackLoader* loader = open_loader(&p, &stream);
  if (!loader) return 1;
  printf("batches an epoch: %lld\n", (long long)arrow_dlpack_loader_len(loader));
  int once = 1;
  static int64_t rows[ROWS];
  for (int epoch = 0; epoch < 2; epoch++) {
    int n = 0, seen[ROWS] = {0};
    int r;
    while ((r = next_rows(loader, rows, &n)) > 0) {
    }
    if (r < 0) return 1;
    for (int i = 0; i < n; i++) seen[rows[i]]++;
    for (int i = 0; i < ROWS; i++) once &= seen[i] == 1;
  }
  printf("every row once in each of 2 epochs: %s\n", once ? "yes" : "no");

  /* Two batches into epoch 2, the state saved (the same JSON as Python's
   * state_dict()); the rest of the epoch read on. */
  int n = 0;
  next_rows(loader, rows, &n);
  next_rows(loader, rows, &n);
  char state[512];
  size_t len = 0;
  ArrowDlpackError error;
  if (arrow_dlpack_loader_state(loader, state, sizeof(state), &len, &error) != ARROW_DLPACK_OK) return 1;
  printf("state: %.*s\n", (int)len, state);
  int64_t rest[ROWS];
  int m = 0;
  while (next_rows(loader, rest, &m) > 0) {
  }
  arrow_dlpack_loader_free(loader);

  /* A new loader (after a crash, say) restored from the state: it reads
   * exactly the rest of epoch 2. */
  Producer q;
  struct ArrowArrayStream again;
  ArrowDlpackLoader* resumed = open_loader(&q, &again);
  if (!resumed || arrow_dlpack_loader_restore(resumed, state, len, &error) != ARROW_DLPACK_OK) return 1;
  int64_t resumed_rows[ROWS];
  int k = 0;
  while (next_rows(resumed, resumed_rows, &k) > 0) {
  }
  arrow_dlpack_loader_free(resumed);
  int same = k == m && memcmp(rest, resumed_rows, sizeof(int64_t) * (size_t)m) == 0;
  printf("resumed: %s (%d rows)\n", same ? "yes" : "no", k);
  return once && same ? 0 : 1;
}
