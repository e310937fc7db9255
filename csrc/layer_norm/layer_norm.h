// opforge::layer_norm: y = (x - mean) / sqrt(var + eps) * weight (+ bias), over the last dim, statistics in
// float32 (the mean first, then the mean of squared deviations from it).
#pragma once

#include "opforge/kernel_api.h"
#include "opforge_kernels/opforge/layer_norm.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace layer_norm {

// `::opforge` is spelled out because inside this namespace plain `opforge` names opforge_kernels::opforge.
namespace detail {

// Shared by both entry points so CPU and CUDA reject exactly the same inputs. On success *rows and
// *cols describe x as a [rows, cols] matrix; cols == 0 gives rows == 0 (nothing to compute or write).
// `bias` may be null (absent).
inline ::opforge::Status check_args(const ::opforge::TensorView& x, const ::opforge::TensorView& weight,
                                    const ::opforge::TensorView* bias, const ::opforge::TensorView& y, int64_t* rows,
                                    int64_t* cols) {
  using ::opforge::Status;
  if (x.rank < 1) return Status::error(Status::kInvalidArgument, "layer_norm: x must have rank >= 1");
  const int64_t c = x.size(-1);
  if (weight.rank != 1 || weight.sizes[0] != c)
    return Status::error(Status::kInvalidArgument, "layer_norm: weight must be 1-D with x.size(-1) elements");
  if (bias != nullptr && (bias->rank != 1 || bias->sizes[0] != c))
    return Status::error(Status::kInvalidArgument, "layer_norm: bias must be 1-D with x.size(-1) elements");
  if (weight.dtype != x.dtype || y.dtype != x.dtype || (bias != nullptr && bias->dtype != x.dtype))
    return Status::error(Status::kInvalidArgument, "layer_norm: x, weight, bias and y must share a dtype");
  if (y.numel() != x.numel())
    return Status::error(Status::kInvalidArgument, "layer_norm: y must have as many elements as x");
  *cols = c;
  *rows = c == 0 ? 0 : x.numel() / c;
  return Status::ok();
}

}  // namespace detail
}  // namespace layer_norm
}  // namespace opforge
}  // namespace opforge_kernels
