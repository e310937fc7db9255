// CUDA forward: an implicit GEMM. Block (pixel tile of kBN, output-channel tile of kBM, one convolution
// group) loops over taps k and chunks of kCK input channels: it locates the tap's sampling positions once
// per pixel and deformable group (shared by all channels), gathers a [kCK x kBN] tile of the sampled
// column matrix into shared memory, loads the matching [kCK x kBM] tile of the weight (pre-arranged in
// the workspace as [groups][K][Cg][Coutg] so the load is coalesced) and multiplies:
//  - float16: tensor cores through WMMA (16x16x16, float accumulators), sm_70+;
//  - float32 and bfloat16: a register-tiled SIMT GEMM in float32 (no TF32: fp32 accuracy is kept).
// A convolution group spanning more than tile::kMaxDgTouched deformable groups takes a direct kernel.
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
using ::opforge::cuda::to_float;
using tile::kBN;
using tile::Params;
using tile::TileTaps;

constexpr int kBM = 64;
constexpr int kCK = 32;
constexpr int kThreads = 256;
constexpr int kRowsPerPass = kThreads / kBN;    // column-tile rows filled per pass of the block
constexpr int kPasses = kCK / kRowsPerPass;     // passes per column tile
static_assert(kThreads % kBN == 0 && kCK % kRowsPerPass == 0, "each thread keeps one pixel of the tile");

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

template <typename T, bool kTensorCores>
struct Smem;

template <typename T>
struct alignas(128) Smem<T, false> {
  TileTaps taps;
  float col[kCK][kBN];
  float w[kCK][kBM];
};

template <typename T>
struct alignas(128) Smem<T, true> {
  TileTaps taps;
  T col[kCK][kBN + 8];  // +8: fewer bank conflicts for WMMA loads (row stride stays a multiple of 16 bytes)
  T w[kCK][kBM + 8];
  float out[kBM][kBN + 4];
};

