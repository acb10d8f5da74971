/*
 * arrow-dlpack for C++: the loader and its batches as move-only RAII
 * objects over the C API (arrow_dlpack.h), header-only, C++11.
 *
 *   arrow_dlpack::LoaderOptions options(256);   // batch_size
 *   options.shuffle = 1;
 *   auto loader = arrow_dlpack::Loader::open({"data/"}, options);
 *   for (int epoch = 0; epoch < 3; epoch++) {
 *     for (auto& batch : loader) {               // one epoch a loop
 *       DLManagedTensorVersioned* x = batch.take("x");   // now yours
 *       ...                                      // e.g. at::fromDLPack(x)
 *     }                                          // the rest deleted here
 *   }
 *   std::string state = loader.state();          // resume with restore()
 *
 * Every failure throws arrow_dlpack::Error (its status and the library's
 * message). Ownership follows the C API: a batch owns its tensors until
 * one is taken; a loader owns its source; batches outlive their loader.
 */
#ifndef ARROW_DLPACK_HPP
#define ARROW_DLPACK_HPP

#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "arrow_dlpack.h"

namespace arrow_dlpack {

/** A failed call: the status and the library's message. */
class Error : public std::runtime_error {
 public:
  Error(ArrowDlpackStatus status, const char* message)
      : std::runtime_error(std::string(arrow_dlpack_status_string(status)) + ": " + message),
        status_(status) {}
  ArrowDlpackStatus status() const { return status_; }

 private:
  ArrowDlpackStatus status_;
};

namespace detail {
inline void check(ArrowDlpackStatus status, const ArrowDlpackError& error) {
  if (status != ARROW_DLPACK_OK) throw Error(status, error.message);
}
}  // namespace detail

/** ArrowDlpackLoaderOptions, zeroed but for the batch size. */
struct LoaderOptions : ArrowDlpackLoaderOptions {
  explicit LoaderOptions(int64_t batch_size) {
    std::memset(static_cast<ArrowDlpackLoaderOptions*>(this), 0, sizeof(ArrowDlpackLoaderOptions));
    this->batch_size = batch_size;
  }
};

/** One batch: named outputs of one to three tensors each (see
 * ArrowDlpackOutputKind). Empty (false) at an epoch's end. Move-only;
 * deletes the tensors not taken when destroyed. */
class Batch {
 public:
  Batch() { std::memset(&batch_, 0, sizeof(batch_)); }
  ~Batch() { arrow_dlpack_batch_release(&batch_); }
  Batch(Batch&& other) noexcept : batch_(other.batch_) { std::memset(&other.batch_, 0, sizeof(other.batch_)); }
  Batch& operator=(Batch&& other) noexcept {
    if (this != &other) {
      arrow_dlpack_batch_release(&batch_);
      batch_ = other.batch_;
      std::memset(&other.batch_, 0, sizeof(other.batch_));
    }
    return *this;
  }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  explicit operator bool() const { return batch_.n_outputs > 0; }
  /** Outputs, rows, and where the batch stands in its epoch. */
  int64_t size() const { return batch_.n_outputs; }
  int64_t rows() const { return batch_.rows; }
  uint64_t epoch() const { return batch_.epoch; }
  uint64_t step() const { return batch_.step; }
  const char* name(int64_t i) const { return output(i).name; }
  ArrowDlpackOutputKind kind(int64_t i) const { return static_cast<ArrowDlpackOutputKind>(output(i).kind); }
  /** The output named `name` (std::out_of_range if none). */
  int64_t index(const char* name) const {
    for (int64_t i = 0; i < batch_.n_outputs; i++) {
      if (std::strcmp(batch_.outputs[i].name, name) == 0) return i;
    }
    throw std::out_of_range(std::string("no output named ") + name);
  }
  /** Tensor `k` of output `i`, still the batch's (NULL if taken or
   * unused). */
  const DLManagedTensorVersioned* tensor(int64_t i, int k = 0) const { return output(i).tensors[slot(k)]; }
  /** Tensor `k` of output `i`, handed over: the caller deletes it (or a
   * consumer does: at::fromDLPack, a DLPack capsule). NULL if taken. */
  DLManagedTensorVersioned* take(int64_t i, int k = 0) {
    ArrowDlpackOutput& o = output(i);
    DLManagedTensorVersioned* t = o.tensors[slot(k)];
    o.tensors[slot(k)] = nullptr;
    return t;
  }
  DLManagedTensorVersioned* take(const char* name, int k = 0) { return take(index(name), k); }
  /** The C struct (for arrow_dlpack_loader_next). */
  ArrowDlpackBatch* raw() { return &batch_; }

