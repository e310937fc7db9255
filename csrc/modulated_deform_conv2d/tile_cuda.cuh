// Device code shared by the CUDA forward and backward kernels of modulated_deform_conv2d: one block works
// on kBN output pixels (flattened over batch and plane, n = b*P + p); for one kernel tap it locates the
// sampling positions of those pixels in every deformable group the block's channels touch (TileTaps), then
// fills [channels x kBN] tiles of the sampled column matrix from them (sample_column).
#pragma once

#include "modulated_deform_conv2d/modulated_deform_conv2d.h"
#include "opforge/kernel_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace modulated_deform_conv2d {
namespace tile {

using detail::Geometry;
using ::opforge::cuda::from_float;
using ::opforge::cuda::Pack;
using ::opforge::cuda::to_float;

constexpr int kBN = 64;         // pixels per block
constexpr int kMaxDgTouched = 4;  // deformable groups one convolution group may span on the tiled path

// Kernel arguments in one struct (plain values, passed by value).
struct Params {
  int64_t B, C, H, W, Cout, Cg, Coutg, kh, kw, K, OH, OW, P, groups, dg, Cd, sh, sw, ph, pw, dh, dw;
  int64_t N;  // B * P
};

inline Params params(const Geometry& g) {
  return Params{g.B, g.C,      g.H,  g.W,  g.Cout, g.Cg, g.Coutg, g.kh, g.kw, g.K,  g.OH,     g.OW,
                g.P, g.groups, g.dg, g.Cd, g.sh,   g.sw, g.ph,    g.pw, g.dh, g.dw, g.B * g.P};
}

// The deformable groups [first, last] that input channels [c_begin, c_end) of one convolution group touch.
__host__ __device__ inline int64_t first_dg(const Params& p, int64_t gi) { return gi * p.Cg / p.Cd; }
__host__ __device__ inline int64_t dg_count(const Params& p, int64_t gi) {
  return p.Cg == 0 ? 1 : ((gi + 1) * p.Cg - 1) / p.Cd - first_dg(p, gi) + 1;
}

// One tap's sampling positions for the block's pixels: corner plane indices (-1: outside the image),
// corner weights, the value a sample starts from (0, or NaN for a NaN position) and the mask; and, per
// pixel, the tap-independent positions computed once per block by columns() (no 64-bit division in the
// per-tap and per-element loops: they dominated the instruction count).
struct TileTaps {
  int idx[kMaxDgTouched][4][kBN];
  float w[kMaxDgTouched][4][kBN];
  float fill[kMaxDgTouched][kBN];
  float mask[kMaxDgTouched][kBN];
  int64_t xbase[kBN];  // b * C * H * W for the pixel, -1 past N
  int64_t obase[kBN];  // offset index of (b, deformable group 0, tap 0, dy) at the pixel
  int64_t mbase[kBN];  // mask index of (b, deformable group 0, tap 0) at the pixel
  int64_t ybase[kBN];  // y index of (b, output channel 0) at the pixel
  int oy[kBN], ox[kBN];
};

// Pixel columns: where each of the block's pixels lives (call once per block, before locate()).
__device__ inline void columns(const Params& p, int64_t n0, TileTaps* s) {
  for (int q = threadIdx.x; q < kBN; q += blockDim.x) {
    const int64_t n = n0 + q;
    const int64_t b = n / p.P, pix = n % p.P;
    s->xbase[q] = n < p.N ? b * p.C * p.H * p.W : -1;
    s->obase[q] = b * p.dg * 2 * p.K * p.P + pix;
    s->mbase[q] = b * p.dg * p.K * p.P + pix;
    s->ybase[q] = b * p.Cout * p.P + pix;
    s->oy[q] = static_cast<int>(pix / p.OW);
    s->ox[q] = static_cast<int>(pix % p.OW);
  }
}

// locate() in two steps, for a caller that loads the next tap's offsets while it works on this one:
// fetch_entry() loads the raw offset and mask of entry e (deformable group e / kBN, pixel e % kBN), which
// place_entry() turns into the TileTaps entry. Both only read the tap-independent part of s.
struct TapRaw { float dy = 0.0f, dx = 0.0f, m = 1.0f; };

template <typename T>
__device__ __forceinline__ TapRaw fetch_entry(const Params& p, const T* __restrict__ offset, const T* __restrict__ mask,
                                              int64_t k, int64_t d0, int e, const TileTaps* s) {
  TapRaw r;
  const int dl = e / kBN, q = e % kBN;
  if (s->xbase[q] >= 0) {
    const int64_t d = d0 + dl;
    const int64_t obase = s->obase[q] + (d * 2 * p.K + 2 * k) * p.P;
    r.dy = to_float(offset[obase]);
    r.dx = to_float(offset[obase + p.P]);
    if (mask != nullptr) r.m = to_float(mask[s->mbase[q] + (d * p.K + k) * p.P]);
  }
  return r;
}

__device__ __forceinline__ void place_entry(const Params& p, int64_t k, int e, const TapRaw& r, TileTaps* s) {
  const int i = static_cast<int>(k) / static_cast<int>(p.kw), j = static_cast<int>(k) % static_cast<int>(p.kw);
  const int dl = e / kBN, q = e % kBN;
  float fill = 0.0f;
  detail::Tap t;
  t.kind = 0;
  t.valid = 0;
  if (s->xbase[q] >= 0) {
    const float py = static_cast<float>(s->oy[q] * p.sh - p.ph + i * p.dh) + r.dy;
    const float px = static_cast<float>(s->ox[q] * p.sw - p.pw + j * p.dw) + r.dx;
    t = detail::locate(py, px, p.H, p.W);
    if (t.kind == 1) fill = NAN;
  }
  for (int c = 0; c < 4; ++c) {
    s->idx[dl][c][q] = (t.kind == 2 && (t.valid & (1 << c))) ? t.idx[c] : -1;
    s->w[dl][c][q] = t.w[c];
  }
  s->fill[dl][q] = fill;
  s->mask[dl][q] = r.m;  // 1 where no mask, or past N
}

// Fills s for tap k and deformable groups [d0, d0 + nd). Needs a __syncthreads() before use.
template <typename T>
__device__ inline void locate(const Params& p, const T* __restrict__ offset, const T* __restrict__ mask, int64_t k,
                              int64_t d0, int nd, TileTaps* s) {
  for (int e = threadIdx.x; e < nd * kBN; e += blockDim.x)
    place_entry(p, k, e, fetch_entry(p, offset, mask, k, d0, e, s), s);
}

// The column value of channel c (global index) at the block's pixel q: the mask times the bilinear sample,
// in the reference's order of operations. 0 for pixels past N.
template <typename T>
__device__ __forceinline__ float sample_column(const Params& p, const T* __restrict__ x, const TileTaps& s, int dl,
                                               int64_t c, int q, bool has_mask) {
  const int64_t base = s.xbase[q];
  if (base < 0) return 0.0f;
  const T* plane = x + base + c * p.H * p.W;
  float v = s.fill[dl][q];
#pragma unroll
  for (int corner = 0; corner < 4; ++corner) {
    const int idx = s.idx[dl][corner][q];
    if (idx >= 0) v += s.w[dl][corner][q] * to_float(__ldg(plane + idx));
  }
  return has_mask ? v * s.mask[dl][q] : v;
}

// Layout kernels shared by the forward and the backward (internal linkage: each .cu gets its own copy, so
// no two translation units register one host stub).
namespace {

// weight [Cout, Cg, K] -> wt [groups][K][Cg][Coutg] (same dtype).
template <typename T>
__global__ void arrange_weight(const T* __restrict__ w, T* __restrict__ wt, Params p) {
  const int64_t total = p.Cout * p.Cg * p.K;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t co = e / (p.Cg * p.K), c = (e / p.K) % p.Cg, k = e % p.K;
    const int64_t gi = co / p.Coutg, col = co % p.Coutg;
    wt[((gi * p.K + k) * p.Cg + c) * p.Coutg + col] = w[e];
  }
}

// x [B, C, HW] -> xt [B, HW, C] in 64 x 64 tiles through shared memory, block (32, 8), grid (HW tiles, C tiles,
// B). kPacked (HW and C multiples of the 16-byte pack, x aligned): every global access is one 16-byte pack,
// reads along pixels and writes along channels, the transposition happening element-wise in shared
// memory; otherwise one element per access.
constexpr int kTT = 64;
template <typename T, bool kPacked>
__global__ void to_channels_last(const T* __restrict__ x, T* __restrict__ xt, int64_t C, int64_t HW) {
  __shared__ T t[kTT][kTT + 1];  // t[channel][pixel]; the +1 spreads the column reads over banks
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * kTT, c0 = static_cast<int64_t>(blockIdx.y) * kTT;
  const T* src = x + static_cast<int64_t>(blockIdx.z) * C * HW;
  T* dst = xt + static_cast<int64_t>(blockIdx.z) * C * HW;
  const int tid = threadIdx.y * 32 + threadIdx.x;
  if constexpr (kPacked) {
    constexpr int kV = Pack<T>::kSize, kPacks = kTT / kV;  // packs per tile row
#pragma unroll
    for (int e = tid; e < kTT * kPacks; e += 256) {
      const int c = e / kPacks, pv = (e % kPacks) * kV;
      if (c0 + c < C && p0 + pv < HW) {
        const Pack<T> v = *reinterpret_cast<const Pack<T>*>(src + (c0 + c) * HW + p0 + pv);
#pragma unroll
        for (int i = 0; i < kV; ++i) t[c][pv + i] = v.v[i];
      }
    }
    __syncthreads();
#pragma unroll
    for (int e = tid; e < kTT * kPacks; e += 256) {
      const int p = e / kPacks, cv = (e % kPacks) * kV;
      if (p0 + p < HW && c0 + cv < C) {
        Pack<T> v;
#pragma unroll
        for (int i = 0; i < kV; ++i) v.v[i] = t[cv + i][p];
        *reinterpret_cast<Pack<T>*>(dst + (p0 + p) * C + c0 + cv) = v;
      }
    }
  } else {
#pragma unroll
    for (int i = threadIdx.y; i < kTT; i += 8)
#pragma unroll
      for (int j = threadIdx.x; j < kTT; j += 32)
        if (c0 + i < C && p0 + j < HW) t[i][j] = src[(c0 + i) * HW + p0 + j];
    __syncthreads();
#pragma unroll
    for (int i = threadIdx.y; i < kTT; i += 8)
#pragma unroll
      for (int j = threadIdx.x; j < kTT; j += 32)
        if (p0 + i < HW && c0 + j < C) dst[(p0 + i) * C + c0 + j] = t[j][i];
  }
}

}  // namespace

}  // namespace tile
}  // namespace modulated_deform_conv2d
}  // namespace opforge
}  // namespace opforge_kernels
