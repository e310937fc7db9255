// opforge::rms_norm: y = x / sqrt(mean(x^2, last dim) + eps) * weight, math in float32.
#pragma once

#include "opforge/kernel_api.h"
#include "opforge_kernels/opforge/rms_norm.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace rms_norm {

// `::opforge` is spelled out because inside this namespace plain `opforge` names opforge_kernels::opforge.
namespace detail {

// Shared by both entry points so CPU and CUDA reject exactly the same inputs. On success *rows and
// *cols describe x as a [rows, cols] matrix; cols == 0 gives rows == 0 (nothing to compute or write).
inline ::opforge::Status check_args(const ::opforge::TensorView& x, const ::opforge::TensorView& weight,
                                    const ::opforge::TensorView& y, int64_t* rows, int64_t* cols) {
  using ::opforge::Status;
  if (x.rank < 1) return Status::error(Status::kInvalidArgument, "rms_norm: x must have rank >= 1");
  const int64_t c = x.size(-1);
  if (weight.rank != 1 || weight.sizes[0] != c)
    return Status::error(Status::kInvalidArgument, "rms_norm: weight must be 1-D with x.size(-1) elements");
  if (weight.dtype != x.dtype || y.dtype != x.dtype)
    return Status::error(Status::kInvalidArgument, "rms_norm: x, weight and y must share a dtype");
  if (y.numel() != x.numel())
    return Status::error(Status::kInvalidArgument, "rms_norm: y must have as many elements as x");
  *cols = c;
  *rows = c == 0 ? 0 : x.numel() / c;
  return Status::ok();
}

}  // namespace detail
}  // namespace rms_norm
}  // namespace opforge
}  // namespace opforge_kernels
