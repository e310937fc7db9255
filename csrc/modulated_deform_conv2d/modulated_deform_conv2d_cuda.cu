// CUDA forward: an implicit GEMM over a channels-last copy of x.
//
// x is first copied to [B, H, W, C] in the workspace (to_channels_last): a bilinear corner then holds the
// block's whole channel chunk in one contiguous run, so each thread gathers 16 bytes per corner, fully
// used, whatever the offsets are. In NCHW a warp's 32 scalar gathers of one channel scatter over as many
// rows as the offsets spread the pixels (77% of the fetched sectors were wasted at the benchmark layer).
//
// Block (pixel tile of kBN, output-channel tile of kBM, one convolution group) loops over taps k and
// chunks of kCK input channels: it locates the tap's sampling positions once per pixel and deformable
// group (tile::locate, shared by all channels), gathers a [kBN x kCK] pixel-major tile of the sampled
// column matrix into shared memory, loads the matching [kCK x kBM] tile of the weight (pre-arranged in the
// workspace as [groups][K][Cg][Coutg] so the load is coalesced) and multiplies:
//  - float16: tensor cores through WMMA (16x16x16, float accumulators), sm_70+;
//  - float32 and bfloat16: a register-tiled SIMT GEMM in float32 (no TF32: fp32 accuracy is kept). A 3xTF32
//    tensor-core variant was measured on the H100 and dropped: no faster at the benchmark layer (so the GEMM
//    is not what bounds the float32 forward; its gathers move twice float16's bytes), and 10x the error.
// The loads of a step are issued together, ahead of the barrier that precedes their use: the next tap's offsets
// and mask (tile::fetch_entry) while this tap is gathered and multiplied, and a chunk's weight tile with its
// gathers. Each tap used to wait for three dependent round trips to memory in turn (offsets, then gathers,
// then weights) with the block's two barriers between them.
// A convolution group spanning more than tile::kMaxDgTouched deformable groups, or a workspace too small
// for the two copies, takes the direct kernel.
#include "modulated_deform_conv2d.h"

#include <mma.h>

#include <type_traits>

#include "opforge/kernel_cuda.cuh"
#include "tile_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace modulated_deform_conv2d {
namespace {

using ::opforge::cuda::from_float;
using ::opforge::cuda::Pack;
using ::opforge::cuda::to_float;
using tile::arrange_weight;
using tile::kBN;
using tile::kTT;
using tile::Params;
using tile::TileTaps;
using tile::to_channels_last;

constexpr int kBM = 64;
constexpr int kThreads = 256;

// Per storage type: tensor cores or not, and the channels of one K-chunk (64 half channels and 32 float
// ones are both 128 bytes per corner: one fully used cache line).
template <typename T>
struct Config {
  static constexpr bool kTC = std::is_same<T, __half>::value;
  static constexpr int kCK = kTC ? 64 : 32;
  using Elem = typename std::conditional<kTC, T, float>::type;  // element of the shared tiles
  static constexpr int kV = Pack<T>::kSize;                       // channels per 16-byte gather
  static constexpr int kVecsPerPixel = kCK / kV;
  static constexpr int kItems = kBN * kVecsPerPixel / kThreads;  // (pixel, vector) gathers per thread
  static constexpr int kColPad = 16 / sizeof(Elem);              // keeps rows 16-byte aligned, spreads banks
  static constexpr int kWPad = kTC ? 8 : 0;
};

template <typename T>
struct Tiles {
  using C = Config<T>;
  typename C::Elem col[kBN][C::kCK + C::kColPad];  // col[q][cc]: pixel-major, a pixel's channels contiguous
  typename C::Elem w[C::kCK][kBM + C::kWPad];      // w[cc][m]
};

template <typename T>
struct alignas(128) Smem {
  TileTaps taps;
  union {
    Tiles<T> t;
    float out[kBM][kBN + 4];  // tensor-core epilogue (after the last tile is consumed)
  } u;
};

// The slot in TileTaps (0 .. nd-1) of the deformable group of channel cl of convolution group gi (32-bit
// arithmetic: channel counts fit, and this runs per gathered vector).
__device__ __forceinline__ int deformable_slot(const Params& p, int64_t gi, int64_t cl, int64_t d0) {
  return static_cast<int>(gi * p.Cg + cl) / static_cast<int>(p.Cd) - static_cast<int>(d0);
}

// The kV column values of channels [cl0, cl0 + kV) of convolution group gi at the block's pixel q, for the
// tap in s: mask * (fill + sum over corners of weight * x), the reference's order of operations. Channels
// past Cg, and pixels past N, are 0. kVecOK: Cg and Cd are multiples of kV, so the kV channels are one
// aligned 16-byte run of xt in one deformable group; otherwise channel by channel.
template <typename T, bool kVecOK>
struct Gather {
  static constexpr int kV = Config<T>::kV;
  Pack<T> raw[4];
  float w[4], fill, mask;
  bool any;

