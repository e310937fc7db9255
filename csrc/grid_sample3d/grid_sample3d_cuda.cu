// CUDA forward of grid_sample3d. Blocks are 2-D: threadIdx.x walks consecutive output voxels (coalesced grid
// reads and output writes), threadIdx.y is the channel lane (detail::channel_lanes: usually one, so a thread
// serves all C channels of its voxel). Each thread computes its voxel's corner offsets and weights once
// (grid_sample3d.h) and reuses them for every channel; four channels' 8 corner loads each are issued before
// any is used (restrict pointers, 32-bit offsets), where aten's grid_sampler_3d re-checks bounds and
// recomputes 64-bit offsets per channel and corner. float16/bfloat16: float32 math. Corners outside the
// volume are never read (predicated loads).
#include "grid_sample3d.h"

#include "opforge/kernel_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace grid_sample3d {
namespace {

using ::opforge::cuda::from_float;
using ::opforge::cuda::to_float;

// aten's order: tnw ... bse; a corner outside adds +-0, which changes no sum.
__device__ __forceinline__ float trilinear_sum(const float (&v)[8], const float (&w)[8]) {
  float acc = 0.0f;
#pragma unroll
  for (int k = 0; k < 8; ++k) acc += v[k] * w[k];
  return acc;
}

// kChunk channels' corner loads are issued before any is used (bilinear). 4 is the default;
// OPFORGE_GRID_SAMPLE3D_CHUNK=1|2|4|8 selects another (for measurements).
template <typename T, bool kNearest, int kChunk = 4>
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
      const int64_t lanes = blockDim.y;
      int64_t c = threadIdx.y;
      for (; c + (kChunk - 1) * lanes < p.C; c += kChunk * lanes) {  // kChunk channels' loads in flight
        float v8[kChunk][8];
#pragma unroll
        for (int j = 0; j < kChunk; ++j) {
          const T* s = src + (c + j * lanes) * plane;
#pragma unroll
          for (int k = 0; k < 8; ++k) v8[j][k] = (t.valid & (1u << k)) ? to_float(__ldg(s + t.off[k])) : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < kChunk; ++j) dst[(c + j * lanes) * V] = from_float<T>(trilinear_sum(v8[j], t.w));
      }
      for (; c < p.C; c += lanes) {
        const T* s = src + c * plane;
        float v8[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) v8[k] = (t.valid & (1u << k)) ? to_float(__ldg(s + t.off[k])) : 0.0f;
        dst[c * V] = from_float<T>(trilinear_sum(v8, t.w));
      }
    }
  }
}

}  // namespace

// Block shape: 256 threads, (256 / lanes) voxels by `lanes` channel lanes.
inline dim3 block_for(int64_t voxels, int64_t channels) {
  const unsigned lanes = detail::channel_lanes(voxels, channels);
  return dim3(256u / lanes, lanes);
}

inline int chunk_requested() {
  const char* e = std::getenv("OPFORGE_GRID_SAMPLE3D_CHUNK");
  const int f = e != nullptr ? std::atoi(e) : 4;
  return f == 1 || f == 2 || f == 8 ? f : 4;
}

template <typename T>
void launch_bilinear(const T* input, const T* grid, T* out, const detail::Params& p, int64_t total, unsigned blocks,
                     dim3 block, cudaStream_t stream) {
  switch (chunk_requested()) {
    case 1: forward_kernel<T, false, 1><<<blocks, block, 0, stream>>>(input, grid, out, p, total); break;
    case 2: forward_kernel<T, false, 2><<<blocks, block, 0, stream>>>(input, grid, out, p, total); break;
    case 8: forward_kernel<T, false, 8><<<blocks, block, 0, stream>>>(input, grid, out, p, total); break;
    default: forward_kernel<T, false, 4><<<blocks, block, 0, stream>>>(input, grid, out, p, total);
  }
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
  const dim3 block = block_for(total, p.C);
  const unsigned blocks = blocks_for(total, block.x);
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  return OPFORGE_DISPATCH_FLOATING_CUDA(input.dtype, T, [&] {
    if (p.nearest)
      forward_kernel<T, true>
          <<<blocks, block, 0, stream>>>(input.ptr<const T>(), grid.ptr<const T>(), output.ptr<T>(), p, total);
    else
      launch_bilinear<T>(input.ptr<const T>(), grid.ptr<const T>(), output.ptr<T>(), p, total, blocks, block, stream);
    return ::opforge::cuda::launch_status("grid_sample3d: CUDA launch failed");
  });
}
