// CUDA backward of modulated_deform_conv2d. Two implementations of the input gradients (grad_x, grad_offset,
// grad_mask), chosen per call by the environment variable OPFORGE_DCN_BACKWARD (read at each call, one getenv,
// so a benchmark can switch in-process): "legacy", or anything else / unset for "tiled" (the default since
// benchmarks/gpu_bench_dcn_backward.py showed it correct on 110/110 checks and 1.8x/2.0x torchvision's fwd+bwd
// on the H100, 2026-12-06; the legacy kernels were 0.64x/0.78x). Tiled falls back to legacy where its limits
// (below) are not met.
//
// tiled (see input_grads_tiled):
//  0. x copied channels-last (xt [B, HW, C]) and the weight arranged [groups][K][Cg][Coutg], as the forward does.
//  1. input_grads_tiled: block = (64 output pixels, convolution group, chunk of 32 of its input channels).
//     Per tap it locates the 64 x (deformable groups) sampling positions once in shared memory, computes the
//     column gradient tile cg[64 px][32 ch] = W_k^T x grad_out as a shared-memory tiled GEMM (float32
//     accumulation; the grad_out tile is loaded once per block when Cout/groups <= 64), then consumes it in
//     place: lane = channel, warp = pixels, so each bilinear corner's 32 channels of xt are one contiguous
//     run, read (for the coordinate gradients) and scattered into a float32 channels-last grad_x with
//     coalesced atomics; the offset and mask gradients are reduced over the channels by warp shuffles and
//     added (one atomic per block, pixel, tap and value) into float32 buffers. The column gradient
//     [B, C*K, P] is never materialised (torchvision writes and reads it: 2x132 MB at the benchmark layer).
//  2. weight_grads_cl: grad_weight = grad_out x columns^T per (tap, 64 output x 32 input channels), summed over
//     chunks of pixel tiles, the column tiles gathered from xt lane = channel (OPFORGE_DCN_WGRAD=legacy: the
//     legacy weight_grads below instead).
//  3. grad_x converted back to NCHW (transposing through shared memory); grad_offset / grad_mask converted.
// legacy (see input_grads): one thread per (b, deformable group, tap, pixel) that forms each channel's column
//  gradient as a scalar dot product over the group's output channels, scatters it to the four corners of
//  grad_x (NCHW, atomics) and sums the offset and mask gradients in registers. Kept for A/B timing.
// legacy, and tiled where weight_grads_cl does not apply, then use:
//  4. weight_grads: the forward's column tiles (tile_cuda.cuh) times grad_out tiles, summed over pixel
//     tiles split across blocks (atomics into the float grad_weight).
// Both: bias_grads (one block per output channel), and conversion of the float buffers.
// The tiled path needs a convolution group to span at most tile::kMaxDgTouched deformable groups and the
// grid to fit; otherwise the legacy input gradients run.
// Workspace (float32 unless noted, each region 16-byte aligned): grad_x [B*C*H*W], grad_weight [Cout*Cg*K],
// (tiled only:) grad_offset [B*2*dg*K*P], grad_mask [B*dg*K*P], the arranged weight and xt (x's dtype).
#include "modulated_deform_conv2d_backward.h"

#include "modulated_deform_conv2d/tile_cuda.cuh"
#include "opforge/kernel_cuda.cuh"

#include <cstdlib>
#include <cstring>

