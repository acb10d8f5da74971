/* The loader from C, under valgrind and ASan: a stream of record batches
 * read in order (shared where a batch lies in one chunk, copied once
 * where it spans two, one epoch), shuffled epochs (every row once, checked
 * against the row numbers the data carries), prefetching (the same
 * batches), state and restore (a second loader resumes the first),
 * refusals that leave the caller's stream and the loader as they were,
 * tensors taken out of a batch outliving it and the loader. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "fixture.h"

#define CHUNKS 3
#define PER 5
#define ROWS (CHUNKS * PER)

/* A stream of CHUNKS record batches `{x: int64, y: float32}` of PER rows;
 * row i holds x = i, y = i / 2. */
typedef struct Source {
  int64_t x[ROWS];
  float y[ROWS];
  Fixture parents[CHUNKS];
  Fixture xs[CHUNKS], ys[CHUNKS];
  struct ArrowArray* arrays[CHUNKS][2];
  struct ArrowSchema* schemas[CHUNKS][2];
  struct ArrowSchema field_x, field_y;
  struct ArrowSchema* fields[2];
  int next, released, schema_calls;
} Source;

static void field_release(struct ArrowSchema* s) { s->release = NULL; }

static void struct_schema_release(struct ArrowSchema* s) { s->release = NULL; }

static int source_get_schema(struct ArrowArrayStream* s, struct ArrowSchema* out) {
  Source* src = (Source*)s->private_data;
  src->schema_calls++;
  memset(&src->field_x, 0, sizeof(src->field_x));
  memset(&src->field_y, 0, sizeof(src->field_y));
  src->field_x.format = "l";
  src->field_x.name = "x";
  src->field_x.release = field_release;
  src->field_y.format = "f";
  src->field_y.name = "y";
  src->field_y.release = field_release;
  src->fields[0] = &src->field_x;
  src->fields[1] = &src->field_y;
  memset(out, 0, sizeof(*out));
  out->format = "+s";
  out->n_children = 2;
  out->children = src->fields;
  out->release = struct_schema_release;
  return 0;
}

static int source_get_next(struct ArrowArrayStream* s, struct ArrowArray* out) {
  Source* src = (Source*)s->private_data;
  if (src->next == CHUNKS) {
    memset(out, 0, sizeof(*out));
    return 0;
  }
  *out = src->parents[src->next].array;
  src->parents[src->next].array.release = NULL; /* moved out */
  src->next++;
  return 0;
}

static const char* source_last_error(struct ArrowArrayStream* s) {
  (void)s;
  return NULL;
}

static void source_release(struct ArrowArrayStream* s) {
  ((Source*)s->private_data)->released++;
  s->release = NULL;
}

/* A struct array's release: its children's too (the fixture counts the
 * parent's calls). */
static void parent_release(struct ArrowArray* a) {
  for (int64_t j = 0; j < a->n_children; j++) {
    if (a->children[j]->release) a->children[j]->release(a->children[j]);
  }
  fixture_release_array(a);
}

static struct ArrowArrayStream source_init(Source* src) {
  memset(src, 0, sizeof(*src));
  for (int i = 0; i < ROWS; i++) {
    src->x[i] = i;
    src->y[i] = (float)i / 2;
  }
  for (int c = 0; c < CHUNKS; c++) {
    fixture_init(&src->xs[c], "l", PER, &src->x[c * PER]);
    fixture_init(&src->ys[c], "f", PER, &src->y[c * PER]);
    fixture_init(&src->parents[c], "+s", PER, NULL);
    src->parents[c].array.n_buffers = 1;
    src->arrays[c][0] = &src->xs[c].array;
    src->arrays[c][1] = &src->ys[c].array;
    src->parents[c].array.n_children = 2;
    src->parents[c].array.children = src->arrays[c];
    src->parents[c].array.release = parent_release;
  }
  struct ArrowArrayStream s = {source_get_schema, source_get_next, source_last_error, source_release,
                               src};
  return s;
}

static int chunks_released(Source* src) {
  int total = 0;
  for (int c = 0; c < CHUNKS; c++) total += atomic_load(&src->parents[c].releases);
  return total;
}

