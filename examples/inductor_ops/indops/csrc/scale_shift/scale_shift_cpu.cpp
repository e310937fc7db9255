#include "opforge_kernels/indops/scale_shift.h"

OPFORGE_CPU_KERNEL(indops, scale_shift) {
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    const T* in = x.ptr<const T>();
    T* out = y.ptr<T>();
    for (int64_t i = 0; i < x.numel(); ++i)
      ::opforge::store(out, i, ::opforge::load(in, i) * static_cast<float>(scale) + static_cast<float>(shift));
    return ::opforge::Status::ok();
  });
}
