// A C++ consumer with RAII: the tensor lives in a std::unique_ptr whose
// deleter is the tensor's own, so it is released on every path.
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <vector>

#include "arrow_dlpack.h"

namespace {

struct TensorDeleter {
  void operator()(DLManagedTensorVersioned* t) const {
    if (t != nullptr && t->deleter != nullptr) t->deleter(t);
  }
};
using Tensor = std::unique_ptr<DLManagedTensorVersioned, TensorDeleter>;

// Moves `array` into a tensor; throws with the library's message on failure
// (the array then stays the caller's).
Tensor share(ArrowArray& array, const ArrowSchema& schema) {
  ArrowDlpackError error;
  Tensor tensor(arrow_dlpack_export_versioned(&array, &schema, &error));
  if (!tensor) throw std::runtime_error(error.message);
  return tensor;
}

int released = 0;

}  // namespace

int main() {
  // A fixed_size_list<int32>[3] of 2 rows: a 2x3 tensor.
  static const std::vector<int32_t> values = {1, 2, 3, 4, 5, 6};
  const void* child_buffers[2] = {nullptr, values.data()};
  const void* parent_buffers[1] = {nullptr};
  auto release = [](ArrowArray* a) {
    released++;
    a->release = nullptr;
  };
  auto release_schema = [](ArrowSchema* s) { s->release = nullptr; };
  ArrowSchema child_schema = {"i", "item", nullptr, 0, 0, nullptr, nullptr, release_schema, nullptr};
  ArrowSchema* schema_children[1] = {&child_schema};
  ArrowSchema schema = {"+w:3", "", nullptr, 0, 1, schema_children, nullptr, release_schema, nullptr};
  ArrowArray child = {6, 0, 0, 2, 0, child_buffers, nullptr, nullptr, release, nullptr};
  ArrowArray* array_children[1] = {&child};
  ArrowArray array = {2, 0, 0, 1, 1, parent_buffers, array_children, nullptr, release, nullptr};

  {
    Tensor t = share(array, schema);
    const DLTensor& d = t->dl_tensor;
    const auto* data = static_cast<const int32_t*>(d.data);
    std::printf("cpp: shape [%lld, %lld], t[1][2] = %d, read-only: %s\n", (long long)d.shape[0],
                (long long)d.shape[1], data[1 * d.strides[0] + 2 * d.strides[1]],
                (t->flags & DLPACK_FLAG_BITMASK_READ_ONLY) ? "yes" : "no");
  }  // the unique_ptr deletes the tensor, which releases the array
  std::printf("cpp: array released %d time(s)\n", released);

  ArrowArray bad = array;
  bad.release = release;
  ArrowSchema utf8 = {"u", "", nullptr, 0, 0, nullptr, nullptr, release_schema, nullptr};
  try {
    share(bad, utf8);
  } catch (const std::exception& e) {
    std::printf("cpp: refused: %s\n", e.what());
  }
  return released == 1 ? 0 : 1;
}
