#include "opforge_kernels/modelops/embedding_rows.h"

#include <cmath>

namespace {

template <typename T, typename I>
::opforge::Status gather(const ::opforge::TensorView& table, const ::opforge::TensorView& idx,
                         const ::opforge::TensorView* weight, const ::opforge::TensorView& rows,
                         const ::opforge::TensorView& norms, const ::opforge::DeviceContext& ctx) {
  const int64_t v = table.size(0), d = table.size(1), n = idx.size(0);
  const I* index = idx.ptr<const I>();
  for (int64_t i = 0; i < n; ++i)  // checked before any row is written: an error leaves no half-done output
    if (index[i] < -v || index[i] >= v)
      return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                      "modelops::embedding_rows: an index is outside [-V, V) for the table's V rows");
  const T* src = table.ptr<const T>();
  const T* w = weight ? weight->ptr<const T>() : nullptr;
  T* dst = rows.ptr<T>();
  float* norm = norms.ptr<float>();
  ctx.parallel_for(n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = index[i] < 0 ? index[i] + v : index[i];
      const float scale = w ? ::opforge::load(w, i) : 1.0f;
      float sum = 0.0f;
      for (int64_t j = 0; j < d; ++j) {
        const float value = ::opforge::load(src, r * d + j) * scale;
        sum += value * value;
        ::opforge::store(dst, i * d + j, value);
      }
      norm[i] = std::sqrt(sum);
    }
  });
  return ::opforge::Status::ok();
}

}  // namespace

OPFORGE_CPU_KERNEL(modelops, embedding_rows) {
  return OPFORGE_DISPATCH_FLOATING_CPU(table.dtype, T, [&] {
    return idx.dtype == ::opforge::DType::kInt64 ? gather<T, int64_t>(table, idx, weight, rows, norms, ctx)
                                                 : gather<T, int32_t>(table, idx, weight, rows, norms, ctx);
  });
}
