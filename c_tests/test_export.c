/* The export contract, from C: every type both ways, offsets, empty arrays,
 * N-D lists, every failure class leaving the array untouched, status strings. */
#include "fixture.h"

typedef struct TypeCase {
  const char* format;
  uint8_t code;
  uint8_t bits;
} TypeCase;

static const TypeCase TYPES[] = {
    {"c", kDLInt, 8},    {"C", kDLUInt, 8},   {"s", kDLInt, 16},   {"S", kDLUInt, 16},
    {"i", kDLInt, 32},   {"I", kDLUInt, 32},  {"l", kDLInt, 64},   {"L", kDLUInt, 64},
    {"e", kDLFloat, 16}, {"f", kDLFloat, 32}, {"g", kDLFloat, 64},
};

static uint64_t storage[16];

static void check_tensor(const DLTensor* t, const TypeCase* tc, int64_t offset, int64_t length) {
  CHECK(t->dtype.code == tc->code && t->dtype.bits == tc->bits && t->dtype.lanes == 1);
  CHECK(t->device.device_type == kDLCPU && t->device.device_id == 0);
  CHECK(t->ndim == 1 && t->shape != NULL && t->strides != NULL);
  CHECK(t->shape[0] == length && t->strides[0] == 1 && t->byte_offset == 0);
  if (length == 0) {
    CHECK(t->data == NULL);
  } else {
    /* Zero-copy: the Arrow buffer's address plus offset. */
    CHECK(t->data == (const char*)storage + offset * (tc->bits / 8));
  }
}

static void export_every_type_both_ways(void) {
  for (size_t i = 0; i < sizeof(TYPES) / sizeof(TYPES[0]); i++) {
    for (int64_t offset = 0; offset <= 5; offset += 5) {
      for (int64_t length = 0; length <= 7; length += 7) {
        Fixture f;
        ArrowDlpackError err;
        fixture_init(&f, TYPES[i].format, length, storage);
        f.array.offset = offset;

        DLManagedTensor* legacy = arrow_dlpack_export(&f.array, &f.schema, &err);
        CHECK_STATUS(err, ARROW_DLPACK_OK);
        CHECK(legacy != NULL && f.array.release == NULL);
        if (legacy == NULL) continue;
        check_tensor(&legacy->dl_tensor, &TYPES[i], offset, length);
        legacy->deleter(legacy);
        CHECK(atomic_load(&f.releases) == 1);

        fixture_init(&f, TYPES[i].format, length, storage);
        f.array.offset = offset;
        DLManagedTensorVersioned* v = arrow_dlpack_export_versioned(&f.array, &f.schema, &err);
        CHECK_STATUS(err, ARROW_DLPACK_OK);
        CHECK(v != NULL && f.array.release == NULL);
        if (v == NULL) continue;
        CHECK(v->version.major == 1 && v->version.minor == 3);
        CHECK(v->flags == DLPACK_FLAG_BITMASK_READ_ONLY);
        check_tensor(&v->dl_tensor, &TYPES[i], offset, length);
        v->deleter(v);
        CHECK(atomic_load(&f.releases) == 1);
      }
    }
  }
}

static void values_are_readable_through_the_tensor(void) {
  double values[4] = {1.5, -2.0, 3.25, 4.0};
  Fixture f;
  fixture_init(&f, "g", 3, values);
  f.array.offset = 1;
  DLManagedTensorVersioned* t = arrow_dlpack_export_versioned(&f.array, &f.schema, NULL);
  CHECK(t != NULL);
  if (!t) return;
  const double* data = (const double*)t->dl_tensor.data;
  CHECK(data[0] == -2.0 && data[1] == 3.25 && data[2] == 4.0);
  t->deleter(t);
}

