/* Our header, then the official ones: both compile together. */
#include "arrow_dlpack.h"
#include <arrow/c/abi.h>
#include <arrow/c/dlpack_abi.h>

int ours_first_uses_both(void);
int ours_first_uses_both(void) {
  struct ArrowArrayStream stream; /* only in abi.h */
  DLManagedTensorVersioned t;
  (void)stream;
  (void)t;
  return arrow_dlpack_status_string(ARROW_DLPACK_OK) != NULL;
}
