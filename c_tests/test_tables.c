/* Tables from C, under valgrind: a struct array made by hand with its
 * columns laid end to end (shared column-major, the struct released by
 * the tensor's deleter) and in separate buffers (copied row-major, the
 * struct released at once, refused under COPY_NEVER with the array
 * untouched); a 2-D tensor imported as_columns, its struct and children
 * released in every order, the tensor deleted exactly once, after the
 * last of them. */
#include "fixture.h"

#define ROWS 5
#define COLS 3

/* A struct array over COLS float64 columns of ROWS rows. */
typedef struct Table {
  Fixture parent;
  Fixture columns[COLS];
  struct ArrowArray* arrays[COLS];
  struct ArrowSchema* schemas[COLS];
} Table;

static void table_init(Table* t, const double* column_starts[COLS]) {
  static const char* names[COLS] = {"a", "b", "c"};
  fixture_init(&t->parent, "+s", ROWS, NULL);
  t->parent.array.n_buffers = 1;
  for (int j = 0; j < COLS; j++) {
    fixture_init(&t->columns[j], "g", ROWS, column_starts[j]);
    t->columns[j].schema.name = names[j];
    t->arrays[j] = &t->columns[j].array;
    t->schemas[j] = &t->columns[j].schema;
  }
  t->parent.array.n_children = COLS;
  t->parent.schema.n_children = COLS;
  t->parent.array.children = t->arrays;
  t->parent.schema.children = t->schemas;
}

static ArrowDlpackExportOptions options(int32_t copy, int32_t order) {
  ArrowDlpackExportOptions o;
  memset(&o, 0, sizeof(o));
  o.copy = copy;
  o.order = order;
  return o;
}

