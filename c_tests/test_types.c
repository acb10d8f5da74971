/* The contract's "More column types" from C, under valgrind and ASan:
 * fixed-size binary shared as [rows, w] bytes, a decimal as the float
 * asked for, run-end encoded and null arrays decoded (the decoded memory
 * freed with the tensor), a struct's fields as columns of a 2-D tensor;
 * malformed forms refused with the caller's arrays untouched. */
#include "fixture.h"

/* A parent of two children (run-end encoded: run ends and values; or a
 * struct of two fields). */
typedef struct Pair {
  Fixture parent;
  struct ArrowArray* arrays[2];
  struct ArrowSchema* schemas[2];
} Pair;

static void pair_init(Pair* p, const char* format, int64_t length, Fixture* a, Fixture* b, int n_buffers) {
  fixture_init(&p->parent, format, length, NULL);
  p->parent.array.n_buffers = n_buffers;
  p->arrays[0] = &a->array;
  p->arrays[1] = &b->array;
  p->schemas[0] = &a->schema;
  p->schemas[1] = &b->schema;
  p->parent.array.n_children = 2;
  p->parent.schema.n_children = 2;
  p->parent.array.children = p->arrays;
  p->parent.schema.children = p->schemas;
}

static struct ArrowDlpackExportOptions options(int fill, double value, uint8_t bits) {
  struct ArrowDlpackExportOptions o;
  memset(&o, 0, sizeof(o));
  o.copy = ARROW_DLPACK_COPY_IF_NEEDED;
  o.fill_nulls = fill;
  o.fill_value = value;
  if (bits) {
    o.dtype.code = kDLFloat;
    o.dtype.bits = bits;
    o.dtype.lanes = 1;
  }
  return o;
}