static ArrowDlpackLoaderOptions loader_options(int64_t batch_size) {
  ArrowDlpackLoaderOptions o;
  memset(&o, 0, sizeof(o));
  o.batch_size = batch_size;
  return o;
}

/* The output named `name`, or NULL. */
static ArrowDlpackOutput* output(ArrowDlpackBatch* b, const char* name) {
  for (int64_t i = 0; i < b->n_outputs; i++) {
    if (strcmp(b->outputs[i].name, name) == 0) return &b->outputs[i];
  }
  return NULL;
}

static const int64_t* x_of(ArrowDlpackBatch* b) {
  ArrowDlpackOutput* o = output(b, "x");
  return o ? (const int64_t*)o->tensors[0]->dl_tensor.data : NULL;
}

static void in_order_batches_share_within_a_chunk_and_read_the_stream_once(void) {
  Source src;
  struct ArrowArrayStream s = source_init(&src);
  ArrowDlpackError err;
  ArrowDlpackLoaderOptions o = loader_options(4);
  o.row_ids = 1;
  ArrowDlpackLoader* loader = arrow_dlpack_loader_new(&s, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(loader != NULL && s.release == NULL && src.next == 0 && src.schema_calls == 1);
  if (!loader) return;
  CHECK(arrow_dlpack_loader_len(loader) == -1);
  int64_t seen = 0;
  for (int step = 0; step < 4; step++) {
    ArrowDlpackBatch b;
    CHECK(arrow_dlpack_loader_next(loader, &b, &err) == ARROW_DLPACK_OK);
    CHECK(b.n_outputs == 3 && b.step == (uint64_t)step && b.epoch == 0);
    CHECK(b.rows == (step < 3 ? 4 : 3));
    CHECK(strcmp(b.outputs[0].name, "x") == 0 && strcmp(b.outputs[1].name, "y") == 0 &&
          strcmp(b.outputs[2].name, "_row") == 0);
    CHECK(b.outputs[0].kind == ARROW_DLPACK_OUTPUT_TENSOR && b.outputs[0].tensors[1] == NULL);
    const int64_t* x = x_of(&b);
    const int64_t* rows = (const int64_t*)b.outputs[2].tensors[0]->dl_tensor.data;
    const float* y = (const float*)b.outputs[1].tensors[0]->dl_tensor.data;
    for (int64_t i = 0; i < b.rows; i++) {
      CHECK(x[i] == seen + i && rows[i] == seen + i && y[i] == (float)(seen + i) / 2);
    }
    if (step == 0) CHECK(x == &src.x[0]); /* rows 0-3 lie in chunk 0: shared */
    if (step == 1) CHECK(x != &src.x[4]); /* rows 4-7 span two chunks: one copy */
    seen += b.rows;
    arrow_dlpack_batch_release(&b);
    CHECK(b.outputs == NULL && b.private_data == NULL);
    arrow_dlpack_batch_release(&b); /* again: nothing */
  }
  ArrowDlpackBatch end;
  CHECK(arrow_dlpack_loader_next(loader, &end, &err) == ARROW_DLPACK_OK);
  CHECK(end.n_outputs == 0 && end.outputs == NULL && seen == ROWS);
  arrow_dlpack_batch_release(&end);
  char buf[512];
  size_t len = 0;
  CHECK(arrow_dlpack_loader_state(loader, buf, sizeof(buf), &len, &err) == ARROW_DLPACK_OK);
  buf[len < sizeof(buf) ? len : sizeof(buf) - 1] = 0;
  CHECK(strstr(buf, "\"num_rows\": -1") != NULL && strstr(buf, "\"epoch\": 1, \"step\": 0") != NULL);
  /* One epoch: a second is refused. */
  ArrowDlpackBatch again;
  memset(&again, 0x5a, sizeof(again));
  ArrowDlpackBatch before = again;
  CHECK(arrow_dlpack_loader_next(loader, &again, &err) == ARROW_DLPACK_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "one epoch") != NULL);
  CHECK(memcmp(&before, &again, sizeof(again)) == 0);
  CHECK(arrow_dlpack_loader_set_epoch(loader, 1, &err) == ARROW_DLPACK_INVALID_ARGUMENT);
  arrow_dlpack_loader_free(loader);
  CHECK(src.released == 1 && chunks_released(&src) == CHUNKS);
}

