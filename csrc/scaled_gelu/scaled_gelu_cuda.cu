#include "scaled_gelu.h"

#include "gelu_math.h"
#include "opforge/kernel_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace scaled_gelu {
namespace {

constexpr int kThreads = 256;
// A grid-stride loop needs only enough blocks to fill the GPU; more would just add scheduling overhead.
constexpr int64_t kMaxBlocks = 4096;

using math::kErfMaxX;
using math::kErfP;
using math::kErfQ;
using math::kKappa;
using math::kSqrt2OverPi;

using ::opforge::cuda::from_float;
using ::opforge::cuda::Pack;
using ::opforge::cuda::to_float;

// c[K] + s * (c[K+1] + s * (...)).
template <int K = 0, int N>
__device__ __forceinline__ float horner(const float (&c)[N], float s) {
  if constexpr (K == N - 1)
    return c[K];
  else
    return fmaf(horner<K + 1>(c, s), s, c[K]);
}

// The exact form is the CPU kernel's formula (scaled_gelu_cpu.cpp, gelu_floats, says why each step is there),
// with the division by Q >= 1 as __fdividef (a reciprocal and a multiply, within 2 ulp for such Q): 6-9%
// faster than libm's erff at 2^24-2^26 half elements on the H100, where the kernel is close to compute-bound.
// The tanh form keeps libm's tanhf, which was 1-5% faster there than the rational
// (benchmarks/profile_scaled_gelu_cuda.py). Both are within 1.1e-6 of float64 on N(0, 9) inputs.
template <bool kTanh>
__device__ __forceinline__ float scaled_gelu(float v, float alpha) {
  if (kTanh) {
    // gelu(-inf) is its limit 0 (the formula gives -inf * 0 = NaN); gelu(+inf) = +inf; NaN stays NaN.
    const float g = v == -INFINITY ? 0.0f : 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + kKappa * v * v * v)));
    return alpha * g;
  }
  const float c = fminf(fmaxf(v, -kErfMaxX), kErfMaxX);  // fmaxf/fminf drop a NaN: c is finite
  float r = __fdividef(c * horner(kErfP, c * c), horner(kErfQ, c * c));
  r = v >= kErfMaxX ? 1.0f : fminf(fmaxf(r, -1.0f), 1.0f);
  const float h = 0.5f * alpha * v;  // a NaN v comes out here
  return v <= -kErfMaxX ? 0.0f : fmaf(h, r, h);  // gelu(-inf) = 0, its limit
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
    // One 16-byte pack per thread and iteration. Loading 4 before computing any was 6-10% slower on the H100
    // at 2^24-2^26 half elements (benchmarks/profile_scaled_gelu_cuda.py, --unroll): the kernel is close to
    // compute-bound there, and a thread that computes 32 elements before storing any delays its stores.
    for (int64_t i = tid; i < packs; i += stride) {
      Pack<T> v = xp[i];
#pragma unroll
      for (int k = 0; k < kVec; ++k) v.v[k] = from_float<T>(scaled_gelu<kTanh>(to_float(v.v[k]), alpha));
      yp[i] = v;
    }
    scalar_begin = packs * kVec;
  }
  for (int64_t i = scalar_begin + tid; i < n; i += stride)
    y[i] = from_float<T>(scaled_gelu<kTanh>(to_float(x[i]), alpha));
}

template <typename T>
void launch(const ::opforge::TensorView& x, const ::opforge::TensorView& y, int64_t n, float alpha, bool use_tanh,
            cudaStream_t stream) {
  const T* xp = x.ptr<const T>();
  T* yp = y.ptr<T>();
  constexpr int kVec = Pack<T>::kSize;
  const bool vectorized = ::opforge::cuda::pack_aligned<T>(xp) && ::opforge::cuda::pack_aligned<T>(yp);
  // Enough threads for one pack each (or one element each on the scalar path).
  const int64_t work = vectorized ? n / kVec + n % kVec : n;
  const int64_t blocks_needed = (work + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(blocks_needed < kMaxBlocks ? blocks_needed : kMaxBlocks);
  if (use_tanh)
    scaled_gelu_kernel<T, true><<<blocks, kThreads, 0, stream>>>(xp, yp, n, alpha, vectorized);
  else
    scaled_gelu_kernel<T, false><<<blocks, kThreads, 0, stream>>>(xp, yp, n, alpha, vectorized);
}

}  // namespace
}  // namespace scaled_gelu
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, scaled_gelu) {
  using ::opforge::Status;
  bool use_tanh = false;
  const Status st = detail::check_args(x, y, approximate, &use_tanh);
  if (!st.is_ok()) return st;
  const int64_t n = x.numel();
  if (n == 0) return Status::ok();
  const float a = static_cast<float>(alpha);
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {
    launch<T>(x, y, n, a, use_tanh, ::opforge::cuda::stream(ctx));
    return ::opforge::cuda::launch_status("scaled_gelu: CUDA launch failed");
  });
}
