// CUDA forward of grid_sample3d. aten's grid_sampler_3d runs one thread per output voxel that loops over all
// C channels, one channel's 8 corner loads after the other. Here a block is 2-D: threadIdx.x walks
// consecutive output voxels (coalesced grid reads and output writes), threadIdx.y splits the channels
// (c = y, y + blockDim.y, ...). Each thread computes its voxel's corner offsets and weights once
// (grid_sample3d.h) and reuses them for its channels, whose loads are independent (restrict pointers,
// 32-bit offsets), so several channels' gathers are in flight at once. float16/bfloat16: float32 math.
// Corners outside the volume are never read (predicated loads).
#include "grid_sample3d.h"

#include "opforge/kernel_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace grid_sample3d {
namespace {

using ::opforge::cuda::from_float;
using ::opforge::cuda::to_float;

template <typename T, bool kNearest>
__global__ void __launch_bounds__(256) forward_kernel(const T* __restrict__ input, const T* __restrict__ grid,
                                                      T* __restrict__ out, const detail::Params p, int64_t total) {
  const int64_t V = p.out_plane(), plane = p.in_plane();
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t n = e / V, v = e - n * V;
    const T* g = grid + e * 3;
    const float ix = detail::source_index(to_float(g[0]), p.W, p.border, p.align);
    const float iy = detail::source_index(to_float(g[1]), p.H, p.border, p.align);
    const float iz = detail::source_index(to_float(g[2]), p.D, p.border, p.align);
    const T* src = input + n * p.C * plane;
    T* dst = out + n * p.C * V + v;
    if (kNearest) {
      const int32_t idx = detail::locate_nearest(ix, iy, iz, p);
#pragma unroll 4
      for (int64_t c = threadIdx.y; c < p.C; c += blockDim.y)
        dst[c * V] = idx >= 0 ? __ldg(src + c * plane + idx) : from_float<T>(0.0f);
    } else {
      detail::Trilinear t;
      detail::locate_trilinear(ix, iy, iz, p, &t);
#pragma unroll 2
      for (int64_t c = threadIdx.y; c < p.C; c += blockDim.y) {
        const T* s = src + c * plane;
        float v8[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) v8[k] = (t.valid & (1u << k)) ? to_float(__ldg(s + t.off[k])) : 0.0f;
        float acc = 0.0f;  // aten's order: tnw ... bse; a corner outside adds +-0, which changes no sum
#pragma unroll
        for (int k = 0; k < 8; ++k) acc += v8[k] * t.w[k];
        dst[c * V] = from_float<T>(acc);
      }
    }
  }
}

}  // namespace

// Block shape for C channels: 32 * bx voxels by by channel lanes, 256 threads (fewer lanes for C < 8).
inline dim3 block_for(int64_t channels) {
  const unsigned by = channels >= 8 ? 8u : (channels > 0 ? static_cast<unsigned>(channels) : 1u);
  return dim3(32u * (8u / by), by);
}

inline unsigned blocks_for(int64_t total, unsigned per_block) {
  const int64_t b = (total + per_block - 1) / per_block;
  return static_cast<unsigned>(b < 1 ? 1 : (b > (int64_t{1} << 20) ? (int64_t{1} << 20) : b));
}

}  // namespace grid_sample3d
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, grid_sample3d) {
  detail::Params p;
  const ::opforge::Status st = detail::check_args(input, grid, output, mode, padding_mode, align_corners, &p);
  if (!st.is_ok()) return st;
  if (output.numel() == 0) return ::opforge::Status::ok();
  const int64_t total = p.N * p.out_plane();
  const dim3 block = block_for(p.C);
  const unsigned blocks = blocks_for(total, block.x);
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  return OPFORGE_DISPATCH_FLOATING_CUDA(input.dtype, T, [&] {
    if (p.nearest)
      forward_kernel<T, true>
          <<<blocks, block, 0, stream>>>(input.ptr<const T>(), grid.ptr<const T>(), output.ptr<T>(), p, total);
    else
      forward_kernel<T, false>
          <<<blocks, block, 0, stream>>>(input.ptr<const T>(), grid.ptr<const T>(), output.ptr<T>(), p, total);
    return ::opforge::cuda::launch_status("grid_sample3d: CUDA launch failed");
  });
}
