// opforge::roi_align on the CPU: parallel over rois; per roi the corners and weights of every sample are
// tabulated once (roi_align_cpu_common.h) and every channel walks that table. Sums run in torchvision's order
// (samples in (iy, ix) order, each w1*v1 + w2*v2 + w3*v3 + w4*v4 left to right, then / count), in float32.
#include <vector>

#include "roi_align/roi_align_cpu_common.h"

namespace opforge_kernels {
namespace opforge {
namespace roi_align {
namespace {

template <typename T>
void run(const detail::Params& p, const T* features, const float* rois, T* out, const ::opforge::DeviceContext& ctx) {
  const int64_t C = p.channels, P = p.bins(), HW = p.plane();
  // grain: a roi costs about C * P * samples * 4 loads; keep small inputs on one thread.
  const int64_t grain = C * P >= 4096 ? 1 : 4096 / (C * P);
  ctx.parallel_for(p.rois, grain, [&](int64_t begin, int64_t end) {
    std::vector<cpu_common::Corners> table;
    std::vector<int64_t> starts;
    std::vector<float> acc(static_cast<size_t>(C * P));
    for (int64_t k = begin; k < end; ++k) {
      const detail::Roi g = detail::roi_geometry(rois + k * 5, p);
      for (float& a : acc) a = 0.0f;
      cpu_common::for_each_piece(g, p, &table, &starts, [&](const std::vector<int64_t>& st) {
        for (int64_t c = 0; c < C; ++c) {
          const T* plane = features + (g.batch * C + c) * HW;
          float* a = acc.data() + c * P;
          for (int64_t bin = 0; bin < P; ++bin) {
            float s = a[bin];
            for (int64_t t = st[bin]; t < st[bin + 1]; ++t) {
              const detail::Corners& q = table[t];
              s += detail::interpolate(q, ::opforge::load(plane, q.o1), ::opforge::load(plane, q.o2),
                                       ::opforge::load(plane, q.o3), ::opforge::load(plane, q.o4));
            }
            a[bin] = s;
          }
        }
      });
      T* dst = out + k * C * P;
      for (int64_t i = 0; i < C * P; ++i) ::opforge::store(dst, i, acc[i] / g.count);
    }
  });
}

}  // namespace
}  // namespace roi_align
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, roi_align) {
  using namespace ::opforge_kernels::opforge::roi_align;
  detail::Params p;
  const ::opforge::Status st = detail::check_args("roi_align", features, rois, y, pooled_height, pooled_width,
                                                  spatial_scale, sampling_ratio, aligned, &p);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CPU(features.dtype, T, [&] {
    if (y.numel() == 0) return ::opforge::Status::ok();
    std::vector<float> r;
    const ::opforge::Status bad = cpu_common::load_rois("opforge::roi_align", rois.ptr<const T>(), p, &r);
    if (!bad.is_ok()) return bad;
    run(p, features.ptr<const T>(), r.data(), y.ptr<T>(), ctx);
    return ::opforge::Status::ok();
  });
}