  __device__ __forceinline__ void load(const Params& p, const T* __restrict__ xt, const TileTaps& s, int64_t gi,
                                       int64_t d0, int nd, int q, int64_t cl0, bool has_mask) {
    const int64_t base = s.xbase[q];
    any = base >= 0 && cl0 < p.Cg;
    if (!any) return;
    if constexpr (kVecOK) {
      const int dl = nd == 1 ? 0 : deformable_slot(p, gi, cl0, d0);
      const T* at = xt + base + gi * p.Cg + cl0;
#pragma unroll
      for (int n = 0; n < 4; ++n) {
        const int idx = s.idx[dl][n][q];
        w[n] = s.w[dl][n][q];
        if (idx >= 0) {
          raw[n] = *reinterpret_cast<const Pack<T>*>(at + static_cast<int64_t>(idx) * p.C);
        } else {
#pragma unroll
          for (int k = 0; k < kV; ++k) raw[n].v[k] = from_float<T>(0.0f);
        }
      }
      fill = s.fill[dl][q];
      mask = has_mask ? s.mask[dl][q] : 1.0f;
    }
  }

  __device__ __forceinline__ void values(const Params& p, const T* __restrict__ xt, const TileTaps& s, int64_t gi,
                                         int64_t d0, int q, int64_t cl0, bool has_mask, float (&v)[kV]) const {
    if (!any) {
#pragma unroll
      for (int k = 0; k < kV; ++k) v[k] = 0.0f;
      return;
    }
    if constexpr (kVecOK) {
#pragma unroll
      for (int k = 0; k < kV; ++k) {
        // Invalid corners read as 0 with a finite weight: the same sum as skipping them.
        float a = fill;
#pragma unroll
        for (int n = 0; n < 4; ++n) a += w[n] * to_float(raw[n].v[k]);
        v[k] = has_mask ? a * mask : a;
      }
    } else {
      const int64_t base = s.xbase[q];
#pragma unroll
      for (int k = 0; k < kV; ++k) {
        const int64_t cl = cl0 + k;
        v[k] = 0.0f;
        if (cl >= p.Cg) continue;
        const int64_t c = gi * p.Cg + cl;
        const int dl = deformable_slot(p, gi, cl, d0);
        float a = s.fill[dl][q];
#pragma unroll
        for (int n = 0; n < 4; ++n) {
          const int idx = s.idx[dl][n][q];
          const float xv = idx >= 0 ? to_float(xt[base + static_cast<int64_t>(idx) * p.C + c]) : 0.0f;
          a += s.w[dl][n][q] * xv;
        }
        v[k] = has_mask ? a * s.mask[dl][q] : a;
      }
    }
  }
};

// A chunk's weight tile, tl.w[cc][mm] = src[cc * coutg + mm] (rows of the arranged weight, coalesced along
// mm), zero past c_left rows and m_left columns, in 16-byte packs when every row starts aligned
// (coutg % kV == 0): load() into registers, issued with the chunk's gathers; store() once the previous tile
// is consumed.
template <typename T>
struct WeightTile {
  using Cfg = Config<T>;
  static constexpr int kV = Cfg::kV, kPacksPerRow = kBM / kV, kPacks = Cfg::kCK * kPacksPerRow;
  static constexpr int kPerThread = (kPacks + kThreads - 1) / kThreads;
  Pack<T> v[kPerThread];