namespace opforge_kernels {
namespace opforge {
namespace modulated_deform_conv2d_backward {
namespace {

namespace fwd = ::opforge_kernels::opforge::modulated_deform_conv2d::detail;
namespace tile = ::opforge_kernels::opforge::modulated_deform_conv2d::tile;
using ::opforge::cuda::from_float;
using ::opforge::cuda::to_float;
using tile::kBN;
using tile::Params;

constexpr int kThreads = 256;

inline unsigned grid_for(int64_t total, int64_t cap = 65536) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < cap ? (blocks > 0 ? blocks : 1) : cap);
}

template <typename T>
__global__ void input_grads(const T* __restrict__ gout, const T* __restrict__ x, const T* __restrict__ offset,
                            const T* __restrict__ w, const T* __restrict__ mask, float* __restrict__ gx,
                            T* __restrict__ grad_offset, T* __restrict__ grad_mask, Params p) {
  const int64_t total = p.B * p.dg * p.K * p.P;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pix = e % p.P, k = (e / p.P) % p.K, d = (e / (p.P * p.K)) % p.dg, b = e / (p.P * p.K * p.dg);
    const int64_t i = k / p.kw, j = k % p.kw, oy = pix / p.OW, ox = pix % p.OW;
    const int64_t obase = ((b * p.dg + d) * 2 * p.K + 2 * k) * p.P + pix;
    const float py = static_cast<float>(oy * p.sh - p.ph + i * p.dh) + to_float(offset[obase]);
    const float px = static_cast<float>(ox * p.sw - p.pw + j * p.dw) + to_float(offset[obase + p.P]);
    const fwd::Tap t = fwd::locate(py, px, p.H, p.W);
    const int64_t midx = ((b * p.dg + d) * p.K + k) * p.P + pix;
    const float m = mask != nullptr ? to_float(mask[midx]) : 1.0f;
    float g_off_y = 0.0f, g_off_x = 0.0f, g_mask = 0.0f;
    for (int64_t c = d * p.Cd; c < (d + 1) * p.Cd; ++c) {
      const int64_t gi = c / p.Cg, cl = c % p.Cg;
      const T* wp = w + (gi * p.Coutg * p.Cg + cl) * p.K + k;  // weight[gi*Coutg + co][cl][k], stride Cg*K
      const T* gp = gout + (b * p.Cout + gi * p.Coutg) * p.P + pix;
      float gc = 0.0f;
      for (int64_t co = 0; co < p.Coutg; ++co) gc += to_float(__ldg(wp + co * p.Cg * p.K)) * to_float(gp[co * p.P]);
      const T* plane = x + (b * p.C + c) * p.H * p.W;
      float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      float val = t.kind == 0 ? 0.0f : NAN;
      if (t.kind == 2) {
        val = 0.0f;
#pragma unroll
        for (int n = 0; n < 4; ++n)
          if (t.valid & (1 << n)) {
            v[n] = to_float(__ldg(plane + t.idx[n]));
            val += t.w[n] * v[n];
          }
      }
      g_mask += gc * val;
      if (t.kind != 2) continue;
      const float gv = mask != nullptr ? gc * m : gc;
      float* gxp = gx + (b * p.C + c) * p.H * p.W;
#pragma unroll
      for (int n = 0; n < 4; ++n)
        if (t.valid & (1 << n)) atomicAdd(gxp + t.idx[n], t.w[n] * gv);
      float gy, gx;
      detail::coordinate_grads(gv, v, t.ly, t.lx, &gy, &gx);
      g_off_y += gy;
      g_off_x += gx;
    }
    grad_offset[obase] = from_float<T>(g_off_y);
    grad_offset[obase + p.P] = from_float<T>(g_off_x);
    grad_mask[midx] = from_float<T>(g_mask);
  }
}

// ---- tiled input gradients ----------------------------------------------------------------------------------

constexpr int kCK = 32;                         // input channels per block: one per lane
constexpr int kMO = 64;                         // output channels per GEMM step
constexpr int kWarps = kThreads / 32;
constexpr int kPixPerWarp = kBN / kWarps;       // pixels each warp scatters, per tap
constexpr int kScatterBatch = 4;                // pixels whose corners are loaded together
constexpr int kDg = tile::kMaxDgTouched;
static_assert(kThreads == 256 && kBN == 64 && kCK == 32, "the GEMM thread map assumes 16 x 16 threads");
static_assert(kPixPerWarp % kScatterBatch == 0, "whole scatter batches per warp");

// Sampling positions of the block's pixels for one tap, per deformable group slot sl (0 .. nd-1): corner plane
// indices (-1: outside the image or not sampled), fractional parts, mask, and detail::Tap::kind; and the
// tap-independent place of each pixel.
struct BwdTaps {
  int idx[kDg][4][kBN];
  float ly[kDg][kBN], lx[kDg][kBN], m[kDg][kBN];
  int kind[kDg][kBN];
  int64_t xbase[kBN];  // b * H * W * C (the image in x, and in xt / grad_x channels-last), -1 past N
  int b[kBN], pix[kBN], oy[kBN], ox[kBN];

  // Pixels n0 .. n0 + kBN - 1 (flattened over batch and plane). Needs a barrier before use.
  __device__ __forceinline__ void columns(const Params& p, int64_t n0) {
    for (int q = threadIdx.x; q < kBN; q += blockDim.x) {
      const int64_t n = n0 + q;
      const int64_t bb = n < p.N ? n / p.P : 0, pp = n < p.N ? n % p.P : 0;
      xbase[q] = n < p.N ? bb * p.C * p.H * p.W : -1;
      b[q] = static_cast<int>(bb);
      pix[q] = static_cast<int>(pp);
      oy[q] = static_cast<int>(pp / p.OW);
      ox[q] = static_cast<int>(pp % p.OW);
    }
  }

