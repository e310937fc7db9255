// CUDA backward of grid_sample3d: one kernel with the forward's 2-D blocks (threadIdx.x: consecutive output
// voxels, threadIdx.y: channel lanes c = y, y + blockDim.y, ..., as many as gs::channel_lanes gives). Each thread
// locates its voxel once, then per channel scatters grad_out * weight to the corners inside the volume with float32
// atomics (into grad_input itself for float32, into the float32 workspace for float16/bfloat16, converted at the end)
// and adds the corner values' share of d(sample)/d(index); the channel lanes' partial sums meet in shared memory and
// one lane writes grad_grid (no atomics on it). Corners outside the volume are never read or written.
#include "grid_sample3d_backward.h"

#include "opforge/kernel_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace grid_sample3d_backward {
namespace {

namespace gs = ::opforge_kernels::opforge::grid_sample3d::detail;
using ::opforge::cuda::from_float;
using ::opforge::cuda::to_float;

constexpr int kThreads = 256;

template <typename T, bool kNearest>
__global__ void __launch_bounds__(kThreads, 3)
    backward_kernel(const T* __restrict__ input, const T* __restrict__ grid, const T* __restrict__ gout,
                    float* __restrict__ gin, T* __restrict__ grad_grid, const detail::Params p, int64_t total) {
  __shared__ float partial[3][kThreads];
  const int64_t V = p.out_plane(), plane = p.in_plane();
  const int lane = threadIdx.y * blockDim.x + threadIdx.x;
  // Block-uniform loop (it holds barriers): each iteration covers blockDim.x voxels.
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.x; base < total;
       base += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = base + threadIdx.x;
    float gx = 0.0f, gy = 0.0f, gz = 0.0f;
    detail::Point q = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    if (e < total) {
      const int64_t n = e / V, v = e - n * V;
      const T* g = grid + e * 3;
      q = detail::locate(p, [g](int k) { return to_float(g[k]); });
      const T* src = input + n * p.C * plane;
      float* dst = gin + n * p.C * plane;
      const T* go = gout + n * p.C * V + v;
      if (kNearest) {
        const int32_t idx = gs::locate_nearest(q.ix, q.iy, q.iz, p);
        if (idx >= 0)
          for (int64_t c = threadIdx.y; c < p.C; c += blockDim.y) atomicAdd(dst + c * plane + idx, to_float(go[c * V]));
      } else {
        gs::Trilinear t;
        gs::locate_trilinear(q.ix, q.iy, q.iz, p, &t);
#pragma unroll 2
        for (int64_t c = threadIdx.y; c < p.C; c += blockDim.y) {
          const float gv = to_float(go[c * V]);
          const T* s = src + c * plane;
          float* d = dst + c * plane;
          float v8[8];
#pragma unroll
          for (int k = 0; k < 8; ++k) v8[k] = (t.valid & (1u << k)) ? to_float(__ldg(s + t.off[k])) : 0.0f;
#pragma unroll
          for (int k = 0; k < 8; ++k)
            if (t.valid & (1u << k)) atomicAdd(d + t.off[k], t.w[k] * gv);
          gs::coordinate_grads(t, v8, gv, &gx, &gy, &gz);
        }
      }
    }
    if (kNearest) {  // the nearest voxel does not move with the grid: zero gradient, as in aten
      if (threadIdx.y == 0 && e < total) {
        T* gg = grad_grid + e * 3;
        gg[0] = gg[1] = gg[2] = from_float<T>(0.0f);
      }
      continue;
    }
    partial[0][lane] = gx;
    partial[1][lane] = gy;
    partial[2][lane] = gz;
    __syncthreads();
    if (threadIdx.y == 0 && e < total) {
      for (unsigned y = 1; y < blockDim.y; ++y) {
        gx += partial[0][y * blockDim.x + threadIdx.x];
        gy += partial[1][y * blockDim.x + threadIdx.x];
        gz += partial[2][y * blockDim.x + threadIdx.x];
      }
      T* gg = grad_grid + e * 3;
      gg[0] = from_float<T>(q.mx * gx);
      gg[1] = from_float<T>(q.my * gy);
      gg[2] = from_float<T>(q.mz * gz);
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void convert(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[e] = from_float<T>(src[e]);
}

inline unsigned blocks_for(int64_t total, unsigned per_block, int64_t cap) {
  const int64_t b = (total + per_block - 1) / per_block;
  return static_cast<unsigned>(b < 1 ? 1 : (b > cap ? cap : b));
}

template <typename T>
::opforge::Status launch(const detail::Params& p, const T* input, const T* grid, const T* gout, T* grad_input,
                         T* grad_grid, const ::opforge::DeviceContext& ctx) {
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  const int64_t nin = p.N * p.C * p.in_plane();
  float* gin;
  if constexpr (std::is_same_v<T, float>) {
    gin = grad_input;
  } else {
    if (nin > 0 && (ctx.workspace == nullptr || ctx.workspace_bytes < static_cast<size_t>(nin) * sizeof(float)))
      return ::opforge::Status::error(::opforge::Status::kInternal,
                                      "grid_sample3d_backward: workspace smaller than declared");
    gin = static_cast<float*>(ctx.workspace);
  }
  if (nin > 0 && cudaMemsetAsync(gin, 0, static_cast<size_t>(nin) * sizeof(float), stream) != cudaSuccess)
    return ::opforge::Status::error(::opforge::Status::kCudaError, "grid_sample3d_backward: memset failed");
  const int64_t total = p.N * p.out_plane();
  if (total > 0) {
    // The forward's block shape: 256 threads, (256 / lanes) voxels by `lanes` channel lanes.
    const unsigned lanes = gs::channel_lanes(total, p.C);
    const dim3 block(256u / lanes, lanes);
    const unsigned blocks = blocks_for(total, block.x, int64_t{1} << 20);
    if (p.nearest)
      backward_kernel<T, true><<<blocks, block, 0, stream>>>(input, grid, gout, gin, grad_grid, p, total);
    else
      backward_kernel<T, false><<<blocks, block, 0, stream>>>(input, grid, gout, gin, grad_grid, p, total);
  }
  if constexpr (!std::is_same_v<T, float>) {
    if (nin > 0) convert<T><<<blocks_for(nin, kThreads, 4096), kThreads, 0, stream>>>(gin, grad_input, nin);
  }
  return ::opforge::cuda::launch_status("grid_sample3d_backward: CUDA launch failed");
}

}  // namespace
}  // namespace grid_sample3d_backward
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, grid_sample3d_backward) {
  detail::Params p;
  const ::opforge::Status st =
      detail::check_args(input, grid, grad_out, grad_input, grad_grid, mode, padding_mode, align_corners, &p);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CUDA(input.dtype, T, [&] {
    return launch<T>(p, input.ptr<const T>(), grid.ptr<const T>(), grad_out.ptr<const T>(), grad_input.ptr<T>(),
                     grad_grid.ptr<T>(), ctx);
  });
}
