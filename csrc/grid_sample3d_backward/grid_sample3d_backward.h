// opforge::grid_sample3d_backward: (grad_input, grad_grid) of opforge::grid_sample3d, with aten's
// grid_sampler_3d_backward semantics (source indices from the *_set_grad functions of grid_sample3d.h).
//   grad_input[n, c, corner] += weight * grad_out[n, c, voxel]   for each corner inside the volume
//   grad_grid[n, voxel, axis] = d(index)/d(grid) * sum_c d(sample)/d(index) * grad_out   (0 for 'nearest')
#pragma once

#include "grid_sample3d/grid_sample3d.h"
#include "opforge_kernels/opforge/grid_sample3d_backward.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace grid_sample3d_backward {
namespace detail {

using ::opforge_kernels::opforge::grid_sample3d::detail::Params;

inline ::opforge::Status check_args(const ::opforge::TensorView& input, const ::opforge::TensorView& grid,
                                    const ::opforge::TensorView& grad_out, const ::opforge::TensorView& grad_input,
                                    const ::opforge::TensorView& grad_grid, ::opforge::StringView mode,
                                    ::opforge::StringView padding_mode, bool align_corners, Params* p) {
  using ::opforge::Status;
  const Status st = ::opforge_kernels::opforge::grid_sample3d::detail::check_args(input, grid, grad_out, mode,
                                                                                  padding_mode, align_corners, p);
  if (!st.is_ok()) return st;
  if (grad_input.dtype != input.dtype || grad_grid.dtype != input.dtype || grad_input.rank != 5 || grad_grid.rank != 5)
    return Status::error(Status::kInvalidArgument,
                         "grid_sample3d_backward: grad_input and grad_grid must be 5-D of input's dtype");
  for (int i = 0; i < 5; ++i)
    if (grad_input.sizes[i] != input.sizes[i] || grad_grid.sizes[i] != grid.sizes[i])
      return Status::error(Status::kInvalidArgument,
                           "grid_sample3d_backward: grad_input must be shaped like input, grad_grid like grid");
  return Status::ok();
}

// Source indices of one grid point for the backward, and d(index)/d(grid) per axis.
struct Point { float ix, iy, iz, mx, my, mz; };

template <typename Load>
OPFORGE_HOST_DEVICE inline Point locate(const Params& p, Load g) {
  namespace gs = ::opforge_kernels::opforge::grid_sample3d::detail;
  Point q;
  q.ix = gs::source_index_grad(g(0), p.W, p.border, p.align, &q.mx);
  q.iy = gs::source_index_grad(g(1), p.H, p.border, p.align, &q.my);
  q.iz = gs::source_index_grad(g(2), p.D, p.border, p.align, &q.mz);
  return q;
}

}  // namespace detail
}  // namespace grid_sample3d_backward
}  // namespace opforge
}  // namespace opforge_kernels