 private:
  ArrowDlpackOutput& output(int64_t i) const {
    if (i < 0 || i >= batch_.n_outputs) throw std::out_of_range("output index out of range");
    return batch_.outputs[i];
  }
  static int slot(int k) {
    if (k < 0 || k > 2) throw std::out_of_range("a tensor slot is 0, 1 or 2");
    return k;
  }
  ArrowDlpackBatch batch_;
};

/** Training epochs (see docs/epochs.md): over an ArrowArrayStream or
 * Arrow IPC files. Move-only; one thread at a time. Iterating it reads
 * one epoch; iterating again, the next. */
class Loader {
 public:
  /** Moves `stream` in (left with the caller if this throws). */
  static Loader from_stream(ArrowArrayStream* stream, const ArrowDlpackLoaderOptions& options) {
    ArrowDlpackError error;
    ArrowDlpackLoader* loader = arrow_dlpack_loader_new(stream, &options, &error);
    if (!loader) throw Error(error.status, error.message);
    return Loader(loader);
  }
  /** Files, directories and globs of Arrow IPC files. */
  static Loader open(const std::vector<std::string>& paths, const ArrowDlpackLoaderOptions& options) {
    std::vector<const char*> names;
    for (const std::string& p : paths) names.push_back(p.c_str());
    ArrowDlpackError error;
    ArrowDlpackLoader* loader =
        arrow_dlpack_loader_open(names.data(), static_cast<int64_t>(names.size()), &options, &error);
    if (!loader) throw Error(error.status, error.message);
    return Loader(loader);
  }
  ~Loader() { arrow_dlpack_loader_free(loader_); }
  Loader(Loader&& other) noexcept : loader_(other.loader_) { other.loader_ = nullptr; }
  Loader& operator=(Loader&& other) noexcept {
    if (this != &other) {
      arrow_dlpack_loader_free(loader_);
      loader_ = other.loader_;
      other.loader_ = nullptr;
    }
    return *this;
  }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /** The next batch; an empty one at the epoch's end (the next call
   * begins the next epoch). */
  Batch next() {
    Batch batch;
    ArrowDlpackError error;
    detail::check(arrow_dlpack_loader_next(loader_, batch.raw(), &error), error);
    return batch;
  }
  void set_epoch(uint64_t epoch) {
    ArrowDlpackError error;
    detail::check(arrow_dlpack_loader_set_epoch(loader_, epoch, &error), error);
  }
  /** This rank's batches an epoch; -1 for a stream read in order. */
  int64_t size() const { return arrow_dlpack_loader_len(loader_); }
  /** The state as JSON (Python's state_dict()). */
  std::string state() const {
    ArrowDlpackError error;
    size_t need = 0;
    arrow_dlpack_loader_state(loader_, nullptr, 0, &need, &error);
    std::string out(need, '\0');
    detail::check(arrow_dlpack_loader_state(loader_, &out[0], out.size(), &need, &error), error);
    return out;
  }
  void restore(const std::string& state) {
    ArrowDlpackError error;
    detail::check(arrow_dlpack_loader_restore(loader_, state.data(), state.size(), &error), error);
  }
  ArrowDlpackLoader* raw() { return loader_; }

  /** An input iterator over one epoch's batches. */
  class iterator {
   public:
    iterator() : loader_(nullptr) {}
    explicit iterator(Loader* loader) : loader_(loader), batch_(loader->next()) {
      if (!batch_) loader_ = nullptr;
    }
    Batch& operator*() { return batch_; }
    Batch* operator->() { return &batch_; }
    iterator& operator++() {
      batch_ = loader_->next();
      if (!batch_) loader_ = nullptr;
      return *this;
    }
    bool operator==(const iterator& other) const { return loader_ == other.loader_; }
    bool operator!=(const iterator& other) const { return loader_ != other.loader_; }

   private:
    Loader* loader_;
    Batch batch_;
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  explicit Loader(ArrowDlpackLoader* loader) : loader_(loader) {}
  ArrowDlpackLoader* loader_;
};

}  // namespace arrow_dlpack

#endif
