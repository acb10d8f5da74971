/* A record batch to a matrix and back, in C: three float64 columns that
 * lie end to end in one buffer (as frame libraries allocate them) become
 * one [rows, columns] tensor without a copy; a row-major copy is asked
 * for explicitly; the matrix comes back as named columns. */
#include <stdio.h>
#include <string.h>

#include "arrow_dlpack.h"

#define ROWS 4
#define COLS 3

static int released = 0;
static void release_array(struct ArrowArray* array) {
  released++;
  array->release = NULL;
}
static void release_schema(struct ArrowSchema* schema) { schema->release = NULL; }

int main(void) {
  /* Column j, row i holds 10 * j + i; the columns one after another. */
  static double block[COLS * ROWS];
  for (int k = 0; k < COLS * ROWS; k++) block[k] = 10 * (k / ROWS) + k % ROWS;

  const void* buffers[COLS][2];
  struct ArrowArray columns[COLS];
  struct ArrowSchema fields[COLS];
  struct ArrowArray* column_ptrs[COLS];
  struct ArrowSchema* field_ptrs[COLS];
  static const char* names[COLS] = {"x", "y", "z"};
  for (int j = 0; j < COLS; j++) {
    buffers[j][0] = NULL;
    buffers[j][1] = block + j * ROWS;
    columns[j] = (struct ArrowArray){ROWS, 0, 0, 2, 0, buffers[j], NULL, NULL, release_array, NULL};
    fields[j] = (struct ArrowSchema){"g", names[j], NULL, 0, 0, NULL, NULL, release_schema, NULL};
    column_ptrs[j] = &columns[j];
    field_ptrs[j] = &fields[j];
  }
  const void* validity[1] = {NULL};
  struct ArrowArray batch = {ROWS, 0, 0, 1, COLS, validity, column_ptrs, NULL, release_array, NULL};
  struct ArrowSchema schema = {"+s", "", NULL, 0, COLS, field_ptrs, NULL, release_schema, NULL};

  /* All-zero options: share or fail. The columns lie end to end: shared. */
  ArrowDlpackExportOptions options;
  memset(&options, 0, sizeof(options));
  ArrowDlpackError error;
  DLManagedTensorVersioned* matrix = arrow_dlpack_export_with(&batch, &schema, &options, &error);
  if (matrix == NULL) {
    fprintf(stderr, "%s: %s\n", arrow_dlpack_status_string(error.status), error.message);
    return 1;
  }
  const DLTensor* t = &matrix->dl_tensor;
  const double* m = (const double*)t->data;
  printf("matrix [%lld, %lld], strides [%lld, %lld], shared: %s\n", (long long)t->shape[0],
         (long long)t->shape[1], (long long)t->strides[0], (long long)t->strides[1],
         t->data == block ? "yes" : "no");
  printf("row 2: %.0f %.0f %.0f\n", m[2 * t->strides[0]], m[2 * t->strides[0] + t->strides[1]],
         m[2 * t->strides[0] + 2 * t->strides[1]]);

  /* Back to columns, named: the tensor is shared by the struct's children
   * and deleted when the last of them is released. */
  static const char* const out_names[COLS] = {"first", "second", "third"};
  ArrowDlpackImportOptions import_options;
  memset(&import_options, 0, sizeof(import_options));
  import_options.as_columns = 1;
  import_options.column_names = out_names;
  struct ArrowArray out;
  struct ArrowSchema out_schema;
  if (arrow_dlpack_import_with(matrix, &import_options, &out, &out_schema, &error) != ARROW_DLPACK_OK) {
    fprintf(stderr, "%s: %s\n", arrow_dlpack_status_string(error.status), error.message);
    matrix->deleter(matrix);
    return 1;
  }
  const double* second = (const double*)out.children[1]->buffers[1];
  printf("columns back: %s (%lld children), '%s' = %.0f %.0f %.0f %.0f, shared: %s\n", out_schema.format,
         (long long)out.n_children, out_schema.children[1]->name, second[0], second[1], second[2], second[3],
         second == block + ROWS ? "yes" : "no");
  out.release(&out);
  out_schema.release(&out_schema);

  /* A row-major matrix needs a copy: asked for, then the batch is released. */
  batch.release = release_array;
  options.copy = ARROW_DLPACK_COPY_IF_NEEDED;
  options.order = ARROW_DLPACK_ROW_MAJOR;
  matrix = arrow_dlpack_export_with(&batch, &schema, &options, &error);
  if (matrix == NULL) {
    fprintf(stderr, "%s: %s\n", arrow_dlpack_status_string(error.status), error.message);
    return 1;
  }
  printf("row-major copy: strides [%lld, %lld], batch released %d times (once per export)\n",
         (long long)matrix->dl_tensor.strides[0], (long long)matrix->dl_tensor.strides[1], released);
  matrix->deleter(matrix);
  return 0;
}
