/* The import contract, from C: DLPack tensors become Arrow arrays that own
 * them; every dtype both ways, N-D, rejected inputs left untouched. */
#include "fixture.h"

static int deletes = 0;
static void count_versioned(DLManagedTensorVersioned* self) { (void)self; deletes++; }
static void count_legacy(DLManagedTensor* self) { (void)self; deletes++; }

static uint64_t storage[64];

static DLTensor tensor_of(uint8_t code, uint8_t bits, int32_t ndim, int64_t* shape, int64_t* strides) {
  DLTensor t;
  memset(&t, 0, sizeof(t));
  t.data = storage;
  t.device.device_type = kDLCPU;
  t.ndim = ndim;
  t.dtype.code = code;
  t.dtype.bits = bits;
  t.dtype.lanes = 1;
  t.shape = shape;
  t.strides = strides;
  return t;
}

static DLManagedTensorVersioned versioned(DLTensor t) {
  DLManagedTensorVersioned m;
  memset(&m, 0, sizeof(m));
  m.version.major = 1;
  m.version.minor = 3;
  m.deleter = count_versioned;
  m.dl_tensor = t;
  return m;
}

static const struct { uint8_t code, bits; const char* format; } DTYPES[] = {
    {kDLInt, 8, "c"},  {kDLUInt, 8, "C"},  {kDLInt, 16, "s"},   {kDLUInt, 16, "S"},
    {kDLInt, 32, "i"}, {kDLUInt, 32, "I"}, {kDLInt, 64, "l"},   {kDLUInt, 64, "L"},
    {kDLFloat, 16, "e"}, {kDLFloat, 32, "f"}, {kDLFloat, 64, "g"},
};

static void every_dtype_both_ways(void) {
  int64_t shape[1] = {6};
  int64_t strides[1] = {1};
  for (size_t i = 0; i < sizeof(DTYPES) / sizeof(DTYPES[0]); i++) {
    struct ArrowArray array;
    struct ArrowSchema schema;
    ArrowDlpackError err;
    DLManagedTensorVersioned v = versioned(tensor_of(DTYPES[i].code, DTYPES[i].bits, 1, shape, strides));
    v.dl_tensor.byte_offset = 8;
    deletes = 0;
    CHECK(arrow_dlpack_import_versioned(&v, &array, &schema, &err) == ARROW_DLPACK_OK);
    CHECK_STATUS(err, ARROW_DLPACK_OK);
    CHECK(strcmp(schema.format, DTYPES[i].format) == 0);
    CHECK(array.length == 6 && array.null_count == 0 && array.n_buffers == 2);
    CHECK(array.buffers[1] == (const char*)storage + 8); /* zero-copy */
    CHECK(deletes == 0);
    schema.release(&schema);
    CHECK(deletes == 0); /* the schema is independent */
    array.release(&array);
    CHECK(deletes == 1);

    DLManagedTensor l;
    memset(&l, 0, sizeof(l));
    l.dl_tensor = tensor_of(DTYPES[i].code, DTYPES[i].bits, 1, shape, NULL); /* NULL strides: row-major */
    l.deleter = count_legacy;
    CHECK(arrow_dlpack_import(&l, &array, &schema, NULL) == ARROW_DLPACK_OK);
    CHECK(array.buffers[1] == storage);
    array.release(&array);
    schema.release(&schema);
    CHECK(deletes == 2);
  }
}

static void moving_the_array_before_release_deletes_once(void) {
  int64_t shape[1] = {4};
  DLManagedTensorVersioned v = versioned(tensor_of(kDLFloat, 32, 1, shape, NULL));
  struct ArrowArray array, moved;
  struct ArrowSchema schema;
  deletes = 0;
  CHECK(arrow_dlpack_import_versioned(&v, &array, &schema, NULL) == ARROW_DLPACK_OK);
  moved = array;
  array.release = NULL; /* the C Data Interface's move */
  schema.release(&schema);
  CHECK(deletes == 0);
  moved.release(&moved);
  CHECK(deletes == 1);
}

