#include "layer_norm.h"

#include "opforge/kernel_cuda.cuh"

#include <cstdint>

// The structure of rms_norm_cuda.cu (read it for the reasoning behind the launch shapes), with two row
// reductions instead of one: the mean, then the sum of squared deviations from it. The bias is a runtime
// branch (a null pointer when absent): it is uniform over the launch, so it costs no divergence and halves
// the number of kernel instantiations.
namespace opforge_kernels {
namespace opforge {
namespace layer_norm {
namespace {

constexpr int kWarp = 32;
// The looping kernel's block size cap (see rms_norm_cuda.cu: 1024-thread blocks leave one block per SM).
constexpr int kMaxThreads = 512;
// Rows of at most this many packs/elements (4 per lane) go one per warp, kRowsPerBlock warps a block.
constexpr int64_t kWarpRowLimit = 4 * kWarp;
constexpr unsigned kRowsPerBlock = 8;
// The register kernel asks ptxas for at least this many resident threads per SM (at most 64 registers a
// thread), as rms_norm's does.
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

// The total of v over the row's threads, in every one of them. One warp a row: the xor butterfly leaves it
// in every lane, no barrier. One block a row: block_sum, then thread 0 publishes it through `slot`.
// Reuse is safe with one slot per reduction of a row (mean, then variance): a row's reads of warp_sums
// happen before the barrier that publishes its slot, and a slot's next write (the next row's same
// reduction) comes after the intervening reduction's barrier, which every thread reaches after its read.
__device__ __forceinline__ float row_total(float v, bool warp_per_row, float* warp_sums, float* slot) {
  if (warp_per_row) return warp_sum(v);
  v = block_sum(v, warp_sums);
  if (threadIdx.x == 0) *slot = v;
  __syncthreads();
  return *slot;
}

__device__ __forceinline__ float inverse_std(float sum_squared_deviations, int64_t cols, float eps) {
  return 1.0f / sqrtf(sum_squared_deviations / static_cast<float>(cols) + eps);  // as the CPU kernel rounds it
}

// Short rows get one warp each (blockDim = 32 x kRowsPerBlock), long rows one block each (blockDim.y == 1).
// x is read three times (sum, squared deviations, output); a row is at most a few hundred KB, so the later
// reads mostly hit L1/L2. kVectorized requires every row start, the weight and the bias (if any) to be
// 16-byte aligned and cols to be a multiple of the pack size (checked on the host). b is null without bias.
template <typename T, bool kVectorized>
__global__ void layer_norm_kernel(const T* x, const T* __restrict__ w, const T* __restrict__ b, T* y, int64_t rows,
                                  int64_t cols, float eps) {
  __shared__ float warp_sums[kMaxThreads / kWarp];
  __shared__ float mean_slot, var_slot;
  constexpr int kVec = Pack<T>::kSize;
  const bool warp_per_row = blockDim.x == kWarp;
  const bool has_bias = b != nullptr;
  const int64_t row_stride = static_cast<int64_t>(gridDim.x) * blockDim.y;
  const int64_t first_row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  for (int64_t row = first_row; row < rows; row += row_stride) {
    const T* xr = x + row * cols;
    T* yr = y + row * cols;

    float s = 0.0f;
    if (kVectorized) {
      const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
      for (int64_t p = threadIdx.x; p < cols / kVec; p += blockDim.x) {
        const Pack<T> v = xp[p];
#pragma unroll
        for (int k = 0; k < kVec; ++k) s += to_float(v.v[k]);
      }
    } else {
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += to_float(xr[j]);
    }
    const float mean = row_total(s, warp_per_row, warp_sums, &mean_slot) / static_cast<float>(cols);

    float ss = 0.0f;
    if (kVectorized) {
      const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
      for (int64_t p = threadIdx.x; p < cols / kVec; p += blockDim.x) {
        const Pack<T> v = xp[p];
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          const float d = to_float(v.v[k]) - mean;
          ss += d * d;
        }
      }
    } else {
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        const float d = to_float(xr[j]) - mean;
        ss += d * d;
      }
    }
    const float rstd = inverse_std(row_total(ss, warp_per_row, warp_sums, &var_slot), cols, eps);