static void adjacent_columns_are_shared_and_separate_ones_copied(void) {
  static double matrix[COLS * ROWS]; /* column-major */
  static double separate[COLS][ROWS + 1];
  for (int j = 0; j < COLS; j++) {
    for (int i = 0; i < ROWS; i++) {
      matrix[j * ROWS + i] = j * 100 + i;
      separate[j][i] = j * 100 + i;
    }
  }
  const double* adjacent[COLS] = {matrix, matrix + ROWS, matrix + 2 * ROWS};
  Table t;
  table_init(&t, adjacent);
  ArrowDlpackError err;
  ArrowDlpackExportOptions o = options(ARROW_DLPACK_COPY_NEVER, ARROW_DLPACK_ORDER_ANY);
  DLManagedTensorVersioned* m = arrow_dlpack_export_with(&t.parent.array, &t.parent.schema, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(m != NULL && t.parent.array.release == NULL);
  if (m) {
    CHECK(m->dl_tensor.data == matrix); /* zero-copy: the first column's address */
    CHECK(m->dl_tensor.ndim == 2 && m->dl_tensor.shape[0] == ROWS && m->dl_tensor.shape[1] == COLS);
    CHECK(m->dl_tensor.strides[0] == 1 && m->dl_tensor.strides[1] == ROWS);
    CHECK(m->flags == DLPACK_FLAG_BITMASK_READ_ONLY);
    CHECK(atomic_load(&t.parent.releases) == 0);
    m->deleter(m);
    CHECK(atomic_load(&t.parent.releases) == 1);
  }

  const double* apart[COLS] = {separate[0], separate[1], separate[2]};
  table_init(&t, apart);
  struct ArrowArray before = t.parent.array;
  o = options(ARROW_DLPACK_COPY_NEVER, ARROW_DLPACK_ORDER_ANY);
  CHECK(arrow_dlpack_export_with(&t.parent.array, &t.parent.schema, &o, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_NEEDS_COPY);
  CHECK(memcmp(&before, &t.parent.array, sizeof(before)) == 0 && atomic_load(&t.parent.releases) == 0);
  o.copy = ARROW_DLPACK_COPY_IF_NEEDED;
  m = arrow_dlpack_export_with(&t.parent.array, &t.parent.schema, &o, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(m != NULL && atomic_load(&t.parent.releases) == 1); /* copied, released at once */
  if (m) {
    const double* x = (const double*)m->dl_tensor.data;
    CHECK(m->dl_tensor.strides[0] == COLS && m->dl_tensor.strides[1] == 1);
    CHECK(m->flags == DLPACK_FLAG_BITMASK_IS_COPIED);
    for (int i = 0; i < ROWS; i++) {
      for (int j = 0; j < COLS; j++) CHECK(x[i * COLS + j] == j * 100 + i);
    }
    m->deleter(m);
  }

  /* A column of another type: named in the refusal. */
  static const int32_t ints[ROWS] = {1, 2, 3, 4, 5};
  table_init(&t, apart);
  t.columns[1].schema.format = "i";
  t.columns[1].buffers[1] = ints;
  t.columns[2].schema.format = "u";
  o = options(ARROW_DLPACK_COPY_IF_NEEDED, ARROW_DLPACK_ORDER_ANY);
  CHECK(arrow_dlpack_export_with(&t.parent.array, &t.parent.schema, &o, &err) == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_UNSUPPORTED_TYPE);
  CHECK(strstr(err.message, "column 2 'c'") != NULL);
}

/* The tensor an import shares: its deleter counts. */
static int tensor_deletes = 0;
static void count_delete(DLManagedTensorVersioned* t) {
  (void)t;
  tensor_deletes++;
}

/* A float64 matrix over `data`, deleted by `count_delete`. */
static DLManagedTensorVersioned float64_matrix(double* data, int64_t* shape, int64_t* strides) {
  DLManagedTensorVersioned t;
  memset(&t, 0, sizeof(t));
  t.version.major = DLPACK_MAJOR_VERSION;
  t.dl_tensor.data = data;
  t.dl_tensor.device.device_type = kDLCPU;
  t.dl_tensor.ndim = 2;
  t.dl_tensor.dtype.code = kDLFloat;
  t.dl_tensor.dtype.bits = 64;
  t.dl_tensor.dtype.lanes = 1;
  t.dl_tensor.shape = shape;
  t.dl_tensor.strides = strides;
  t.deleter = count_delete;
  return t;
}

static void columns_are_released_in_any_order(void) {
  static double matrix[COLS * ROWS]; /* column-major: strides {1, ROWS} */
  for (int k = 0; k < COLS * ROWS; k++) matrix[k] = k;
  int64_t shape[2] = {ROWS, COLS}, strides[2] = {1, ROWS};
  const char* const names[COLS] = {"x", "y", "z"};
  /* Every order of releasing the struct (3) and its three children, each
   * child moved out of the struct first (as the C Data Interface allows). */
  int orders = 0;
  for (int a = 0; a < 4; a++) {
    for (int b = 0; b < 4; b++) {
      for (int c = 0; c < 4; c++) {
        int d = 6 - a - b - c;
        if (a == b || a == c || b == c || d < 0 || d > 3 || d == a || d == b || d == c) continue;
        DLManagedTensorVersioned t = float64_matrix(matrix, shape, strides);
        ArrowDlpackImportOptions o;
        memset(&o, 0, sizeof(o));
        o.as_columns = 1;
        o.column_names = names;
        struct ArrowArray array;
        struct ArrowSchema schema;
        ArrowDlpackError err;
        tensor_deletes = 0;
        CHECK(arrow_dlpack_import_with(&t, &o, &array, &schema, &err) == ARROW_DLPACK_OK);
        CHECK(array.n_children == COLS && schema.n_children == COLS && strcmp(schema.format, "+s") == 0);
        CHECK(strcmp(schema.children[1]->name, "y") == 0 && strcmp(schema.children[1]->format, "g") == 0);
        struct ArrowArray moved[COLS];
        for (int j = 0; j < COLS; j++) {
          CHECK(array.children[j]->buffers[1] == matrix + j * ROWS); /* shared */
          moved[j] = *array.children[j];
          array.children[j]->release = NULL;
        }
        schema.release(&schema);
        int order[4] = {a, b, c, d};
        for (int k = 0; k < 4; k++) {
          CHECK(tensor_deletes == 0);
          if (order[k] == 3) {
            array.release(&array);
          } else {
            moved[order[k]].release(&moved[order[k]]);
          }
        }
        CHECK(tensor_deletes == 1); /* once, after the last */
        orders++;
      }
    }
  }
  CHECK(orders == 24);

  /* Row-major: copied out (the tensor deleted at once), or refused. */
  int64_t row_major[2] = {COLS, 1};
  DLManagedTensorVersioned t = float64_matrix(matrix, shape, row_major);
  ArrowDlpackImportOptions o;
  memset(&o, 0, sizeof(o));
  o.as_columns = 1;
  struct ArrowArray array;
  struct ArrowSchema schema;
  ArrowDlpackError err;
  tensor_deletes = 0;
  CHECK(arrow_dlpack_import_with(&t, &o, &array, &schema, &err) == ARROW_DLPACK_NEEDS_COPY);
  CHECK(tensor_deletes == 0);
  o.copy = ARROW_DLPACK_COPY_IF_NEEDED;
  CHECK(arrow_dlpack_import_with(&t, &o, &array, &schema, &err) == ARROW_DLPACK_OK);
  CHECK(tensor_deletes == 1);
  const double* second = (const double*)array.children[1]->buffers[1];
  for (int i = 0; i < ROWS; i++) CHECK(second[i] == matrix[i * COLS + 1]);
  CHECK(strcmp(schema.children[2]->name, "2") == 0);
  array.release(&array);
  schema.release(&schema);
}

int main(void) {
  adjacent_columns_are_shared_and_separate_ones_copied();
  columns_are_released_in_any_order();
  return finish("test_tables");
}
