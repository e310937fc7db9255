#include "correlation_backward.h"

#include <vector>

#include "correlation/correlation_cpu_common.h"

namespace opforge_kernels {
namespace opforge {
namespace correlation_backward {
namespace {

using ::opforge_kernels::opforge::correlation::cpu_common::axpy;
using ::opforge_kernels::opforge::correlation::cpu_common::channels_last_float;

// One input row (b, y) of both gradients per task: channels-last float accumulators for the row, filled by
// gathering over displacements (each task writes only its own rows, so no atomics), then transposed out.
template <typename T>
void run(const detail::Params& p, const float* g, const float* f1t, const float* f2t, T* grad_f1, T* grad_f2,
         const ::opforge::DeviceContext& ctx) {
  const int64_t C = p.channels, H = p.height, W = p.width, OH = p.out_h, OW = p.out_w;
  const int64_t work_per_row = p.patches() * W * (2 * C + 2 * p.k_h * p.k_w);
  const int64_t grain = work_per_row >= 32768 ? 1 : 32768 / (work_per_row > 0 ? work_per_row : 1);
  ctx.parallel_for(p.batch * H, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> acc1(static_cast<size_t>(W * C)), acc2(static_cast<size_t>(W * C));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / H;
      const int y = static_cast<int>(r % H);
      for (float& v : acc1) v = 0.0f;
      for (float& v : acc2) v = 0.0f;
      const float* f1b = f1t + b * H * W * C;
      const float* f2b = f2t + b * H * W * C;
      for (int ph = 0; ph < p.patch_h; ++ph) {
        const int sy = p.shift_h(ph);
        for (int pw = 0; pw < p.patch_w; ++pw) {
          const int sx = p.shift_w(pw);
          const float* plane = g + ((b * p.patch_h + ph) * p.patch_w + pw) * OH * OW;
          const auto load_g = [plane](int64_t k) { return plane[k]; };
          const int xlo = sx < 0 ? -sx : 0, xhi = sx > 0 ? static_cast<int>(W) - sx : static_cast<int>(W);
          // grad_f1 at (y, x): f1 tap at (y, x), f2 at (y + sy, x + sx)
          if (y + sy >= 0 && y + sy < H) {
            const float* f2row = f2b + static_cast<int64_t>(y + sy) * W * C;
            for (int x = xlo; x < xhi; ++x) {
              const float gv = correlation::detail::window_gather(p, y, x, load_g);
              axpy(gv, f2row + static_cast<int64_t>(x + sx) * C, acc1.data() + x * C, C);
            }
          }
          // grad_f2 at (y, x): f1 tap at (y - sy, x - sx)
          const int y1 = y - sy;
          if (y1 >= 0 && y1 < H) {
            const float* f1row = f1b + static_cast<int64_t>(y1) * W * C;
            for (int x1 = xlo; x1 < xhi; ++x1) {
              const float gv = correlation::detail::window_gather(p, y1, x1, load_g);
              axpy(gv, f1row + static_cast<int64_t>(x1) * C, acc2.data() + (x1 + sx) * C, C);
            }
          }
        }
      }
      T* d1 = grad_f1 + b * C * H * W + static_cast<int64_t>(y) * W;
      T* d2 = grad_f2 + b * C * H * W + static_cast<int64_t>(y) * W;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t x = 0; x < W; ++x) {
          ::opforge::store(d1, c * H * W + x, acc1[x * C + c]);
          ::opforge::store(d2, c * H * W + x, acc2[x * C + c]);
        }
    }
  });
}

}  // namespace
}  // namespace correlation_backward
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, correlation_backward) {
  detail::Params p;
  const ::opforge::Status st = detail::check_args(f1, f2, grad_out, grad_f1, grad_f2, kernel_size, patch_size, stride,
                                                  padding, dilation, dilation_patch, &p);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CPU(f1.dtype, T, [&] {
    if (f1.numel() == 0) return ::opforge::Status::ok();
    const std::vector<float> f1t = channels_last_float(f1.ptr<const T>(), p, ctx);
    const std::vector<float> f2t = channels_last_float(f2.ptr<const T>(), p, ctx);
    const T* gsrc = grad_out.ptr<const T>();
    std::vector<float> gf(static_cast<size_t>(grad_out.numel()));
    for (int64_t k = 0; k < grad_out.numel(); ++k) gf[k] = ::opforge::load(gsrc, k);
    run(p, gf.data(), f1t.data(), f2t.data(), grad_f1.ptr<T>(), grad_f2.ptr<T>(), ctx);
    return ::opforge::Status::ok();
  });
}
