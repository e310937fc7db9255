// opforge::roi_align_backward on CUDA: the gradient is accumulated channels-last in a float32 buffer in the
// workspace ([N][H*W][Cp], zeroed first) by a block per (roi, channel chunk), shaped like the forward's
// (roi_align_cuda.cuh): a group of lanes adds w * grad / count to a sample's four corners as consecutive
// 16-byte runs of channels (one 4-float vector atomic per pack on sm_90+, scalar atomics before), then one
// transpose writes grad_features (NCHW, converted to its dtype). The block first stages its [chunk channels]
// x [bins] slice of grad_out in shared memory (one contiguous read). float32 accumulation for every dtype; the
// atomics make the summation order, hence the last bits, vary between runs.
#include "opforge_kernels/opforge/roi_align_backward.h"  // the entry points, generated from the declaration
#include "roi_align/roi_align_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace roi_align {
namespace {

using namespace cuda_common;

__device__ __forceinline__ void add4(float* dst, float a, float b, float c, float d) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float4*>(dst), make_float4(a, b, c, d));
#else
  atomicAdd(dst, a);
  atomicAdd(dst + 1, b);
  atomicAdd(dst + 2, c);
  atomicAdd(dst + 3, d);
#endif
}

template <int V>
__device__ __forceinline__ void add_pack(float* dst, float w, const float* g) {
#pragma unroll
  for (int j = 0; j < V; j += 4)
    add4(dst + j, detail::fmul(w, g[j]), detail::fmul(w, g[j + 1]), detail::fmul(w, g[j + 2]),
         detail::fmul(w, g[j + 3]));
}

template <typename T>
__global__ void __launch_bounds__(kMaxThreads)
    backward_channels_last(const T* __restrict__ grad_out, const T* __restrict__ rois, float* __restrict__ gt,
                           const detail::Params p, int64_t cp, int lanes, int groups, bool staged) {
  extern __shared__ float s_grad[];  // [chunk channels][bins], when staged
  constexpr int V = Pack<T>::kSize;
  static_assert(V % 4 == 0, "a pack is whole float4s");
  const int64_t k = blockIdx.x, P = p.bins(), chunk = static_cast<int64_t>(lanes) * V;
  const int lane = static_cast<int>(threadIdx.x) % lanes, group = static_cast<int>(threadIdx.x) / lanes;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t c = c0 + static_cast<int64_t>(lane) * V;
  const int64_t nch = p.channels - c0 < chunk ? p.channels - c0 : chunk;
  const T* src = grad_out + (k * p.channels + c0) * P;
  if (staged) {
    for (int64_t i = threadIdx.x; i < nch * P; i += blockDim.x) s_grad[i] = to_float(src[i]);
    __syncthreads();
  }
  float r[5];
  load_roi_row(rois, k, r);
  const detail::Roi g = load_roi(r, p);
  if (g.samples() <= 0 || c >= cp) return;
  float* base = gt + g.batch * p.plane() * cp + c;
  for (int64_t bin = group; bin < P; bin += groups) {
    const int ph = static_cast<int>(bin / p.pooled_w), pw = static_cast<int>(bin % p.pooled_w);
    float gb[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int64_t cc = static_cast<int64_t>(lane) * V + j;
      const float v = cc < nch ? (staged ? s_grad[cc * P + bin] : to_float(src[cc * P + bin])) : 0.0f;
      gb[j] = detail::fdiv(v, g.count);
    }
    for (int iy = 0; iy < g.grid_h; ++iy) {
      detail::Axis ya;
      if (!detail::bilinear_axis(detail::sample_coord(g.y_start, ph, g.bin_h, iy, g.grid_h), p.height, &ya)) continue;
      for (int ix = 0; ix < g.grid_w; ++ix) {
        detail::Axis xa;
        if (!detail::bilinear_axis(detail::sample_coord(g.x_start, pw, g.bin_w, ix, g.grid_w), p.width, &xa)) continue;
        const detail::Corners q = detail::corners(ya, xa, p.width);
        add_pack<V>(base + q.o1 * cp, q.w1, gb);
        add_pack<V>(base + q.o2 * cp, q.w2, gb);
        add_pack<V>(base + q.o3 * cp, q.w3, gb);
        add_pack<V>(base + q.o4 * cp, q.w4, gb);
      }
    }
  }
}

template <typename T>
::opforge::Status launch(const detail::Params& p, const T* grad_out, const T* rois, T* grad_features,
                         const ::opforge::DeviceContext& ctx) {
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  const int64_t cp = padded_channels(p.channels), hw = p.plane();
  const size_t gt_bytes = static_cast<size_t>(p.batch * hw * cp) * sizeof(float);
  const BlockShape s = block_shape<T>(p);
  if (ctx.workspace == nullptr || ctx.workspace_bytes < gt_bytes + 16)
    return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                    "roi_align_backward: the workspace is smaller than the declared size");
  if (s.chunks > 65535 || p.rois > 0x7FFFFFFF || (cp + kTile - 1) / kTile > 65535)
    return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                    "roi_align_backward: more than 2^31 rois or 2^21 channels");
  float* gt = reinterpret_cast<float*>(align16(ctx.workspace));
  if (cudaMemsetAsync(gt, 0, gt_bytes, stream) != cudaSuccess)
    return ::opforge::Status::error(::opforge::Status::kCudaError, "roi_align_backward: cudaMemsetAsync failed");
  if (p.rois > 0 && p.channels > 0) {
    const size_t smem = static_cast<size_t>(s.chunk_channels * p.bins()) * sizeof(float);
    const bool staged = smem <= 48 * 1024;
    backward_channels_last<T>
        <<<dim3(static_cast<unsigned>(p.rois), static_cast<unsigned>(s.chunks)), s.lanes * s.groups, staged ? smem : 0,
           stream>>>(grad_out, rois, gt, p, cp, s.lanes, s.groups, staged);
  }
  from_channels_last<T>
      <<<transpose_grid(p.batch, cp, hw), dim3(kTile, 8), 0, stream>>>(gt, grad_features, p.batch, p.channels, cp, hw);
  return ::opforge::cuda::launch_status("roi_align_backward: CUDA launch failed");
}

}  // namespace
}  // namespace roi_align
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, roi_align_backward) {
  using namespace ::opforge_kernels::opforge::roi_align;
  detail::Params p;
  const ::opforge::Status st = detail::check_args("roi_align_backward", features, rois, grad_out, pooled_height,
                                                  pooled_width, spatial_scale, sampling_ratio, aligned, &p);
  if (!st.is_ok()) return st;
  if (grad_features.rank != 4 || grad_features.dtype != features.dtype)
    return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                    "roi_align_backward: grad_features must be like features");
  for (int d = 0; d < 4; ++d)
    if (grad_features.sizes[d] != features.sizes[d])
      return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                      "roi_align_backward: grad_features must be like features");
  if (grad_features.numel() == 0) return ::opforge::Status::ok();
  return OPFORGE_DISPATCH_FLOATING_CUDA(features.dtype, T, [&] {
    return launch<T>(p, grad_out.ptr<const T>(), rois.ptr<const T>(), grad_features.ptr<T>(), ctx);
  });
}
