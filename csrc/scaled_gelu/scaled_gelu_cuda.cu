#include "scaled_gelu.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace opforge_kernels {
namespace opforge {
namespace scaled_gelu {
namespace {

constexpr int kThreads = 256;
// A grid-stride loop needs only enough blocks to fill the GPU; more would just add scheduling overhead.
constexpr int64_t kMaxBlocks = 4096;

constexpr float kSqrt1_2 = 0.70710678118654752440f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kKappa = 0.044715f;

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

template <bool kTanh>
__device__ __forceinline__ float scaled_gelu(float v, float alpha) {
  const float g = kTanh ? 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + kKappa * v * v * v)))
                        : 0.5f * v * (1.0f + erff(v * kSqrt1_2));
  return alpha * g;
}

template <typename T, bool kTanh>
__global__ void scaled_gelu_kernel(const T* x, T* y, int64_t n, float alpha, bool vectorized) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t scalar_begin = 0;
  if (vectorized) {
    constexpr int kVec = Pack<T>::kSize;
    const int64_t packs = n / kVec;
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(x);
    Pack<T>* yp = reinterpret_cast<Pack<T>*>(y);
    for (int64_t p = tid; p < packs; p += stride) {
      Pack<T> v = xp[p];
#pragma unroll
      for (int k = 0; k < kVec; ++k) v.v[k] = from_float<T>(scaled_gelu<kTanh>(to_float(v.v[k]), alpha));
      yp[p] = v;
    }
    scalar_begin = packs * kVec;
  }
  for (int64_t i = scalar_begin + tid; i < n; i += stride)
    y[i] = from_float<T>(scaled_gelu<kTanh>(to_float(x[i]), alpha));
}

template <typename T>
void launch(const ::opforge::TensorView& x, const ::opforge::TensorView& y, int64_t n, float alpha,
            bool use_tanh, cudaStream_t stream) {
  const T* xp = x.ptr<const T>();
  T* yp = y.ptr<T>();
  constexpr int kVec = Pack<T>::kSize;
  const bool vectorized = reinterpret_cast<uintptr_t>(xp) % sizeof(Pack<T>) == 0 &&
                          reinterpret_cast<uintptr_t>(yp) % sizeof(Pack<T>) == 0;
  const int64_t work = vectorized ? n / kVec + n % kVec : n;
  const int64_t blocks_needed = (work + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(blocks_needed < kMaxBlocks ? blocks_needed : kMaxBlocks);
  if (use_tanh)
    scaled_gelu_kernel<T, true><<<blocks, kThreads, 0, stream>>>(xp, yp, n, alpha, vectorized);
  else
    scaled_gelu_kernel<T, false><<<blocks, kThreads, 0, stream>>>(xp, yp, n, alpha, vectorized);
}

}  // namespace

::opforge::Status cuda(const ::opforge::TensorView& x, const ::opforge::TensorView& y, double alpha,
                       ::opforge::StringView approximate, const ::opforge::DeviceContext& ctx) {
  using ::opforge::DType;
  using ::opforge::Status;
  bool use_tanh = false;
  const Status st = detail::check_args(x, y, approximate, &use_tanh);
  if (!st.is_ok()) return st;
  const int64_t n = x.numel();
  if (n == 0) return Status::ok();
  const float a = static_cast<float>(alpha);
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  switch (x.dtype) {
    case DType::kFloat32: launch<float>(x, y, n, a, use_tanh, stream); break;
    case DType::kFloat16: launch<__half>(x, y, n, a, use_tanh, stream); break;
    case DType::kBFloat16: launch<__nv_bfloat16>(x, y, n, a, use_tanh, stream); break;
    default: return Status::error(Status::kUnsupportedDType, "scaled_gelu: dtype not supported");
  }
  if (cudaGetLastError() != cudaSuccess)
    return Status::error(Status::kCudaError, "scaled_gelu: CUDA launch failed");
  return Status::ok();
}

}  // namespace scaled_gelu
}  // namespace opforge
}  // namespace opforge_kernels
