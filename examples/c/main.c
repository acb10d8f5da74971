/* A complete C consumer: produces an Arrow array by hand (as any Arrow
 * producer would), shares it as a DLPack tensor, reads it, deletes it. */
#include <stdio.h>

#include "arrow_dlpack.h"

static int released = 0;
static void release_array(struct ArrowArray* array) {
  released++;
  array->release = NULL;
}
static void release_schema(struct ArrowSchema* schema) { schema->release = NULL; }

int main(void) {
  static const double values[5] = {0.5, 1.5, 2.5, 3.5, 4.5};
  const void* buffers[2] = {NULL, values};
  struct ArrowSchema schema = {"g", NULL, NULL, 0, 0, NULL, NULL, release_schema, NULL};
  struct ArrowArray array = {4, 0, 1, 2, 0, buffers, NULL, NULL, release_array, NULL}; /* values[1..5] */

  ArrowDlpackError error;
  DLManagedTensorVersioned* tensor = arrow_dlpack_export_versioned(&array, &schema, &error);
  if (tensor == NULL) {
    fprintf(stderr, "%s: %s\n", arrow_dlpack_status_string(error.status), error.message);
    return 1;
  }
  const DLTensor* t = &tensor->dl_tensor;
  const double* data = (const double*)t->data;
  double sum = 0;
  for (int64_t i = 0; i < t->shape[0]; i++) sum += data[i * t->strides[0]];
  printf("c: %lld float64 values, sum %.1f, shared: %s\n", (long long)t->shape[0], sum,
         t->data == (const void*)&values[1] ? "yes" : "no");
  tensor->deleter(tensor);
  printf("c: array released %d time(s)\n", released);
  schema.release(&schema);
  return released == 1 ? 0 : 1;
}