static void nd_tensors_become_fixed_shape_tensors(void) {
  /* np.arange(24).reshape(2, 4, 3).transpose(0, 2, 1): shape [2, 3, 4], strides [12, 1, 3]. */
  int64_t shape[3] = {2, 3, 4};
  int64_t strides[3] = {12, 1, 3};
  DLManagedTensorVersioned v = versioned(tensor_of(kDLInt, 32, 3, shape, strides));
  struct ArrowArray array;
  struct ArrowSchema schema;
  deletes = 0;
  CHECK(arrow_dlpack_import_versioned(&v, &array, &schema, NULL) == ARROW_DLPACK_OK);
  CHECK(strcmp(schema.format, "+w:12") == 0);
  CHECK(schema.metadata != NULL && schema.n_children == 1);
  CHECK(array.length == 2 && array.n_children == 1);
  CHECK(array.children[0]->buffers[1] == storage);
  /* The permutation travels in the metadata; find it in the block. */
  int found = 0;
  for (size_t i = 0; i + 20 < 400 && !found; i++) {
    found = memcmp(schema.metadata + i, "\"permutation\":[1, 0]", 20) == 0;
  }
  CHECK(found);
  array.release(&array);
  schema.release(&schema);
  CHECK(deletes == 1);
}

static void expect_rejected(DLManagedTensorVersioned* v, ArrowDlpackStatus expected, const char* needle) {
  DLManagedTensorVersioned before = *v;
  struct ArrowArray array;
  struct ArrowSchema schema;
  ArrowDlpackError err;
  memset(&array, 0xab, sizeof(array));
  deletes = 0;
  CHECK(arrow_dlpack_import_versioned(v, &array, &schema, &err) == expected);
  CHECK_STATUS(err, expected);
  if (strstr(err.message, needle) == NULL) {
    fprintf(stderr, "message '%s' lacks '%s'\n", err.message, needle);
    failures++;
  }
  CHECK(memcmp(&before, v, sizeof(before)) == 0);
  CHECK(deletes == 0);
  CHECK(array.length == (int64_t)0xabababababababab); /* not written */
}

static void rejected_tensors_stay_the_callers(void) {
  int64_t shape1[1] = {4}, step[1] = {2};
  DLManagedTensorVersioned v = versioned(tensor_of(kDLInt, 16, 1, shape1, step));
  expect_rejected(&v, ARROW_DLPACK_UNSUPPORTED_LAYOUT, "strides [2]");
  int64_t shape2[2] = {3, 2}, fortran[2] = {1, 3};
  v = versioned(tensor_of(kDLFloat, 64, 2, shape2, fortran));
  expect_rejected(&v, ARROW_DLPACK_UNSUPPORTED_LAYOUT, "outermost");
  v = versioned(tensor_of(kDLBool, 8, 1, shape1, NULL));
  expect_rejected(&v, ARROW_DLPACK_UNSUPPORTED_TYPE, "bool");
  v = versioned(tensor_of(kDLBfloat, 16, 1, shape1, NULL));
  expect_rejected(&v, ARROW_DLPACK_UNSUPPORTED_TYPE, "bfloat16");
  v = versioned(tensor_of(kDLFloat, 32, 1, shape1, NULL));
  v.dl_tensor.dtype.lanes = 4;
  expect_rejected(&v, ARROW_DLPACK_UNSUPPORTED_TYPE, "lanes 4");
  v = versioned(tensor_of(kDLFloat, 32, 1, shape1, NULL));
  v.dl_tensor.device.device_type = kDLCUDA;
  expect_rejected(&v, ARROW_DLPACK_UNSUPPORTED_DEVICE, "import_device");
  v = versioned(tensor_of(kDLFloat, 32, 1, shape1, NULL));
  v.version.major = 2;
  expect_rejected(&v, ARROW_DLPACK_INVALID_ARGUMENT, "version 2.3");
}

int main(void) {
  every_dtype_both_ways();
  moving_the_array_before_release_deletes_once();
  nd_tensors_become_fixed_shape_tensors();
  rejected_tensors_stay_the_callers();
  return finish("test_import");
}
