#include "correlation_backward.h"

#include "opforge/kernel_cuda.cuh"

#include <cstdint>

namespace opforge_kernels {
namespace opforge {
namespace correlation_backward {
namespace {

using ::opforge::cuda::from_float;
using ::opforge::cuda::to_float;

// Channels per thread: the window gathers of grad_out (independent of the channel) are shared by this many
// channels, and the accumulators stay in registers.
constexpr int kChannels = 8;

// One thread per (b, channel group, y, x), x fastest (coalesced): it owns grad_f1 and grad_f2 at that pixel
// for its channels and gathers over every displacement, so no two threads write one element (no atomics,
// deterministic). grad_out, f1 and f2 are read through L1/L2.
template <typename T>
__global__ void correlation_backward_kernel(const T* __restrict__ grad, const T* __restrict__ f1,
                                            const T* __restrict__ f2, T* __restrict__ grad_f1, T* __restrict__ grad_f2,
                                            const detail::Params p, int64_t groups, int64_t total) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int H = static_cast<int>(p.height), W = static_cast<int>(p.width);
  const int64_t plane = p.height * p.width;
  const int64_t out_plane = p.out_h * p.out_w;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += step) {
    const int x = static_cast<int>(idx % W);
    int64_t rest = idx / W;
    const int y = static_cast<int>(rest % H);
    rest /= H;
    const int64_t c0 = (rest % groups) * kChannels;
    const int64_t b = rest / groups;
    const int nch = static_cast<int>(p.channels - c0 < kChannels ? p.channels - c0 : kChannels);
    const T* f1b = f1 + (b * p.channels + c0) * plane;
    const T* f2b = f2 + (b * p.channels + c0) * plane;
    float acc1[kChannels], acc2[kChannels];
#pragma unroll
    for (int k = 0; k < kChannels; ++k) acc1[k] = acc2[k] = 0.0f;

    for (int ph = 0; ph < p.patch_h; ++ph) {
      const int sy = p.shift_h(ph);
      for (int pw = 0; pw < p.patch_w; ++pw) {
        const int sx = p.shift_w(pw);
        const T* g = grad + ((b * p.patch_h + ph) * p.patch_w + pw) * out_plane;
        const auto load_g = [g](int64_t k) { return to_float(g[k]); };
        // grad_f1 at (y, x): the f1 tap is here, its f2 partner at (y + sy, x + sx)
        if (y + sy >= 0 && y + sy < H && x + sx >= 0 && x + sx < W) {
          const float gv = correlation::detail::window_gather(p, y, x, load_g);
          const int64_t o = static_cast<int64_t>(y + sy) * W + x + sx;
#pragma unroll
          for (int k = 0; k < kChannels; ++k)
            if (k < nch) acc1[k] = fmaf(gv, to_float(f2b[k * plane + o]), acc1[k]);
        }
        // grad_f2 at (y, x): the f1 tap is at (y - sy, x - sx)
        const int y1 = y - sy, x1 = x - sx;
        if (y1 >= 0 && y1 < H && x1 >= 0 && x1 < W) {
          const float gv = correlation::detail::window_gather(p, y1, x1, load_g);
          const int64_t o = static_cast<int64_t>(y1) * W + x1;
#pragma unroll
          for (int k = 0; k < kChannels; ++k)
            if (k < nch) acc2[k] = fmaf(gv, to_float(f1b[k * plane + o]), acc2[k]);
        }
      }
    }
    const int64_t o = static_cast<int64_t>(y) * W + x;
    T* d1 = grad_f1 + (b * p.channels + c0) * plane + o;
    T* d2 = grad_f2 + (b * p.channels + c0) * plane + o;
#pragma unroll
    for (int k = 0; k < kChannels; ++k)
      if (k < nch) {
        d1[k * plane] = from_float<T>(acc1[k]);
        d2[k * plane] = from_float<T>(acc2[k]);
      }
  }
}

}  // namespace
}  // namespace correlation_backward
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, correlation_backward) {
  detail::Params p;
  const ::opforge::Status st = detail::check_args(f1, f2, grad_out, grad_f1, grad_f2, kernel_size, patch_size, stride,
                                                  padding, dilation, dilation_patch, &p);
  if (!st.is_ok()) return st;
  if (f1.numel() == 0) return ::opforge::Status::ok();
  const int64_t groups = (p.channels + kChannels - 1) / kChannels;
  const int64_t total = p.batch * groups * p.height * p.width;
  constexpr int kThreads = 256;
  const int64_t needed = (total + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(needed < 65536 * 8 ? needed : 65536 * 8);
  return OPFORGE_DISPATCH_FLOATING_CUDA(f1.dtype, T, [&] {
    correlation_backward_kernel<T><<<blocks, kThreads, 0, ::opforge::cuda::stream(ctx)>>>(
        grad_out.ptr<const T>(), f1.ptr<const T>(), f2.ptr<const T>(), grad_f1.ptr<T>(), grad_f2.ptr<T>(), p, groups,
        total);
    return ::opforge::cuda::launch_status("correlation_backward: CUDA launch failed");
  });
}
