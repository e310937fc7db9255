// CPU helpers shared by opforge::correlation and opforge::correlation_backward.
#pragma once

#include <vector>

#include "correlation.h"

namespace opforge_kernels {
namespace opforge {
namespace correlation {
namespace cpu_common {

// A float copy of x [B, C, H, W] in channels-last order [B, H, W, C], so the sums over channels are dot
// products of contiguous vectors. Parallel over (b, y) rows.
template <typename T>
std::vector<float> channels_last_float(const T* x, const detail::Params& p, const ::opforge::DeviceContext& ctx) {
  const int64_t C = p.channels, H = p.height, W = p.width;
  std::vector<float> t(static_cast<size_t>(p.batch * H * W * C));
  const int64_t row = W * C > 0 ? W * C : 1;
  ctx.parallel_for(p.batch * H, row >= 65536 ? 1 : 65536 / row, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / H, y = r % H;
      const T* src = x + b * C * H * W + y * W;
      float* dst = t.data() + r * W * C;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t xx = 0; xx < W; ++xx) dst[xx * C + c] = ::opforge::load(src, c * H * W + xx);
    }
  });
  return t;
}

// Independent partial sums: the compiler vectorises them without -ffast-math, and the rounding error of a
// long channel sum stays small.
inline float dot(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 8;
  float partial[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int k = 0; k < kLanes; ++k) partial[k] += a[c + k] * b[c + k];
  for (; c < n; ++c) partial[0] += a[c] * b[c];
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int k = 0; k < width; ++k) partial[k] += partial[k + width];
  return partial[0];
}

inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] += alpha * x[c];
}

inline int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The output columns [*lo, *hi) whose tap x = ox * stride + off has x and x + shift inside [0, width).
inline void tap_range(int off, int shift, int stride, int width, int out_w, int* lo, int* hi) {
  const int xlo = shift < 0 ? -shift : 0;
  const int xhi = shift > 0 ? width - shift : width;  // exclusive
  *lo = 0;
  *hi = 0;
  if (xlo >= xhi) return;
  int l = -floor_div(off - xlo, stride);  // ceil((xlo - off) / stride)
  int h = floor_div(xhi - 1 - off, stride) + 1;
  if (l < 0) l = 0;
  if (h > out_w) h = out_w;
  if (l < h) {
    *lo = l;
    *hi = h;
  }
}

}  // namespace cpu_common
}  // namespace correlation
}  // namespace opforge
}  // namespace opforge_kernels
