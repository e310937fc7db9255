#include "rms_norm.h"

#include "opforge/kernel_cuda.cuh"

#include <cstdint>

namespace opforge_kernels {
namespace opforge {
namespace rms_norm {
namespace {

constexpr int kWarp = 32;
// The looping kernel's block size cap. 512 rather than 1024: a 1024-thread block needing more than 32
// registers a thread (float16 took 40 on sm_90) leaves one block per SM, whose load/barrier/store phases
// then never overlap with another block's (the float16 4096x8192 case ran at 52% of copy bandwidth).
constexpr int kMaxThreads = 512;
// Rows of at most this many packs/elements (4 per lane) go one per warp, kRowsPerBlock warps a block.
constexpr int64_t kWarpRowLimit = 4 * kWarp;
constexpr unsigned kRowsPerBlock = 8;
// The register kernel asks ptxas for at least this many resident threads per SM (half of sm_90's 2048),
// i.e. at most 64 registers a thread: with 4 packs (64 bytes) in flight per thread that is >= 64 KB of
// loads in flight per SM, and the bfloat16 variants otherwise took up to 94 registers (25% occupancy).
constexpr int kMinThreadsPerSm = 1024;
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
__global__ void rms_norm_kernel(const T* x, const T* __restrict__ w, T* y, int64_t rows, int64_t cols, float eps) {
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

// The fast path for vectorised rows of up to 4 * 512 packs (float16: 16384 cols, float32: 8192): each of
// kRowThreads threads of a row keeps its kPacks packs in registers from the sum of squares to the scaling,
// so x is read from memory once (the looping kernel above reads it twice), and issues all kPacks 16-byte
// loads before using any, so a thread has kPacks * 16 bytes in flight rather than 16. kRowThreads == 32:
// one warp a row, kRowsPerBlock rows a block, no barrier; otherwise one row a block. Blocks stay at
// <= 512 threads (__launch_bounds__ caps the registers to match), so several fit on an SM and one block's
// reduction overlaps another's loads.
template <int kRowThreads>
constexpr int kBlockThreads = kRowThreads == kWarp ? kWarp * kRowsPerBlock : kRowThreads;

template <typename T, int kRowThreads, int kPacks>
__global__ void __launch_bounds__(kBlockThreads<kRowThreads>, kMinThreadsPerSm / kBlockThreads<kRowThreads>)
    rms_norm_rows_in_registers(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int64_t rows,
                               int64_t packs_per_row, int64_t cols, float eps) {
  constexpr bool kWarpPerRow = kRowThreads == kWarp;
  constexpr int kVec = Pack<T>::kSize;
  __shared__ float warp_sums[kWarpPerRow ? 1 : kRowThreads / kWarp];
  __shared__ float inv_shared;
  const int64_t rows_per_block = kWarpPerRow ? kRowsPerBlock : 1;
  const int64_t row_stride = static_cast<int64_t>(gridDim.x) * rows_per_block;
  const Pack<T>* wp = reinterpret_cast<const Pack<T>*>(w);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * rows_per_block + threadIdx.y; row < rows; row += row_stride) {
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(x) + row * packs_per_row;
    Pack<T>* yp = reinterpret_cast<Pack<T>*>(y) + row * packs_per_row;

    Pack<T> v[kPacks];
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      const int64_t p = threadIdx.x + k * kRowThreads;
      if (p < packs_per_row) v[k] = xp[p];
    }
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      if (threadIdx.x + k * kRowThreads < packs_per_row) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          const float f = to_float(v[k].v[e]);
          ss += f * f;
        }
      }
    }
    float inv;
    if constexpr (kWarpPerRow) {
      inv = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(cols) + eps);  // every lane has the total
    } else {
      ss = block_sum(ss, warp_sums);
      if (threadIdx.x == 0) inv_shared = 1.0f / sqrtf(ss / static_cast<float>(cols) + eps);
      __syncthreads();  // as in rms_norm_kernel: publishes inv_shared and fences warp_sums/inv_shared reuse
      inv = inv_shared;
    }
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      const int64_t p = threadIdx.x + k * kRowThreads;
      if (p < packs_per_row) {
        const Pack<T> wv = wp[p];
        Pack<T> out;
#pragma unroll
        for (int e = 0; e < kVec; ++e) out.v[e] = from_float<T>(to_float(v[k].v[e]) * inv * to_float(wv.v[e]));
        yp[p] = out;
      }
    }
  }
}

template <typename T, int kRowThreads, int kPacks>
void launch_rows_in_registers(const T* x, const T* w, T* y, int64_t rows, int64_t packs_per_row, int64_t cols,
                              float eps, cudaStream_t stream) {
  const dim3 block = kRowThreads == kWarp ? dim3(kWarp, kRowsPerBlock) : dim3(kRowThreads);
  const int64_t blocks_needed = (rows + block.y - 1) / block.y;
  const unsigned blocks = static_cast<unsigned>(blocks_needed < kMaxBlocks ? blocks_needed : kMaxBlocks);
  rms_norm_rows_in_registers<T, kRowThreads, kPacks>
      <<<blocks, block, 0, stream>>>(x, w, y, rows, packs_per_row, cols, eps);
}

// Picks the register kernel's shape for a row of `packs` packs: 64 bytes (4 packs) in flight per thread
// wherever the row is long enough, and 128-512 threads a row. Returns false past 4 * 512 packs.
template <typename T>
bool launch_vectorized(const T* x, const T* w, T* y, int64_t rows, int64_t packs, int64_t cols, float eps,
                       cudaStream_t stream) {
  if (packs <= 32)
    launch_rows_in_registers<T, 32, 1>(x, w, y, rows, packs, cols, eps, stream);
  else if (packs <= 64)
    launch_rows_in_registers<T, 32, 2>(x, w, y, rows, packs, cols, eps, stream);
  else if (packs <= 128)
    launch_rows_in_registers<T, 32, 4>(x, w, y, rows, packs, cols, eps, stream);
  else if (packs <= 256)
    launch_rows_in_registers<T, 128, 2>(x, w, y, rows, packs, cols, eps, stream);
  else if (packs <= 512)
    launch_rows_in_registers<T, 128, 4>(x, w, y, rows, packs, cols, eps, stream);
  else if (packs <= 1024)
    launch_rows_in_registers<T, 256, 4>(x, w, y, rows, packs, cols, eps, stream);
  else if (packs <= 2048)
    launch_rows_in_registers<T, 512, 4>(x, w, y, rows, packs, cols, eps, stream);
  else
    return false;  // 8 packs a thread would spill (bfloat16 at the 64-register cap)
  return true;
}

template <typename T>
void launch(const ::opforge::TensorView& x, const ::opforge::TensorView& weight, const ::opforge::TensorView& y,
            int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  const T* xp = x.ptr<const T>();
  const T* wp = weight.ptr<const T>();
  T* yp = y.ptr<T>();
  constexpr int kVec = Pack<T>::kSize;
  // Row r starts at base + r * cols elements, so aligned bases plus cols % kVec == 0 align every row.
  const bool vectorized = cols % kVec == 0 && ::opforge::cuda::pack_aligned<T>(xp) &&
                          ::opforge::cuda::pack_aligned<T>(wp) && ::opforge::cuda::pack_aligned<T>(yp);
  const int64_t per_row = vectorized ? cols / kVec : cols;
  if (vectorized && launch_vectorized(xp, wp, yp, rows, per_row, cols, eps, stream)) return;
  // Misaligned views and rows too long for registers: the looping kernel.
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
}  // namespace rms_norm
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, rms_norm) {
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