    if (kVectorized) {
      const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
      const Pack<T>* wp = reinterpret_cast<const Pack<T>*>(w);
      const Pack<T>* bp = reinterpret_cast<const Pack<T>*>(b);
      Pack<T>* yp = reinterpret_cast<Pack<T>*>(yr);
      for (int64_t p = threadIdx.x; p < cols / kVec; p += blockDim.x) {
        Pack<T> v = xp[p];
        const Pack<T> wv = wp[p];
        if (has_bias) {
          const Pack<T> bv = bp[p];
#pragma unroll
          for (int k = 0; k < kVec; ++k)
            v.v[k] = from_float<T>((to_float(v.v[k]) - mean) * rstd * to_float(wv.v[k]) + to_float(bv.v[k]));
        } else {
#pragma unroll
          for (int k = 0; k < kVec; ++k) v.v[k] = from_float<T>((to_float(v.v[k]) - mean) * rstd * to_float(wv.v[k]));
        }
        yp[p] = v;
      }
    } else {
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        const float o = (to_float(xr[j]) - mean) * rstd * to_float(w[j]);
        yr[j] = from_float<T>(has_bias ? o + to_float(b[j]) : o);
      }
    }
  }
}

// The fast path for vectorised rows of up to 4 * 512 packs (float16: 16384 cols, float32: 8192): each of
// kRowThreads threads of a row keeps its kPacks packs in registers through both reductions and the output,
// so x is read from memory once and the variance is still the exact second pass over (x - mean).
// kRowThreads == 32: one warp a row, kRowsPerBlock rows a block, no barrier; otherwise one row a block.
template <int kRowThreads>
constexpr int kBlockThreads = kRowThreads == kWarp ? kWarp * kRowsPerBlock : kRowThreads;

template <typename T, int kRowThreads, int kPacks>
__global__ void __launch_bounds__(kBlockThreads<kRowThreads>, kMinThreadsPerSm / kBlockThreads<kRowThreads>)
    layer_norm_rows_in_registers(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                 T* __restrict__ y, int64_t rows, int64_t packs_per_row, int64_t cols, float eps) {
  constexpr bool kWarpPerRow = kRowThreads == kWarp;
  constexpr int kVec = Pack<T>::kSize;
  __shared__ float warp_sums[kWarpPerRow ? 1 : kRowThreads / kWarp];
  __shared__ float mean_slot, var_slot;
  const bool has_bias = b != nullptr;
  const int64_t rows_per_block = kWarpPerRow ? kRowsPerBlock : 1;
  const int64_t row_stride = static_cast<int64_t>(gridDim.x) * rows_per_block;
  const Pack<T>* wp = reinterpret_cast<const Pack<T>*>(w);
  const Pack<T>* bp = reinterpret_cast<const Pack<T>*>(b);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * rows_per_block + threadIdx.y; row < rows; row += row_stride) {
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(x) + row * packs_per_row;
    Pack<T>* yp = reinterpret_cast<Pack<T>*>(y) + row * packs_per_row;

    Pack<T> v[kPacks];
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      const int64_t p = threadIdx.x + k * kRowThreads;
      if (p < packs_per_row) v[k] = xp[p];
    }
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      if (threadIdx.x + k * kRowThreads < packs_per_row) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) s += to_float(v[k].v[e]);
      }
    }
    const float mean = row_total(s, kWarpPerRow, warp_sums, &mean_slot) / static_cast<float>(cols);
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      if (threadIdx.x + k * kRowThreads < packs_per_row) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          const float d = to_float(v[k].v[e]) - mean;
          ss += d * d;
        }
      }
    }
    const float rstd = inverse_std(row_total(ss, kWarpPerRow, warp_sums, &var_slot), cols, eps);
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      const int64_t p = threadIdx.x + k * kRowThreads;
      if (p < packs_per_row) {
        const Pack<T> wv = wp[p];
        Pack<T> out;
        if (has_bias) {
          const Pack<T> bv = bp[p];
#pragma unroll
          for (int e = 0; e < kVec; ++e)
            out.v[e] = from_float<T>((to_float(v[k].v[e]) - mean) * rstd * to_float(wv.v[e]) + to_float(bv.v[e]));
        } else {
#pragma unroll
          for (int e = 0; e < kVec; ++e)
            out.v[e] = from_float<T>((to_float(v[k].v[e]) - mean) * rstd * to_float(wv.v[e]));
        }
        yp[p] = out;
      }
    }
  }
}

