// CUDA backward of multi_scale_deformable_attn, in the forward's layout (msda_cuda.cuh): a group of lanes per
// (n, q, m), VEC channels per lane. For each point (located once, shuffled to the group) each lane
//   - scatters grad_output * attention_weight * corner weight to grad_value's four corner rows (float32 atomics,
//     vector reductions on sm_90; into grad_value itself for float32, into a float32 workspace converted at the
//     end for float16/bfloat16),
//   - sums, over its channels, grad_output * sample (the attention-weight gradient) and grad * corner value per
//     corner (the location gradient),
// then the group adds its lanes' sums with xor shuffles and the lane that located the point writes its three
// gradients once: no shared memory, no atomics for them (the official kernel reduces them through shared memory
// per point, or with atomics when the block is not a multiple of the channel count).
#include "multi_scale_deformable_attn_backward.h"

#include "multi_scale_deformable_attn/msda_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace multi_scale_deformable_attn_backward {
namespace {

namespace fwd = ::opforge_kernels::opforge::multi_scale_deformable_attn::detail;
namespace cd = ::opforge_kernels::opforge::multi_scale_deformable_attn::cuda_detail;
using cd::Params;
using ::opforge::cuda::from_float;
using ::opforge::cuda::to_float;

__device__ __forceinline__ float group_sum(float v, int width) {
  for (int offset = width >> 1; offset > 0; offset >>= 1) v += __shfl_xor_sync(cd::kFullMask, v, offset, width);
  return v;
}

template <typename T, int VEC>
__global__ void __launch_bounds__(cd::kThreads)
    backward_kernel(const T* __restrict__ value, const int64_t* __restrict__ shapes, const int64_t* __restrict__ starts,
                    const T* __restrict__ loc, const T* __restrict__ attn, const T* __restrict__ gout,
                    float* __restrict__ gvalue, T* __restrict__ grad_loc, T* __restrict__ grad_attn, Params p) {
  const int lane = threadIdx.x & 31;
  const int sub = lane & (p.G - 1);
  const int rows_per_warp = 32 >> p.log2G;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t nwarps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t base = warp * rows_per_warp; base < p.rows; base += nwarps * rows_per_warp) {
    const int64_t row = base + (lane >> p.log2G);  // (n, q, m)
    const bool active = row < p.rows;
    const int64_t n = active ? row / (static_cast<int64_t>(p.Lq) * p.M) : 0;
    const int32_t m = active ? static_cast<int32_t>(row % p.M) : 0;
    const int64_t vofs = n * p.S * p.MD + m * p.D;  // value and grad_value: row r, channel c at vofs + r*MD + c
    const int64_t prow = (active ? row : 0) * p.LP;
    const T* grow = gout + (active ? row : 0) * p.D;
    for (int32_t pb = 0; pb < p.LP; pb += p.G) {
      fwd::Point mine;
      mine.row = 0;
      mine.w = 0;
      mine.flags = 0;
      mine.lx = mine.ly = 0.0f;
      float a_mine = 0.0f, h_mine = 0.0f, w_mine = 0.0f;
      const int32_t pi = pb + sub;
      const bool owner = active && pi < p.LP;
      if (owner) {
        const fwd::Level lv = cd::read_level(shapes, starts, pi / p.P, p.S);
        mine = fwd::locate(to_float(loc[2 * (prow + pi)]), to_float(loc[2 * (prow + pi) + 1]), lv, p.S);
        a_mine = to_float(attn[prow + pi]);
        h_mine = static_cast<float>(lv.H);
        w_mine = static_cast<float>(lv.W);
      }
      float ga_mine = 0.0f, gx_mine = 0.0f, gy_mine = 0.0f;
      const int32_t count = p.LP - pb < p.G ? p.LP - pb : p.G;
      for (int32_t k = 0; k < count; ++k) {
        const cd::SharedPoint sp = cd::broadcast(mine, a_mine, k, p.G);
        const bool nan_point = (sp.flags & fwd::kNaNPoint) != 0;
        float w[4];
        fwd::corner_weights(sp.lx, sp.ly, w);
        float ga = 0.0f, gw[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int32_t c0 = 0; c0 < p.D; c0 += p.G * VEC) {
          const int32_t c = c0 + sub * VEC;
          if (!(active && c < p.D)) continue;
          float g[VEC];
          cd::load_vec<T, VEC>(grow + c, g);
          if (nan_point || sp.flags == 0) {  // the sample is NaN / 0; nothing reaches value or the location
            const float sample = nan_point ? NAN : 0.0f;
#pragma unroll
            for (int i = 0; i < VEC; ++i) ga += g[i] * sample;
            continue;
          }
          float gd[VEC], s[VEC];
#pragma unroll
          for (int i = 0; i < VEC; ++i) {
            gd[i] = g[i] * sp.a;
            s[i] = 0.0f;
          }
#pragma unroll
          for (int corner = 0; corner < 4; ++corner) {
            float v[VEC];
            if (sp.flags & (1 << corner)) {
              const int32_t r = sp.row + (corner >> 1) * sp.w + (corner & 1);  // in [0, S): see locate
              cd::load_vec<T, VEC>(value + vofs + r * p.MD + c, v);
              float add[VEC];
#pragma unroll
              for (int i = 0; i < VEC; ++i) {
                s[i] += w[corner] * v[i];
                add[i] = gd[i] * w[corner];
              }
              cd::atomic_add_vec<VEC>(gvalue + vofs + r * p.MD + c, add);
            } else {
#pragma unroll
              for (int i = 0; i < VEC; ++i) v[i] = 0.0f;  // read as 0, as the reference's zero row
            }
#pragma unroll
            for (int i = 0; i < VEC; ++i) gw[corner] += gd[i] * v[i];
          }
#pragma unroll
          for (int i = 0; i < VEC; ++i) ga += g[i] * s[i];
        }
        float gx = 0.0f, gy = 0.0f;
        if (!nan_point && sp.flags != 0) fwd::coordinate_grads(gw, sp.lx, sp.ly, &gx, &gy);
        ga = group_sum(ga, p.G);
        gx = group_sum(gx, p.G);
        gy = group_sum(gy, p.G);
        if (sub == k) {
          ga_mine = ga;
          gx_mine = gx;
          gy_mine = gy;
        }
      }
      if (owner) {
        grad_attn[prow + pi] = from_float<T>(ga_mine);
        grad_loc[2 * (prow + pi)] = from_float<T>(gx_mine * w_mine);
        grad_loc[2 * (prow + pi) + 1] = from_float<T>(gy_mine * h_mine);
      }
    }
  }
}

