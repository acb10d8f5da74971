/* A stand-in for the CUDA driver (libcuda.so.1) and the HIP runtime
 * (libamdhip64.so) that records the calls arrow_dlpack makes to wait on a
 * producer's sync_event, one line each, in the file $FAKE_GPU_LOG.
 *
 * Built by python/tests/test_device.py and loaded through LD_LIBRARY_PATH
 * instead of the real libraries, so that the array API's stream rules are
 * tested on machines without a GPU. Event handles are read from where the
 * sync_event points (CUevent* / hipEvent_t*), so the log shows that the
 * pointer was dereferenced as the C Device Data Interface says.
 *
 * With $FAKE_GPU_NO_CONTEXT set, cuStreamWaitEvent fails with
 * CUDA_ERROR_INVALID_CONTEXT (201) unless a context was pushed.
 *
 * Pinned memory (batches(pin_memory=True)): cuMemHostAlloc is malloc and
 * cuMemFreeHost free, each recorded with whether a context was current,
 * as the real driver needs one. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int pushed = 0;

static void record(const char* fmt, ...) {
  const char* path = getenv("FAKE_GPU_LOG");
  FILE* f = path ? fopen(path, "a") : NULL;
  if (f == NULL) return;
  va_list args;
  va_start(args, fmt);
  vfprintf(f, fmt, args);
  va_end(args);
  fputc('\n', f);
  fclose(f);
}

int cuInit(unsigned flags) {
  record("cuInit flags=%u", flags);
  return 0;
}

int cuStreamWaitEvent(void* stream, void* event, unsigned flags) {
  if (getenv("FAKE_GPU_NO_CONTEXT") && !pushed) {
    record("cuStreamWaitEvent stream=%#lx event=%#lx flags=%u -> 201", (unsigned long)(uintptr_t)stream, (unsigned long)(uintptr_t)event, flags);
    return 201;
  }
  record("cuStreamWaitEvent stream=%#lx event=%#lx flags=%u", (unsigned long)(uintptr_t)stream, (unsigned long)(uintptr_t)event, flags);
  return 0;
}

int cuEventSynchronize(void* event) {
  record("cuEventSynchronize event=%#lx", (unsigned long)(uintptr_t)event);
  return 0;
}

int cuDeviceGet(int* device, int ordinal) {
  *device = ordinal;
  record("cuDeviceGet ordinal=%d", ordinal);
  return 0;
}

int cuDevicePrimaryCtxRetain(void** context, int device) {
  *context = (void*)(uintptr_t)(0xC0 + device);
  record("cuDevicePrimaryCtxRetain device=%d", device);
  return 0;
}

int cuDevicePrimaryCtxRelease_v2(int device) {
  record("cuDevicePrimaryCtxRelease device=%d", device);
  return 0;
}

int cuCtxPushCurrent_v2(void* context) {
  pushed++;
  record("cuCtxPushCurrent context=%#lx", (unsigned long)(uintptr_t)context);
  return 0;
}

int cuCtxPopCurrent_v2(void** context) {
  pushed--;
  *context = NULL;
  record("cuCtxPopCurrent");
  return 0;
}

int cuMemHostAlloc(void** p, size_t size, unsigned flags) {
  *p = malloc(size);
  record("cuMemHostAlloc size=%zu flags=%u context=%d", size, flags, pushed);
  return *p == NULL ? 2 : 0;
}

int cuMemFreeHost(void* p) {
  free(p);
  record("cuMemFreeHost context=%d", pushed);
  return 0;
}

int hipStreamWaitEvent(void* stream, void* event, unsigned flags) {
  record("hipStreamWaitEvent stream=%#lx event=%#lx flags=%u", (unsigned long)(uintptr_t)stream, (unsigned long)(uintptr_t)event, flags);
  return 0;
}

int hipEventSynchronize(void* event) {
  record("hipEventSynchronize event=%#lx", (unsigned long)(uintptr_t)event);
  return 0;
}