  // Tap k for deformable groups d0 .. d0 + nd - 1, as detail::locate places them. Needs a barrier before use.
  template <typename T>
  __device__ __forceinline__ void locate(const Params& p, const T* __restrict__ offset, const T* __restrict__ mask,
                                         int64_t k, int64_t d0, int nd) {
    const int i = static_cast<int>(k / p.kw), j = static_cast<int>(k % p.kw);
    for (int e = threadIdx.x; e < nd * kBN; e += blockDim.x) {
      const int sl = e / kBN, q = e % kBN;
      fwd::Tap t;
      t.kind = 0;
      t.valid = 0;
      t.ly = t.lx = 0.0f;
      float mv = 0.0f;
      if (xbase[q] >= 0) {
        const int64_t bd = static_cast<int64_t>(b[q]) * p.dg + d0 + sl;
        const int64_t obase = (bd * 2 * p.K + 2 * k) * p.P + pix[q];
        const float py = static_cast<float>(oy[q] * p.sh - p.ph + i * p.dh) + to_float(offset[obase]);
        const float px = static_cast<float>(ox[q] * p.sw - p.pw + j * p.dw) + to_float(offset[obase + p.P]);
        t = fwd::locate(py, px, p.H, p.W);
        mv = mask != nullptr ? to_float(mask[(bd * p.K + k) * p.P + pix[q]]) : 1.0f;
      }
#pragma unroll
      for (int n = 0; n < 4; ++n) idx[sl][n][q] = t.kind == 2 && (t.valid & (1 << n)) ? t.idx[n] : -1;
      ly[sl][q] = t.ly;
      lx[sl][q] = t.lx;
      m[sl][q] = mv;
      kind[sl][q] = t.kind;
    }
  }
};

struct alignas(16) BwdSmem {
  BwdTaps taps;
  float red[kDg][3][kBN];  // per-tap sums over the block's channels: d/d(dy), d/d(dx), d/d(mask)
  float go[kMO][kBN];            // grad_out tile: go[co][q]
  float wk[kMO][kCK + 2];        // W_k^T tile: wk[co][cc] (rows 8-byte aligned for float2 reads)
  float cg[kBN][kCK + 1];        // column gradient tile: cg[q][cc] (the +1: lane-consecutive reads, no conflicts)
};

template <typename T>
__device__ __forceinline__ void load_go(const Params& p, const T* __restrict__ gout, int64_t gi, int64_t m0,
                                        BwdSmem& s) {
  for (int e = threadIdx.x; e < kMO * kBN; e += kThreads) {
    const int mm = e / kBN, q = e % kBN;
    const int64_t co = m0 + mm;
    float v = 0.0f;
    if (co < p.Coutg && s.taps.xbase[q] >= 0)
      v = to_float(gout[(static_cast<int64_t>(s.taps.b[q]) * p.Cout + gi * p.Coutg + co) * p.P + s.taps.pix[q]]);
    s.go[mm][q] = v;
  }
}

template <typename T>
__device__ __forceinline__ void load_wk(const Params& p, const T* __restrict__ wt, int64_t gi, int64_t k, int64_t c0,
                                        int64_t m0, BwdSmem& s) {
  for (int e = threadIdx.x; e < kCK * kMO; e += kThreads) {
    const int cc = e / kMO, mm = e % kMO;
    const int64_t cl = c0 + cc, co = m0 + mm;
    s.wk[mm][cc] = cl < p.Cg && co < p.Coutg ? to_float(wt[((gi * p.K + k) * p.Cg + cl) * p.Coutg + co]) : 0.0f;
  }
}

// Grid: x = pixel tiles, y = groups * c_tiles. gxt: float channels-last [B, HW, C]; goff, gmask: float
// [B, dg*2*K, P] and [B, dg*K, P], all zeroed before, accumulated with atomics.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    input_grads_tiled(const T* __restrict__ gout, const T* __restrict__ xt, const T* __restrict__ offset,
                      const T* __restrict__ wt, const T* __restrict__ mask, float* __restrict__ gxt,
                      float* __restrict__ goff, float* __restrict__ gmask, Params p, int64_t c_tiles) {
  __shared__ BwdSmem s;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int64_t gi = blockIdx.y / c_tiles, c0 = (blockIdx.y % c_tiles) * kCK;
  const int64_t d0 = tile::first_dg(p, gi);
  const int nd = static_cast<int>(tile::dg_count(p, gi));
  const bool has_mask = mask != nullptr;
  const int64_t m_tiles = (p.Coutg + kMO - 1) / kMO;

  BwdTaps& tp = s.taps;
  tp.columns(p, n0);
  __syncthreads();
  if (m_tiles == 1) load_go(p, gout, gi, 0, s);  // grad_out tile for every tap (consumed after the barrier below)

  // This lane's channel in the scatter phase, and its deformable group slot. Lanes past Cg take lane 0's slot
  // (lane 0's channel c0 < Cg always exists) and contribute zeros, so a warp is uniform whenever its real
  // channels are.
  const int64_t cl = c0 + lane;
  const bool active = cl < p.Cg;
  const int64_t c = gi * p.Cg + (active ? cl : c0);
  const int dl = static_cast<int>(c / p.Cd - d0);
  const bool uniform = __all_sync(0xffffffffu, dl == __shfl_sync(0xffffffffu, dl, 0));
  // GEMM thread map: channels 2*tc, 2*tc + 1 and pixels 4*tq .. 4*tq + 3.
  const int tc = tid / 16, tq = tid % 16;

  for (int64_t k = 0; k < p.K; ++k) {
    __syncthreads();  // the previous tap's readers of the taps, sums and tiles are done
    tp.locate(p, offset, mask, k, d0, nd);
    for (int e = tid; e < nd * kBN; e += kThreads)
      s.red[e / kBN][0][e % kBN] = s.red[e / kBN][1][e % kBN] = s.red[e / kBN][2][e % kBN] = 0.0f;

    // Column gradient cg[q][cc] = sum over co of W[gi*Coutg + co][c0 + cc][k] * grad_out[b, gi*Coutg + co, pix].
    float acc[2][4] = {};
    for (int64_t mt = 0; mt < m_tiles; ++mt) {
      if (mt > 0) __syncthreads();  // the previous step's tiles are consumed
      if (m_tiles > 1) load_go(p, gout, gi, mt * kMO, s);
      load_wk(p, wt, gi, k, c0, mt * kMO, s);
      __syncthreads();
#pragma unroll 8
      for (int mm = 0; mm < kMO; ++mm) {
        const float4 g = *reinterpret_cast<const float4*>(&s.go[mm][4 * tq]);
        const float2 a = *reinterpret_cast<const float2*>(&s.wk[mm][2 * tc]);
        acc[0][0] += a.x * g.x;
        acc[0][1] += a.x * g.y;
        acc[0][2] += a.x * g.z;
        acc[0][3] += a.x * g.w;
        acc[1][0] += a.y * g.x;
        acc[1][1] += a.y * g.y;
        acc[1][2] += a.y * g.z;
        acc[1][3] += a.y * g.w;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int q = 0; q < 4; ++q) s.cg[4 * tq + q][2 * tc + r] = acc[r][q];
    __syncthreads();

    // Scatter: warp handles pixels warp * kPixPerWarp + (0 .. kPixPerWarp - 1), lane = channel.
    for (int qb = 0; qb < kPixPerWarp; qb += kScatterBatch) {
      float v[kScatterBatch][4];
#pragma unroll
      for (int u = 0; u < kScatterBatch; ++u) {
        const int q = warp * kPixPerWarp + qb + u;
        const int64_t base = tp.xbase[q] + c;
#pragma unroll
        for (int n = 0; n < 4; ++n) {
          const int idx = tp.idx[dl][n][q];
          v[u][n] = active && idx >= 0 ? to_float(__ldg(xt + base + static_cast<int64_t>(idx) * p.C)) : 0.0f;
        }
      }
#pragma unroll
      for (int u = 0; u < kScatterBatch; ++u) {
        const int q = warp * kPixPerWarp + qb + u;
        if (tp.xbase[q] < 0) continue;  // warp-uniform
        const int kind = tp.kind[dl][q];
        const float gc = active ? s.cg[q][lane] : 0.0f;
        float g_y = 0.0f, g_x = 0.0f, g_m = 0.0f;
        if (kind == 2) {
          const float ly = tp.ly[dl][q], lx = tp.lx[dl][q], hy = 1.0f - ly, hx = 1.0f - lx;
          const float w[4] = {hy * hx, hy * lx, ly * hx, ly * lx};  // as detail::locate computes them
          float val = 0.0f;
#pragma unroll
          for (int n = 0; n < 4; ++n)
            if (tp.idx[dl][n][q] >= 0) val += w[n] * v[u][n];
          g_m = gc * val;
          if (active) {
            const float gv = has_mask ? gc * tp.m[dl][q] : gc;
            float* at = gxt + tp.xbase[q] + c;
#pragma unroll
            for (int n = 0; n < 4; ++n) {
              const int idx = tp.idx[dl][n][q];
              if (idx >= 0) atomicAdd(at + static_cast<int64_t>(idx) * p.C, w[n] * gv);
            }
            detail::coordinate_grads(gv, v[u], ly, lx, &g_y, &g_x);
          }
        } else if (active) {
          g_m = gc * (kind == 0 ? 0.0f : NAN);  // outside: 0; NaN position: NaN (no gradient to x, offset)
        }
        if (uniform) {
#pragma unroll
          for (int o = 16; o > 0; o /= 2) {
            g_y += __shfl_xor_sync(0xffffffffu, g_y, o);
            g_x += __shfl_xor_sync(0xffffffffu, g_x, o);
            g_m += __shfl_xor_sync(0xffffffffu, g_m, o);
          }
          if (lane == 0) {  // this warp alone touches pixel q
            s.red[dl][0][q] += g_y;
            s.red[dl][1][q] += g_x;
            s.red[dl][2][q] += g_m;
          }
        } else if (active) {
          atomicAdd(&s.red[dl][0][q], g_y);
          atomicAdd(&s.red[dl][1][q], g_x);
          atomicAdd(&s.red[dl][2][q], g_m);
        }
      }
    }
    __syncthreads();
    for (int e = tid; e < nd * kBN; e += kThreads) {
      const int sl = e / kBN, q = e % kBN;
      if (tp.xbase[q] < 0) continue;
      const int64_t bd = static_cast<int64_t>(tp.b[q]) * p.dg + d0 + sl;
      const int64_t obase = (bd * 2 * p.K + 2 * k) * p.P + tp.pix[q];
      atomicAdd(goff + obase, s.red[sl][0][q]);
      atomicAdd(goff + obase + p.P, s.red[sl][1][q]);
      atomicAdd(gmask + (bd * p.K + k) * p.P + tp.pix[q], s.red[sl][2][q]);
    }
  }
}

// grad_weight from the channels-last xt (tiled mode): block = (chunk of pixel tiles, convolution group, 64 output
// channels, 32 input channels, tap). Per pixel tile: the tap's positions (BwdTaps), the sampled column tile
// col[q][cc] gathered lane = channel (a corner's 32 channels are one contiguous run of xt), the grad_out tile
// got[q][co], and gw[co][cc] += sum over q of got[q][co] * col[q][cc] (4 x 2 outputs per thread); one atomic
// per output and block at the end. Grid: x = chunks, y = groups * m_tiles * c_tiles * K.
struct alignas(16) WgSmem {
  BwdTaps taps;
  float got[kBN][kMO + 4];  // got[q][co] (rows 16-byte aligned for float4 reads)
  float col[kBN][kCK + 2];  // col[q][cc] (rows 8-byte aligned for float2 reads)
};

template <typename T>
__global__ void __launch_bounds__(kThreads)
    weight_grads_cl(const T* __restrict__ gout, const T* __restrict__ xt, const T* __restrict__ offset,
                    const T* __restrict__ mask, float* __restrict__ gw, Params p, int64_t m_tiles, int64_t c_tiles,
                    int64_t tiles_per_block) {
  __shared__ WgSmem s;
  BwdTaps& tp = s.taps;
  int64_t rest = blockIdx.y;
  const int64_t k = rest % p.K;
  rest /= p.K;
  const int64_t c0 = (rest % c_tiles) * kCK;
  rest /= c_tiles;
  const int64_t m0 = (rest % m_tiles) * kMO, gi = rest / m_tiles;
  const int64_t d0 = tile::first_dg(p, gi);
  const int nd = static_cast<int>(tile::dg_count(p, gi));
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const bool has_mask = mask != nullptr;
  const int64_t cl = c0 + lane;
  const bool active = cl < p.Cg;
  const int64_t c = gi * p.Cg + (active ? cl : c0);
  const int dl = static_cast<int>(c / p.Cd - d0);
  const int tco = tid / 16, tcc = tid % 16;  // outputs co = 4*tco .. +3, cc = 2*tcc, 2*tcc + 1
  float acc[4][2] = {};
  const int64_t n_tiles = (p.N + kBN - 1) / kBN;
  const int64_t t_begin = blockIdx.x * tiles_per_block;
  const int64_t t_end = t_begin + tiles_per_block < n_tiles ? t_begin + tiles_per_block : n_tiles;
  for (int64_t nt = t_begin; nt < t_end; ++nt) {
    __syncthreads();  // the previous tile's readers are done
    tp.columns(p, nt * kBN);
    __syncthreads();
    tp.locate(p, offset, mask, k, d0, nd);
    for (int e = tid; e < kMO * kBN; e += kThreads) {
      const int mm = e / kBN, q = e % kBN;
      const int64_t co = m0 + mm;
      float v = 0.0f;
      if (co < p.Coutg && tp.xbase[q] >= 0)
        v = to_float(gout[(static_cast<int64_t>(tp.b[q]) * p.Cout + gi * p.Coutg + co) * p.P + tp.pix[q]]);
      s.got[q][mm] = v;
    }
    __syncthreads();
    for (int qq = 0; qq < kPixPerWarp; qq += kScatterBatch) {
      float v[kScatterBatch][4];
#pragma unroll
      for (int u = 0; u < kScatterBatch; ++u) {
        const int q = warp * kPixPerWarp + qq + u;
        const int64_t base = tp.xbase[q] + c;
#pragma unroll
        for (int n = 0; n < 4; ++n) {
          const int idx = tp.idx[dl][n][q];
          v[u][n] = active && idx >= 0 ? to_float(__ldg(xt + base + static_cast<int64_t>(idx) * p.C)) : 0.0f;
        }
      }
#pragma unroll
      for (int u = 0; u < kScatterBatch; ++u) {
        const int q = warp * kPixPerWarp + qq + u;
        float val = 0.0f;
        if (active && tp.xbase[q] >= 0) {
          // The forward's column value: (fill + corners) * mask, fill = NaN for a NaN position, else 0.
          const int kind = tp.kind[dl][q];
          if (kind == 2) {
            const float ly = tp.ly[dl][q], lx = tp.lx[dl][q], hy = 1.0f - ly, hx = 1.0f - lx;
            const float w[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
#pragma unroll
            for (int n = 0; n < 4; ++n)
              if (tp.idx[dl][n][q] >= 0) val += w[n] * v[u][n];
          } else if (kind == 1) {
            val = NAN;
          }
          if (has_mask) val *= tp.m[dl][q];
        }
        s.col[q][lane] = val;
      }
    }
    __syncthreads();
#pragma unroll 8
    for (int q = 0; q < kBN; ++q) {
      const float4 g = *reinterpret_cast<const float4*>(&s.got[q][4 * tco]);
      const float2 a = *reinterpret_cast<const float2*>(&s.col[q][2 * tcc]);
      acc[0][0] += g.x * a.x;
      acc[0][1] += g.x * a.y;
      acc[1][0] += g.y * a.x;
      acc[1][1] += g.y * a.y;
      acc[2][0] += g.z * a.x;
      acc[2][1] += g.z * a.y;
      acc[3][0] += g.w * a.x;
      acc[3][1] += g.w * a.y;
    }
  }
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int64_t co = m0 + 4 * tco + r, ccl = c0 + 2 * tcc + u;
      if (co < p.Coutg && ccl < p.Cg) atomicAdd(gw + ((gi * p.Coutg + co) * p.Cg + ccl) * p.K + k, acc[r][u]);
    }
}

// src float [B, HW, C] -> dst [B, C, HW] (x's dtype), 64 x 64 tiles through shared memory, block (32, 8),
// grid (HW tiles, C tiles, B): reads along channels, writes along pixels.
template <typename T>
__global__ void from_channels_last(const float* __restrict__ src, T* __restrict__ dst, int64_t C, int64_t HW) {
  constexpr int kT = tile::kTT;
  __shared__ float t[kT][kT + 1];  // t[pixel][channel]
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * kT, c0 = static_cast<int64_t>(blockIdx.y) * kT;
  const float* from = src + static_cast<int64_t>(blockIdx.z) * C * HW;
  T* to = dst + static_cast<int64_t>(blockIdx.z) * C * HW;
  for (int i = threadIdx.y; i < kT; i += 8)
    for (int j = threadIdx.x; j < kT; j += 32)
      if (p0 + i < HW && c0 + j < C) t[i][j] = from[(p0 + i) * C + c0 + j];
  __syncthreads();
  for (int i = threadIdx.y; i < kT; i += 8)
    for (int j = threadIdx.x; j < kT; j += 32)
      if (c0 + i < C && p0 + j < HW) to[(c0 + i) * HW + p0 + j] = from_float<T>(t[j][i]);
}

constexpr int kWM = 32;  // output channels per weight-gradient block
constexpr int kWC = 32;  // input channels per weight-gradient block (one tap)

// grad_weight[gi*Coutg + m0 + mm][c0 + cc][k] += sum over the block's pixel tiles of
// grad_out[b, co, p] * column[c, k, (b, p)]. Grid: x = pixel-tile chunks, y = groups * m-tiles * c-tiles * K.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    weight_grads(const T* __restrict__ gout, const T* __restrict__ x, const T* __restrict__ offset,
                 const T* __restrict__ mask, float* __restrict__ gw, Params p, int64_t m_tiles, int64_t c_tiles,
                 int64_t tiles_per_block) {
  __shared__ tile::TileTaps taps;
  __shared__ float col[kWC][kBN + 1];
  __shared__ float go[kWM][kBN + 1];
  int64_t rest = blockIdx.y;
  const int64_t k = rest % p.K;
  rest /= p.K;
  const int64_t c0 = (rest % c_tiles) * kWC;
  rest /= c_tiles;
  const int64_t m0 = (rest % m_tiles) * kWM, gi = rest / m_tiles;
  const int64_t d0 = tile::first_dg(p, gi);
  const int nd = static_cast<int>(tile::dg_count(p, gi));
  const int tid = threadIdx.x;
  // Thread owns (mm, cc) pairs tid and tid + 256 + ... of the 32 x 32 block: 4 outputs.
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  const int64_t n_tiles = (p.N + kBN - 1) / kBN;
  const int64_t t_begin = blockIdx.x * tiles_per_block;
  const int64_t t_end = t_begin + tiles_per_block < n_tiles ? t_begin + tiles_per_block : n_tiles;
  for (int64_t nt = t_begin; nt < t_end; ++nt) {
    const int64_t n0 = nt * kBN;
    __syncthreads();
    tile::columns(p, n0, &taps);
    __syncthreads();
    tile::locate(p, offset, mask, k, d0, nd, &taps);
    __syncthreads();
    for (int e = tid; e < kWC * kBN; e += kThreads) {
      const int cc = e / kBN, q = e % kBN;
      const int64_t cl = c0 + cc;
      float v = 0.0f;
      if (cl < p.Cg) {
        const int64_t c = gi * p.Cg + cl;
        v = tile::sample_column(p, x, taps, static_cast<int>(c / p.Cd - d0), c, q, mask != nullptr);
      }
      col[cc][q] = v;
    }
    for (int e = tid; e < kWM * kBN; e += kThreads) {
      const int mm = e / kBN, q = e % kBN;
      const int64_t co = m0 + mm, n = n0 + q;
      float v = 0.0f;
      if (co < p.Coutg && n < p.N) v = to_float(gout[((n / p.P) * p.Cout + gi * p.Coutg + co) * p.P + n % p.P]);
      go[mm][q] = v;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int e = tid + r * kThreads, mm = e / kWC, cc = e % kWC;
      float s = 0.0f;
      for (int q = 0; q < kBN; ++q) s += go[mm][q] * col[cc][q];
      acc[r] += s;
    }
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int e = tid + r * kThreads, mm = e / kWC, cc = e % kWC;
    const int64_t co = m0 + mm, cl = c0 + cc;
    if (co < p.Coutg && cl < p.Cg) atomicAdd(gw + ((gi * p.Coutg + co) * p.Cg + cl) * p.K + k, acc[r]);
  }
}