  __device__ __forceinline__ void load(const T* __restrict__ src, int c_left, int m_left, int coutg) {
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) {
      const int e = threadIdx.x + r * kThreads, cc = e / kPacksPerRow, mm = (e % kPacksPerRow) * kV;
      if (e < kPacks && cc < c_left && mm < m_left) {
        v[r] = *reinterpret_cast<const Pack<T>*>(src + cc * coutg + mm);
      } else {
#pragma unroll
        for (int i = 0; i < kV; ++i) v[r].v[i] = from_float<T>(0.0f);
      }
    }
  }

  __device__ __forceinline__ void store(Tiles<T>& tl) const {
#pragma unroll
    for (int r = 0; r < kPerThread; ++r) {
      const int e = threadIdx.x + r * kThreads, cc = e / kPacksPerRow, mm = (e % kPacksPerRow) * kV;
      if (e >= kPacks) continue;
      if constexpr (Cfg::kTC) {
        *reinterpret_cast<Pack<T>*>(&tl.w[cc][mm]) = v[r];
      } else {
#pragma unroll
        for (int i = 0; i < kV; i += 4)
          *reinterpret_cast<float4*>(&tl.w[cc][mm + i]) = make_float4(to_float(v[r].v[i]), to_float(v[r].v[i + 1]),
                                                                      to_float(v[r].v[i + 2]), to_float(v[r].v[i + 3]));
      }
    }
  }
};

// The weight tile element by element, for rows that do not start 16-byte aligned (coutg % kV != 0).
template <typename T>
__device__ __forceinline__ void load_weight_tile_unaligned(const T* __restrict__ src, int c_left, int m_left, int coutg,
                                                           Tiles<T>& tl) {
  using Cfg = Config<T>;
  for (int e = threadIdx.x; e < Cfg::kCK * kBM; e += kThreads) {
    const int cc = e / kBM, mm = e % kBM;
    const T v = cc < c_left && mm < m_left ? src[cc * coutg + mm] : from_float<T>(0.0f);
    if constexpr (Cfg::kTC)
      tl.w[cc][mm] = v;
    else
      tl.w[cc][mm] = to_float(v);
  }
}