template <typename T, bool kTensorCores>
__global__ void __launch_bounds__(kThreads, 2) forward_kernel(const T* __restrict__ x, const T* __restrict__ offset,
                                                           const T* __restrict__ wt, const T* __restrict__ mask,
                                                           const T* __restrict__ bias, T* __restrict__ y, Params p,
                                                           int64_t m_tiles) {
  __shared__ Smem<T, kTensorCores> s;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int64_t gi = blockIdx.y / m_tiles, m0 = (blockIdx.y % m_tiles) * kBM;
  const int64_t d0 = tile::first_dg(p, gi);
  const int nd = static_cast<int>(tile::dg_count(p, gi));
  const int tid = threadIdx.x;
  tile::columns(p, n0, &s.taps);

  // SIMT: thread (tm, tn) owns rows m0 + tm*4 .. +4 and pixels tn*4 .. +4.
  float acc[4][4] = {};
  const int tm = tid / 16, tn = tid % 16;
  // Tensor cores: warp (wm, wn) owns a 16 x 32 block: rows wm*16, pixels wn*32 (two 16x16 fragments).
  using namespace nvcuda;
  const int warp = tid / 32, wm = warp / 2, wn = warp % 2;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c[2];
  if (kTensorCores) {
    wmma::fill_fragment(frag_c[0], 0.0f);
    wmma::fill_fragment(frag_c[1], 0.0f);
  }

  const int my_q = tid % kBN, cc0 = tid / kBN;
  int my_idx[4];
  float my_w[4], my_fill = 0.0f, my_mask = 1.0f;
  int64_t my_base = -1;
  for (int64_t k = 0; k < p.K; ++k) {
    __syncthreads();  // previous users of s.taps are done
    tile::locate(p, offset, mask, n0, k, d0, nd, &s.taps);
    __syncthreads();
    if (nd == 1) {
      my_base = s.taps.xbase[my_q];
#pragma unroll
      for (int n = 0; n < 4; ++n) {
        my_idx[n] = s.taps.idx[0][n][my_q];
        my_w[n] = s.taps.w[0][n][my_q];
      }
      my_fill = s.taps.fill[0][my_q];
      my_mask = s.taps.mask[0][my_q];
    }
    for (int64_t c0 = 0; c0 < p.Cg; c0 += kCK) {
      __syncthreads();  // previous tiles consumed
      // Column tile: consecutive threads take consecutive pixels (neighbouring gathers); each thread always
      // has pixel q = tid % kBN, rows cc0 + i * kRowsPerPass.
      if (nd == 1) {
        // One deformable group: the tap (in registers since locate) is the same for every row; issue all
        // gathers of the thread first, then combine.
        float raw[kPasses][4];
#pragma unroll
        for (int i = 0; i < kPasses; ++i) {
          const int64_t cl = c0 + cc0 + i * kRowsPerPass;
          const T* plane = x + (my_base >= 0 ? my_base : 0) + (gi * p.Cg + (cl < p.Cg ? cl : 0)) * p.H * p.W;
          const bool row_ok = cl < p.Cg && my_base >= 0;
#pragma unroll
          for (int n = 0; n < 4; ++n)
            raw[i][n] = (row_ok && my_idx[n] >= 0) ? to_float(__ldg(plane + my_idx[n])) : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < kPasses; ++i) {
          const int64_t cl = c0 + cc0 + i * kRowsPerPass;
          float v = 0.0f;
          if (cl < p.Cg && my_base >= 0) {
            // Invalid corners read as 0 with a finite weight: the same sum as skipping them.
            v = my_fill;
#pragma unroll
            for (int n = 0; n < 4; ++n) v += my_w[n] * raw[i][n];
            if (mask != nullptr) v *= my_mask;
          }
          if constexpr (kTensorCores) s.col[cc0 + i * kRowsPerPass][my_q] = from_float<T>(v);
          else s.col[cc0 + i * kRowsPerPass][my_q] = v;
        }
      } else {
        for (int e = tid; e < kCK * kBN; e += kThreads) {
          const int cc = e / kBN, q = e % kBN;
          const int64_t cl = c0 + cc;
          float v = 0.0f;
          if (cl < p.Cg) {
            const int64_t c = gi * p.Cg + cl;
            v = tile::sample_column(p, x, s.taps, static_cast<int>(c / p.Cd - d0), c, q, mask != nullptr);
          }
          if constexpr (kTensorCores) s.col[cc][q] = from_float<T>(v);
          else s.col[cc][q] = v;
        }
      }
      // Weight tile: wt[gi][k][c0 + cc][m0 + mm], coalesced along mm.
      for (int e = tid; e < kCK * kBM; e += kThreads) {
        const int cc = e / kBM, mm = e % kBM;
        const int64_t cl = c0 + cc, co = m0 + mm;
        T v = from_float<T>(0.0f);
        if (cl < p.Cg && co < p.Coutg) v = wt[((gi * p.K + k) * p.Cg + cl) * p.Coutg + co];
        if constexpr (kTensorCores) s.w[cc][mm] = v;
        else s.w[cc][mm] = to_float(v);
      }
      __syncthreads();
      if constexpr (kTensorCores) {
#pragma unroll
        for (int kk = 0; kk < kCK; kk += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> a;
          wmma::load_matrix_sync(a, &s.w[kk][wm * 16], kBM + 8);
#pragma unroll
          for (int f = 0; f < 2; ++f) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bfrag;
            wmma::load_matrix_sync(bfrag, &s.col[kk][wn * 32 + f * 16], kBN + 8);
            wmma::mma_sync(frag_c[f], a, bfrag, frag_c[f]);
          }
        }
      } else {
#pragma unroll 8
        for (int cc = 0; cc < kCK; ++cc) {
          const float4 a = *reinterpret_cast<const float4*>(&s.w[cc][tm * 4]);
          const float4 b = *reinterpret_cast<const float4*>(&s.col[cc][tn * 4]);
          const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
          for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
        }
      }
    }
  }

  // Epilogue: + bias, store y[b, gi*Coutg + m, p]; consecutive threads write consecutive pixels.
  if constexpr (kTensorCores) {
#pragma unroll
    for (int f = 0; f < 2; ++f)
      wmma::store_matrix_sync(&s.out[wm * 16][wn * 32 + f * 16], frag_c[f], kBN + 4, wmma::mem_row_major);
    __syncthreads();
    for (int e = tid; e < kBM * kBN; e += kThreads) {
      const int mm = e / kBN, q = e % kBN;
      const int64_t co = m0 + mm, n = n0 + q;
      if (co >= p.Coutg || n >= p.N) continue;
      const int64_t oc = gi * p.Coutg + co, b = n / p.P, pix = n % p.P;
      const float bv = bias != nullptr ? to_float(bias[oc]) : 0.0f;
      y[(b * p.Cout + oc) * p.P + pix] = from_float<T>(s.out[mm][q] + bv);
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
        const int64_t n = n0 + tn * 4 + j;
        if (n >= p.N) continue;
        const int64_t b = n / p.P, pix = n % p.P;
        y[(b * p.Cout + oc) * p.P + pix] = from_float<T>(acc[i][j] + bv);
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
  const size_t wt_bytes = static_cast<size_t>(p.Cout * p.Cg * p.K) * sizeof(T);
  if (max_dg > tile::kMaxDgTouched || n_tiles > 0x7FFFFFFF || p.groups * m_tiles > 65535 ||
      ctx.workspace == nullptr || ctx.workspace_bytes < wt_bytes) {
    const int64_t total = p.B * p.Cout * p.P;
    const int64_t blocks = (total + 255) / 256 < 65536 ? (total + 255) / 256 : 65536;
    direct_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(x, offset, w, mask, bias, y, p);
    return ::opforge::cuda::launch_status("modulated_deform_conv2d: CUDA launch failed");
  }
  T* wt = static_cast<T*>(ctx.workspace);
  {
    const int64_t total = p.Cout * p.Cg * p.K;
    const int64_t blocks = (total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096;
    arrange_weight<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(w, wt, p);
  }
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(p.groups * m_tiles));
  constexpr bool kTC = std::is_same<T, __half>::value;
  forward_kernel<T, kTC><<<grid, kThreads, 0, stream>>>(x, offset, wt, mask, bias, y, p, m_tiles);
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