static void nested_lists_export_as_nd_tensors(void) {
  /* +w:2 of +w:3 of int16: rows of 2x3, parent offset 1, child offsets 1 and 2. */
  static int16_t values[64];
  for (int i = 0; i < 64; i++) values[i] = (int16_t)i;
  Fixture inner, middle, outer;
  fixture_init(&inner, "s", 60, values);
  inner.array.offset = 2;
  fixture_list(&middle, "+w:3", 19, &inner);
  middle.array.offset = 1;
  fixture_list(&outer, "+w:2", 3, &middle);
  outer.array.offset = 1;
  ArrowDlpackError err;
  DLManagedTensorVersioned* t = arrow_dlpack_export_versioned(&outer.array, &outer.schema, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (!t) return;
  const DLTensor* d = &t->dl_tensor;
  CHECK(d->ndim == 3 && d->shape[0] == 3 && d->shape[1] == 2 && d->shape[2] == 3);
  CHECK(d->strides[0] == 6 && d->strides[1] == 3 && d->strides[2] == 1);
  /* First element: inner offset 2 + (middle offset 1 + outer offset 1 * 2) * 3 = 11. */
  CHECK(d->data == (const void*)&values[11]);
  t->deleter(t);
  CHECK(atomic_load(&outer.releases) == 1);
  CHECK(atomic_load(&middle.releases) == 0); /* children belong to the parent's release */
}

/* Writes a C Data Interface metadata block with the two extension keys. */
static size_t tensor_metadata(char* out, const char* json) {
  const char* keys[2] = {"ARROW:extension:name", "ARROW:extension:metadata"};
  const char* values[2] = {"arrow.fixed_shape_tensor", json};
  int32_t n = 2;
  size_t at = 0;
  memcpy(out + at, &n, 4);
  at += 4;
  for (int i = 0; i < 2; i++) {
    const char* parts[2] = {keys[i], values[i]};
    for (int j = 0; j < 2; j++) {
      int32_t len = (int32_t)strlen(parts[j]);
      memcpy(out + at, &len, 4);
      memcpy(out + at + 4, parts[j], (size_t)len);
      at += 4 + (size_t)len;
    }
  }
  return at;
}

static void fixed_shape_tensors_permute_without_copying(void) {
  static float values[96];
  static char metadata[256];
  Fixture leaf, tensor;
  fixture_init(&leaf, "f", 96, values);
  fixture_list(&tensor, "+w:24", 3, &leaf);
  tensor.array.offset = 1;
  tensor_metadata(metadata, "{\"shape\": [2, 3, 4], \"permutation\": [2, 0, 1]}");
  tensor.schema.metadata = metadata;
  ArrowDlpackError err;
  DLManagedTensor* t = arrow_dlpack_export(&tensor.array, &tensor.schema, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (!t) return;
  const DLTensor* d = &t->dl_tensor;
  /* Physical [2, 3, 4] has strides [12, 4, 1]; logical dim i is physical p[i]. */
  CHECK(d->ndim == 4);
  CHECK(d->shape[0] == 3 && d->shape[1] == 4 && d->shape[2] == 2 && d->shape[3] == 3);
  CHECK(d->strides[0] == 24 && d->strides[1] == 1 && d->strides[2] == 12 && d->strides[3] == 4);
  CHECK(d->data == (const void*)&values[24]);
  t->deleter(t);
  CHECK(atomic_load(&tensor.releases) == 1);

  /* Malformed parameters: the array stays the caller's. */
  const char* bad[] = {"{\"shape\": [2, 3, 5]}", "{\"shape\": [2, 3, 4], \"permutation\": [0, 0, 1]}",
                       "{\"shape\": [2, 3, 4]", "{}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    fixture_list(&tensor, "+w:24", 3, &leaf);
    tensor_metadata(metadata, bad[i]);
    tensor.schema.metadata = metadata;
    struct ArrowArray before = tensor.array;
    CHECK(arrow_dlpack_export_versioned(&tensor.array, &tensor.schema, &err) == NULL);
    CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARROW);
    CHECK(memcmp(&before, &tensor.array, sizeof(before)) == 0);
  }
  /* A negative entry length in the metadata block. */
  int32_t corrupt[2] = {1, -3};
  tensor.schema.metadata = (const char*)corrupt;
  CHECK(arrow_dlpack_export_versioned(&tensor.array, &tensor.schema, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARROW);
  CHECK(atomic_load(&tensor.releases) == 0);
}

/* Runs a failing export and checks status, message and an untouched array. */
static void expect_failure(Fixture* f, ArrowDlpackStatus expected, const char* needle) {
  struct ArrowArray before = f->array;
  ArrowDlpackError err;
  DLManagedTensorVersioned* t = arrow_dlpack_export_versioned(&f->array, &f->schema, &err);
  CHECK(t == NULL);
  CHECK_STATUS(err, expected);
  if (strstr(err.message, needle) == NULL) {
    fprintf(stderr, "message '%s' lacks '%s'\n", err.message, needle);
    failures++;
  }
  CHECK(memcmp(&before, &f->array, sizeof(before)) == 0);
  CHECK(atomic_load(&f->releases) == 0);
  /* A NULL error pointer is fine too. */
  CHECK(arrow_dlpack_export(&f->array, &f->schema, NULL) == NULL);
  CHECK(memcmp(&before, &f->array, sizeof(before)) == 0);
}

static void failures_leave_the_array_untouched(void) {
  Fixture f;
  ArrowDlpackError err;
  fixture_init(&f, "i", 4, storage);

  CHECK(arrow_dlpack_export(NULL, &f.schema, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARGUMENT);
  CHECK(arrow_dlpack_export_versioned(&f.array, NULL, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_INVALID_ARGUMENT);

  f.schema.format = NULL;
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "schema.format is NULL");
  f.schema.format = "zz";
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "unknown format 'zz'");
  f.schema.format = "td";
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "truncated format 'td'");
  f.schema.format = "b";
  expect_failure(&f, ARROW_DLPACK_UNSUPPORTED_TYPE, "bit-packed, needs a copy");
  f.schema.format = "tsu:UTC";
  expect_failure(&f, ARROW_DLPACK_UNSUPPORTED_TYPE, "cast to its integer storage");
  f.schema.format = "U";
  expect_failure(&f, ARROW_DLPACK_UNSUPPORTED_TYPE, "large utf8");
  f.schema.format = "i";

  f.array.n_buffers = 1;
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "n_buffers is 1");
  f.array.n_buffers = 2;
  f.array.buffers = NULL;
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "array.buffers is NULL");
  f.array.buffers = f.buffers;
  f.buffers[1] = NULL;
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "buffers[1] (values) is NULL");
  f.buffers[1] = storage;
  f.array.length = -4;
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "array.length is negative (-4)");
  f.array.length = 4;
  f.array.offset = -1;
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "array.offset is negative (-1)");
  f.array.offset = INT64_MAX / 2;
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "overflows");
  f.array.offset = 0;
  f.array.null_count = -5;
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "null_count is -5");
  f.array.null_count = 2;
  expect_failure(&f, ARROW_DLPACK_INVALID_ARROW, "buffers[0] (validity) is NULL");
  uint8_t validity = 0x0b; /* bits 0, 1, 3 set: element 2 is null */
  f.buffers[0] = &validity;
  expect_failure(&f, ARROW_DLPACK_HAS_NULLS, "array has 2 nulls");
  f.array.null_count = -1;
  expect_failure(&f, ARROW_DLPACK_HAS_NULLS, "array has 1 nulls");
  f.array.length = 2; /* the null is outside [0, 2) */
  DLManagedTensor* t = arrow_dlpack_export(&f.array, &f.schema, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (t) t->deleter(t);
  CHECK(atomic_load(&f.releases) == 1);

  fixture_init(&f, "i", 4, storage);
  f.array.release = NULL;
  expect_failure(&f, ARROW_DLPACK_INVALID_ARGUMENT, "array is released");
}

static void status_strings_accept_any_integer(void) {
  CHECK(strcmp(arrow_dlpack_status_string(ARROW_DLPACK_OK), "ok") == 0);
  for (int s = ARROW_DLPACK_OK; s <= ARROW_DLPACK_NEEDS_COPY; s++) {
    CHECK(strcmp(arrow_dlpack_status_string(s), "unknown status") != 0);
  }
  CHECK(ARROW_DLPACK_NEEDS_COPY == 9);
  CHECK(strcmp(arrow_dlpack_status_string(10), "unknown status") == 0);
  CHECK(strcmp(arrow_dlpack_status_string(-1), "unknown status") == 0);
  CHECK(strcmp(arrow_dlpack_version(), "0.1.0") == 0);
}

int main(void) {
  export_every_type_both_ways();
  values_are_readable_through_the_tensor();
  nested_lists_export_as_nd_tensors();
  fixed_shape_tensors_permute_without_copying();
  failures_leave_the_array_untouched();
  status_strings_accept_any_integer();
  return finish("test_export");
}
