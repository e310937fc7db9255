#include "correlation.h"

#include <vector>

#include "correlation_cpu_common.h"

namespace opforge_kernels {
namespace opforge {
namespace correlation {
namespace {

using cpu_common::channels_last_float;
using cpu_common::dot;
using cpu_common::tap_range;

// One output row (b, oy) for every displacement: the window taps that are inside the image for this row
// and displacement give a contiguous range of ox (tap_range), so the inner loop is branch-free dot products
// of two contiguous channel vectors of the channels-last copies.
template <typename T>
void run(const detail::Params& p, const float* f1t, const float* f2t, T* out, const ::opforge::DeviceContext& ctx) {
  const int64_t C = p.channels, H = p.height, W = p.width, OH = p.out_h, OW = p.out_w;
  const int64_t rows = p.batch * OH;
  const int64_t work_per_row = p.patches() * OW * p.k_h * p.k_w * (C > 0 ? C : 1);
  const int64_t grain = work_per_row >= 32768 ? 1 : 32768 / (work_per_row > 0 ? work_per_row : 1);
  ctx.parallel_for(rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(OW));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / OH;
      const int oy = static_cast<int>(r % OH);
      const float* f1b = f1t + b * H * W * C;
      const float* f2b = f2t + b * H * W * C;
      for (int ph = 0; ph < p.patch_h; ++ph) {
        const int sy = p.shift_h(ph);
        for (int pw = 0; pw < p.patch_w; ++pw) {
          const int sx = p.shift_w(pw);
          for (int64_t ox = 0; ox < OW; ++ox) acc[ox] = 0.0f;
          for (int i = 0; i < p.k_h; ++i) {
            const int y = oy * p.stride_h - p.pad_h + i * p.dil_h;
            if (y < 0 || y >= H || y + sy < 0 || y + sy >= H) continue;
            const float* f1row = f1b + static_cast<int64_t>(y) * W * C;
            const float* f2row = f2b + static_cast<int64_t>(y + sy) * W * C;
            for (int j = 0; j < p.k_w; ++j) {
              const int off = -p.pad_w + j * p.dil_w;  // x = ox * stride_w + off
              int lo, hi;
              tap_range(off, sx, p.stride_w, static_cast<int>(W), static_cast<int>(OW), &lo, &hi);
              for (int ox = lo; ox < hi; ++ox) {
                const int64_t x = static_cast<int64_t>(ox) * p.stride_w + off;
                acc[ox] += dot(f1row + x * C, f2row + (x + sx) * C, C);
              }
            }
          }
          T* dst = out + (((b * p.patch_h + ph) * p.patch_w + pw) * OH + oy) * OW;
          for (int64_t ox = 0; ox < OW; ++ox) ::opforge::store(dst, ox, acc[ox]);
        }
      }
    }
  });
}

}  // namespace
}  // namespace correlation
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, correlation) {
  detail::Params p;
  const ::opforge::Status st =
      detail::check_args(f1, f2, corr, kernel_size, patch_size, stride, padding, dilation, dilation_patch, &p);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CPU(f1.dtype, T, [&] {
    if (corr.numel() == 0) return ::opforge::Status::ok();
    const std::vector<float> f1t = channels_last_float(f1.ptr<const T>(), p, ctx);
    const std::vector<float> f2t = channels_last_float(f2.ptr<const T>(), p, ctx);
    run(p, f1t.data(), f2t.data(), corr.ptr<T>(), ctx);
    return ::opforge::Status::ok();
  });
}
