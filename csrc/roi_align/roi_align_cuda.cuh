// CUDA pieces shared by opforge::roi_align and opforge::roi_align_backward (include from .cu files only).
//
// Layout: the features (forward) or the gradient accumulator (backward) live channels-last in the workspace,
// [N][H*W][Cp] with Cp = C rounded up to 8, so the channels of one pixel start 16-byte aligned and a bilinear
// corner of a sample is one contiguous run of channels. A block owns one roi and one chunk of channels
// (kLanes lanes x one 16-byte pack each: 64 float32 or 128 float16/bfloat16 channels); its threads are groups of
// kLanes lanes, each group taking bins in turn, so every sample's corner is read (or accumulated) by a group
// as kLanes consecutive 16-byte packs. The sample positions and weights are computed by each lane (a few
// dozen flops next to four 16-byte memory accesses, and no barrier).
//
// A roi whose batch index is not an integer in [0, N) cannot raise an error from the device: it is given no
// sample (zeros in the forward, no gradient in the backward), and nothing is read or written for it.
#pragma once

#include "opforge/kernel_cuda.cuh"
#include "roi_align/roi_align.h"

namespace opforge_kernels {
namespace opforge {
namespace roi_align {
namespace cuda_common {

using ::opforge::cuda::from_float;
using ::opforge::cuda::Pack;
using ::opforge::cuda::to_float;

constexpr int kLanes = 16;         // lanes per group: one 16-byte pack of channels each
constexpr int kChannelAlign = 8;   // Cp = C rounded up to this (a pack of any of the three dtypes divides it)
constexpr int kMaxThreads = 512;
constexpr int kTile = 32;          // transpose tile

inline int64_t padded_channels(int64_t c) { return (c + kChannelAlign - 1) / kChannelAlign * kChannelAlign; }

// The block shape for one (roi, channel chunk): lanes per group (fewer than kLanes when Cp is small) and
// groups, as many as keep the rounds over the bins balanced.
struct BlockShape {
  int lanes, groups;
  int64_t chunk_channels, chunks;
};

template <typename T>
inline BlockShape block_shape(const detail::Params& p) {
  constexpr int V = Pack<T>::kSize;
  BlockShape s;
  const int64_t packs = padded_channels(p.channels) / V;
  s.lanes = packs < kLanes ? static_cast<int>(packs) : kLanes;
  const int64_t bins = p.bins(), max_groups = kMaxThreads / s.lanes;
  const int64_t rounds = (bins + max_groups - 1) / max_groups;
  s.groups = static_cast<int>((bins + rounds - 1) / rounds);
  s.chunk_channels = static_cast<int64_t>(s.lanes) * V;
  s.chunks = (p.channels + s.chunk_channels - 1) / s.chunk_channels;
  return s;
}

// The roi's geometry, with no sample when its batch index is invalid.
__device__ __forceinline__ detail::Roi load_roi(const float* r, const detail::Params& p) {
  detail::Roi g = detail::roi_geometry(r, p);
  if (!detail::batch_index_ok(r[0], p.batch)) {
    g.batch = 0;
    g.grid_h = g.grid_w = 0;
  }
  return g;
}

template <typename T>
__device__ __forceinline__ void load_roi_row(const T* __restrict__ rois, int64_t k, float* r) {
#pragma unroll
  for (int i = 0; i < 5; ++i) r[i] = to_float(rois[k * 5 + i]);
}

// src [N][C][HW] (T) -> dst [N][HW][Cp] (U), channels C..Cp-1 zero. Grid (HW tiles, Cp tiles, z over images).
template <typename T, typename U>
__global__ void to_channels_last(const T* __restrict__ src, U* __restrict__ dst, int64_t n_images, int64_t C,
                                 int64_t Cp, int64_t HW) {
  __shared__ float t[kTile][kTile + 1];  // t[channel][pixel]
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * kTile, c0 = static_cast<int64_t>(blockIdx.y) * kTile;
  for (int64_t n = blockIdx.z; n < n_images; n += gridDim.z) {
    const T* s = src + n * C * HW;
    U* d = dst + n * HW * Cp;
    for (int i = threadIdx.y; i < kTile; i += blockDim.y) {  // read rows of channels, coalesced over pixels
      const int64_t c = c0 + i, px = p0 + threadIdx.x;
      t[i][threadIdx.x] = (c < C && px < HW) ? to_float(s[c * HW + px]) : 0.0f;
    }
    __syncthreads();
    for (int i = threadIdx.y; i < kTile; i += blockDim.y) {  // write rows of pixels, coalesced over channels
      const int64_t px = p0 + i, c = c0 + threadIdx.x;
      if (px < HW && c < Cp) d[px * Cp + c] = from_float<U>(t[threadIdx.x][i]);
    }
    __syncthreads();
  }
}

// src [N][HW][Cp] (float) -> dst [N][C][HW] (T).
template <typename T>
__global__ void from_channels_last(const float* __restrict__ src, T* __restrict__ dst, int64_t n_images, int64_t C,
                                   int64_t Cp, int64_t HW) {
  __shared__ float t[kTile][kTile + 1];  // t[pixel][channel]
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * kTile, c0 = static_cast<int64_t>(blockIdx.y) * kTile;
  for (int64_t n = blockIdx.z; n < n_images; n += gridDim.z) {
    const float* s = src + n * HW * Cp;
    T* d = dst + n * C * HW;
    for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
      const int64_t px = p0 + i, c = c0 + threadIdx.x;
      t[i][threadIdx.x] = (px < HW && c < C) ? s[px * Cp + c] : 0.0f;
    }
    __syncthreads();
    for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
      const int64_t c = c0 + i, px = p0 + threadIdx.x;
      if (c < C && px < HW) d[c * HW + px] = from_float<T>(t[threadIdx.x][i]);
    }
    __syncthreads();
  }
}

// Grid of the transposes: tiles over pixels and (padded) channels, images folded into z.
inline dim3 transpose_grid(int64_t n_images, int64_t Cp, int64_t HW) {
  const int64_t z = n_images < 65535 ? n_images : 65535;
  return dim3(static_cast<unsigned>((HW + kTile - 1) / kTile), static_cast<unsigned>((Cp + kTile - 1) / kTile),
              static_cast<unsigned>(z > 0 ? z : 1));
}

inline char* align16(void* p) { return reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(p) + 15) / 16 * 16); }

}  // namespace cuda_common
}  // namespace roi_align
}  // namespace opforge
}  // namespace opforge_kernels
