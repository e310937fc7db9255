// CPU backward of multi_scale_deformable_attn: ctx.parallel_for over (n, m). The points of one (n, m) read and
// scatter into value's (n, m) slice alone, so each task accumulates grad_value in a private float32 [S, D]
// buffer (no atomics, no races) and writes every location and attention-weight gradient of its points once.
#include "multi_scale_deformable_attn_backward.h"

#include <atomic>
#include <memory>
#include <new>
#include <vector>

namespace opforge_kernels {
namespace opforge {
namespace multi_scale_deformable_attn_backward {
namespace {

namespace fwd = ::opforge_kernels::opforge::multi_scale_deformable_attn::detail;
using fwd::Dims;
using fwd::Level;
using fwd::Point;

template <typename T>
::opforge::Status backward(const Dims& g, const T* value, const Level* levels, const T* loc, const T* attn,
                           const T* gout, T* grad_value, T* grad_loc, T* grad_attn,
                           const ::opforge::DeviceContext& ctx) {
  const int64_t row_stride = g.M * g.D;
  std::atomic<bool> failed{false};
  ctx.parallel_for(g.N * g.M, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> gv(new (std::nothrow) float[static_cast<size_t>(g.S * g.D > 0 ? g.S * g.D : 1)]);
    std::unique_ptr<float[]> go(new (std::nothrow) float[static_cast<size_t>(g.D > 0 ? g.D : 1)]);
    if (!gv || !go) {
      failed = true;
      return;
    }
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.M, m = task % g.M;
      for (int64_t i = 0; i < g.S * g.D; ++i) gv[i] = 0.0f;
      const T* vbase = value + n * g.S * row_stride + m * g.D;
      for (int64_t q = 0; q < g.Lq; ++q) {
        const int64_t nqm = (n * g.Lq + q) * g.M + m;
        for (int64_t d = 0; d < g.D; ++d) go[d] = ::opforge::load(gout, nqm * g.D + d);
        for (int64_t l = 0; l < g.L; ++l)
          for (int64_t p = 0; p < g.P; ++p) {
            const int64_t i = (nqm * g.L + l) * g.P + p;
            const Point pt = fwd::locate(::opforge::load(loc, 2 * i), ::opforge::load(loc, 2 * i + 1), levels[l], g.S);
            const float a = ::opforge::load(attn, i);
            float ga = 0.0f, gx = 0.0f, gy = 0.0f;
            if (pt.flags & fwd::kNaNPoint) {
              for (int64_t d = 0; d < g.D; ++d) ga += go[d] * NAN;
            } else if (pt.flags == 0) {  // no corner inside: the sample is 0, the location gets no gradient
              for (int64_t d = 0; d < g.D; ++d) ga += go[d] * 0.0f;
            } else {
              float w[4], gw[4] = {0.0f, 0.0f, 0.0f, 0.0f};
              fwd::corner_weights(pt.lx, pt.ly, w);
              int64_t row[4];
              for (int k = 0; k < 4; ++k) row[k] = static_cast<int64_t>(pt.row) + (k >> 1) * pt.w + (k & 1);
              for (int64_t d = 0; d < g.D; ++d) {
                const float gd = go[d] * a;
                float s = 0.0f;
                for (int k = 0; k < 4; ++k) {
                  // A corner outside the level reads 0 (the reference gathers a zero row), so grad * 0 still
                  // turns an infinite grad into NaN there, as autograd does.
                  float v = 0.0f;
                  if (pt.flags & (1 << k)) {
                    v = ::opforge::load(vbase, row[k] * row_stride + d);
                    s += w[k] * v;
                    gv[row[k] * g.D + d] += gd * w[k];
                  }
                  gw[k] += gd * v;
                }
                ga += go[d] * s;
              }
              fwd::coordinate_grads(gw, pt.lx, pt.ly, &gx, &gy);
              gx *= static_cast<float>(levels[l].W);
              gy *= static_cast<float>(levels[l].H);
            }
            ::opforge::store(grad_attn, i, ga);
            ::opforge::store(grad_loc, 2 * i, gx);
            ::opforge::store(grad_loc, 2 * i + 1, gy);
          }
      }
      T* gdst = grad_value + n * g.S * row_stride + m * g.D;
      for (int64_t s = 0; s < g.S; ++s)
        for (int64_t d = 0; d < g.D; ++d) ::opforge::store(gdst, s * row_stride + d, gv[s * g.D + d]);
    }
  });
  if (failed)
    return ::opforge::Status::error(::opforge::Status::kInternal,
                                    "multi_scale_deformable_attn_backward: out of memory");
  return ::opforge::Status::ok();
}

}  // namespace
}  // namespace multi_scale_deformable_attn_backward
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, multi_scale_deformable_attn_backward) {
  namespace bwd = ::opforge_kernels::opforge::multi_scale_deformable_attn_backward;
  namespace fwd = ::opforge_kernels::opforge::multi_scale_deformable_attn::detail;
  fwd::Dims g;
  ::opforge::Status st =
      bwd::detail::check_args(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                              grad_output, grad_value, grad_sampling_locations, grad_attention_weights, &g);
  if (!st.is_ok()) return st;
  std::vector<fwd::Level> levels(static_cast<size_t>(g.L));
  st = fwd::read_levels(spatial_shapes, level_start_index, g, levels.data());
  if (!st.is_ok()) return st;
  if (g.N * g.S * g.M * g.D == 0 && g.N * g.Lq * g.M * g.L * g.P == 0) return ::opforge::Status::ok();
  return OPFORGE_DISPATCH_FLOATING_CPU(value.dtype, T, [&] {
    return bwd::backward<T>(g, value.ptr<const T>(), levels.data(), sampling_locations.ptr<const T>(),
                            attention_weights.ptr<const T>(), grad_output.ptr<const T>(), grad_value.ptr<T>(),
                            grad_sampling_locations.ptr<T>(), grad_attention_weights.ptr<T>(), ctx);
  });
}
