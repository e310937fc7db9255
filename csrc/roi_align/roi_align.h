// opforge::roi_align: torchvision.ops.roi_align (see ops/library/roi_align.py for the rule and for the choices
// where torchvision is undefined). This header holds what every kernel shares (CPU and CUDA, forward and
// opforge::roi_align_backward): argument checks, the per-roi geometry and the bilinear rule.
//
// Every float operation of the geometry is written with the helpers below, which on the device are the
// round-to-nearest intrinsics: nvcc would otherwise contract a * b + c into one FMA and the sample positions
// (hence y_low, the clamps and the weights) would differ in the last bit from the reference and torchvision's
// CPU kernel. Host code is compiled without contraction (-std=c++NN, baseline x86-64), so there a * b is it.
#pragma once

#include <cmath>
#include <cstdint>

#include "opforge/kernel_api.h"
#include "opforge_kernels/opforge/roi_align.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace roi_align {
namespace detail {

constexpr int kMaxGrid = 65536;  // samples per axis at most (MAX_GRID in ops/library/roi_align.py)

OPFORGE_HOST_DEVICE inline float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
OPFORGE_HOST_DEVICE inline float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
OPFORGE_HOST_DEVICE inline float fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
OPFORGE_HOST_DEVICE inline float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

OPFORGE_HOST_DEVICE inline bool is_finite(float v) {
#if defined(__CUDA_ARCH__)
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

struct Params {
  int64_t batch, channels, height, width, rois;
  int pooled_h, pooled_w, sampling_ratio;
  float spatial_scale;
  bool aligned;
  OPFORGE_HOST_DEVICE int64_t bins() const { return static_cast<int64_t>(pooled_h) * pooled_w; }
  OPFORGE_HOST_DEVICE int64_t plane() const { return height * width; }
};

// Checks the features and rois (and `pooled`, the output or grad_out: [K, C, pooled_h, pooled_w]), fills *p.
inline ::opforge::Status check_args(const char* op, const ::opforge::TensorView& features,
                                    const ::opforge::TensorView& rois, const ::opforge::TensorView& pooled,
                                    int64_t pooled_height, int64_t pooled_width, double spatial_scale,
                                    int64_t sampling_ratio, bool aligned, Params* p) {
  using ::opforge::Status;
  (void)op;
  constexpr int64_t kMax = int64_t{1} << 24;  // H, W and the pooled size are exact in float32
  if (pooled_height < 1 || pooled_width < 1 || pooled_height > kMax || pooled_width > kMax)
    return Status::error(Status::kInvalidArgument, "roi_align: pooled_height and pooled_width must be in [1, 2^24]");
  if (sampling_ratio > kMaxGrid)
    return Status::error(Status::kInvalidArgument, "roi_align: sampling_ratio must be <= 65536 (<= 0: adaptive)");
  if (features.rank != 4) return Status::error(Status::kInvalidArgument, "roi_align: features must be [N, C, H, W]");
  if (rois.rank != 2 || rois.sizes[1] != 5)
    return Status::error(Status::kInvalidArgument, "roi_align: rois must be [K, 5] (batch_index, x1, y1, x2, y2)");
  if (features.sizes[2] >= kMax || features.sizes[3] >= kMax)
    return Status::error(Status::kInvalidArgument, "roi_align: H and W must be < 2^24");
  if (rois.dtype != features.dtype || pooled.dtype != features.dtype)
    return Status::error(Status::kInvalidArgument, "roi_align: features, rois and the output must share a dtype");
  if (pooled.rank != 4 || pooled.sizes[0] != rois.sizes[0] || pooled.sizes[1] != features.sizes[1] ||
      pooled.sizes[2] != pooled_height || pooled.sizes[3] != pooled_width)
    return Status::error(
        Status::kInvalidArgument,
        "roi_align: the output (grad_out in the backward) must be [K, C, pooled_height, pooled_width]");
  p->batch = features.sizes[0];
  p->channels = features.sizes[1];
  p->height = features.sizes[2];
  p->width = features.sizes[3];
  p->rois = rois.sizes[0];
  p->pooled_h = static_cast<int>(pooled_height);
  p->pooled_w = static_cast<int>(pooled_width);
  p->sampling_ratio = sampling_ratio > 0 ? static_cast<int>(sampling_ratio) : 0;  // 0: adaptive
  p->spatial_scale = static_cast<float>(spatial_scale);  // torchvision converts it to the compute type too
  p->aligned = aligned;
  return Status::ok();
}

// A batch index must be an integer in [0, N) (NaN and inf are not).
OPFORGE_HOST_DEVICE inline bool batch_index_ok(float b, int64_t n) {
  return b >= 0.0f && static_cast<double>(b) < static_cast<double>(n) && b == std::floor(b);
}

// One roi's sampling grid: sample (ph, iy) of the bin rows is at
//   (y_start + ph * bin_h) + ((iy + 0.5) * bin_h) / grid_h
// and likewise for x; grid_h or grid_w of 0 (a non-finite roi, or a negative adaptive size) means no sample.
struct Roi {
  int64_t batch;
  float y_start, x_start, bin_h, bin_w, count;
  int grid_h, grid_w;
  OPFORGE_HOST_DEVICE int64_t samples() const { return static_cast<int64_t>(grid_h) * grid_w; }
};

OPFORGE_HOST_DEVICE inline int adaptive_grid(float size, int pooled) {
  const float g = std::ceil(fdiv(size, static_cast<float>(pooled)));
  return g > 0.0f ? (g < static_cast<float>(kMaxGrid) ? static_cast<int>(g) : kMaxGrid) : 0;
}

// r: the roi's five values as float (batch index already known to be valid, or not used).
OPFORGE_HOST_DEVICE inline Roi roi_geometry(const float* r, const Params& p) {
  Roi g;
  g.batch = static_cast<int64_t>(r[0]);
  const float offset = p.aligned ? 0.5f : 0.0f;
  const float x0 = fsub(fmul(r[1], p.spatial_scale), offset);
  const float y0 = fsub(fmul(r[2], p.spatial_scale), offset);
  const float x1 = fsub(fmul(r[3], p.spatial_scale), offset);
  const float y1 = fsub(fmul(r[4], p.spatial_scale), offset);
  float roi_w = fsub(x1, x0), roi_h = fsub(y1, y0);
  if (!p.aligned) {  // malformed rois become 1x1 (a NaN size stays NaN)
    roi_w = roi_w < 1.0f ? 1.0f : roi_w;
    roi_h = roi_h < 1.0f ? 1.0f : roi_h;
  }
  g.y_start = y0;
  g.x_start = x0;
  g.bin_h = fdiv(roi_h, static_cast<float>(p.pooled_h));
  g.bin_w = fdiv(roi_w, static_cast<float>(p.pooled_w));
  const bool finite = is_finite(y0) && is_finite(x0) && is_finite(roi_h) && is_finite(roi_w);
  if (!finite) {
    g.grid_h = g.grid_w = 0;
  } else if (p.sampling_ratio > 0) {
    g.grid_h = g.grid_w = p.sampling_ratio;
  } else {
    g.grid_h = adaptive_grid(roi_h, p.pooled_h);
    g.grid_w = adaptive_grid(roi_w, p.pooled_w);
  }
  const int64_t n = g.samples();
  g.count = static_cast<float>(n > 0 ? n : 1);
  return g;
}

// Coordinate of sample i (of `grid`) in bin `bin` along one axis.
OPFORGE_HOST_DEVICE inline float sample_coord(float start, int bin, float bin_size, int i, int grid) {
  return fadd(fadd(start, fmul(static_cast<float>(bin), bin_size)),
              fdiv(fmul(static_cast<float>(i) + 0.5f, bin_size), static_cast<float>(grid)));
}

// One axis of the bilinear rule: the two rows (columns) and their weights, or false when the coordinate is
// outside [-1, size] (or NaN): then the whole sample is 0.
struct Axis {
  int64_t low, high;
  float l, h;  // weight of `high` and of `low`
};

OPFORGE_HOST_DEVICE inline bool bilinear_axis(float v, int64_t size, Axis* a) {
  if (!(v >= -1.0f && v <= static_cast<float>(size)) || size <= 0) return false;
  if (v <= 0.0f) v = 0.0f;
  a->low = static_cast<int64_t>(v);
  if (a->low >= size - 1) {
    a->low = a->high = size - 1;
    v = static_cast<float>(a->low);
  } else {
    a->high = a->low + 1;
  }
  a->l = fsub(v, static_cast<float>(a->low));
  a->h = fsub(1.0f, a->l);
  return true;
}

// A sample's four corners (offsets inside one [H, W] plane) and weights, in torchvision's order:
// (y_low, x_low), (y_low, x_high), (y_high, x_low), (y_high, x_high).
struct Corners {
  int64_t o1, o2, o3, o4;
  float w1, w2, w3, w4;
};

OPFORGE_HOST_DEVICE inline Corners corners(const Axis& y, const Axis& x, int64_t width) {
  Corners c;
  c.o1 = y.low * width + x.low;
  c.o2 = y.low * width + x.high;
  c.o3 = y.high * width + x.low;
  c.o4 = y.high * width + x.high;
  c.w1 = fmul(y.h, x.h);
  c.w2 = fmul(y.h, x.l);
  c.w3 = fmul(y.l, x.h);
  c.w4 = fmul(y.l, x.l);
  return c;
}

// w1*v1 + w2*v2 + w3*v3 + w4*v4, summed left to right as torchvision does.
OPFORGE_HOST_DEVICE inline float interpolate(const Corners& c, float v1, float v2, float v3, float v4) {
  return fadd(fadd(fadd(fmul(c.w1, v1), fmul(c.w2, v2)), fmul(c.w3, v3)), fmul(c.w4, v4));
}

}  // namespace detail
}  // namespace roi_align
}  // namespace opforge
}  // namespace opforge_kernels