template <typename T, bool kVecOK>
__global__ void __launch_bounds__(kThreads, 2)
    forward_kernel(const T* __restrict__ xt, const T* __restrict__ offset, const T* __restrict__ wt,
                   const T* __restrict__ mask, const T* __restrict__ bias, T* __restrict__ y, Params p,
                   int64_t m_tiles) {
  using Cfg = Config<T>;
  constexpr int kCK = Cfg::kCK, kV = Cfg::kV;
  __shared__ Smem<T> s;
  Tiles<T>& tl = s.u.t;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int64_t gi = blockIdx.y / m_tiles, m0 = (blockIdx.y % m_tiles) * kBM;
  const int64_t d0 = tile::first_dg(p, gi);
  const int nd = static_cast<int>(tile::dg_count(p, gi));
  const int tid = threadIdx.x;
  const bool has_mask = mask != nullptr;
  tile::columns(p, n0, &s.taps);
  static_assert(kThreads >= tile::kMaxDgTouched * kBN, "one locate entry per thread");
  const bool locates = tid < nd * kBN;
  const bool weight_packed = p.Coutg % kV == 0;
  __syncthreads();
  tile::TapRaw next_tap;
  if (locates) next_tap = tile::fetch_entry(p, offset, mask, 0, d0, tid, &s.taps);

  // SIMT: thread (tm, tn) owns rows m0 + tm*4 .. +4 and pixels tn + 16*j, j < 4 (a quarter warp then reads
  // 8 consecutive col rows: no bank conflicts with the 144-byte row stride).
  float acc[4][4] = {};
  const int tm = tid / 16, tn = tid % 16;
  // Tensor cores: warp (wm, wn) owns a 16 x 32 block: rows wm*16, pixels wn*32 (two 16x16 fragments).
  using namespace nvcuda;
  constexpr bool kTensorCores = Cfg::kTC;
  const int warp = tid / 32, wm = warp / 2, wn = warp % 2;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c[2];
  if constexpr (kTensorCores) {
    wmma::fill_fragment(frag_c[0], 0.0f);
    wmma::fill_fragment(frag_c[1], 0.0f);
  }

  for (int64_t k = 0; k < p.K; ++k) {
    __syncthreads();  // previous users of s.taps are done
    if (locates) tile::place_entry(p, k, tid, next_tap, &s.taps);
    __syncthreads();
    if (locates && k + 1 < p.K) next_tap = tile::fetch_entry(p, offset, mask, k + 1, d0, tid, &s.taps);
    for (int64_t c0 = 0; c0 < p.Cg; c0 += kCK) {
      // Gathers and weight tile of this chunk first (all loads in flight), while the previous chunk may
      // still be in use.
      Gather<T, kVecOK> g[Cfg::kItems];
#pragma unroll
      for (int r = 0; r < Cfg::kItems; ++r) {
        const int e = tid + r * kThreads, q = e / Cfg::kVecsPerPixel, v = e % Cfg::kVecsPerPixel;
        g[r].load(p, xt, s.taps, gi, d0, nd, q, c0 + v * kV, has_mask);
      }
      const T* w_src = wt + ((gi * p.K + k) * p.Cg + c0) * p.Coutg + m0;
      const int c_left = static_cast<int>(p.Cg - c0), m_left = static_cast<int>(p.Coutg - m0);
      WeightTile<T> w_tile;
      if (weight_packed) w_tile.load(w_src, c_left, m_left, static_cast<int>(p.Coutg));
      __syncthreads();  // previous tiles consumed
#pragma unroll
      for (int r = 0; r < Cfg::kItems; ++r) {
        const int e = tid + r * kThreads, q = e / Cfg::kVecsPerPixel, v = e % Cfg::kVecsPerPixel;
        float vals[kV];
        g[r].values(p, xt, s.taps, gi, d0, q, c0 + v * kV, has_mask, vals);
        if constexpr (Cfg::kTC) {
          Pack<T> out;
#pragma unroll
          for (int i = 0; i < kV; ++i) out.v[i] = from_float<T>(vals[i]);
          *reinterpret_cast<Pack<T>*>(&tl.col[q][v * kV]) = out;
        } else {
#pragma unroll
          for (int i = 0; i < kV; i += 4)
            *reinterpret_cast<float4*>(&tl.col[q][v * kV + i]) =
                make_float4(vals[i], vals[i + 1], vals[i + 2], vals[i + 3]);
        }
      }
      if (weight_packed)
        w_tile.store(tl);
      else
        load_weight_tile_unaligned<T>(w_src, c_left, m_left, static_cast<int>(p.Coutg), tl);
      __syncthreads();
      if constexpr (Cfg::kTC) {
#pragma unroll
        for (int kk = 0; kk < kCK; kk += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> a;
          wmma::load_matrix_sync(a, &tl.w[kk][wm * 16], kBM + Cfg::kWPad);
#pragma unroll
          for (int f = 0; f < 2; ++f) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bfrag;
            wmma::load_matrix_sync(bfrag, &tl.col[wn * 32 + f * 16][kk], kCK + Cfg::kColPad);
            wmma::mma_sync(frag_c[f], a, bfrag, frag_c[f]);
          }
        }
      } else {
#pragma unroll 2
        for (int cc = 0; cc < kCK; cc += 4) {
          float4 a[4], b[4];
#pragma unroll
          for (int j = 0; j < 4; ++j) b[j] = *reinterpret_cast<const float4*>(&tl.col[tn + 16 * j][cc]);
#pragma unroll
          for (int c = 0; c < 4; ++c) a[c] = *reinterpret_cast<const float4*>(&tl.w[cc + c][tm * 4]);
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float bv[4] = {b[j].x, b[j].y, b[j].z, b[j].w};
#pragma unroll
            for (int c = 0; c < 4; ++c) {
              acc[0][j] += a[c].x * bv[c];
              acc[1][j] += a[c].y * bv[c];
              acc[2][j] += a[c].z * bv[c];
              acc[3][j] += a[c].w * bv[c];
            }
          }
        }
      }
    }
  }

  // Epilogue: + bias, store y[b, gi*Coutg + m, p]; consecutive threads write consecutive pixels.
  if constexpr (kTensorCores) {
    __syncthreads();  // s.u.out overlays the tiles other warps may still be reading
#pragma unroll
    for (int f = 0; f < 2; ++f)
      wmma::store_matrix_sync(&s.u.out[wm * 16][wn * 32 + f * 16], frag_c[f], kBN + 4, wmma::mem_row_major);
    __syncthreads();
    for (int e = tid; e < kBM * kBN; e += kThreads) {
      const int mm = e / kBN, q = e % kBN;
      const int64_t co = m0 + mm;
      if (co >= p.Coutg || s.taps.xbase[q] < 0) continue;
      const int64_t oc = gi * p.Coutg + co;
      const float bv = bias != nullptr ? to_float(bias[oc]) : 0.0f;
      y[s.taps.ybase[q] + oc * p.P] = from_float<T>(s.u.out[mm][q] + bv);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t co = m0 + tm * 4 + i;
      if (co >= p.Coutg) continue;
      const int64_t oc = gi * p.Coutg + co;
      const float bv = bias != nullptr ? to_float(bias[oc]) : 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int q = tn + 16 * j;
        if (s.taps.xbase[q] < 0) continue;
        y[s.taps.ybase[q] + oc * p.P] = from_float<T>(acc[i][j] + bv);
      }
    }
  }
}

