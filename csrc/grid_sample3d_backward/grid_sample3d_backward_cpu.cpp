// CPU backward of grid_sample3d, two race-free passes:
//  1. grad_grid: ctx.parallel_for over blocks of output voxels of one batch item; a block's indices,
//     corners and weights are computed once and reused for every channel (as in the forward).
//  2. grad_input: ctx.parallel_for over (n, c) channel volumes; each task owns its volume and scatters every
//     output voxel's grad_out into it in voxel order (aten's order), accumulating in float32.
#include "grid_sample3d_backward.h"

#include "opforge/cpu_isa.h"

#include <vector>

namespace opforge_kernels {
namespace opforge {
namespace grid_sample3d_backward {
namespace {

namespace gs = ::opforge_kernels::opforge::grid_sample3d::detail;
constexpr int64_t kBlock = 64;

template <typename T>
detail::Point point_at(const detail::Params& p, const T* g) {
  return detail::locate(p, [g](int k) { return ::opforge::load(g, k); });
}

template <typename T>
void grid_grads(const detail::Params& p, const T* input, const T* grid, const T* gout, T* grad_grid,
                const ::opforge::DeviceContext& ctx) {
  const int64_t V = p.out_plane(), plane = p.in_plane();
  const int64_t blocks_per_item = (V + kBlock - 1) / kBlock;
  const int64_t work = kBlock * (p.C > 0 ? p.C : 1) * 8;
  const int64_t grain = work >= 32768 ? 1 : 32768 / work;
  ctx.parallel_for(p.N * blocks_per_item, grain, [&](int64_t begin, int64_t end) {
    gs::Trilinear tri[kBlock];
    detail::Point pts[kBlock];
    float acc[kBlock][3];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t n = blk / blocks_per_item;
      const int64_t v0 = (blk % blocks_per_item) * kBlock;
      const int64_t len = V - v0 < kBlock ? V - v0 : kBlock;
      T* gg = grad_grid + (n * V + v0) * 3;
      if (p.nearest) {  // the nearest voxel does not move with the grid: zero gradient, as in aten
        for (int64_t j = 0; j < 3 * len; ++j) ::opforge::store(gg, j, 0.0f);
        continue;
      }
      for (int64_t j = 0; j < len; ++j) {
        pts[j] = point_at(p, grid + (n * V + v0 + j) * 3);
        gs::locate_trilinear(pts[j].ix, pts[j].iy, pts[j].iz, p, &tri[j]);
        acc[j][0] = acc[j][1] = acc[j][2] = 0.0f;
      }
      for (int64_t c = 0; c < p.C; ++c) {
        const T* src = input + (n * p.C + c) * plane;
        const T* go = gout + (n * p.C + c) * V + v0;
        for (int64_t j = 0; j < len; ++j) {
          const gs::Trilinear& t = tri[j];
          float v[8];
          for (int k = 0; k < 8; ++k) v[k] = (t.valid & (1u << k)) ? ::opforge::load(src, t.off[k]) : 0.0f;
          gs::coordinate_grads(t, v, ::opforge::load(go, j), &acc[j][0], &acc[j][1], &acc[j][2]);
        }
      }
      for (int64_t j = 0; j < len; ++j) {
        ::opforge::store(gg, 3 * j, pts[j].mx * acc[j][0]);
        ::opforge::store(gg, 3 * j + 1, pts[j].my * acc[j][1]);
        ::opforge::store(gg, 3 * j + 2, pts[j].mz * acc[j][2]);
      }
    }
  });
}

template <typename T>
void input_grads(const detail::Params& p, const T* grid, const T* gout, T* grad_input,
                 const ::opforge::DeviceContext& ctx) {
  const int64_t V = p.out_plane(), plane = p.in_plane();
  const int64_t work = V * 16 + plane;
  const int64_t grain = work >= 32768 ? 1 : 32768 / (work > 0 ? work : 1);
  ctx.parallel_for(p.N * p.C, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch;
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / p.C;
      float* dst;
      if constexpr (std::is_same_v<T, float>) {
        dst = grad_input + nc * plane;
      } else {
        scratch.resize(static_cast<size_t>(plane));
        dst = scratch.data();
      }
      for (int64_t i = 0; i < plane; ++i) dst[i] = 0.0f;
      const T* go = gout + nc * V;
      for (int64_t v = 0; v < V; ++v) {
        const detail::Point q = point_at(p, grid + (n * V + v) * 3);
        const float gv = ::opforge::load(go, v);
        if (p.nearest) {
          const int32_t idx = gs::locate_nearest(q.ix, q.iy, q.iz, p);
          if (idx >= 0) dst[idx] += gv;
          continue;
        }
        gs::Trilinear t;
        gs::locate_trilinear(q.ix, q.iy, q.iz, p, &t);
        for (int k = 0; k < 8; ++k)
          if (t.valid & (1u << k)) dst[t.off[k]] += t.w[k] * gv;
      }
      if constexpr (!std::is_same_v<T, float>) ::opforge::store_block(dst, grad_input + nc * plane, plane);
    }
  });
}

}  // namespace
}  // namespace grid_sample3d_backward
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, grid_sample3d_backward) {
  detail::Params p;
  const ::opforge::Status st =
      detail::check_args(input, grid, grad_out, grad_input, grad_grid, mode, padding_mode, align_corners, &p);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CPU(input.dtype, T, [&] {
    if (grad_input.numel() > 0)  // zeros also where no output voxel exists
      input_grads(p, grid.ptr<const T>(), grad_out.ptr<const T>(), grad_input.ptr<T>(), ctx);
    if (grad_grid.numel() > 0)
      grid_grads(p, input.ptr<const T>(), grid.ptr<const T>(), grad_out.ptr<const T>(), grad_grid.ptr<T>(), ctx);
    return ::opforge::Status::ok();
  });
}
