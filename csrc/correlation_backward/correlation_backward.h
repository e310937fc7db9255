// opforge::correlation_backward: (grad_f1, grad_f2) of opforge::correlation (see csrc/correlation/correlation.h).
// Both gradients are gathers, so each output element is written by exactly one thread (no atomics):
//   G(b, ph, pw, y, x) = sum of grad_out[b, ph, pw, oy, ox] over the outputs whose window has a tap at (y, x)
//   grad_f1[b, c, y, x] = sum_{ph, pw} G(b, ph, pw, y, x) * f2[b, c, y + sy, x + sx]
//   grad_f2[b, c, y, x] = sum_{ph, pw} G(b, ph, pw, y - sy, x - sx) * f1[b, c, y - sy, x - sx]
// each term only where both positions are inside the image.
#pragma once

#include "correlation/correlation.h"
#include "opforge/kernel_api.h"
#include "opforge_kernels/opforge/correlation_backward.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace correlation_backward {

namespace detail {

using Params = ::opforge_kernels::opforge::correlation::detail::Params;

inline ::opforge::Status check_args(const ::opforge::TensorView& f1, const ::opforge::TensorView& f2,
                                    const ::opforge::TensorView& grad_out, const ::opforge::TensorView& grad_f1,
                                    const ::opforge::TensorView& grad_f2, ::opforge::Span<int64_t> kernel_size,
                                    ::opforge::Span<int64_t> patch_size, ::opforge::Span<int64_t> stride,
                                    ::opforge::Span<int64_t> padding, ::opforge::Span<int64_t> dilation,
                                    ::opforge::Span<int64_t> dilation_patch, Params* p) {
  using ::opforge::Status;
  const Status st = ::opforge_kernels::opforge::correlation::detail::check_args(
      f1, f2, grad_out, kernel_size, patch_size, stride, padding, dilation, dilation_patch, p);
  if (!st.is_ok()) return st;
  if (grad_f1.rank != 4 || grad_f2.rank != 4 || grad_f1.dtype != f1.dtype || grad_f2.dtype != f1.dtype)
    return Status::error(Status::kInvalidArgument, "correlation_backward: grad_f1/grad_f2 must be like f1/f2");
  for (int d = 0; d < 4; ++d)
    if (grad_f1.sizes[d] != f1.sizes[d] || grad_f2.sizes[d] != f1.sizes[d])
      return Status::error(Status::kInvalidArgument, "correlation_backward: grad_f1/grad_f2 must be like f1/f2");
  return Status::ok();
}

}  // namespace detail
}  // namespace correlation_backward
}  // namespace opforge
}  // namespace opforge_kernels