/* Reads a whole epoch of `loader` (row_ids on), writing each batch's x
 * into `order`; returns the rows read. */
static int epoch_rows(ArrowDlpackLoader* loader, int64_t* order) {
  ArrowDlpackError err;
  int n = 0;
  for (;;) {
    ArrowDlpackBatch b;
    if (arrow_dlpack_loader_next(loader, &b, &err) != ARROW_DLPACK_OK) {
      fprintf(stderr, "next: %s\n", err.message);
      failures++;
      return n;
    }
    if (b.n_outputs == 0) return n;
    const int64_t* x = x_of(&b);
    const int64_t* rows = (const int64_t*)output(&b, "_row")->tensors[0]->dl_tensor.data;
    for (int64_t i = 0; i < b.rows && n < 2 * ROWS; i++) {
      CHECK(rows[i] == x[i]); /* the row's number is the number it carries */
      order[n++] = x[i];
    }
    arrow_dlpack_batch_release(&b);
  }
}

static int is_permutation(const int64_t* order, int n) {
  int seen[ROWS] = {0};
  if (n != ROWS) return 0;
  for (int i = 0; i < n; i++) {
    if (order[i] < 0 || order[i] >= ROWS || seen[order[i]]++) return 0;
  }
  return 1;
}

static void shuffled_epochs_hold_every_row_once_and_prefetch_changes_nothing(void) {
  int64_t first[2 * ROWS], second[2 * ROWS], ahead[2 * ROWS];
  for (int prefetch = 0; prefetch <= 2; prefetch += 2) {
    Source src;
    struct ArrowArrayStream s = source_init(&src);
    ArrowDlpackError err;
    ArrowDlpackLoaderOptions o = loader_options(4);
    o.shuffle = 1;
    o.seed = 7;
    o.row_ids = 1;
    o.prefetch = prefetch;
    ArrowDlpackLoader* loader = arrow_dlpack_loader_new(&s, &o, &err);
    CHECK_STATUS(err, ARROW_DLPACK_OK);
    /* Read into memory once, the stream released; the chunks kept. */
    CHECK(loader != NULL && s.release == NULL && src.released == 1 && src.next == CHUNKS);
    if (!loader) return;
    CHECK(arrow_dlpack_loader_len(loader) == 4);
    int n = epoch_rows(loader, prefetch ? ahead : first);
    CHECK(is_permutation(prefetch ? ahead : first, n));
    int m = epoch_rows(loader, second); /* the next epoch: another order */
    CHECK(is_permutation(second, m));
    if (!prefetch) CHECK(memcmp(first, second, sizeof(int64_t) * ROWS) != 0);
    arrow_dlpack_loader_free(loader);
    CHECK(chunks_released(&src) == CHUNKS);
  }
  CHECK(memcmp(first, ahead, sizeof(int64_t) * ROWS) == 0);
}

