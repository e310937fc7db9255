#include "opforge_kernels/modelops/box_blur.h"

OPFORGE_CPU_KERNEL(modelops, box_blur) {
  const int64_t rows = x.size(0) * x.size(1), w = x.size(2), ow = out.size(2);
  if (kernel < 1 || kernel > w)
    return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                    "modelops::box_blur: kernel must be in [1, x.shape[2]]");
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    const T* in = x.ptr<const T>();
    T* dst = out.ptr<T>();
    const float inv = 1.0f / static_cast<float>(kernel);
    ctx.parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        for (int64_t j = 0; j < ow; ++j) {
          float sum = 0.0f;
          for (int64_t t = 0; t < kernel; ++t) sum += ::opforge::load(in, r * w + j + t);
          ::opforge::store(dst, r * ow + j, sum * inv);
        }
    });
    return ::opforge::Status::ok();
  });
}
