#include "opforge_kernels/indops/gated_rms_norm.h"

#include <cmath>

OPFORGE_CPU_KERNEL(indops, gated_rms_norm) {
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    const T* xs = x.ptr<const T>();
    const T* gs = gate.ptr<const T>();
    const T* ws = weight.ptr<const T>();
    T* ys = y.ptr<T>();
    const int64_t cols = x.numel() == 0 ? 0 : x.sizes[x.rank - 1];
    const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t base = r * cols;
      double sum = 0.0;
      for (int64_t j = 0; j < cols; ++j) {
        T h;  // x * gate rounds to the input dtype first, as the reference's (x * gate).float() does
        ::opforge::store(&h, 0, ::opforge::load(xs, base + j) * ::opforge::load(gs, base + j));
        const float hf = ::opforge::load(&h, 0);
        sum += static_cast<double>(hf) * hf;
      }
      const float inv = 1.0f / std::sqrt(static_cast<float>(sum / static_cast<double>(cols)) + static_cast<float>(eps));
      for (int64_t j = 0; j < cols; ++j) {
        T h;
        ::opforge::store(&h, 0, ::opforge::load(xs, base + j) * ::opforge::load(gs, base + j));
        ::opforge::store(ys, base + j, ::opforge::load(&h, 0) * inv * ::opforge::load(ws, j));
      }
    }
    return ::opforge::Status::ok();
  });
}
