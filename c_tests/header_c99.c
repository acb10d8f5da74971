/* The header alone compiles as strict C99 (and, built twice, C11). */
#include "arrow_dlpack.h"

int header_c99_compiles(void);
int header_c99_compiles(void) {
  ArrowDlpackError error;
  error.status = ARROW_DLPACK_OK;
  return (int)error.status + (int)sizeof(DLManagedTensorVersioned);
}
