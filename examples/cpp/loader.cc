// Training epochs from C++ with include/arrow_dlpack.hpp: a stream of
// record batches (made by hand here; DuckDB, ADBC or any Arrow producer
// in practice) read as shuffled epochs of DLPack tensors, one tensor
// taken out of each batch as a trainer would (at::fromDLPack takes it so),
// then a state resumed by a second loader.
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

#include "arrow_dlpack.hpp"

namespace {

constexpr int kChunks = 3;
constexpr int kPer = 20;
constexpr int kRows = kChunks * kPer;

// The producer: kChunks record batches {id: int64, x: float64}.
struct Producer {
  int64_t id[kRows];
  double x[kRows];
  const void* buffers[kChunks][2][2];
  const void* parent_buffers[1] = {nullptr};
  ArrowArray columns[kChunks][2];
  ArrowArray* children[kChunks][2];
  ArrowSchema fields[2];
  ArrowSchema* field_ptrs[2];
  int next = 0;

  Producer() {
    for (int i = 0; i < kRows; i++) {
      id[i] = i;
      x[i] = i * 0.25;
    }
  }

  static void release_array(ArrowArray* a) { a->release = nullptr; }
  static void release_parent(ArrowArray* a) {
    for (int64_t j = 0; j < a->n_children; j++) a->children[j]->release(a->children[j]);
    a->release = nullptr;
  }
  static void release_schema(ArrowSchema* s) { s->release = nullptr; }

  static int get_schema(ArrowArrayStream* s, ArrowSchema* out) {
    Producer* p = static_cast<Producer*>(s->private_data);
    p->fields[0] = ArrowSchema{"l", "id", nullptr, 0, 0, nullptr, nullptr, release_schema, nullptr};
    p->fields[1] = ArrowSchema{"g", "x", nullptr, 0, 0, nullptr, nullptr, release_schema, nullptr};
    p->field_ptrs[0] = &p->fields[0];
    p->field_ptrs[1] = &p->fields[1];
    *out = ArrowSchema{"+s", "", nullptr, 0, 2, p->field_ptrs, nullptr, release_schema, nullptr};
    return 0;
  }
  static int get_next(ArrowArrayStream* s, ArrowArray* out) {
    Producer* p = static_cast<Producer*>(s->private_data);
    std::memset(out, 0, sizeof(*out));
    if (p->next == kChunks) return 0;  // release NULL: the end
    int c = p->next++;
    for (int j = 0; j < 2; j++) {
      p->buffers[c][j][0] = nullptr;
      p->buffers[c][j][1] = j == 0 ? static_cast<const void*>(p->id + c * kPer)
                                   : static_cast<const void*>(p->x + c * kPer);
      p->columns[c][j] = ArrowArray{kPer, 0, 0, 2, 0, p->buffers[c][j], nullptr, nullptr, release_array, nullptr};
      p->children[c][j] = &p->columns[c][j];
    }
    *out = ArrowArray{kPer, 0, 0, 1, 2, p->parent_buffers, p->children[c], nullptr, release_parent, nullptr};
    return 0;
  }
  static const char* last_error(ArrowArrayStream*) { return nullptr; }
  static void release_stream(ArrowArrayStream* s) { s->release = nullptr; }

  ArrowArrayStream stream() { return ArrowArrayStream{get_schema, get_next, last_error, release_stream, this}; }
};

arrow_dlpack::Loader shuffled(Producer& producer, ArrowArrayStream& stream) {
  stream = producer.stream();
  arrow_dlpack::LoaderOptions options(8);  // batch_size; all else zero
  options.shuffle = 1;
  options.seed = 7;
  options.prefetch = 2;
  return arrow_dlpack::Loader::from_stream(&stream, options);  // moved in
}

// The ids of the rest of the loader's current epoch, one tensor taken
// out of each batch and deleted as a consumer would.
std::vector<int64_t> rest_of_epoch(arrow_dlpack::Loader& loader) {
  std::vector<int64_t> ids;
  for (auto& batch : loader) {
    DLManagedTensorVersioned* id = batch.take("id");  // ours now
    const int64_t* v = static_cast<const int64_t*>(id->dl_tensor.data);
    ids.insert(ids.end(), v, v + id->dl_tensor.shape[0]);
    id->deleter(id);
  }  // "x" deleted with each batch
  return ids;
}

}  // namespace

int main() {
  try {
    Producer producer;
    ArrowArrayStream stream;
    arrow_dlpack::Loader loader = shuffled(producer, stream);
    std::printf("batches an epoch: %lld\n", static_cast<long long>(loader.size()));
    bool once = true;
    for (int epoch = 0; epoch < 2; epoch++) {
      std::vector<int64_t> ids = rest_of_epoch(loader);  // each loop the next epoch
      once = once && ids.size() == kRows && std::set<int64_t>(ids.begin(), ids.end()).size() == kRows;
    }
    std::printf("every row once in each of 2 epochs: %s\n", once ? "yes" : "no");

    loader.next();  // two batches into epoch 2 ...
    loader.next();
    std::string state = loader.state();  // ... saved
    std::vector<int64_t> rest = rest_of_epoch(loader);

    Producer again;
    ArrowArrayStream second;
    arrow_dlpack::Loader resumed = shuffled(again, second);
    resumed.restore(state);
    bool same = rest_of_epoch(resumed) == rest;
    std::printf("resumed: %s\n", same ? "yes" : "no");

    try {
      resumed.restore("{\"version\": 1}");
    } catch (const arrow_dlpack::Error& e) {
      std::printf("refused: %s\n", e.what());
    }
    return once && same ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
