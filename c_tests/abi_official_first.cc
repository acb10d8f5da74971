// The official headers, then ours, as C++: both compile together.
#include <arrow/c/abi.h>
#include <arrow/c/dlpack_abi.h>
#include "arrow_dlpack.h"

extern "C" int official_first_uses_both(void);
extern "C" int official_first_uses_both(void) {
  DLPackExchangeAPI api;  // only in dlpack_abi.h
  (void)api;
  ArrowDlpackError error;
  struct ArrowArray array = {};
  return arrow_dlpack_export_versioned(&array, nullptr, &error) == nullptr &&
         error.status == ARROW_DLPACK_INVALID_ARGUMENT;
}
