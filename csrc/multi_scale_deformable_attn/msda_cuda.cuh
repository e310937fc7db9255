// CUDA helpers shared by the forward and backward kernels of multi_scale_deformable_attn.
//
// Work layout (both kernels): a *group* of G lanes (G a power of two <= 32, lanes of one warp) owns one
// (n, q, m) row; lane j owns channels [c0 + j*VEC, c0 + (j+1)*VEC) of each pass c0 = 0, G*VEC, ... over D, so a
// corner's D contiguous channels are read by the group in one coalesced run (value is [N, S, M, D]).
// The L*P points of a row are located G at a time, lane j locating point j of the batch (its location, level
// and attention weight read once), then broadcast to the group with shuffles. Loop bounds are uniform over a
// warp (rows are assigned per warp), so every shuffle has all 32 lanes present.
#pragma once

#include <cstdint>
#include <cstdlib>

#include "multi_scale_deformable_attn/multi_scale_deformable_attn.h"
#include "opforge/kernel_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace multi_scale_deformable_attn {
namespace cuda_detail {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

// Sizes as the kernels use them (check_dims bounds S*M*D < 2^31 and L*P < 2^24).
struct Params {
  int64_t rows;  // N * Lq * M
  int32_t S, M, D, Lq, L, P, LP, MD;
  int32_t G, log2G;  // lanes per row
};

template <int kBytes> struct RawOf;
template <> struct RawOf<2> { using type = unsigned short; };
template <> struct RawOf<4> { using type = unsigned int; };
template <> struct RawOf<8> { using type = uint2; };
template <> struct RawOf<16> { using type = uint4; };

// 32-bit word j of a raw vector (register moves only: no reinterpretation through local memory).
__device__ __forceinline__ unsigned word(unsigned short r, int) { return r; }
__device__ __forceinline__ unsigned word(unsigned r, int) { return r; }
__device__ __forceinline__ unsigned word(uint2 r, int j) { return j == 0 ? r.x : r.y; }
__device__ __forceinline__ unsigned word(uint4 r, int j) { return j == 0 ? r.x : j == 1 ? r.y : j == 2 ? r.z : r.w; }

template <typename R> __device__ __forceinline__ R from_words(const unsigned (&w)[4]);
template <> __device__ __forceinline__ unsigned short from_words<unsigned short>(const unsigned (&w)[4]) {
  return static_cast<unsigned short>(w[0]);
}
template <> __device__ __forceinline__ unsigned from_words<unsigned>(const unsigned (&w)[4]) { return w[0]; }
template <> __device__ __forceinline__ uint2 from_words<uint2>(const unsigned (&w)[4]) {
  return make_uint2(w[0], w[1]);
}
template <> __device__ __forceinline__ uint4 from_words<uint4>(const unsigned (&w)[4]) {
  return make_uint4(w[0], w[1], w[2], w[3]);
}

template <typename T> __device__ __forceinline__ float half_bits_to_float(unsigned b);
template <> __device__ __forceinline__ float half_bits_to_float<__half>(unsigned b) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(b)));
}
template <> __device__ __forceinline__ float half_bits_to_float<__nv_bfloat16>(unsigned b) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(b)));
}
template <typename T> __device__ __forceinline__ unsigned float_to_half_bits(float v);
template <> __device__ __forceinline__ unsigned float_to_half_bits<__half>(float v) {
  return __half_as_ushort(__float2half_rn(v));
}
template <> __device__ __forceinline__ unsigned float_to_half_bits<__nv_bfloat16>(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// VEC consecutive elements in one load (the pointer is aligned to VEC * sizeof(T): the launcher checks).
template <typename T, int VEC>
__device__ __forceinline__ void load_vec(const T* __restrict__ p, float (&out)[VEC]) {
  using R = typename RawOf<VEC * sizeof(T)>::type;
  const R raw = __ldg(reinterpret_cast<const R*>(p));
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    if constexpr (sizeof(T) == 4) {
      out[i] = __uint_as_float(word(raw, i));
    } else {
      const unsigned w = word(raw, i >> 1);
      out[i] = half_bits_to_float<T>((i & 1) ? (w >> 16) : (w & 0xffffu));
    }
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void store_vec(T* __restrict__ p, const float (&in)[VEC]) {
  using R = typename RawOf<VEC * sizeof(T)>::type;
  unsigned w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    if constexpr (sizeof(T) == 4)
      w[i] = __float_as_uint(in[i]);
    else
      w[i >> 1] |= float_to_half_bits<T>(in[i]) << (16 * (i & 1));
  }
  *reinterpret_cast<R*>(p) = from_words<R>(w);
}

// float32 atomic adds of VEC consecutive floats (aligned to VEC * 4 bytes up to 16): one vector reduction per
// 16 bytes on sm_90+, scalar atomics before.
template <int VEC>
__device__ __forceinline__ void atomic_add_vec(float* p, const float (&v)[VEC]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr bool kVector = VEC % 4 == 0 || VEC == 2;
#else
  constexpr bool kVector = false;
#endif
  if constexpr (kVector && VEC % 4 == 0) {
#pragma unroll
    for (int i = 0; i < VEC; i += 4)
      atomicAdd(reinterpret_cast<float4*>(p + i), make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]));
  } else if constexpr (kVector && VEC == 2) {
    atomicAdd(reinterpret_cast<float2*>(p), make_float2(v[0], v[1]));
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) atomicAdd(p + i, v[i]);
  }
}

