/* Deleters called on another thread, and device export over memory that
 * any read would fault on (PROT_NONE), standing in for GPU memory. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fixture.h"

#define N_TENSORS 256

static int32_t values[8];
static Fixture fixtures[N_TENSORS];
static DLManagedTensorVersioned* tensors[N_TENSORS];

static void* delete_all(void* arg) {
  (void)arg;
  for (int i = 0; i < N_TENSORS; i++) tensors[i]->deleter(tensors[i]);
  return NULL;
}

static void deleters_run_on_another_thread(void) {
  for (int i = 0; i < N_TENSORS; i++) {
    fixture_init(&fixtures[i], "i", 8, values);
    tensors[i] = arrow_dlpack_export_versioned(&fixtures[i].array, &fixtures[i].schema, NULL);
    CHECK(tensors[i] != NULL);
    if (!tensors[i]) return;
  }
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, delete_all, NULL) == 0);
  CHECK(pthread_join(thread, NULL) == 0);
  for (int i = 0; i < N_TENSORS; i++) CHECK(atomic_load(&fixtures[i].releases) == 1);
}

static void device_memory_is_never_read(void) {
  long page = sysconf(_SC_PAGESIZE);
  char* device = mmap(NULL, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(device != MAP_FAILED);
  if (device == MAP_FAILED) return;

  Fixture f;
  fixture_init(&f, "f", 16, device + 64);
  f.buffers[0] = device; /* validity bitmap, also unreadable */
  f.array.offset = 3;
  struct ArrowDeviceArray d;
  memset(&d, 0, sizeof(d));
  d.array = f.array;
  d.device_type = ARROW_DEVICE_CUDA;
  d.device_id = 1;
  int event_storage = 0;
  d.sync_event = &event_storage;

  /* Unknown null count with a bitmap on the device: an error, never a read. */
  d.array.null_count = -1;
  struct ArrowDeviceArray before = d;
  void* event = &before;
  ArrowDlpackError err;
  DLManagedTensorVersioned* t = arrow_dlpack_export_device(&d, &f.schema, &event, &err);
  CHECK(t == NULL && event == NULL);
  CHECK_STATUS(err, ARROW_DLPACK_UNSUPPORTED_DEVICE);
  CHECK(memcmp(&before, &d, sizeof(d)) == 0);

  d.array.null_count = 0;
  t = arrow_dlpack_export_device(&d, &f.schema, &event, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(t != NULL && d.array.release == NULL);
  if (t) {
    CHECK(event == &event_storage);
    CHECK(t->dl_tensor.device.device_type == kDLCUDA && t->dl_tensor.device.device_id == 1);
    CHECK(t->dl_tensor.data == device + 64 + 3 * 4);
    CHECK(t->flags == DLPACK_FLAG_BITMASK_READ_ONLY);
    t->deleter(t);
    CHECK(atomic_load(&f.releases) == 1);
  }

  /* The legacy flavour, for consumers that take "dltensor" capsules only. */
  fixture_init(&f, "f", 16, device + 64);
  d.array = f.array;
  d.array.offset = 2;
  d.device_type = ARROW_DEVICE_CUDA;
  d.device_id = 3;
  event = NULL;
  DLManagedTensor* legacy = arrow_dlpack_export_device_legacy(&d, &f.schema, &event, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  CHECK(legacy != NULL && d.array.release == NULL && event == &event_storage);
  if (legacy) {
    CHECK(legacy->dl_tensor.device.device_type == kDLCUDA && legacy->dl_tensor.device.device_id == 3);
    CHECK(legacy->dl_tensor.data == device + 64 + 2 * 4);
    legacy->deleter(legacy);
    CHECK(atomic_load(&f.releases) == 1);
  }

  /* A NULL sync_event out-parameter is accepted. */
  fixture_init(&f, "l", 2, device);
  d.array = f.array;
  d.device_type = ARROW_DEVICE_ROCM;
  d.device_id = 0;
  t = arrow_dlpack_export_device(&d, &f.schema, NULL, &err);
  CHECK_STATUS(err, ARROW_DLPACK_OK);
  if (t) {
    CHECK(t->dl_tensor.device.device_type == kDLROCM);
    t->deleter(t);
  }
  munmap(device, (size_t)page);
}

int main(void) {
  deleters_run_on_another_thread();
  device_memory_is_never_read();
  return finish("test_threads_device");
}
