// The header alone compiles as strict C++, and gives a RAII-friendly deleter.
#include <memory>

#include "arrow_dlpack.h"

int main() {
  struct ArrowArray array = {};
  struct ArrowSchema schema = {};
  ArrowDlpackError error;
  auto deleter = [](DLManagedTensorVersioned* t) { t->deleter(t); };
  std::unique_ptr<DLManagedTensorVersioned, decltype(deleter)> tensor(
      arrow_dlpack_export_versioned(&array, &schema, &error), deleter);
  // A zeroed array is released (release == NULL): an invalid argument.
  return tensor == nullptr && error.status == ARROW_DLPACK_INVALID_ARGUMENT ? 0 : 1;
}