// Any geometry (a convolution group spanning more than tile::kMaxDgTouched deformable groups): one thread
// per weight element, summing over every pixel. Slow, but general; writes gw directly.
template <typename T>
__global__ void weight_grads_direct(const T* __restrict__ gout, const T* __restrict__ x, const T* __restrict__ offset,
                                    const T* __restrict__ mask, float* __restrict__ gw, Params p) {
  const int64_t total = p.Cout * p.Cg * p.K;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = e % p.K, cl = (e / p.K) % p.Cg, oc = e / (p.K * p.Cg);
    const int64_t c = (oc / p.Coutg) * p.Cg + cl, d = c / p.Cd, i = k / p.kw, j = k % p.kw;
    float acc = 0.0f;
    for (int64_t b = 0; b < p.B; ++b) {
      const T* plane = x + (b * p.C + c) * p.H * p.W;
      for (int64_t pix = 0; pix < p.P; ++pix) {
        const int64_t oy = pix / p.OW, ox = pix % p.OW;
        const int64_t obase = ((b * p.dg + d) * 2 * p.K + 2 * k) * p.P + pix;
        const float py = static_cast<float>(oy * p.sh - p.ph + i * p.dh) + to_float(offset[obase]);
        const float px = static_cast<float>(ox * p.sw - p.pw + j * p.dw) + to_float(offset[obase + p.P]);
        const fwd::Tap t = fwd::locate(py, px, p.H, p.W);
        float v = fwd::sample(t, [plane](int32_t idx) { return to_float(plane[idx]); });
        if (mask != nullptr) v *= to_float(mask[((b * p.dg + d) * p.K + k) * p.P + pix]);
        acc += to_float(gout[(b * p.Cout + oc) * p.P + pix]) * v;
      }
    }
    gw[e] = acc;
  }
}