static void fixed_size_binary(void) {
  static const uint8_t bytes[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  Fixture f;
  fixture_init(&f, "w:4", 2, bytes);
  f.array.offset = 1;
  struct ArrowDlpackError err = {0};
  DLManagedTensorVersioned* t = arrow_dlpack_export_versioned(&f.array, &f.schema, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (!t) return;
  CHECK(t->dl_tensor.ndim == 2 && t->dl_tensor.shape[0] == 2 && t->dl_tensor.shape[1] == 4);
  CHECK(t->dl_tensor.dtype.code == kDLUInt && t->dl_tensor.dtype.bits == 8);
  CHECK(t->dl_tensor.data == bytes + 4); /* zero-copy: the buffer from row 1 */
  t->deleter(t);
  CHECK(atomic_load(&f.releases) == 1);
}

static void decimals(void) {
  /* decimal128(10, 2): 123.45 and -0.05, little-endian 16-byte integers. */
  static int64_t words[4] = {12345, 0, -5, -1};
  Fixture f;
  fixture_init(&f, "d:10,2", 2, words);
  struct ArrowDlpackError err = {0};
  CHECK(arrow_dlpack_export_versioned(&f.array, &f.schema, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_UNSUPPORTED_TYPE);
  CHECK(strstr(err.message, "set options.dtype to float64 or float32") != NULL);
  CHECK(f.array.release != NULL && atomic_load(&f.releases) == 0);
  struct ArrowDlpackExportOptions o = options(0, 0, 64);
  DLManagedTensorVersioned* t = arrow_dlpack_export_with(&f.array, &f.schema, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (!t) return;
  const double* v = (const double*)t->dl_tensor.data;
  CHECK(v[0] == 123.45 && v[1] == -0.05);
  t->deleter(t);
  CHECK(atomic_load(&f.releases) == 1);
}

static void run_end_encoded(void) {
  static const int32_t ends[3] = {2, 5, 6};
  static const double values[3] = {1.5, 2.5, 3.5};
  Fixture e, v;
  Pair r;
  fixture_init(&e, "i", 3, ends);
  fixture_init(&v, "g", 3, values);
  pair_init(&r, "+r", 6, &e, &v, 0);
  struct ArrowDlpackError err = {0};
  /* The plain export never copies: decoding is refused, nothing moved. */
  CHECK(arrow_dlpack_export_versioned(&r.parent.array, &r.parent.schema, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_NEEDS_COPY);
  struct ArrowDlpackExportOptions o = options(0, 0, 0);
  DLManagedTensorVersioned* t = arrow_dlpack_export_with(&r.parent.array, &r.parent.schema, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (!t) return;
  const double want[6] = {1.5, 1.5, 2.5, 2.5, 2.5, 3.5};
  CHECK(t->dl_tensor.shape[0] == 6 && memcmp(t->dl_tensor.data, want, sizeof(want)) == 0);
  t->deleter(t);
  CHECK(atomic_load(&r.parent.releases) == 1);

  /* Decreasing run ends: refused, the caller's array as it was. */
  static const int32_t bad[3] = {2, 1, 6};
  fixture_init(&e, "i", 3, bad);
  fixture_init(&v, "g", 3, values);
  pair_init(&r, "+r", 6, &e, &v, 0);
  struct ArrowArray before = r.parent.array;
  CHECK(arrow_dlpack_export_with(&r.parent.array, &r.parent.schema, &o, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARROW);
  CHECK(strstr(err.message, "run end 1 is 1, after 2") != NULL);
  CHECK(memcmp(&before, &r.parent.array, sizeof(before)) == 0 && atomic_load(&r.parent.releases) == 0);
}

static void null_arrays(void) {
  Fixture n;
  fixture_init(&n, "n", 4, NULL);
  n.array.n_buffers = 0;
  n.array.null_count = 4;
  struct ArrowDlpackError err = {0};
  struct ArrowDlpackExportOptions o = options(0, 0, 0);
  CHECK(arrow_dlpack_export_with(&n.array, &n.schema, &o, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_HAS_NULLS);
  o = options(1, 2.5, 64);
  DLManagedTensorVersioned* t = arrow_dlpack_export_with(&n.array, &n.schema, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (!t) return;
  const double* v = (const double*)t->dl_tensor.data;
  CHECK(t->dl_tensor.shape[0] == 4 && v[0] == 2.5 && v[3] == 2.5);
  t->deleter(t);
}

static void struct_fields(void) {
  /* {a: int64, s: {x: int64, y: int64}} with s null in row 1. */
  static const int64_t a[3] = {1, 2, 3}, x[3] = {10, 20, 30}, y[3] = {100, 200, 300};
  static const uint8_t s_valid[1] = {0x5};
  Fixture fa, fx, fy;
  Pair s, table;
  fixture_init(&fa, "l", 3, a);
  fixture_init(&fx, "l", 3, x);
  fixture_init(&fy, "l", 3, y);
  fa.schema.name = "a";
  fx.schema.name = "x";
  fy.schema.name = "y";
  pair_init(&s, "+s", 3, &fx, &fy, 1);
  s.parent.schema.name = "s";
  s.parent.buffers[0] = s_valid;
  s.parent.array.null_count = 1;
  pair_init(&table, "+s", 3, &fa, &s.parent, 1);
  struct ArrowDlpackError err = {0};
  struct ArrowDlpackExportOptions o = options(1, -1, 0);
  DLManagedTensorVersioned* t = arrow_dlpack_export_with(&table.parent.array, &table.parent.schema, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (!t) return;
  const int64_t want[9] = {1, 10, 100, 2, -1, -1, 3, 30, 300};
  CHECK(t->dl_tensor.shape[0] == 3 && t->dl_tensor.shape[1] == 3);
  CHECK(memcmp(t->dl_tensor.data, want, sizeof(want)) == 0);
  t->deleter(t);
}

int main(void) {
  fixed_size_binary();
  decimals();
  run_end_encoded();
  null_arrays();
  struct_fields();
  return finish("test_types");
}
