// opforge::correlation: the FlowNet/PWC-Net cost volume (spatial_correlation_sampler's semantics, see
// ops/library/correlation.py):
//   out[b, ph, pw, oy, ox] = sum_c sum_{i<kH, j<kW} f1[b, c, y, x] * f2[b, c, y + sy, x + sx]
//   y = oy * stride_h - pad_h + i * dil_h,  sy = (ph - (patch_h - 1) / 2) * dil_patch_h   (x likewise)
// A term counts only where both positions are inside the image (zero padding). Math in float32.
#pragma once

#include "opforge/kernel_api.h"
#include "opforge_kernels/opforge/correlation.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace correlation {

namespace detail {

// Every size and attribute as plain ints, validated once (shared with opforge::correlation_backward).
// Sizes are bounded so that int arithmetic on coordinates (y + sy, oy * stride + i * dil) cannot overflow:
// every coordinate-like value is < 2^24 in magnitude.
struct Params {
  int64_t batch, channels, height, width, out_h, out_w;
  int k_h, k_w, patch_h, patch_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, dp_h, dp_w;
  // displacement of patch row ph: (ph - rad_h) * dp_h
  int rad_h, rad_w;

  OPFORGE_HOST_DEVICE int shift_h(int ph) const { return (ph - rad_h) * dp_h; }
  OPFORGE_HOST_DEVICE int shift_w(int pw) const { return (pw - rad_w) * dp_w; }
  OPFORGE_HOST_DEVICE int64_t patches() const { return static_cast<int64_t>(patch_h) * patch_w; }
};

inline bool valid_pair(::opforge::Span<int64_t> v, int64_t low, int64_t high) {
  return v.size == 2 && v[0] >= low && v[1] >= low && v[0] <= high && v[1] <= high;
}

// Checks f1/f2 (and `out`, whose shape must be [B, patch_h, patch_w, out_h, out_w]); fills *p.
inline ::opforge::Status check_args(const ::opforge::TensorView& f1, const ::opforge::TensorView& f2,
                                    const ::opforge::TensorView& out, ::opforge::Span<int64_t> kernel_size,
                                    ::opforge::Span<int64_t> patch_size, ::opforge::Span<int64_t> stride,
                                    ::opforge::Span<int64_t> padding, ::opforge::Span<int64_t> dilation,
                                    ::opforge::Span<int64_t> dilation_patch, Params* p) {
  using ::opforge::Status;
  constexpr int64_t kMax = int64_t{1} << 24;
  if (!valid_pair(kernel_size, 1, kMax))
    return Status::error(Status::kInvalidArgument, "correlation: kernel_size must be two ints >= 1");
  if (!valid_pair(patch_size, 1, 4096))
    return Status::error(Status::kInvalidArgument, "correlation: patch_size must be two ints in [1, 4096]");
  if (!valid_pair(stride, 1, kMax))
    return Status::error(Status::kInvalidArgument, "correlation: stride must be two ints >= 1");
  if (!valid_pair(padding, 0, kMax))
    return Status::error(Status::kInvalidArgument, "correlation: padding must be two ints >= 0");
  if (!valid_pair(dilation, 1, kMax))
    return Status::error(Status::kInvalidArgument, "correlation: dilation must be two ints >= 1");
  if (!valid_pair(dilation_patch, 1, 4096))
    return Status::error(Status::kInvalidArgument, "correlation: dilation_patch must be two ints in [1, 4096]");
  if (f1.rank != 4 || f2.rank != 4)
    return Status::error(Status::kInvalidArgument, "correlation: f1 and f2 must be [B, C, H, W]");
  for (int d = 0; d < 4; ++d)
    if (f1.sizes[d] != f2.sizes[d])
      return Status::error(Status::kInvalidArgument, "correlation: f1 and f2 must have the same shape");
  if (f1.dtype != f2.dtype || out.dtype != f1.dtype)
    return Status::error(Status::kInvalidArgument, "correlation: f1, f2 and the output must share a dtype");
  if (f1.sizes[2] >= kMax || f1.sizes[3] >= kMax)
    return Status::error(Status::kInvalidArgument, "correlation: H and W must be < 2^24");
  p->batch = f1.sizes[0];
  p->channels = f1.sizes[1];
  p->height = f1.sizes[2];
  p->width = f1.sizes[3];
  p->k_h = static_cast<int>(kernel_size[0]);
  p->k_w = static_cast<int>(kernel_size[1]);
  p->patch_h = static_cast<int>(patch_size[0]);
  p->patch_w = static_cast<int>(patch_size[1]);
  p->stride_h = static_cast<int>(stride[0]);
  p->stride_w = static_cast<int>(stride[1]);
  p->pad_h = static_cast<int>(padding[0]);
  p->pad_w = static_cast<int>(padding[1]);
  p->dil_h = static_cast<int>(dilation[0]);
  p->dil_w = static_cast<int>(dilation[1]);
  p->dp_h = static_cast<int>(dilation_patch[0]);
  p->dp_w = static_cast<int>(dilation_patch[1]);
  p->rad_h = (p->patch_h - 1) / 2;
  p->rad_w = (p->patch_w - 1) / 2;
  // Coordinates: |oy * stride| <= H + 2 pad, |i * dil| <= (k - 1) * dil <= H + 2 pad, |sy| <= 2^24.
  const int64_t span_h = dilation[0] * (kernel_size[0] - 1) + 1, span_w = dilation[1] * (kernel_size[1] - 1) + 1;
  if (span_h > kMax || span_w > kMax || p->height + 2 * padding[0] > kMax || p->width + 2 * padding[1] > kMax)
    return Status::error(Status::kInvalidArgument, "correlation: padded size and kernel extent must be < 2^24");
  if (p->height + 2 * padding[0] < span_h || p->width + 2 * padding[1] < span_w)
    return Status::error(Status::kInvalidArgument, "correlation: the kernel window does not fit the padded input");
  p->out_h = (p->height + 2 * padding[0] - span_h) / stride[0] + 1;
  p->out_w = (p->width + 2 * padding[1] - span_w) / stride[1] + 1;
  if (out.rank != 5 || out.sizes[0] != p->batch || out.sizes[1] != p->patch_h || out.sizes[2] != p->patch_w ||
      out.sizes[3] != p->out_h || out.sizes[4] != p->out_w)
    return Status::error(
        Status::kInvalidArgument,
        "correlation: the cost volume (grad_out in the backward) must be [B, patch_h, patch_w, out_h, out_w]");
  return Status::ok();
}

// Sum of grad over the output positions (oy, ox) whose kernel window has its (i, j) tap at the f1
// position (y, x), over all taps: the transpose of the window sum. load_g(k) reads element k of one
// [out_h, out_w] plane of grad_out as float.
template <typename Load>
OPFORGE_HOST_DEVICE inline float window_gather(const Params& p, int y, int x, const Load& load_g) {
  float s = 0.0f;
  for (int i = 0; i < p.k_h; ++i) {
    const int ty = y + p.pad_h - i * p.dil_h;
    if (ty < 0) break;  // decreasing in i
    if (ty % p.stride_h != 0) continue;
    const int oy = ty / p.stride_h;
    if (oy >= p.out_h) continue;
    for (int j = 0; j < p.k_w; ++j) {
      const int tx = x + p.pad_w - j * p.dil_w;
      if (tx < 0) break;
      if (tx % p.stride_w != 0) continue;
      const int ox = tx / p.stride_w;
      if (ox >= p.out_w) continue;
      s += load_g(static_cast<int64_t>(oy) * p.out_w + ox);
    }
  }
  return s;
}

}  // namespace detail
}  // namespace correlation
}  // namespace opforge
}  // namespace opforge_kernels