template <typename T>
__global__ void bias_grads(const T* __restrict__ gout, T* __restrict__ grad_bias, Params p) {
  __shared__ float partial[kThreads];
  const int64_t co = blockIdx.x;
  float s = 0.0f;
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t q = threadIdx.x; q < p.P; q += blockDim.x) s += to_float(gout[(b * p.Cout + co) * p.P + q]);
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) grad_bias[co] = from_float<T>(partial[0]);
}

template <typename T>
__global__ void convert(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[e] = from_float<T>(src[e]);
}

inline bool tiled_requested() {
  const char* e = std::getenv("OPFORGE_DCN_BACKWARD");
  return e == nullptr || std::strcmp(e, "legacy") != 0;
}

// OPFORGE_DCN_WGRAD=legacy: in tiled mode, the weight gradient by the legacy weight_grads kernel (A/B).
inline bool wgrad_legacy_requested() {
  const char* e = std::getenv("OPFORGE_DCN_WGRAD");
  return e != nullptr && std::strcmp(e, "legacy") == 0;
}

inline size_t align16(size_t bytes) { return (bytes + 15) / 16 * 16; }

template <typename T>
::opforge::Status launch(const fwd::Geometry& g, const T* gout, const T* x, const T* offset, const T* w, const T* mask,
                         T* grad_x, T* grad_offset, T* grad_weight, T* grad_mask, T* grad_bias,
                         const ::opforge::DeviceContext& ctx) {
  using ::opforge::Status;
  const Params p = tile::params(g);
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  const int64_t nx = p.B * p.C * p.H * p.W, nw = p.Cout * p.Cg * p.K;
  const int64_t noff = p.B * p.dg * 2 * p.K * p.P, nmask = p.B * p.dg * p.K * p.P;
  int64_t max_dg = 0;
  for (int64_t gi = 0; gi < p.groups; ++gi) max_dg = tile::dg_count(p, gi) > max_dg ? tile::dg_count(p, gi) : max_dg;
  const int64_t n_tiles = (p.N + kBN - 1) / kBN, c_tiles = (p.Cg + kCK - 1) / kCK;
  // Workspace regions (16-byte aligned; the declaration's expression bounds their sum).
  const size_t gx_bytes = align16(static_cast<size_t>(nx) * sizeof(float));
  const size_t gw_bytes = align16(static_cast<size_t>(nw) * sizeof(float));
  const size_t goff_bytes = align16(static_cast<size_t>(noff) * sizeof(float));
  const size_t gmask_bytes = align16(static_cast<size_t>(nmask) * sizeof(float));
  const size_t wt_bytes = align16(static_cast<size_t>(nw) * sizeof(T));
  const size_t xt_bytes = align16(static_cast<size_t>(nx) * sizeof(T));
  const size_t legacy_bytes = gx_bytes + gw_bytes;
  const size_t tiled_bytes = legacy_bytes + goff_bytes + gmask_bytes + wt_bytes + xt_bytes;
  if (nx + nw > 0 && (ctx.workspace == nullptr || ctx.workspace_bytes < legacy_bytes))
    return Status::error(Status::kInternal, "modulated_deform_conv2d_backward: workspace smaller than declared");
  const bool tiled = tiled_requested() && p.N > 0 && p.C > 0 && max_dg <= tile::kMaxDgTouched &&
                     n_tiles <= 0x7FFFFFFF && p.groups * c_tiles <= 65535 && p.B <= 65535 &&
                     (p.C + tile::kTT - 1) / tile::kTT <= 65535 && ctx.workspace_bytes >= tiled_bytes &&
                     ::opforge::cuda::pack_aligned<T>(ctx.workspace);
  char* ws = static_cast<char*>(ctx.workspace);
  float* gx = reinterpret_cast<float*>(ws);
  float* gw = reinterpret_cast<float*>(ws + gx_bytes);
  float* goff = reinterpret_cast<float*>(ws + legacy_bytes);
  float* gmask = reinterpret_cast<float*>(ws + legacy_bytes + goff_bytes);
  T* wt = reinterpret_cast<T*>(ws + legacy_bytes + goff_bytes + gmask_bytes);
  T* xt = reinterpret_cast<T*>(ws + legacy_bytes + goff_bytes + gmask_bytes + wt_bytes);
  const size_t zeroed = tiled ? legacy_bytes + goff_bytes + gmask_bytes : legacy_bytes;
  if (nx + nw > 0 && cudaMemsetAsync(ws, 0, zeroed, stream) != cudaSuccess)
    return Status::error(Status::kCudaError, "modulated_deform_conv2d_backward: memset failed");
  if (p.Cout > 0) bias_grads<T><<<static_cast<unsigned>(p.Cout), kThreads, 0, stream>>>(gout, grad_bias, p);
  const int64_t hw = p.H * p.W;
  const dim3 tgrid(static_cast<unsigned>((hw + tile::kTT - 1) / tile::kTT),
                   static_cast<unsigned>((p.C + tile::kTT - 1) / tile::kTT), static_cast<unsigned>(p.B));
  if (tiled) {
    tile::arrange_weight<T><<<grid_for(nw, 4096), kThreads, 0, stream>>>(w, wt, p);
    constexpr int kV = ::opforge::cuda::Pack<T>::kSize;
    if (hw % kV == 0 && p.C % kV == 0 && ::opforge::cuda::pack_aligned<T>(x))
      tile::to_channels_last<T, true><<<tgrid, dim3(32, 8), 0, stream>>>(x, xt, p.C, hw);
    else
      tile::to_channels_last<T, false><<<tgrid, dim3(32, 8), 0, stream>>>(x, xt, p.C, hw);
    input_grads_tiled<T>
        <<<dim3(static_cast<unsigned>(n_tiles), static_cast<unsigned>(p.groups * c_tiles)), kThreads, 0, stream>>>(
            gout, xt, offset, wt, mask, gx, goff, gmask, p, c_tiles);
  } else if (p.N > 0) {
    input_grads<T><<<grid_for(p.B * p.dg * p.K * p.P), kThreads, 0, stream>>>(gout, x, offset, w, mask, gx, grad_offset,
                                                                              grad_mask, p);
  }  // N == 0: B == 0, so grad_x, grad_offset and grad_mask are empty
  if (p.N > 0) {
    const int64_t m_tiles = (p.Coutg + kWM - 1) / kWM, wc_tiles = (p.Cg + kWC - 1) / kWC;
    const int64_t y_blocks = p.groups * m_tiles * wc_tiles * p.K;
    const int64_t cl_y = p.groups * ((p.Coutg + kMO - 1) / kMO) * c_tiles * p.K;
    if (tiled && !wgrad_legacy_requested() && cl_y <= 65535 && p.Coutg > 0) {
      // About 2048 blocks in all, each summing at least 4 pixel tiles before its atomics.
      int64_t chunks = 2048 / cl_y;
      chunks = chunks < 1 ? 1 : chunks;
      int64_t per = (n_tiles + chunks - 1) / chunks;
      per = per < 4 ? 4 : per;
      chunks = (n_tiles + per - 1) / per;
      weight_grads_cl<T><<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(cl_y)), kThreads, 0, stream>>>(
          gout, xt, offset, mask, gw, p, (p.Coutg + kMO - 1) / kMO, c_tiles, per);
    } else if (y_blocks > 65535 || max_dg > tile::kMaxDgTouched) {
      weight_grads_direct<T><<<grid_for(nw), kThreads, 0, stream>>>(gout, x, offset, mask, gw, p);
    } else if (p.Cg > 0 && p.Coutg > 0) {
      // About 2048 blocks in all, each summing at least 4 pixel tiles before its atomics.
      int64_t chunks = 2048 / y_blocks;
      chunks = chunks < 1 ? 1 : chunks;
      int64_t per = (n_tiles + chunks - 1) / chunks;
      per = per < 4 ? 4 : per;
      chunks = (n_tiles + per - 1) / per;
      weight_grads<T><<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(y_blocks)), kThreads, 0, stream>>>(
          gout, x, offset, mask, gw, p, m_tiles, wc_tiles, per);
    }
  }
  if (tiled) {
    from_channels_last<T><<<tgrid, dim3(32, 8), 0, stream>>>(gx, grad_x, p.C, hw);
    convert<T><<<grid_for(noff, 4096), kThreads, 0, stream>>>(goff, grad_offset, noff);
    convert<T><<<grid_for(nmask, 4096), kThreads, 0, stream>>>(gmask, grad_mask, nmask);
  } else if (nx > 0) {
    convert<T><<<grid_for(nx, 4096), kThreads, 0, stream>>>(gx, grad_x, nx);
  }
  if (nw > 0) convert<T><<<grid_for(nw, 4096), kThreads, 0, stream>>>(gw, grad_weight, nw);
  return ::opforge::cuda::launch_status("modulated_deform_conv2d_backward: CUDA launch failed");
}

}  // namespace
}  // namespace modulated_deform_conv2d_backward
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, modulated_deform_conv2d_backward) {
  fwd::Geometry g;
  const ::opforge::Status st =
      detail::check_args(grad_out, x, offset, weight, mask, grad_x, grad_offset, grad_weight, grad_mask, grad_bias,
                         stride, padding, dilation, groups, deformable_groups, &g);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {
    return launch<T>(g, grad_out.ptr<const T>(), x.ptr<const T>(), offset.ptr<const T>(), weight.ptr<const T>(),
                     mask ? mask->ptr<const T>() : nullptr, grad_x.ptr<T>(), grad_offset.ptr<T>(), grad_weight.ptr<T>(),
                     grad_mask.ptr<T>(), grad_bias.ptr<T>(), ctx);
  });
}