// Any geometry: one thread per output element (used when a convolution group spans many deformable groups).
template <typename T>
__global__ void direct_kernel(const T* __restrict__ x, const T* __restrict__ offset, const T* __restrict__ w,
                              const T* __restrict__ mask, const T* __restrict__ bias, T* __restrict__ y, Params p) {
  const int64_t total = p.B * p.Cout * p.P;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pix = e % p.P, oc = (e / p.P) % p.Cout, b = e / (p.P * p.Cout);
    const int64_t gi = oc / p.Coutg, oy = pix / p.OW, ox = pix % p.OW;
    float acc = 0.0f;
    for (int64_t cl = 0; cl < p.Cg; ++cl) {
      const int64_t c = gi * p.Cg + cl, d = c / p.Cd;
      const T* plane = x + (b * p.C + c) * p.H * p.W;
      for (int64_t k = 0; k < p.K; ++k) {
        const int64_t i = k / p.kw, j = k % p.kw;
        const int64_t obase = ((b * p.dg + d) * 2 * p.K + 2 * k) * p.P + pix;
        const float py = static_cast<float>(oy * p.sh - p.ph + i * p.dh) + to_float(offset[obase]);
        const float px = static_cast<float>(ox * p.sw - p.pw + j * p.dw) + to_float(offset[obase + p.P]);
        const detail::Tap t = detail::locate(py, px, p.H, p.W);
        float v = detail::sample(t, [plane](int32_t idx) { return to_float(plane[idx]); });
        if (mask != nullptr) v *= to_float(mask[((b * p.dg + d) * p.K + k) * p.P + pix]);
        acc += to_float(w[(oc * p.Cg + cl) * p.K + k]) * v;
      }
    }
    y[e] = from_float<T>(acc + (bias != nullptr ? to_float(bias[oc]) : 0.0f));
  }
}

