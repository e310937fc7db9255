// opforge::modulated_deform_conv2d: DCNv2 (torchvision.ops.deform_conv2d with a mask), math in float32.
//
// Layouts (all contiguous): x [B, C, H, W], offset [B, dg*2*K, OH, OW] with (dy, dx) interleaved per tap
// (channel d*2*K + 2*k + {0: dy, 1: dx}, k = i*kw + j), weight [Cout, C/groups, kh, kw],
// mask [B, dg*K, OH, OW], bias [Cout]. The backward op's kernels share this header.
#pragma once

#include <cmath>

#include "opforge/kernel_api.h"
#include "opforge_kernels/opforge/modulated_deform_conv2d.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace modulated_deform_conv2d {

namespace detail {

// Every size a kernel needs, validated once by check_args.
struct Geometry {
  int64_t B, C, H, W;       // input
  int64_t Cout, Cg, Coutg;  // output channels, input and output channels per convolution group
  int64_t kh, kw, K;        // taps
  int64_t OH, OW, P;        // output plane
  int64_t groups, dg, Cd;   // convolution groups, deformable groups, channels per deformable group
  int64_t sh, sw, ph, pw, dh, dw;
};

inline bool dims_are(const ::opforge::TensorView& t, int64_t a, int64_t b, int64_t c, int64_t d) {
  return t.rank == 4 && t.sizes[0] == a && t.sizes[1] == b && t.sizes[2] == c && t.sizes[3] == d;
}

// Shared by the forward and backward entry points (CPU and CUDA) so all reject the same inputs.
inline ::opforge::Status check_args(const ::opforge::TensorView& x, const ::opforge::TensorView& offset,
                                    const ::opforge::TensorView& weight, const ::opforge::TensorView* mask,
                                    ::opforge::Span<int64_t> stride, ::opforge::Span<int64_t> padding,
                                    ::opforge::Span<int64_t> dilation, int64_t groups, int64_t deformable_groups,
                                    Geometry* g) {
  using ::opforge::Status;
  if (x.rank != 4 || offset.rank != 4 || weight.rank != 4)
    return Status::error(Status::kInvalidArgument, "modulated_deform_conv2d: x, offset and weight must be 4-D");
  if (stride.size != 2 || padding.size != 2 || dilation.size != 2)
    return Status::error(Status::kInvalidArgument,
                         "modulated_deform_conv2d: stride, padding and dilation must have 2 elements");
  if (stride[0] < 1 || stride[1] < 1 || dilation[0] < 1 || dilation[1] < 1 || padding[0] < 0 || padding[1] < 0)
    return Status::error(Status::kInvalidArgument,
                         "modulated_deform_conv2d: stride and dilation must be >= 1 and padding >= 0");
  if (offset.dtype != x.dtype || weight.dtype != x.dtype || (mask && mask->dtype != x.dtype))
    return Status::error(Status::kInvalidArgument, "modulated_deform_conv2d: all inputs must share a dtype");
  g->B = x.sizes[0];
  g->C = x.sizes[1];
  g->H = x.sizes[2];
  g->W = x.sizes[3];
  g->Cout = weight.sizes[0];
  g->Cg = weight.sizes[1];
  g->kh = weight.sizes[2];
  g->kw = weight.sizes[3];
  g->groups = groups;
  g->dg = deformable_groups;
  if (groups < 1 || deformable_groups < 1)
    return Status::error(Status::kInvalidArgument,
                         "modulated_deform_conv2d: groups and deformable_groups must be >= 1");
  if (g->C % groups != 0 || g->Cg * groups != g->C || g->Cout % groups != 0)
    return Status::error(Status::kInvalidArgument,
                         "modulated_deform_conv2d: groups must divide C and Cout, and weight.shape[1] must be "
                         "C / groups");
  if (g->C % deformable_groups != 0)
    return Status::error(Status::kInvalidArgument, "modulated_deform_conv2d: deformable_groups must divide C");
  if (g->kh < 1 || g->kw < 1)
    return Status::error(Status::kInvalidArgument, "modulated_deform_conv2d: the kernel must have kh, kw >= 1");
  g->Coutg = g->Cout / groups;
  g->Cd = g->C / deformable_groups;
  g->K = g->kh * g->kw;
  g->sh = stride[0];
  g->sw = stride[1];
  g->ph = padding[0];
  g->pw = padding[1];
  g->dh = dilation[0];
  g->dw = dilation[1];
  g->OH = (g->H + 2 * g->ph - g->dh * (g->kh - 1) - 1) / g->sh + 1;
  g->OW = (g->W + 2 * g->pw - g->dw * (g->kw - 1) - 1) / g->sw + 1;
  if (g->H + 2 * g->ph - g->dh * (g->kh - 1) - 1 < 0 || g->W + 2 * g->pw - g->dw * (g->kw - 1) - 1 < 0)
    return Status::error(Status::kInvalidArgument,
                         "modulated_deform_conv2d: the (dilated) kernel is larger than the padded input");
  g->P = g->OH * g->OW;
  if (!dims_are(offset, g->B, 2 * deformable_groups * g->K, g->OH, g->OW))
    return Status::error(Status::kInvalidArgument,
                         "modulated_deform_conv2d: offset must be [B, 2*deformable_groups*kh*kw, oH, oW]");
  if (mask && !dims_are(*mask, g->B, deformable_groups * g->K, g->OH, g->OW))
    return Status::error(Status::kInvalidArgument,
                         "modulated_deform_conv2d: mask must be [B, deformable_groups*kh*kw, oH, oW]");
  // Kernels index within one image plane / one weight with 32-bit integers.
  if (g->H * g->W >= (int64_t{1} << 31) || g->P >= (int64_t{1} << 31) || g->Cg * g->K >= (int64_t{1} << 24))
    return Status::error(Status::kInvalidArgument, "modulated_deform_conv2d: image or kernel too large");
  return Status::ok();
}

// Where one (pixel, tap, deformable group) samples its channels. kind: 0 = outside (samples 0),
// 1 = NaN position (samples NaN), 2 = inside: corner n (0: (y0,x0), 1: (y0,x0+1), 2: (y0+1,x0),
// 3: (y0+1,x0+1)) is read at plane index idx[n] with weight w[n] when valid bit n is set.
struct Tap {
  int32_t idx[4];
  float w[4];
  float ly, lx;  // fractional parts (for coordinate gradients)
  int32_t kind;
  int32_t valid;  // bit n: corner n is inside the image
};

OPFORGE_HOST_DEVICE inline Tap locate(float py, float px, int64_t H, int64_t W) {
  Tap t;
  t.valid = 0;
  t.ly = t.lx = 0.0f;
  for (int n = 0; n < 4; ++n) {
    t.idx[n] = 0;
    t.w[n] = 0.0f;
  }
  // Outside [-1, H] x [-1, W] every corner is outside the image. On the border lines (-1 and H) the value
  // is 0 as well (the corners inside have weight 0), but they are computed, so the offset gradient there
  // is torchvision's (its coordinate weights are taken from the corners alone).
  if (py != py || px != px) {  // NaN first: a NaN coordinate samples NaN even if the other one is outside
    t.kind = 1;
    return t;
  }
  if (py < -1.0f || py > static_cast<float>(H) || px < -1.0f || px > static_cast<float>(W)) {
    t.kind = 0;
    return t;
  }
  t.kind = 2;
  const float fy = floorf(py), fx = floorf(px);
  const int32_t y0 = static_cast<int32_t>(fy), x0 = static_cast<int32_t>(fx);
  const float ly = py - fy, lx = px - fx, hy = 1.0f - ly, hx = 1.0f - lx;
  t.ly = ly;
  t.lx = lx;
  t.w[0] = hy * hx;
  t.w[1] = hy * lx;
  t.w[2] = ly * hx;
  t.w[3] = ly * lx;
  const int32_t h = static_cast<int32_t>(H), w = static_cast<int32_t>(W);
  for (int n = 0; n < 4; ++n) {
    const int32_t yc = y0 + (n >> 1), xc = x0 + (n & 1);
    if (yc >= 0 && yc < h && xc >= 0 && xc < w) {
      t.valid |= 1 << n;
      t.idx[n] = yc * w + xc;
    }
  }
  return t;
}

// The sampled value of one channel plane (before the mask), in the reference's order of operations so
// non-finite inputs give the same result: ((w0*v0 + w1*v1) + w2*v2) + w3*v3 over the valid corners.
template <typename Load>
OPFORGE_HOST_DEVICE inline float sample(const Tap& t, const Load& load) {
  if (t.kind != 2) return t.kind == 0 ? 0.0f : NAN;
  float v = 0.0f;
  for (int n = 0; n < 4; ++n)
    if (t.valid & (1 << n)) v += t.w[n] * load(t.idx[n]);
  return v;
}

}  // namespace detail
}  // namespace modulated_deform_conv2d
}  // namespace opforge
}  // namespace opforge_kernels