// The point a lane located, as broadcast to its group.
struct SharedPoint {
  int32_t row, w, flags;
  float lx, ly, a;
};

__device__ __forceinline__ SharedPoint broadcast(const detail::Point& p, float a, int src, int width) {
  SharedPoint s;
  s.row = __shfl_sync(kFullMask, p.row, src, width);
  s.w = __shfl_sync(kFullMask, p.w, src, width);
  s.flags = __shfl_sync(kFullMask, p.flags, src, width);
  s.lx = __shfl_sync(kFullMask, p.lx, src, width);
  s.ly = __shfl_sync(kFullMask, p.ly, src, width);
  s.a = __shfl_sync(kFullMask, a, src, width);
  return s;
}

// Level l as read on the device, bounded (detail::bound_level) so no content of the level tensors makes a
// corner row leave [0, S).
__device__ __forceinline__ detail::Level read_level(const int64_t* __restrict__ shapes,
                                                    const int64_t* __restrict__ starts, int32_t l, int32_t S) {
  return detail::bound_level(__ldg(shapes + 2 * l), __ldg(shapes + 2 * l + 1), __ldg(starts + l), S);
}

inline int log2_of(int g) {
  int k = 0;
  while ((1 << k) < g) ++k;
  return k;
}

// Lanes per row for D channels of VEC: the next power of two of D / VEC, at most 32.
inline int group_for(int D, int vec) {
  const int chunks = (D + vec - 1) / vec;
  int g = 1;
  while (g < chunks && g < 32) g <<= 1;
  return g;
}

inline void set_group(Params* p, int vec) {
  p->G = group_for(p->D, vec);
  p->log2G = log2_of(p->G);
}

// Channels per lane (VEC): the widest load that `fits` (D and the pointers' alignment) and still gives the
// launch kEnoughThreads threads; else the narrowest that fits (the most lanes). Wide loads at decoder sizes
// (N * Lq * M of a few thousand rows) left most SMs idle: on the H100 (2026-12-06) float16 at Lq = 300, with
// 16-byte loads and 4 lanes per row, ran 2x slower than float32's 8 lanes. OPFORGE_MSDA_VEC=1|2|4|8 forces a
// width where it fits (for measurements and for tests of every width).
constexpr int64_t kEnoughThreads = int64_t{1} << 16;

template <typename T, typename Fits>
inline int pick_vec(const Params& p, Fits fits) {
  constexpr int kWide = 16 / static_cast<int>(sizeof(T));
  if (const char* forced = std::getenv("OPFORGE_MSDA_VEC")) {
    const int f = std::atoi(forced);
    if ((f == 1 || f == 2 || f == 4 || f == 8) && f <= kWide && fits(f)) return f;
  }
  int chosen = 1;
  for (int vec = kWide; vec >= 1; vec /= 2) {
    if (!fits(vec)) continue;
    chosen = vec;
    if (p.rows * group_for(p.D, vec) >= kEnoughThreads) break;
  }
  return chosen;
}

inline Params make_params(const detail::Dims& g) {
  Params p;
  p.rows = g.N * g.Lq * g.M;
  p.S = static_cast<int32_t>(g.S);
  p.M = static_cast<int32_t>(g.M);
  p.D = static_cast<int32_t>(g.D);
  p.Lq = static_cast<int32_t>(g.Lq);
  p.L = static_cast<int32_t>(g.L);
  p.P = static_cast<int32_t>(g.P);
  p.LP = static_cast<int32_t>(g.L * g.P);
  p.MD = static_cast<int32_t>(g.M * g.D);
  p.G = 1;
  p.log2G = 0;
  return p;
}

inline unsigned grid_for(const Params& p) {
  const int64_t rows_per_block = kThreads / p.G;
  const int64_t blocks = (p.rows + rows_per_block - 1) / rows_per_block;
  return static_cast<unsigned>(blocks < (int64_t{1} << 20) ? (blocks > 0 ? blocks : 1) : (int64_t{1} << 20));
}

template <typename T>
inline bool aligned_to(const void* ptr, int vec) {
  return reinterpret_cast<uintptr_t>(ptr) % (static_cast<uintptr_t>(vec) * sizeof(T)) == 0;
}

}  // namespace cuda_detail
}  // namespace multi_scale_deformable_attn
}  // namespace opforge
}  // namespace opforge_kernels
