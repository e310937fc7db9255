#include "opforge_kernels/indops/softmax.h"

#include <cmath>

OPFORGE_CPU_KERNEL(indops, softmax) {
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    const T* xs = x.ptr<const T>();
    T* ys = y.ptr<T>();
    const int64_t cols = x.numel() == 0 ? 0 : x.sizes[x.rank - 1];
    const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t base = r * cols;
      float top = -INFINITY;
      for (int64_t j = 0; j < cols; ++j) top = std::fmax(top, ::opforge::load(xs, base + j));
      double sum = 0.0;
      for (int64_t j = 0; j < cols; ++j) sum += std::exp(::opforge::load(xs, base + j) - top);
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < cols; ++j)
        ::opforge::store(ys, base + j, std::exp(::opforge::load(xs, base + j) - top) * inv);
    }
    return ::opforge::Status::ok();
  });
}
