// Device-side helpers for CUDA kernels (include from .cu files only): float conversions for the three
// floating storage types, a 16-byte vector pack, dtype dispatch, and the launch-error check. The CPU
// counterparts (opforge::load/store, OPFORGE_DISPATCH_FLOATING_CPU) live in kernel_api.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "opforge/kernel_api.h"

namespace opforge {
namespace cuda {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// One 16-byte access: the widest load/store a thread can issue.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

template <typename T>
inline bool pack_aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % sizeof(Pack<T>) == 0;
}

inline cudaStream_t stream(const DeviceContext& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

// After a launch: a launch error becomes a Status (the message must have static storage).
inline Status launch_status(const char* message) {
  return cudaGetLastError() == cudaSuccess ? Status::ok() : Status::error(Status::kCudaError, message);
}

}  // namespace cuda
}  // namespace opforge

// Dispatch a CUDA launch over float32/float16/bfloat16. `T` names float, __half or __nv_bfloat16 inside.
#define OPFORGE_DISPATCH_FLOATING_CUDA(dtype, T, ...)                                                                \
  [&]() -> ::opforge::Status {                                                                                       \
    switch (dtype) {                                                                                                 \
      case ::opforge::DType::kFloat32: {                                                                             \
        using T = float;                                                                                             \
        return __VA_ARGS__();                                                                                        \
      }                                                                                                              \
      case ::opforge::DType::kFloat16: {                                                                             \
        using T = __half;                                                                                            \
        return __VA_ARGS__();                                                                                        \
      }                                                                                                              \
      case ::opforge::DType::kBFloat16: {                                                                            \
        using T = __nv_bfloat16;                                                                                     \
        return __VA_ARGS__();                                                                                        \
      }                                                                                                              \
      default:                                                                                                       \
        return ::opforge::Status::error(::opforge::Status::kUnsupportedDType, "dtype not supported by this kernel"); \
    }                                                                                                                \
  }()