template <typename T>
__global__ void float_to(const float* __restrict__ in, T* __restrict__ out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = from_float<T>(in[i]);
}

template <typename T, int VEC>
::opforge::Status launch(const T* value, const int64_t* shapes, const int64_t* starts, const T* loc, const T* attn,
                         const T* gout, float* gvalue, T* grad_loc, T* grad_attn, Params p, cudaStream_t stream) {
  cd::set_group(&p, VEC);
  backward_kernel<T, VEC><<<cd::grid_for(p), cd::kThreads, 0, stream>>>(value, shapes, starts, loc, attn, gout, gvalue,
                                                                        grad_loc, grad_attn, p);
  return ::opforge::cuda::launch_status("multi_scale_deformable_attn_backward: CUDA launch failed");
}

template <typename T>
::opforge::Status run(const T* value, const int64_t* shapes, const int64_t* starts, const T* loc, const T* attn,
                      const T* gout, T* grad_value, T* grad_loc, T* grad_attn, const fwd::Dims& g,
                      const ::opforge::DeviceContext& ctx) {
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  const int64_t nvalue = g.N * g.S * g.M * g.D;
  // float32 accumulates into grad_value itself; the half types into the float32 workspace.
  float* acc =
      std::is_same<T, float>::value ? reinterpret_cast<float*>(grad_value) : static_cast<float*>(ctx.workspace);
  if (nvalue > 0) {
    if (acc == nullptr ||
        (!std::is_same<T, float>::value && ctx.workspace_bytes < static_cast<size_t>(nvalue) * sizeof(float)))
      return ::opforge::Status::error(::opforge::Status::kInternal,
                                      "multi_scale_deformable_attn_backward: workspace missing or too small");
    if (cudaMemsetAsync(acc, 0, static_cast<size_t>(nvalue) * sizeof(float), stream) != cudaSuccess)
      return ::opforge::Status::error(::opforge::Status::kCudaError,
                                      "multi_scale_deformable_attn_backward: cudaMemsetAsync failed");
  }
  const Params p = cd::make_params(g);
  if (p.rows > 0) {
    const auto fits = [&](int vec) {
      return g.D % vec == 0 && cd::aligned_to<T>(value, vec) && cd::aligned_to<T>(gout, vec) &&
             cd::aligned_to<float>(acc, vec < 4 ? vec : 4);
    };
    const int vec = cd::pick_vec<T>(p, fits);  // the forward's choice of width (msda_cuda.cuh)
    ::opforge::Status st = ::opforge::Status::ok();
    if constexpr (sizeof(T) <= 2) {
      if (vec == 8) st = launch<T, 8>(value, shapes, starts, loc, attn, gout, acc, grad_loc, grad_attn, p, stream);
    }
    if (vec == 4) st = launch<T, 4>(value, shapes, starts, loc, attn, gout, acc, grad_loc, grad_attn, p, stream);
    if (vec == 2) st = launch<T, 2>(value, shapes, starts, loc, attn, gout, acc, grad_loc, grad_attn, p, stream);
    if (vec == 1) st = launch<T, 1>(value, shapes, starts, loc, attn, gout, acc, grad_loc, grad_attn, p, stream);
    if (!st.is_ok()) return st;
  }
  if (!std::is_same<T, float>::value && nvalue > 0) {
    const int64_t blocks = (nvalue + cd::kThreads - 1) / cd::kThreads;
    float_to<T>
        <<<static_cast<unsigned>(blocks < 65536 ? blocks : 65536), cd::kThreads, 0, stream>>>(acc, grad_value, nvalue);
    return ::opforge::cuda::launch_status("multi_scale_deformable_attn_backward: CUDA launch failed (convert)");
  }
  return ::opforge::Status::ok();
}

}  // namespace
}  // namespace multi_scale_deformable_attn_backward
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, multi_scale_deformable_attn_backward) {
  namespace bwd = ::opforge_kernels::opforge::multi_scale_deformable_attn_backward;
  namespace fwd = ::opforge_kernels::opforge::multi_scale_deformable_attn::detail;
  fwd::Dims g;
  ::opforge::Status st =
      bwd::detail::check_args(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                              grad_output, grad_value, grad_sampling_locations, grad_attention_weights, &g);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CUDA(value.dtype, T, [&] {
    return bwd::run<T>(value.ptr<const T>(), spatial_shapes.ptr<const int64_t>(),
                       level_start_index.ptr<const int64_t>(), sampling_locations.ptr<const T>(),
                       attention_weights.ptr<const T>(), grad_output.ptr<const T>(), grad_value.ptr<T>(),
                       grad_sampling_locations.ptr<T>(), grad_attention_weights.ptr<T>(), g, ctx);
  });
}
