// CPU forward of multi_scale_deformable_attn: ctx.parallel_for over (n, q); per head a float32 accumulator
// row of D channels, each point located once and its four corner rows (D contiguous channels) blended in.
#include "multi_scale_deformable_attn.h"

#include <atomic>
#include <memory>
#include <new>
#include <vector>

namespace opforge_kernels {
namespace opforge {
namespace multi_scale_deformable_attn {
namespace {

using detail::Dims;
using detail::Level;
using detail::Point;

template <typename T>
::opforge::Status forward(const Dims& g, const T* value, const Level* levels, const T* loc, const T* attn, T* out,
                          const ::opforge::DeviceContext& ctx) {
  const int64_t row_stride = g.M * g.D;  // between value rows (pixels)
  // ~ (M * L * P) points of ~ (20 + 8 * D) operations per (n, q): aim for tens of microseconds per chunk.
  const int64_t per_task = g.M * g.L * g.P * (20 + 8 * g.D);
  const int64_t grain = per_task >= 200000 ? 1 : 200000 / (per_task > 0 ? per_task : 1);
  std::atomic<bool> failed{false};
  ctx.parallel_for(g.N * g.Lq, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> acc(new (std::nothrow) float[static_cast<size_t>(g.D)]);
    if (!acc) {
      failed = true;
      return;
    }
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.Lq;
      for (int64_t m = 0; m < g.M; ++m) {
        for (int64_t d = 0; d < g.D; ++d) acc[d] = 0.0f;
        const T* vbase = value + n * g.S * row_stride + m * g.D;
        const int64_t pbase = (task * g.M + m) * g.L * g.P;  // (n, q, m, 0, 0)
        for (int64_t l = 0; l < g.L; ++l)
          for (int64_t p = 0; p < g.P; ++p) {
            const int64_t i = pbase + l * g.P + p;
            const Point pt =
                detail::locate(::opforge::load(loc, 2 * i), ::opforge::load(loc, 2 * i + 1), levels[l], g.S);
            const float a = ::opforge::load(attn, i);
            if (pt.flags & detail::kNaNPoint) {
              for (int64_t d = 0; d < g.D; ++d) acc[d] += a * NAN;
              continue;
            }
            float w[4];
            detail::corner_weights(pt.lx, pt.ly, w);
            const T* corner[4];
            for (int k = 0; k < 4; ++k)
              corner[k] = vbase + (static_cast<int64_t>(pt.row) + (k >> 1) * pt.w + (k & 1)) * row_stride;
            for (int64_t d = 0; d < g.D; ++d) {
              float s = 0.0f;
              for (int k = 0; k < 4; ++k)
                if (pt.flags & (1 << k)) s += w[k] * ::opforge::load(corner[k], d);
              acc[d] += a * s;
            }
          }
        T* dst = out + (task * g.M + m) * g.D;
        for (int64_t d = 0; d < g.D; ++d) ::opforge::store(dst, d, acc[d]);
      }
    }
  });
  if (failed)
    return ::opforge::Status::error(::opforge::Status::kInternal, "multi_scale_deformable_attn: out of memory");
  return ::opforge::Status::ok();
}

}  // namespace
}  // namespace multi_scale_deformable_attn
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, multi_scale_deformable_attn) {
  namespace msda = ::opforge_kernels::opforge::multi_scale_deformable_attn;
  msda::detail::Dims g;
  ::opforge::Status st =
      msda::detail::check_dims(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, &g);
  if (!st.is_ok()) return st;
  if (!msda::detail::dims_are(output, {g.N, g.Lq, g.M * g.D}) || output.dtype != value.dtype)
    return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                    "multi_scale_deformable_attn: output must be [N, Lq, M*D] of value's dtype");
  std::vector<msda::detail::Level> levels(static_cast<size_t>(g.L));
  st = msda::detail::read_levels(spatial_shapes, level_start_index, g, levels.data());
  if (!st.is_ok()) return st;
  if (output.numel() == 0) return ::opforge::Status::ok();
  return OPFORGE_DISPATCH_FLOATING_CPU(value.dtype, T, [&] {
    return msda::forward<T>(g, value.ptr<const T>(), levels.data(), sampling_locations.ptr<const T>(),
                            attention_weights.ptr<const T>(), output.ptr<T>(), ctx);
  });
}
