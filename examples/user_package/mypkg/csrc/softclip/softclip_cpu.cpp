#include "softclip.h"

#include <cmath>

namespace opforge_kernels {
namespace mypkg {
namespace softclip {

::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& y, double bound,
                      const ::opforge::DeviceContext& /*ctx*/) {
  const float b = static_cast<float>(bound);
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    const T* in = x.ptr<const T>();
    T* out = y.ptr<T>();
    for (int64_t i = 0; i < x.numel(); ++i) ::opforge::store(out, i, b * std::tanh(::opforge::load(in, i) / b));
    return ::opforge::Status::ok();
  });
}

}  // namespace softclip
}  // namespace mypkg
}  // namespace opforge_kernels
