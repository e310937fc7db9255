#include "opforge_kernels/modelops/masked_pool.h"

OPFORGE_CPU_KERNEL(modelops, masked_pool) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), oh = h / 2, ow = w / 2;
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    const T* in = x.ptr<const T>();
    const T* m = mask ? mask->ptr<const T>() : nullptr;
    T* out = y.ptr<T>();
    ctx.parallel_for(n * c, 16, [&](int64_t begin, int64_t end) {
      for (int64_t plane = begin; plane < end; ++plane) {
        const int64_t b = plane / c;
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j) {
            float sum = 0.0f;
            for (int64_t di = 0; di < 2; ++di)
              for (int64_t dj = 0; dj < 2; ++dj) {
                const int64_t pixel = (2 * i + di) * w + 2 * j + dj;
                const float value = ::opforge::load(in, plane * h * w + pixel);
                sum += m ? value * ::opforge::load(m, b * h * w + pixel) : value;
              }
            ::opforge::store(out, (plane * oh + i) * ow + j, 0.25f * sum);
          }
      }
    });
    return ::opforge::Status::ok();
  });
}
