// opforge::multi_scale_deformable_attn_backward: the gradients of opforge::multi_scale_deformable_attn.
//
// Outputs (all always written): grad_value like value, grad_sampling_locations like sampling_locations,
// grad_attention_weights like attention_weights. Semantics follow the forward's reference under autograd: a
// point with no corner inside its level passes gradient only to its attention weight; a NaN point passes NaN
// to its attention weight and nothing to value or its location.
#pragma once

#include "multi_scale_deformable_attn/multi_scale_deformable_attn.h"
#include "opforge_kernels/opforge/multi_scale_deformable_attn_backward.h"  // the entry points, generated

namespace opforge_kernels {
namespace opforge {
namespace multi_scale_deformable_attn_backward {
namespace detail {

namespace fwd = ::opforge_kernels::opforge::multi_scale_deformable_attn::detail;

inline ::opforge::Status check_args(const ::opforge::TensorView& value, const ::opforge::TensorView& spatial_shapes,
                                    const ::opforge::TensorView& level_start_index,
                                    const ::opforge::TensorView& sampling_locations,
                                    const ::opforge::TensorView& attention_weights,
                                    const ::opforge::TensorView& grad_output, const ::opforge::TensorView& grad_value,
                                    const ::opforge::TensorView& grad_sampling_locations,
                                    const ::opforge::TensorView& grad_attention_weights, fwd::Dims* g) {
  using ::opforge::Status;
  Status st = fwd::check_dims(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, g);
  if (!st.is_ok()) return st;
  const auto same = [](const ::opforge::TensorView& a, const ::opforge::TensorView& b) {
    if (a.rank != b.rank || a.dtype != b.dtype) return false;
    for (int32_t i = 0; i < a.rank; ++i)
      if (a.sizes[i] != b.sizes[i]) return false;
    return true;
  };
  if (!fwd::dims_are(grad_output, {g->N, g->Lq, g->M * g->D}) || grad_output.dtype != value.dtype ||
      !same(grad_value, value) || !same(grad_sampling_locations, sampling_locations) ||
      !same(grad_attention_weights, attention_weights))
    return Status::error(Status::kInvalidArgument,
                         "multi_scale_deformable_attn_backward: grad_output must be [N, Lq, M*D] and the gradients "
                         "shaped like their inputs, all of value's dtype");
  return Status::ok();
}

}  // namespace detail
}  // namespace multi_scale_deformable_attn_backward
}  // namespace opforge
}  // namespace opforge_kernels