static ArrowDlpackLoader* shuffled(Source* src, struct ArrowArrayStream* s, uint64_t seed) {
  *s = source_init(src);
  ArrowDlpackError err;
  ArrowDlpackLoaderOptions o = loader_options(4);
  o.shuffle = 1;
  o.seed = seed;
  o.row_ids = 1;
  ArrowDlpackLoader* loader = arrow_dlpack_loader_new(s, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  return loader;
}

static void a_state_resumes_another_loader_and_a_refused_one_changes_nothing(void) {
  Source a_src, b_src, c_src;
  struct ArrowArrayStream a_s, b_s, c_s;
  ArrowDlpackLoader* a = shuffled(&a_src, &a_s, 3);
  ArrowDlpackLoader* b = shuffled(&b_src, &b_s, 3);
  ArrowDlpackLoader* c = shuffled(&c_src, &c_s, 4);
  ArrowDlpackError err;
  if (!a || !b || !c) goto done;
  int64_t whole[2 * ROWS];
  CHECK(epoch_rows(a, whole) == ROWS); /* epoch 0 of seed 3 */
  /* b: two batches of epoch 0, its state taken. */
  ArrowDlpackBatch batch;
  for (int i = 0; i < 2; i++) {
    CHECK(arrow_dlpack_loader_next(b, &batch, &err) == ARROW_DLPACK_OK);
    arrow_dlpack_batch_release(&batch);
  }
  size_t need = 0;
  CHECK(arrow_dlpack_loader_state(b, NULL, 0, &need, &err) == ARROW_DLPACK_INVALID_ARGUMENT);
  CHECK(need > 0 && need < 512);
  char state[512];
  size_t len = 0;
  CHECK(arrow_dlpack_loader_state(b, state, sizeof(state), &len, &err) == ARROW_DLPACK_OK);
  CHECK(len == need);
  /* Another seed: refused, naming the key; c goes on unchanged. */
  CHECK(arrow_dlpack_loader_restore(c, state, len, &err) == ARROW_DLPACK_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "\"seed\"") != NULL);
  CHECK(arrow_dlpack_loader_restore(c, "{\"version\": 1", 13, &err) == ARROW_DLPACK_INVALID_ARGUMENT);
  char c_state[512];
  CHECK(arrow_dlpack_loader_state(c, c_state, sizeof(c_state), &len, &err) == ARROW_DLPACK_OK);
  CHECK(len > 0 && memcmp(c_state, "{\"version\": 1, \"epoch\": 0, \"step\": 0,", 37) == 0);
  /* a, restored from b's state mid-way through its next epoch, continues
   * epoch 0 at step 2: exactly what b would read. */
  CHECK(arrow_dlpack_loader_restore(a, state, need, &err) == ARROW_DLPACK_OK);
  int64_t rest[2 * ROWS];
  int n = epoch_rows(a, rest);
  CHECK(n == ROWS - 8 && memcmp(rest, whole + 8, sizeof(int64_t) * (size_t)n) == 0);
  /* set_epoch mid-epoch: the next call begins that epoch. */
  CHECK(arrow_dlpack_loader_next(b, &batch, &err) == ARROW_DLPACK_OK);
  arrow_dlpack_batch_release(&batch);
  CHECK(arrow_dlpack_loader_set_epoch(b, 0, &err) == ARROW_DLPACK_OK);
  CHECK(epoch_rows(b, rest) == ROWS && memcmp(rest, whole, sizeof(int64_t) * ROWS) == 0);
done:
  arrow_dlpack_loader_free(a);
  arrow_dlpack_loader_free(b);
  arrow_dlpack_loader_free(c);
  CHECK(chunks_released(&a_src) == CHUNKS && chunks_released(&b_src) == CHUNKS &&
        chunks_released(&c_src) == CHUNKS);
}

static void refused_options_leave_the_stream_with_the_caller(void) {
  const char* unknown[] = {"x", "nope"};
  const char* none[] = {NULL};
  for (int k = 0; k < 12; k++) {
    Source src;
    struct ArrowArrayStream s = source_init(&src);
    ArrowDlpackLoaderOptions o = loader_options(4);
    const char* field = NULL;
    switch (k) {
      case 0: o.batch_size = 0; field = "options.batch_size"; break;
      case 1: o.world_size = -1; field = "options.world_size"; break;
      case 2: o.world_size = 2; o.rank = 2; field = "options.rank"; break;
      case 3: o.shuffle = 1; o.window = -3; field = "options.window"; break;
      case 4: o.prefetch = -1; field = "options.prefetch"; break;
      case 5: o.reserved[7] = 1; field = "options.reserved[7]"; break;
      case 6: o.columns = unknown; o.n_columns = 2; field = "nope"; break;
      case 7: o.columns = none; o.n_columns = 1; field = "options.columns[0]"; break;
      case 8: o.shuffle = 2; field = "options.shuffle"; break;
      case 9: o.columns = unknown; o.n_columns = 0; field = "options.row_ids"; break;
      case 10: o.lists = 5; field = "options.lists"; break;
      case 11: o.shuffle = 1; o.columns = unknown; o.n_columns = 2; field = "nope"; break;
    }
    struct ArrowArrayStream before = s;
    ArrowDlpackError err;
    CHECK(arrow_dlpack_loader_new(&s, &o, &err) == NULL);
    CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARGUMENT);
    if (!strstr(err.message, field)) {
      fprintf(stderr, "case %d: %s does not name %s\n", k, err.message, field);
      failures++;
    }
    CHECK(memcmp(&before, &s, sizeof(s)) == 0 && src.released == 0);
    s.release(&s);
    CHECK(src.released == 1);
    /* What was read (case 11 reads the stream into memory) is released. */
    CHECK(chunks_released(&src) == src.next);
  }
  ArrowDlpackError err;
  CHECK(arrow_dlpack_loader_new(NULL, NULL, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARGUMENT);
  CHECK(arrow_dlpack_loader_next(NULL, NULL, &err) == ARROW_DLPACK_INVALID_ARGUMENT);
  CHECK(arrow_dlpack_loader_len(NULL) == -1);
  arrow_dlpack_loader_free(NULL);
  arrow_dlpack_batch_release(NULL);
}

