/* The copy options from C, under valgrind: export_with (booleans, nulls
 * with a validity mask, dtype conversion, refusals leaving the array
 * untouched), export_stream over a stream producer written here (the
 * stream borrowed, every chunk released once), import_with (kDLBool
 * packed, a reversed tensor gathered, refusals leaving the tensor
 * untouched). */
#include "fixture.h"

static ArrowDlpackExportOptions export_options(int32_t copy) {
  ArrowDlpackExportOptions o;
  memset(&o, 0, sizeof(o));
  o.copy = copy;
  return o;
}

static void booleans_and_nulls_copy_once_and_only_when_allowed(void) {
  /* Booleans: bits 0b10110110, from bit 1: 1 1 0 1 1 0 1. */
  static const uint8_t bits[1] = {0xB6};
  Fixture f;
  fixture_init(&f, "b", 7, bits);
  f.array.offset = 1;
  struct ArrowArray before = f.array;
  ArrowDlpackError err;
  ArrowDlpackExportOptions o = export_options(ARROW_DLPACK_COPY_NEVER);
  DLManagedTensorVersioned* t = arrow_dlpack_export_with(&f.array, &f.schema, &o, &err);
  CHECK(t == NULL && memcmp(&before, &f.array, sizeof(before)) == 0);
  CHECK_STATUS(err, ARROW_DLPACK_NEEDS_COPY);
  CHECK(arrow_dlpack_export_with(&f.array, &f.schema, NULL, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_NEEDS_COPY);
  o.copy = ARROW_DLPACK_COPY_IF_NEEDED;
  t = arrow_dlpack_export_with(&f.array, &f.schema, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(t != NULL && f.array.release == NULL && atomic_load(&f.releases) == 1);
  if (t) {
    static const uint8_t expected[7] = {1, 1, 0, 1, 1, 0, 1};
    CHECK(t->dl_tensor.dtype.code == kDLBool && t->dl_tensor.dtype.bits == 8);
    CHECK(t->flags == DLPACK_FLAG_BITMASK_IS_COPIED);
    CHECK(memcmp(t->dl_tensor.data, expected, 7) == 0);
    t->deleter(t);
  }

  /* Nulls: filled with -1, masked. */
  static const int32_t values[4] = {10, 11, 12, 13};
  static const uint8_t valid[1] = {0x0B}; /* 1 1 0 1 */
  fixture_init(&f, "i", 4, values);
  f.buffers[0] = valid;
  f.array.null_count = 1;
  DLManagedTensorVersioned* mask = NULL;
  o = export_options(ARROW_DLPACK_COPY_IF_NEEDED);
  o.validity = &mask;
  t = arrow_dlpack_export_with(&f.array, &f.schema, &o, &err);
  CHECK(t == NULL && mask == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_HAS_NULLS);
  o.fill_nulls = 1;
  o.fill_value = 0.5;
  CHECK(arrow_dlpack_export_with(&f.array, &f.schema, &o, &err) == NULL && mask == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARGUMENT);
  o.fill_value = -1;
  t = arrow_dlpack_export_with(&f.array, &f.schema, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(t != NULL && mask != NULL);
  if (t && mask) {
    const int32_t* got = (const int32_t*)t->dl_tensor.data;
    const uint8_t* m = (const uint8_t*)mask->dl_tensor.data;
    CHECK(got[0] == 10 && got[1] == 11 && got[2] == -1 && got[3] == 13);
    CHECK(m[0] == 1 && m[1] == 1 && m[2] == 0 && m[3] == 1);
    t->deleter(t);
    mask->deleter(mask);
  }

  /* A dtype: float64 -> int16, truncated toward zero; as a legacy tensor. */
  static const double doubles[3] = {-2.7, 2.7, 300.9};
  fixture_init(&f, "g", 3, doubles);
  o = export_options(ARROW_DLPACK_COPY_IF_NEEDED);
  o.dtype.code = kDLInt;
  o.dtype.bits = 16;
  o.dtype.lanes = 1;
  DLManagedTensor* legacy = arrow_dlpack_export_with_legacy(&f.array, &f.schema, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (legacy) {
    const int16_t* got = (const int16_t*)legacy->dl_tensor.data;
    CHECK(got[0] == -2 && got[1] == 2 && got[2] == 300);
    legacy->deleter(legacy);
  }
  /* Bad options change nothing. */
  fixture_init(&f, "g", 3, doubles);
  o = export_options(7);
  CHECK(arrow_dlpack_export_with(&f.array, &f.schema, &o, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARGUMENT);
  o = export_options(0);
  o.reserved[1] = 1;
  CHECK(arrow_dlpack_export_with(&f.array, &f.schema, &o, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARGUMENT);
  CHECK(f.array.release != NULL);
  f.array.release(&f.array);
}

/* A stream producer: `n` chunks of int64, each of `per` elements. */
typedef struct Producer {
  int64_t values[64];
  Fixture chunks[4];
  int n, next, released, schema_calls;
} Producer;

static int producer_get_schema(struct ArrowArrayStream* s, struct ArrowSchema* out) {
  Producer* p = (Producer*)s->private_data;
  p->schema_calls++;
  memset(out, 0, sizeof(*out));
  out->format = "l";
  out->release = fixture_release_schema;
  return 0;
}

static int producer_get_next(struct ArrowArrayStream* s, struct ArrowArray* out) {
  Producer* p = (Producer*)s->private_data;
  if (p->next == p->n) {
    memset(out, 0, sizeof(*out)); /* release NULL: the end */
    return 0;
  }
  *out = p->chunks[p->next].array;
  p->chunks[p->next].array.release = NULL; /* moved out */
  p->next++;
  return 0;
}

static const char* producer_last_error(struct ArrowArrayStream* s) {
  (void)s;
  return NULL;
}

static void producer_release(struct ArrowArrayStream* s) {
  ((Producer*)s->private_data)->released = 1;
  s->release = NULL;
}

static struct ArrowArrayStream stream_of(Producer* p, int n, int per) {
  memset(p, 0, sizeof(*p));
  for (int i = 0; i < 64; i++) p->values[i] = i;
  for (int c = 0; c < n; c++) fixture_init(&p->chunks[c], "l", per, &p->values[c * per]);
  p->n = n;
  struct ArrowArrayStream s = {producer_get_schema, producer_get_next, producer_last_error,
                               producer_release, p};
  return s;
}

static int released_chunks(Producer* p) {
  int total = 0;
  for (int c = 0; c < p->n; c++) total += atomic_load(&p->chunks[c].releases);
  return total;
}

static void streams_are_borrowed_and_every_chunk_released_once(void) {
  Producer p;
  ArrowDlpackError err;
  /* Three chunks: concatenated under IF_NEEDED, refused under the defaults. */
  struct ArrowArrayStream s = stream_of(&p, 3, 5);
  CHECK(arrow_dlpack_export_stream(&s, NULL, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_NEEDS_COPY);
  CHECK(!p.released && released_chunks(&p) == 3);
  s = stream_of(&p, 3, 5);
  ArrowDlpackExportOptions o = export_options(ARROW_DLPACK_COPY_IF_NEEDED);
  DLManagedTensorVersioned* t = arrow_dlpack_export_stream(&s, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(t != NULL && !p.released && released_chunks(&p) == 3 && p.schema_calls == 1);
  if (t) {
    const int64_t* got = (const int64_t*)t->dl_tensor.data;
    CHECK(t->dl_tensor.shape[0] == 15);
    for (int i = 0; i < 15; i++) CHECK(got[i] == i);
    t->deleter(t);
  }
  s.release(&s);
  CHECK(p.released);
  /* One chunk: shared, released with the tensor. */
  s = stream_of(&p, 1, 4);
  t = arrow_dlpack_export_stream(&s, NULL, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (t) {
    CHECK(t->dl_tensor.data == (void*)p.values && t->flags == DLPACK_FLAG_BITMASK_READ_ONLY);
    CHECK(released_chunks(&p) == 0);
    t->deleter(t);
    CHECK(released_chunks(&p) == 1);
  }
  /* No chunk: an empty tensor. */
  s = stream_of(&p, 0, 0);
  t = arrow_dlpack_export_stream(&s, NULL, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (t) {
    CHECK(t->dl_tensor.ndim == 1 && t->dl_tensor.shape[0] == 0 && t->dl_tensor.data == NULL);
    t->deleter(t);
  }
  CHECK(arrow_dlpack_export_stream(NULL, NULL, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARGUMENT);
}

static int deletes = 0;
static void count_delete(DLManagedTensorVersioned* t) {
  (void)t;
  deletes++;
}

static void imports_pack_booleans_and_gather_strides(void) {
  static uint8_t bools[10] = {1, 0, 1, 1, 0, 0, 0, 0, 1, 1};
  int64_t shape[1] = {10}, strides[1] = {1};
  DLManagedTensorVersioned t;
  memset(&t, 0, sizeof(t));
  t.version.major = 1;
  t.version.minor = 3;
  t.deleter = count_delete;
  t.dl_tensor.data = bools;
  t.dl_tensor.device.device_type = kDLCPU;
  t.dl_tensor.ndim = 1;
  t.dl_tensor.dtype.code = kDLBool;
  t.dl_tensor.dtype.bits = 8;
  t.dl_tensor.dtype.lanes = 1;
  t.dl_tensor.shape = shape;
  t.dl_tensor.strides = strides;
  struct ArrowArray array;
  struct ArrowSchema schema;
  ArrowDlpackError err;
  DLManagedTensorVersioned before = t;
  CHECK(arrow_dlpack_import_with(&t, NULL, &array, &schema, &err) == ARROW_DLPACK_NEEDS_COPY);
  CHECK(memcmp(&before, &t, sizeof(t)) == 0 && deletes == 0);
  ArrowDlpackImportOptions o;
  memset(&o, 0, sizeof(o));
  o.copy = ARROW_DLPACK_COPY_IF_NEEDED;
  CHECK(arrow_dlpack_import_with(&t, &o, &array, &schema, &err) == ARROW_DLPACK_OK);
  CHECK(deletes == 1); /* deleted right after the copy */
  CHECK(strcmp(schema.format, "b") == 0 && array.length == 10);
  const uint8_t* packed = (const uint8_t*)array.buffers[1];
  CHECK(packed[0] == 0x0D && packed[1] == 0x03);
  array.release(&array);
  schema.release(&schema);

  /* A reversed int32 tensor, gathered. */
  static int32_t ints[4] = {0, 1, 2, 3};
  int64_t shape4[1] = {4}, reversed[1] = {-1};
  t.dl_tensor.data = ints;
  t.dl_tensor.byte_offset = 12;
  t.dl_tensor.dtype.code = kDLInt;
  t.dl_tensor.dtype.bits = 32;
  t.dl_tensor.shape = shape4;
  t.dl_tensor.strides = reversed;
  CHECK(arrow_dlpack_import_versioned(&t, &array, &schema, &err) == ARROW_DLPACK_UNSUPPORTED_LAYOUT);
  CHECK(arrow_dlpack_import_with(&t, &o, &array, &schema, &err) == ARROW_DLPACK_OK);
  CHECK(deletes == 2);
  const int32_t* got = (const int32_t*)array.buffers[1];
  CHECK(got[0] == 3 && got[1] == 2 && got[2] == 1 && got[3] == 0);
  array.release(&array);
  schema.release(&schema);
}

int main(void) {
  booleans_and_nulls_copy_once_and_only_when_allowed();
  streams_are_borrowed_and_every_chunk_released_once();
  imports_pack_booleans_and_gather_strides();
  return finish("test_copies");
}
