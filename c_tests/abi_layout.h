/* Every size, offset and enum value of the Arrow and DLPack ABI, as a table.
 * Included after one set of definitions (ours or the official ones) to
 * define a function returning that set's table; abi_check.c compares both. */
#include <stddef.h>

#define ABI_ENTRIES(X)                                                        \
  X(sizeof(struct ArrowSchema))                                               \
  X(offsetof(struct ArrowSchema, format))                                     \
  X(offsetof(struct ArrowSchema, name))                                       \
  X(offsetof(struct ArrowSchema, metadata))                                   \
  X(offsetof(struct ArrowSchema, flags))                                      \
  X(offsetof(struct ArrowSchema, n_children))                                 \
  X(offsetof(struct ArrowSchema, children))                                   \
  X(offsetof(struct ArrowSchema, dictionary))                                 \
  X(offsetof(struct ArrowSchema, release))                                    \
  X(offsetof(struct ArrowSchema, private_data))                               \
  X(sizeof(struct ArrowArray))                                                \
  X(offsetof(struct ArrowArray, length))                                      \
  X(offsetof(struct ArrowArray, null_count))                                  \
  X(offsetof(struct ArrowArray, offset))                                      \
  X(offsetof(struct ArrowArray, n_buffers))                                   \
  X(offsetof(struct ArrowArray, n_children))                                  \
  X(offsetof(struct ArrowArray, buffers))                                     \
  X(offsetof(struct ArrowArray, children))                                    \
  X(offsetof(struct ArrowArray, dictionary))                                  \
  X(offsetof(struct ArrowArray, release))                                     \
  X(offsetof(struct ArrowArray, private_data))                                \
  X(ARROW_FLAG_DICTIONARY_ORDERED)                                            \
  X(ARROW_FLAG_NULLABLE)                                                      \
  X(ARROW_FLAG_MAP_KEYS_SORTED)                                               \
  X(sizeof(ArrowDeviceType))                                                  \
  X(sizeof(struct ArrowDeviceArray))                                          \
  X(offsetof(struct ArrowDeviceArray, array))                                 \
  X(offsetof(struct ArrowDeviceArray, device_id))                             \
  X(offsetof(struct ArrowDeviceArray, device_type))                           \
  X(offsetof(struct ArrowDeviceArray, sync_event))                            \
  X(offsetof(struct ArrowDeviceArray, reserved))                              \
  X(sizeof(struct ArrowArrayStream))                                          \
  X(offsetof(struct ArrowArrayStream, get_schema))                            \
  X(offsetof(struct ArrowArrayStream, get_next))                              \
  X(offsetof(struct ArrowArrayStream, get_last_error))                        \
  X(offsetof(struct ArrowArrayStream, release))                               \
  X(offsetof(struct ArrowArrayStream, private_data))                          \
  X(ARROW_DEVICE_CPU) X(ARROW_DEVICE_CUDA) X(ARROW_DEVICE_CUDA_HOST)          \
  X(ARROW_DEVICE_OPENCL) X(ARROW_DEVICE_VULKAN) X(ARROW_DEVICE_METAL)         \
  X(ARROW_DEVICE_VPI) X(ARROW_DEVICE_ROCM) X(ARROW_DEVICE_ROCM_HOST)          \
  X(ARROW_DEVICE_EXT_DEV) X(ARROW_DEVICE_CUDA_MANAGED) X(ARROW_DEVICE_ONEAPI) \
  X(ARROW_DEVICE_WEBGPU) X(ARROW_DEVICE_HEXAGON)                              \
  X(DLPACK_MAJOR_VERSION) X(DLPACK_MINOR_VERSION)                             \
  X(sizeof(DLPackVersion))                                                    \
  X(offsetof(DLPackVersion, major)) X(offsetof(DLPackVersion, minor))         \
  X(sizeof(DLDeviceType))                                                     \
  X(kDLCPU) X(kDLCUDA) X(kDLCUDAHost) X(kDLOpenCL) X(kDLVulkan) X(kDLMetal)   \
  X(kDLVPI) X(kDLROCM) X(kDLROCMHost) X(kDLExtDev) X(kDLCUDAManaged)          \
  X(kDLOneAPI) X(kDLWebGPU) X(kDLHexagon) X(kDLMAIA) X(kDLTrn)                \
  X(sizeof(DLDevice))                                                         \
  X(offsetof(DLDevice, device_type)) X(offsetof(DLDevice, device_id))         \
  X(kDLInt) X(kDLUInt) X(kDLFloat) X(kDLOpaqueHandle) X(kDLBfloat)            \
  X(kDLComplex) X(kDLBool) X(kDLFloat8_e3m4) X(kDLFloat8_e4m3)                \
  X(kDLFloat8_e4m3b11fnuz) X(kDLFloat8_e4m3fn) X(kDLFloat8_e4m3fnuz)          \
  X(kDLFloat8_e5m2) X(kDLFloat8_e5m2fnuz) X(kDLFloat8_e8m0fnu)                \
  X(kDLFloat6_e2m3fn) X(kDLFloat6_e3m2fn) X(kDLFloat4_e2m1fn)                 \
  X(sizeof(DLDataType))                                                       \
  X(offsetof(DLDataType, code)) X(offsetof(DLDataType, bits))                 \
  X(offsetof(DLDataType, lanes))                                              \
  X(sizeof(DLTensor))                                                         \
  X(offsetof(DLTensor, data)) X(offsetof(DLTensor, device))                   \
  X(offsetof(DLTensor, ndim)) X(offsetof(DLTensor, dtype))                    \
  X(offsetof(DLTensor, shape)) X(offsetof(DLTensor, strides))                 \
  X(offsetof(DLTensor, byte_offset))                                          \
  X(sizeof(DLManagedTensor))                                                  \
  X(offsetof(DLManagedTensor, dl_tensor))                                     \
  X(offsetof(DLManagedTensor, manager_ctx))                                   \
  X(offsetof(DLManagedTensor, deleter))                                       \
  X(sizeof(DLManagedTensorVersioned))                                         \
  X(offsetof(DLManagedTensorVersioned, version))                              \
  X(offsetof(DLManagedTensorVersioned, manager_ctx))                          \
  X(offsetof(DLManagedTensorVersioned, deleter))                              \
  X(offsetof(DLManagedTensorVersioned, flags))                                \
  X(offsetof(DLManagedTensorVersioned, dl_tensor))                            \
  X(DLPACK_FLAG_BITMASK_READ_ONLY) X(DLPACK_FLAG_BITMASK_IS_COPIED)           \
  X(DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED)

#define ABI_VALUE(expr) (long long)(expr),
#define ABI_NAME(expr) #expr,

#define DEFINE_ABI_TABLE(fn)                                             \
  const long long* fn(size_t* n) {                                       \
    static const long long values[] = {ABI_ENTRIES(ABI_VALUE)};          \
    *n = sizeof(values) / sizeof(values[0]);                             \
    return values;                                                       \
  }
