#include "rms_norm.h"

#include <cmath>

namespace opforge_kernels {
namespace opforge {
namespace rms_norm {
namespace {

// Independent partial sums keep the float32 rounding error of long rows small (like a vectorised or
// tree reduction) and let the compiler use SIMD without -ffast-math.
constexpr int kLanes = 8;

template <typename T>
void run(const T* x, const T* w, T* y, int64_t rows, int64_t cols, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    float partial[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= cols; j += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        const float v = ::opforge::load(xr, j + k);
        partial[k] += v * v;
      }
    }
    for (; j < cols; ++j) {
      const float v = ::opforge::load(xr, j);
      partial[0] += v * v;
    }
    for (int width = kLanes / 2; width > 0; width /= 2)
      for (int k = 0; k < width; ++k) partial[k] += partial[k + width];
    const float inv = 1.0f / std::sqrt(partial[0] / static_cast<float>(cols) + eps);
    for (j = 0; j < cols; ++j) ::opforge::store(yr, j, ::opforge::load(xr, j) * inv * ::opforge::load(w, j));
  }
}

}  // namespace

::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& weight,
                      const ::opforge::TensorView& y, double eps, const ::opforge::DeviceContext& /*ctx*/) {
  int64_t rows = 0, cols = 0;
  const ::opforge::Status st = detail::check_args(x, weight, y, &rows, &cols);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    if (rows > 0)
      run(x.ptr<const T>(), weight.ptr<const T>(), y.ptr<T>(), rows, cols, static_cast<float>(eps));
    return ::opforge::Status::ok();
  });
}

}  // namespace rms_norm
}  // namespace opforge
}  // namespace opforge_kernels
