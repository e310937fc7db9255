#include "scaled_gelu.h"

#include <cmath>

namespace opforge_kernels {
namespace opforge {
namespace scaled_gelu {
namespace {

// Spelled out rather than M_SQRT1_2 / M_2_SQRTPI, which are not standard C++ (MSVC hides them).
constexpr float kSqrt1_2 = 0.70710678118654752440f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kKappa = 0.044715f;

template <typename T>
void run(const T* x, T* y, int64_t n, float alpha, bool use_tanh) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = ::opforge::load(x, i);
    // gelu(-inf) is its limit 0 (the formula gives -inf * 0 = NaN); gelu(+inf) = +inf; NaN stays NaN.
    const float g = v == -INFINITY ? 0.0f
                    : use_tanh ? 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + kKappa * v * v * v)))
                               : 0.5f * v * (1.0f + std::erf(v * kSqrt1_2));
    ::opforge::store(y, i, alpha * g);
  }
}

}  // namespace

::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& y, double alpha,
                      ::opforge::StringView approximate, const ::opforge::DeviceContext& /*ctx*/) {
  bool use_tanh = false;
  const ::opforge::Status st = detail::check_args(x, y, approximate, &use_tanh);
  if (!st.is_ok()) return st;
  const int64_t n = x.numel();
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    if (n > 0) run(x.ptr<const T>(), y.ptr<T>(), n, static_cast<float>(alpha), use_tanh);
    return ::opforge::Status::ok();
  });
}

}  // namespace scaled_gelu
}  // namespace opforge
}  // namespace opforge_kernels
