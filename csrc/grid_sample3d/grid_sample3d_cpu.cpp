// CPU forward of grid_sample3d: ctx.parallel_for over blocks of output voxels of one batch item. A block's
// source indices, corner offsets and trilinear weights are computed once (grid_sample3d.h) and reused for
// every channel; each channel's outputs for the block are then one contiguous run.
#include "grid_sample3d.h"

#include "opforge/cpu_isa.h"

namespace opforge_kernels {
namespace opforge {
namespace grid_sample3d {
namespace {

constexpr int64_t kBlock = 64;  // output voxels per block

template <typename T>
void forward(const detail::Params& p, const T* input, const T* grid, T* out, const ::opforge::DeviceContext& ctx) {
  const int64_t V = p.out_plane(), plane = p.in_plane();
  const int64_t blocks_per_item = (V + kBlock - 1) / kBlock;
  const int64_t work = kBlock * (p.C > 0 ? p.C : 1) * (p.nearest ? 1 : 8);
  const int64_t grain = work >= 32768 ? 1 : 32768 / work;
  ctx.parallel_for(p.N * blocks_per_item, grain, [&](int64_t begin, int64_t end) {
    detail::Trilinear tri[kBlock];
    int32_t near[kBlock];
    float acc[kBlock];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t n = blk / blocks_per_item;
      const int64_t v0 = (blk % blocks_per_item) * kBlock;
      const int64_t len = V - v0 < kBlock ? V - v0 : kBlock;
      const T* g = grid + (n * V + v0) * 3;
      for (int64_t j = 0; j < len; ++j) {
        const float ix = detail::source_index(::opforge::load(g, 3 * j), p.W, p.border, p.align);
        const float iy = detail::source_index(::opforge::load(g, 3 * j + 1), p.H, p.border, p.align);
        const float iz = detail::source_index(::opforge::load(g, 3 * j + 2), p.D, p.border, p.align);
        if (p.nearest)
          near[j] = detail::locate_nearest(ix, iy, iz, p);
        else
          detail::locate_trilinear(ix, iy, iz, p, &tri[j]);
      }
      for (int64_t c = 0; c < p.C; ++c) {
        const T* src = input + (n * p.C + c) * plane;
        if (p.nearest) {
          for (int64_t j = 0; j < len; ++j) acc[j] = near[j] >= 0 ? ::opforge::load(src, near[j]) : 0.0f;
        } else {
          for (int64_t j = 0; j < len; ++j) {
            const detail::Trilinear& t = tri[j];
            float s = 0.0f;  // aten's order: corners inside only, tnw ... bse
            for (int k = 0; k < 8; ++k)
              if (t.valid & (1u << k)) s += ::opforge::load(src, t.off[k]) * t.w[k];
            acc[j] = s;
          }
        }
        ::opforge::store_block(acc, out + (n * p.C + c) * V + v0, len);
      }
    }
  });
}

}  // namespace
}  // namespace grid_sample3d
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, grid_sample3d) {
  detail::Params p;
  const ::opforge::Status st = detail::check_args(input, grid, output, mode, padding_mode, align_corners, &p);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CPU(input.dtype, T, [&] {
    if (output.numel() == 0) return ::opforge::Status::ok();
    forward(p, input.ptr<const T>(), grid.ptr<const T>(), output.ptr<T>(), ctx);
    return ::opforge::Status::ok();
  });
}