static void a_tensor_taken_outlives_its_batch_and_the_loader(void) {
  Source src;
  struct ArrowArrayStream s = source_init(&src);
  ArrowDlpackError err;
  ArrowDlpackLoaderOptions o = loader_options(5);
  ArrowDlpackLoader* loader = arrow_dlpack_loader_new(&s, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (!loader) return;
  ArrowDlpackBatch b;
  CHECK(arrow_dlpack_loader_next(loader, &b, &err) == ARROW_DLPACK_OK);
  ArrowDlpackOutput* x = output(&b, "x");
  DLManagedTensorVersioned* taken = x ? x->tensors[0] : NULL;
  if (x) x->tensors[0] = NULL;
  arrow_dlpack_batch_release(&b);
  arrow_dlpack_loader_free(loader);
  CHECK(taken != NULL && chunks_released(&src) == 0); /* chunk 0 kept by the tensor */
  if (taken) {
    CHECK(taken->dl_tensor.data == (void*)src.x && ((const int64_t*)taken->dl_tensor.data)[4] == 4);
    taken->deleter(taken);
  }
  CHECK(chunks_released(&src) == 1 && src.released == 1);
}

/* One call at a time, from another thread: the loader (and its prefetch
 * thread) moves between threads; a batch made on one is released on the
 * other, batches released in any order. */
typedef struct Call {
  ArrowDlpackLoader* loader;
  ArrowDlpackBatch batch;
  ArrowDlpackStatus status;
} Call;

static void* next_elsewhere(void* arg) {
  Call* c = (Call*)arg;
  ArrowDlpackError err;
  c->status = arrow_dlpack_loader_next(c->loader, &c->batch, &err);
  return NULL;
}

static void a_loader_is_used_from_another_thread_one_call_at_a_time(void) {
  Source src;
  struct ArrowArrayStream s;
  ArrowDlpackLoader* loader = shuffled(&src, &s, 5);
  if (!loader) return;
  ArrowDlpackBatch mine[2];
  ArrowDlpackError err;
  Call call;
  memset(&call, 0, sizeof(call));
  call.loader = loader;
  pthread_t t;
  CHECK(pthread_create(&t, NULL, next_elsewhere, &call) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(call.status == ARROW_DLPACK_OK && call.batch.n_outputs == 3);
  CHECK(arrow_dlpack_loader_next(loader, &mine[0], &err) == ARROW_DLPACK_OK);
  CHECK(arrow_dlpack_loader_next(loader, &mine[1], &err) == ARROW_DLPACK_OK);
  arrow_dlpack_loader_free(loader); /* batches outlive it, released in any order */
  arrow_dlpack_batch_release(&mine[1]);
  arrow_dlpack_batch_release(&call.batch);
  arrow_dlpack_batch_release(&mine[0]);
  CHECK(chunks_released(&src) == CHUNKS);
}

int main(void) {
  in_order_batches_share_within_a_chunk_and_read_the_stream_once();
  shuffled_epochs_hold_every_row_once_and_prefetch_changes_nothing();
  a_state_resumes_another_loader_and_a_refused_one_changes_nothing();
  refused_options_leave_the_stream_with_the_caller();
  a_tensor_taken_outlives_its_batch_and_the_loader();
  a_loader_is_used_from_another_thread_one_call_at_a_time();
  return finish("test_loader");
}
