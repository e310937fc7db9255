#include "rms_norm.h"

#include "opforge/kernel_cuda.cuh"

#include <cstdint>

namespace opforge_kernels {
namespace opforge {
namespace rms_norm {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxThreads = 1024;
// Rows of at most this many packs/elements (4 per lane) go one per warp, kRowsPerBlock warps a block.
constexpr int64_t kWarpRowLimit = 4 * kWarp;
constexpr unsigned kRowsPerBlock = 8;
constexpr int64_t kMaxBlocks = 0x7FFFFFFF;  // gridDim.x limit; larger row counts loop inside the kernel

using ::opforge::cuda::from_float;
using ::opforge::cuda::Pack;
using ::opforge::cuda::to_float;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

// Requires blockDim.y == 1 and blockDim.x a multiple of 32 (every lane in the full-mask shuffles exists).
// The result is valid in warp 0 only.
__device__ __forceinline__ float block_sum(float v, float* warp_sums) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) v = warp_sum(lane < static_cast<int>(blockDim.x / kWarp) ? warp_sums[lane] : 0.0f);
  return v;
}

// Short rows get one warp each (blockDim = 32 x kRowsPerBlock) so a block is not mostly idle threads and
// the sum needs no barrier; long rows get one block each (blockDim.y == 1). x is read twice (sum of
// squares, then scaling); a row is at most a few hundred KB, so the second read mostly hits L1/L2.
// kVectorized requires every row start and the weight to be 16-byte aligned and cols to be a multiple
// of the pack size (checked on the host).
template <typename T, bool kVectorized>
__global__ void rms_norm_kernel(const T* x, const T* __restrict__ w, T* y, int64_t rows, int64_t cols,
                                float eps) {
  __shared__ float warp_sums[kMaxThreads / kWarp];
  __shared__ float inv_shared;
  constexpr int kVec = Pack<T>::kSize;
  const bool warp_per_row = blockDim.x == kWarp;
  const int64_t row_stride = static_cast<int64_t>(gridDim.x) * blockDim.y;
  const int64_t first_row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  for (int64_t row = first_row; row < rows; row += row_stride) {
    const T* xr = x + row * cols;
    T* yr = y + row * cols;

    float ss = 0.0f;
    if (kVectorized) {
      const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
      for (int64_t p = threadIdx.x; p < cols / kVec; p += blockDim.x) {
        const Pack<T> v = xp[p];
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          const float f = to_float(v.v[k]);
          ss += f * f;
        }
      }
    } else {
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        const float f = to_float(xr[j]);
        ss += f * f;
      }
    }
    float inv;
    if (warp_per_row) {
      // The xor butterfly leaves the same total in every lane.
      inv = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(cols) + eps);
    } else {
      ss = block_sum(ss, warp_sums);
      if (threadIdx.x == 0) inv_shared = 1.0f / sqrtf(ss / static_cast<float>(cols) + eps);
      // Also orders this row's reads of warp_sums before the next row's writes to it, and every
      // thread's read of inv_shared below before thread 0 can overwrite it (after the next row's barrier).
      __syncthreads();
      inv = inv_shared;
    }

    if (kVectorized) {
      const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
      const Pack<T>* wp = reinterpret_cast<const Pack<T>*>(w);
      Pack<T>* yp = reinterpret_cast<Pack<T>*>(yr);
      for (int64_t p = threadIdx.x; p < cols / kVec; p += blockDim.x) {
        Pack<T> v = xp[p];
        const Pack<T> wv = wp[p];
#pragma unroll
        for (int k = 0; k < kVec; ++k) v.v[k] = from_float<T>(to_float(v.v[k]) * inv * to_float(wv.v[k]));
        yp[p] = v;
      }
    } else {
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        yr[j] = from_float<T>(to_float(xr[j]) * inv * to_float(w[j]));
    }
  }
}


template <typename T>
void launch(const ::opforge::TensorView& x, const ::opforge::TensorView& weight,
            const ::opforge::TensorView& y, int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  const T* xp = x.ptr<const T>();
  const T* wp = weight.ptr<const T>();
  T* yp = y.ptr<T>();
  constexpr int kVec = Pack<T>::kSize;
  // Row r starts at base + r * cols elements, so aligned bases plus cols % kVec == 0 align every row.
  const bool vectorized = cols % kVec == 0 && ::opforge::cuda::pack_aligned<T>(xp) &&
                          ::opforge::cuda::pack_aligned<T>(wp) && ::opforge::cuda::pack_aligned<T>(yp);
  const int64_t per_row = vectorized ? cols / kVec : cols;
  dim3 block;
  if (per_row <= kWarpRowLimit) {
    block = dim3(kWarp, kRowsPerBlock);
  } else {
    // About one pack/element per thread, rounded to whole warps for block_sum.
    const int64_t threads = (per_row + kWarp - 1) / kWarp * kWarp;
    block = dim3(static_cast<unsigned>(threads < kMaxThreads ? threads : kMaxThreads));
  }
  const int64_t blocks_needed = (rows + block.y - 1) / block.y;
  const unsigned blocks = static_cast<unsigned>(blocks_needed < kMaxBlocks ? blocks_needed : kMaxBlocks);
  if (vectorized)
    rms_norm_kernel<T, true><<<blocks, block, 0, stream>>>(xp, wp, yp, rows, cols, eps);
  else
    rms_norm_kernel<T, false><<<blocks, block, 0, stream>>>(xp, wp, yp, rows, cols, eps);
}

}  // namespace

::opforge::Status cuda(const ::opforge::TensorView& x, const ::opforge::TensorView& weight,
                       const ::opforge::TensorView& y, double eps, const ::opforge::DeviceContext& ctx) {
  using ::opforge::Status;
  int64_t rows = 0, cols = 0;
  const Status st = detail::check_args(x, weight, y, &rows, &cols);
  if (!st.is_ok()) return st;
  if (rows == 0) return Status::ok();
  const float e = static_cast<float>(eps);
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {
    launch<T>(x, weight, y, rows, cols, e, ::opforge::cuda::stream(ctx));
    return ::opforge::cuda::launch_status("rms_norm: CUDA launch failed");
  });
}

}  // namespace rms_norm
}  // namespace opforge
}  // namespace opforge_kernels