template <typename T, int kRowThreads, int kPacks>
void launch_rows_in_registers(const T* x, const T* w, const T* b, T* y, int64_t rows, int64_t packs_per_row,
                              int64_t cols, float eps, cudaStream_t stream) {
  const dim3 block = kRowThreads == kWarp ? dim3(kWarp, kRowsPerBlock) : dim3(kRowThreads);
  const int64_t blocks_needed = (rows + block.y - 1) / block.y;
  const unsigned blocks = static_cast<unsigned>(blocks_needed < kMaxBlocks ? blocks_needed : kMaxBlocks);
  layer_norm_rows_in_registers<T, kRowThreads, kPacks>
      <<<blocks, block, 0, stream>>>(x, w, b, y, rows, packs_per_row, cols, eps);
}

// The register kernel's shape for a row of `packs` packs (as rms_norm's). Returns false past 4 * 512 packs.
template <typename T>
bool launch_vectorized(const T* x, const T* w, const T* b, T* y, int64_t rows, int64_t packs, int64_t cols, float eps,
                       cudaStream_t stream) {
  if (packs <= 32)
    launch_rows_in_registers<T, 32, 1>(x, w, b, y, rows, packs, cols, eps, stream);
  else if (packs <= 64)
    launch_rows_in_registers<T, 32, 2>(x, w, b, y, rows, packs, cols, eps, stream);
  else if (packs <= 128)
    launch_rows_in_registers<T, 32, 4>(x, w, b, y, rows, packs, cols, eps, stream);
  else if (packs <= 256)
    launch_rows_in_registers<T, 128, 2>(x, w, b, y, rows, packs, cols, eps, stream);
  else if (packs <= 512)
    launch_rows_in_registers<T, 128, 4>(x, w, b, y, rows, packs, cols, eps, stream);
  else if (packs <= 1024)
    launch_rows_in_registers<T, 256, 4>(x, w, b, y, rows, packs, cols, eps, stream);
  else if (packs <= 2048)
    launch_rows_in_registers<T, 512, 4>(x, w, b, y, rows, packs, cols, eps, stream);
  else
    return false;
  return true;
}

template <typename T>
void launch(const ::opforge::TensorView& x, const ::opforge::TensorView& weight, const ::opforge::TensorView* bias,
            const ::opforge::TensorView& y, int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  const T* xp = x.ptr<const T>();
  const T* wp = weight.ptr<const T>();
  const T* bp = bias != nullptr ? bias->ptr<const T>() : nullptr;
  T* yp = y.ptr<T>();
  constexpr int kVec = Pack<T>::kSize;
  // Row r starts at base + r * cols elements, so aligned bases plus cols % kVec == 0 align every row.
  const bool vectorized = cols % kVec == 0 && ::opforge::cuda::pack_aligned<T>(xp) &&
                          ::opforge::cuda::pack_aligned<T>(wp) && ::opforge::cuda::pack_aligned<T>(yp) &&
                          (bp == nullptr || ::opforge::cuda::pack_aligned<T>(bp));
  const int64_t per_row = vectorized ? cols / kVec : cols;
  if (vectorized && launch_vectorized(xp, wp, bp, yp, rows, per_row, cols, eps, stream)) return;
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
    layer_norm_kernel<T, true><<<blocks, block, 0, stream>>>(xp, wp, bp, yp, rows, cols, eps);
  else
    layer_norm_kernel<T, false><<<blocks, block, 0, stream>>>(xp, wp, bp, yp, rows, cols, eps);
}

}  // namespace
}  // namespace layer_norm
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, layer_norm) {
  using ::opforge::Status;
  int64_t rows = 0, cols = 0;
  const Status st = detail::check_args(x, weight, bias, y, &rows, &cols);
  if (!st.is_ok()) return st;
  if (rows == 0) return Status::ok();
  const float e = static_cast<float>(eps);
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {
    launch<T>(x, weight, bias, y, rows, cols, e, ::opforge::cuda::stream(ctx));
    return ::opforge::cuda::launch_status("layer_norm: CUDA launch failed");
  });
}
