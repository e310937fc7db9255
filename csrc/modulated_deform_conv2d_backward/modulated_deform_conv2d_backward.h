// opforge::modulated_deform_conv2d_backward: the gradients of opforge::modulated_deform_conv2d.
//
// Outputs (all always written): grad_x [B, C, H, W], grad_offset [B, 2*dg*K, OH, OW], grad_weight like weight,
// grad_mask [B, dg*K, OH, OW] (the gradient at mask = 1 when mask is absent), grad_bias [Cout].
// Semantics follow the forward's reference under autograd: a sample outside the image passes gradient
// only to the mask; a NaN position passes NaN to the mask and nothing to x or offset.
#pragma once

#include "modulated_deform_conv2d/modulated_deform_conv2d.h"
#include "opforge_kernels/opforge/modulated_deform_conv2d_backward.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace modulated_deform_conv2d_backward {

namespace detail {

using ::opforge_kernels::opforge::modulated_deform_conv2d::detail::Geometry;

inline ::opforge::Status check_args(const ::opforge::TensorView& grad_out, const ::opforge::TensorView& x,
                                    const ::opforge::TensorView& offset, const ::opforge::TensorView& weight,
                                    const ::opforge::TensorView* mask, const ::opforge::TensorView& grad_x,
                                    const ::opforge::TensorView& grad_offset, const ::opforge::TensorView& grad_weight,
                                    const ::opforge::TensorView& grad_mask, const ::opforge::TensorView& grad_bias,
                                    ::opforge::Span<int64_t> stride, ::opforge::Span<int64_t> padding,
                                    ::opforge::Span<int64_t> dilation, int64_t groups, int64_t deformable_groups,
                                    Geometry* g) {
  namespace fwd = ::opforge_kernels::opforge::modulated_deform_conv2d::detail;
  using ::opforge::Status;
  Status st = fwd::check_args(x, offset, weight, mask, stride, padding, dilation, groups, deformable_groups, g);
  if (!st.is_ok()) return st;
  if (grad_out.dtype != x.dtype || !fwd::dims_are(grad_out, g->B, g->Cout, g->OH, g->OW))
    return Status::error(Status::kInvalidArgument,
                         "modulated_deform_conv2d_backward: grad_out must be [B, Cout, oH, oW] of x's dtype");
  const ::opforge::TensorView* outs[] = {&grad_x, &grad_offset, &grad_weight, &grad_mask, &grad_bias};
  for (const ::opforge::TensorView* o : outs)
    if (o->dtype != x.dtype)
      return Status::error(Status::kInvalidArgument, "modulated_deform_conv2d_backward: outputs must have x's dtype");
  if (!fwd::dims_are(grad_x, g->B, g->C, g->H, g->W) ||
      !fwd::dims_are(grad_offset, g->B, 2 * g->dg * g->K, g->OH, g->OW) ||
      !fwd::dims_are(grad_weight, g->Cout, g->Cg, g->kh, g->kw) ||
      !fwd::dims_are(grad_mask, g->B, g->dg * g->K, g->OH, g->OW) || grad_bias.rank != 1 ||
      grad_bias.sizes[0] != g->Cout)
    return Status::error(Status::kInvalidArgument, "modulated_deform_conv2d_backward: an output has the wrong shape");
  return Status::ok();
}

// d(sample)/d(py, px) times gv, for corner values v (0 for corners outside the image), written as autograd
// evaluates the reference (products of gv with each corner value first), so infinities and NaNs in the
// incoming gradient give the same non-finite results as the reference.
OPFORGE_HOST_DEVICE inline void coordinate_grads(float gv, const float v[4], float ly, float lx, float* gy, float* gx) {
  const float hy = 1.0f - ly, hx = 1.0f - lx;
  const float g0 = gv * v[0], g1 = gv * v[1], g2 = gv * v[2], g3 = gv * v[3];
  *gy = (g2 * hx + g3 * lx) - (g0 * hx + g1 * lx);
  *gx = (g1 * hy + g3 * ly) - (g0 * hy + g2 * ly);
}

}  // namespace detail
}  // namespace modulated_deform_conv2d_backward
}  // namespace opforge
}  // namespace opforge_kernels
