// opforge::roi_align_backward on the CPU: grad_features[b, c] += w * grad_out[k, c, bin] / count at the four
// corners of every taken sample of every roi of image b. Parallel over channels: a task owns its channels'
// planes in every image, so no two tasks write one element; it walks all rois (their tables are rebuilt per
// task, cheap next to the channel work). float32 accumulation (a float buffer for the half types).
#include <type_traits>
#include <vector>

#include "roi_align/roi_align_cpu_common.h"
#include "opforge_kernels/opforge/roi_align_backward.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace roi_align {
namespace {

template <typename T>
void run(const detail::Params& p, const T* grad_out, const float* rois, float* grad,
         const ::opforge::DeviceContext& ctx) {
  const int64_t C = p.channels, P = p.bins(), HW = p.plane();
  const int64_t work = p.rois * P * 4;  // per channel, at least
  const int64_t grain = work >= 4096 ? 1 : 4096 / (work > 0 ? work : 1);
  ctx.parallel_for(C, grain, [&](int64_t c0, int64_t c1) {
    std::vector<cpu_common::Corners> table;
    std::vector<int64_t> starts;
    for (int64_t k = 0; k < p.rois; ++k) {
      const detail::Roi g = detail::roi_geometry(rois + k * 5, p);
      cpu_common::for_each_piece(g, p, &table, &starts, [&](const std::vector<int64_t>& st) {
        for (int64_t c = c0; c < c1; ++c) {
          float* plane = grad + (g.batch * C + c) * HW;
          const T* go = grad_out + (k * C + c) * P;
          for (int64_t bin = 0; bin < P; ++bin) {
            if (st[bin] == st[bin + 1]) continue;
            const float gb = detail::fdiv(::opforge::load(go, bin), g.count);
            for (int64_t t = st[bin]; t < st[bin + 1]; ++t) {
              const detail::Corners& q = table[t];
              plane[q.o1] += q.w1 * gb;
              plane[q.o2] += q.w2 * gb;
              plane[q.o3] += q.w3 * gb;
              plane[q.o4] += q.w4 * gb;
            }
          }
        }
      });
    }
  });
}

}  // namespace
}  // namespace roi_align
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, roi_align_backward) {
  using namespace ::opforge_kernels::opforge::roi_align;
  detail::Params p;
  const ::opforge::Status st = detail::check_args("roi_align_backward", features, rois, grad_out, pooled_height,
                                                  pooled_width, spatial_scale, sampling_ratio, aligned, &p);
  if (!st.is_ok()) return st;
  if (grad_features.rank != 4 || grad_features.dtype != features.dtype)
    return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                    "roi_align_backward: grad_features must be like features");
  for (int d = 0; d < 4; ++d)
    if (grad_features.sizes[d] != features.sizes[d])
      return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                      "roi_align_backward: grad_features must be like features");
  return OPFORGE_DISPATCH_FLOATING_CPU(features.dtype, T, [&] {
    const int64_t n = grad_features.numel();
    if (n == 0) return ::opforge::Status::ok();
    std::vector<float> r;
    const ::opforge::Status bad = cpu_common::load_rois("opforge::roi_align_backward", rois.ptr<const T>(), p, &r);
    if (!bad.is_ok()) return bad;
    std::vector<float> buffer;
    float* grad;
    if constexpr (std::is_same_v<T, float>) {
      grad = grad_features.ptr<float>();
    } else {
      buffer.resize(static_cast<size_t>(n));
      grad = buffer.data();
    }
    for (int64_t i = 0; i < n; ++i) grad[i] = 0.0f;
    if (grad_out.numel() > 0) run(p, grad_out.ptr<const T>(), r.data(), grad, ctx);
    if constexpr (!std::is_same_v<T, float>) {
      T* dst = grad_features.ptr<T>();
      for (int64_t i = 0; i < n; ++i) ::opforge::store(dst, i, grad[i]);
    }
    return ::opforge::Status::ok();
  });
}
