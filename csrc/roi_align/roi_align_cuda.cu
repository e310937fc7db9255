// opforge::roi_align on CUDA. Two paths, the same arithmetic (roi_align.h, float32, torchvision's order):
//  - channels-last (roi_align_cuda.cuh): the features are copied to [N][H*W][Cp] in the workspace, then a block
//    per (roi, channel chunk) gathers each sample's four corners as 16-byte packs of consecutive channels
//    (fully used sectors, where NCHW gathers fetch a 32-byte sector per channel and corner row) and stages its
//    [chunk channels][bins] outputs in shared memory so they leave as one contiguous run of y.
//  - direct: one thread per output element reading NCHW (torchvision's mapping), for calls whose samples touch
//    fewer pixel-channels than the copy would move (few rois), or when the workspace is missing.
// OPFORGE_ROI_ALIGN_CUDA=direct|channels_last forces a path (for measurements; unset: the size rule below).
#include <cstdlib>
#include <cstring>

#include "roi_align/roi_align_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace roi_align {
namespace {

using namespace cuda_common;

template <typename T>
__global__ void __launch_bounds__(kMaxThreads)
    forward_channels_last(const T* __restrict__ xt, const T* __restrict__ rois, T* __restrict__ y,
                          const detail::Params p, int64_t cp, int lanes, int groups, bool staged) {
  extern __shared__ float s_out[];  // [chunk channels][bins], when staged
  constexpr int V = Pack<T>::kSize;
  const int64_t k = blockIdx.x, P = p.bins(), chunk = static_cast<int64_t>(lanes) * V;
  const int lane = static_cast<int>(threadIdx.x) % lanes, group = static_cast<int>(threadIdx.x) / lanes;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t c = c0 + static_cast<int64_t>(lane) * V;  // this lane's first channel
  const int64_t nch = p.channels - c0 < chunk ? p.channels - c0 : chunk;
  float r[5];
  load_roi_row(rois, k, r);
  const detail::Roi g = load_roi(r, p);
  const T* base = xt + g.batch * p.plane() * cp + c;
  for (int64_t bin = group; bin < P; bin += groups) {
    const int ph = static_cast<int>(bin / p.pooled_w), pw = static_cast<int>(bin % p.pooled_w);
    float acc[V];
#pragma unroll
    for (int j = 0; j < V; ++j) acc[j] = 0.0f;
    if (c < cp) {
      for (int iy = 0; iy < g.grid_h; ++iy) {
        detail::Axis ya;
        if (!detail::bilinear_axis(detail::sample_coord(g.y_start, ph, g.bin_h, iy, g.grid_h), p.height, &ya)) continue;
        for (int ix = 0; ix < g.grid_w; ++ix) {
          detail::Axis xa;
          if (!detail::bilinear_axis(detail::sample_coord(g.x_start, pw, g.bin_w, ix, g.grid_w), p.width, &xa))
            continue;
          const detail::Corners q = detail::corners(ya, xa, p.width);
          const Pack<T> v1 = *reinterpret_cast<const Pack<T>*>(base + q.o1 * cp);
          const Pack<T> v2 = *reinterpret_cast<const Pack<T>*>(base + q.o2 * cp);
          const Pack<T> v3 = *reinterpret_cast<const Pack<T>*>(base + q.o3 * cp);
          const Pack<T> v4 = *reinterpret_cast<const Pack<T>*>(base + q.o4 * cp);
#pragma unroll
          for (int j = 0; j < V; ++j)
            acc[j] = detail::fadd(acc[j], detail::interpolate(q, to_float(v1.v[j]), to_float(v2.v[j]),
                                                              to_float(v3.v[j]), to_float(v4.v[j])));
        }
      }
    }
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int64_t cc = static_cast<int64_t>(lane) * V + j;
      if (cc < nch) {
        const float o = detail::fdiv(acc[j], g.count);
        if (staged)
          s_out[cc * P + bin] = o;
        else
          y[(k * p.channels + c0 + cc) * P + bin] = from_float<T>(o);
      }
    }
  }
  if (staged) {
    __syncthreads();
    T* dst = y + (k * p.channels + c0) * P;
    for (int64_t i = threadIdx.x; i < nch * P; i += blockDim.x) dst[i] = from_float<T>(s_out[i]);
  }
}

