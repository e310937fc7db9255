// CUDA backward of modulated_deform_conv2d. Workspace (float32): grad_x [B*C*H*W] then grad_weight
// [Cout*Cg*K], both accumulated with atomics and converted to the output dtype at the end.
//  1. input_grads: one thread per (b, deformable group, tap, pixel) locates the sample once, then for each
//     channel of the group forms the column gradient (sum over the group's output channels of
//     weight * grad_out), scatters it to the four corners of grad_x (atomics), and sums the offset and
//     mask gradients in registers (written once, no atomics).
//  2. weight_grads: the forward's column tiles (tile_cuda.cuh) times grad_out tiles, summed over pixel
//     tiles split across blocks (atomics into the float grad_weight).
//  3. bias_grads: one block per output channel. 4. convert the float buffers.
#include "modulated_deform_conv2d_backward.h"

#include "modulated_deform_conv2d/tile_cuda.cuh"
#include "opforge/kernel_cuda.cuh"

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

constexpr int kWM = 32;  // output channels per weight-gradient block
constexpr int kWC = 32;  // input channels per weight-gradient block (one tap)

// grad_weight[gi*Coutg + m0 + mm][c0 + cc][k] += sum over the block's pixel tiles of
// grad_out[b, co, p] * column[c, k, (b, p)]. Grid: x = pixel-tile chunks, y = groups * m-tiles * c-tiles * K.
template <typename T>
__global__ void __launch_bounds__(kThreads) weight_grads(const T* __restrict__ gout, const T* __restrict__ x,
                                                         const T* __restrict__ offset, const T* __restrict__ mask,
                                                         float* __restrict__ gw, Params p, int64_t m_tiles,
                                                         int64_t c_tiles, int64_t tiles_per_block) {
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

template <typename T>
::opforge::Status launch(const fwd::Geometry& g, const T* gout, const T* x, const T* offset, const T* w,
                         const T* mask, T* grad_x, T* grad_offset, T* grad_weight, T* grad_mask, T* grad_bias,
                         const ::opforge::DeviceContext& ctx) {
  const Params p = tile::params(g);
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  const int64_t nx = p.B * p.C * p.H * p.W, nw = p.Cout * p.Cg * p.K;
  if (nx + nw > 0 && (ctx.workspace == nullptr || ctx.workspace_bytes < static_cast<size_t>(nx + nw) * sizeof(float)))
    return ::opforge::Status::error(::opforge::Status::kInternal,
                                    "modulated_deform_conv2d_backward: workspace smaller than declared");
  int64_t max_dg = 0;
  for (int64_t gi = 0; gi < p.groups; ++gi) max_dg = tile::dg_count(p, gi) > max_dg ? tile::dg_count(p, gi) : max_dg;
  float* gx = static_cast<float*>(ctx.workspace);
  float* gw = gx + nx;
  if (nx + nw > 0 && cudaMemsetAsync(gx, 0, static_cast<size_t>(nx + nw) * sizeof(float), stream) != cudaSuccess)
    return ::opforge::Status::error(::opforge::Status::kCudaError, "modulated_deform_conv2d_backward: memset failed");
  if (p.Cout > 0) bias_grads<T><<<static_cast<unsigned>(p.Cout), kThreads, 0, stream>>>(gout, grad_bias, p);
  if (p.N > 0) {
    input_grads<T><<<grid_for(p.B * p.dg * p.K * p.P), kThreads, 0, stream>>>(gout, x, offset, w, mask, gx,
                                                                               grad_offset, grad_mask, p);
    const int64_t m_tiles = (p.Coutg + kWM - 1) / kWM, c_tiles = (p.Cg + kWC - 1) / kWC;
    const int64_t y_blocks = p.groups * m_tiles * c_tiles * p.K;
    if (y_blocks > 65535 || max_dg > tile::kMaxDgTouched) {
      weight_grads_direct<T><<<grid_for(nw), kThreads, 0, stream>>>(gout, x, offset, mask, gw, p);
    } else {
    const int64_t n_tiles = (p.N + kBN - 1) / kBN;
    // About 2048 blocks in all, each summing at least 4 pixel tiles before its atomics.
    int64_t chunks = 2048 / y_blocks;
    chunks = chunks < 1 ? 1 : chunks;
    int64_t per = (n_tiles + chunks - 1) / chunks;
    per = per < 4 ? 4 : per;
    chunks = (n_tiles + per - 1) / per;
    if (p.Cg > 0 && p.Coutg > 0)
      weight_grads<T><<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(y_blocks)), kThreads, 0, stream>>>(
          gout, x, offset, mask, gw, p, m_tiles, c_tiles, per);
    }
  }
  if (nx > 0) convert<T><<<grid_for(nx, 4096), kThreads, 0, stream>>>(gx, grad_x, nx);
  if (nw > 0) convert<T><<<grid_for(nw, 4096), kThreads, 0, stream>>>(gw, grad_weight, nw);
  return ::opforge::cuda::launch_status("modulated_deform_conv2d_backward: CUDA launch failed");
}

}  // namespace
}  // namespace modulated_deform_conv2d_backward
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, modulated_deform_conv2d_backward) {
  fwd::Geometry g;
  const ::opforge::Status st = detail::check_args(grad_out, x, offset, weight, mask, grad_x, grad_offset, grad_weight,
                                                  grad_mask, grad_bias, stride, padding, dilation, groups,
                                                  deformable_groups, &g);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {
    return launch<T>(g, grad_out.ptr<const T>(), x.ptr<const T>(), offset.ptr<const T>(), weight.ptr<const T>(),
                     mask ? mask->ptr<const T>() : nullptr, grad_x.ptr<T>(), grad_offset.ptr<T>(),
                     grad_weight.ptr<T>(), grad_mask.ptr<T>(), grad_bias.ptr<T>(), ctx);
  });
}