template <typename T>
::opforge::Status launch(const detail::Geometry& g, const T* x, const T* offset, const T* w, const T* mask,
                         const T* bias, T* y, const ::opforge::DeviceContext& ctx) {
  const Params p = tile::params(g);
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  int64_t max_dg = 0;
  for (int64_t gi = 0; gi < p.groups; ++gi) max_dg = tile::dg_count(p, gi) > max_dg ? tile::dg_count(p, gi) : max_dg;
  const int64_t m_tiles = (p.Coutg + kBM - 1) / kBM;
  const int64_t n_tiles = (p.N + kBN - 1) / kBN;
  // Workspace: the arranged weight, then (16-byte aligned) the channels-last copy of x.
  const size_t wt_bytes = (static_cast<size_t>(p.Cout * p.Cg * p.K) * sizeof(T) + 15) / 16 * 16;
  const size_t xt_bytes = static_cast<size_t>(p.B * p.C * p.H * p.W) * sizeof(T);
  if (max_dg > tile::kMaxDgTouched || n_tiles > 0x7FFFFFFF || p.groups * m_tiles > 65535 || p.B > 65535 ||
      (p.C + kTT - 1) / kTT > 65535 || ctx.workspace == nullptr || ctx.workspace_bytes < wt_bytes + xt_bytes ||
      !::opforge::cuda::pack_aligned<T>(ctx.workspace)) {
    const int64_t total = p.B * p.Cout * p.P;
    const int64_t blocks = (total + 255) / 256 < 65536 ? (total + 255) / 256 : 65536;
    direct_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(x, offset, w, mask, bias, y, p);
    return ::opforge::cuda::launch_status("modulated_deform_conv2d: CUDA launch failed");
  }
  T* wt = static_cast<T*>(ctx.workspace);
  T* xt = reinterpret_cast<T*>(static_cast<char*>(ctx.workspace) + wt_bytes);
  {
    const int64_t total = p.Cout * p.Cg * p.K;
    const int64_t blocks = (total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096;
    arrange_weight<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(w, wt, p);
    const int64_t hw = p.H * p.W;
    const dim3 tgrid(static_cast<unsigned>((hw + kTT - 1) / kTT), static_cast<unsigned>((p.C + kTT - 1) / kTT),
                     static_cast<unsigned>(p.B));
    constexpr int kV = Pack<T>::kSize;
    if (hw % kV == 0 && p.C % kV == 0 && ::opforge::cuda::pack_aligned<T>(x))
      to_channels_last<T, true><<<tgrid, dim3(32, 8), 0, stream>>>(x, xt, p.C, hw);
    else
      to_channels_last<T, false><<<tgrid, dim3(32, 8), 0, stream>>>(x, xt, p.C, hw);
  }
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(p.groups * m_tiles));
  constexpr int kV = Config<T>::kV;
  if (p.Cg % kV == 0 && p.Cd % kV == 0)
    forward_kernel<T, true><<<grid, kThreads, 0, stream>>>(xt, offset, wt, mask, bias, y, p, m_tiles);
  else
    forward_kernel<T, false><<<grid, kThreads, 0, stream>>>(xt, offset, wt, mask, bias, y, p, m_tiles);
  return ::opforge::cuda::launch_status("modulated_deform_conv2d: CUDA launch failed");
}

}  // namespace
}  // namespace modulated_deform_conv2d
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, modulated_deform_conv2d) {
  detail::Geometry g;
  ::opforge::Status st =
      detail::check_args(x, offset, weight, mask, stride, padding, dilation, groups, deformable_groups, &g);
  if (!st.is_ok()) return st;
  if ((bias && (bias->rank != 1 || bias->sizes[0] != g.Cout || bias->dtype != x.dtype)) ||
      !detail::dims_are(y, g.B, g.Cout, g.OH, g.OW) || y.dtype != x.dtype)
    return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                    "modulated_deform_conv2d: bias must be [Cout] and y [B, Cout, oH, oW]");
  if (y.numel() == 0) return ::opforge::Status::ok();
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {
    return launch<T>(g, x.ptr<const T>(), offset.ptr<const T>(), weight.ptr<const T>(),
                     mask ? mask->ptr<const T>() : nullptr, bias ? bias->ptr<const T>() : nullptr, y.ptr<T>(), ctx);
  });
}