// One thread per output element (k, c, ph, pw), bins fastest, reading the NCHW features.
template <typename T>
__global__ void forward_direct(const T* __restrict__ x, const T* __restrict__ rois, T* __restrict__ y,
                               const detail::Params p, int64_t total) {
  const int64_t P = p.bins(), step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += step) {
    const int64_t bin = idx % P, c = (idx / P) % p.channels, k = idx / (P * p.channels);
    const int ph = static_cast<int>(bin / p.pooled_w), pw = static_cast<int>(bin % p.pooled_w);
    float r[5];
    load_roi_row(rois, k, r);
    const detail::Roi g = load_roi(r, p);
    const T* plane = x + (g.batch * p.channels + c) * p.plane();
    float acc = 0.0f;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      detail::Axis ya;
      if (!detail::bilinear_axis(detail::sample_coord(g.y_start, ph, g.bin_h, iy, g.grid_h), p.height, &ya)) continue;
      for (int ix = 0; ix < g.grid_w; ++ix) {
        detail::Axis xa;
        if (!detail::bilinear_axis(detail::sample_coord(g.x_start, pw, g.bin_w, ix, g.grid_w), p.width, &xa)) continue;
        const detail::Corners q = detail::corners(ya, xa, p.width);
        acc = detail::fadd(acc, detail::interpolate(q, to_float(plane[q.o1]), to_float(plane[q.o2]),
                                                    to_float(plane[q.o3]), to_float(plane[q.o4])));
      }
    }
    y[idx] = from_float<T>(detail::fdiv(acc, g.count));
  }
}

// The channels-last path pays one copy of the features; it wins once the samples' corner reads
// (rois x bins x samples x 4, per channel) reach the number of pixels. Adaptive grids are counted as 2 x 2.
bool use_channels_last(const detail::Params& p) {
  const char* force = std::getenv("OPFORGE_ROI_ALIGN_CUDA");
  if (force != nullptr && std::strcmp(force, "direct") == 0) return false;
  if (force != nullptr && std::strcmp(force, "channels_last") == 0) return true;
  const int64_t grid = p.sampling_ratio > 0 ? static_cast<int64_t>(p.sampling_ratio) * p.sampling_ratio : 4;
  return p.rois * p.bins() * grid * 4 >= p.batch * p.plane();
}

template <typename T>
::opforge::Status launch(const detail::Params& p, const T* x, const T* rois, T* y,
                         const ::opforge::DeviceContext& ctx) {
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  const int64_t cp = padded_channels(p.channels), hw = p.plane();
  const size_t xt_bytes = static_cast<size_t>(p.batch * hw * cp) * sizeof(T);
  const BlockShape s = block_shape<T>(p);
  const bool fits = ctx.workspace != nullptr && ctx.workspace_bytes >= xt_bytes + 16 && s.chunks <= 65535 &&
                    p.rois <= 0x7FFFFFFF && (cp + kTile - 1) / kTile <= 65535;
  if (!fits || !use_channels_last(p)) {
    const int64_t total = p.rois * p.channels * p.bins();
    const int64_t blocks = (total + 255) / 256 < 65536 * 8 ? (total + 255) / 256 : 65536 * 8;
    forward_direct<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(x, rois, y, p, total);
    return ::opforge::cuda::launch_status("roi_align: CUDA launch failed (direct)");
  }
  T* xt = reinterpret_cast<T*>(align16(ctx.workspace));
  if (p.batch * hw > 0)  // else no sample is taken (an empty map, or no image for any batch index)
    to_channels_last<T, T>
        <<<transpose_grid(p.batch, cp, hw), dim3(kTile, 8), 0, stream>>>(x, xt, p.batch, p.channels, cp, hw);
  const size_t smem = static_cast<size_t>(s.chunk_channels * p.bins()) * sizeof(float);
  const bool staged = smem <= 48 * 1024;
  forward_channels_last<T><<<dim3(static_cast<unsigned>(p.rois), static_cast<unsigned>(s.chunks)), s.lanes * s.groups,
                             staged ? smem : 0, stream>>>(xt, rois, y, p, cp, s.lanes, s.groups, staged);
  return ::opforge::cuda::launch_status("roi_align: CUDA launch failed (channels-last)");
}

}  // namespace
}  // namespace roi_align
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, roi_align) {
  using namespace ::opforge_kernels::opforge::roi_align;
  detail::Params p;
  const ::opforge::Status st = detail::check_args("roi_align", features, rois, y, pooled_height, pooled_width,
                                                  spatial_scale, sampling_ratio, aligned, &p);
  if (!st.is_ok()) return st;
  if (y.numel() == 0) return ::opforge::Status::ok();
  return OPFORGE_DISPATCH_FLOATING_CUDA(
      features.dtype, T, [&] { return launch<T>(p, features.ptr<const T>(), rois.ptr<const T>(), y.ptr<T>(), ctx); });
}
