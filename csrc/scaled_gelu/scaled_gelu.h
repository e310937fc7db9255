// opforge::scaled_gelu: y = alpha * gelu(x), math in float32 whatever the storage dtype.
#pragma once

#include "opforge/kernel_api.h"
#include "opforge_kernels/opforge/scaled_gelu.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace scaled_gelu {

// `::opforge` is spelled out because inside this namespace plain `opforge` names opforge_kernels::opforge.
namespace detail {

// Shared by both entry points so CPU and CUDA reject exactly the same inputs.
inline ::opforge::Status check_args(const ::opforge::TensorView& x, const ::opforge::TensorView& y,
                                    ::opforge::StringView approximate, bool* use_tanh) {
  using ::opforge::Status;
  if (approximate.equals("none")) {
    *use_tanh = false;
  } else if (approximate.equals("tanh")) {
    *use_tanh = true;
  } else {
    return Status::error(Status::kInvalidArgument, "scaled_gelu: approximate must be 'none' or 'tanh'");
  }
  if (y.dtype != x.dtype || y.numel() != x.numel())
    return Status::error(Status::kInvalidArgument, "scaled_gelu: y must match x in dtype and numel");
  return Status::ok();
}

}  // namespace detail
}  // namespace scaled_gelu
}  // namespace opforge
}  // namespace opforge_kernels
