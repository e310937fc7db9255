// opforge::multi_scale_deformable_attn: Deformable DETR's multi-scale deformable attention core, math in float32.
//
// Layouts (all contiguous): value [N, S, M, D], spatial_shapes [L, 2] int64 (H, W), level_start_index [L]
// int64, sampling_locations [N, Lq, M, L, P, 2] (x, y in [0, 1]), attention_weights [N, Lq, M, L, P],
// output [N, Lq, M*D]. The backward op's kernels share this header.
//
// A point samples level l at x = loc_x * W - 0.5, y = loc_y * H - 0.5 (grid_sample, align_corners=False):
// corner (r, c) of the bilinear stencil counts when 0 <= r < H, 0 <= c < W and its value row
// start + r * W + c lies in [0, S); a point with x < -1, x > W, y < -1 or y > H has no corner; a NaN point
// samples NaN and passes no gradient to value or the location (the reference's semantics, ops/library/
// multi_scale_deformable_attn.py). The CPU kernels check the level tensors against S before running; the
// CUDA kernels read them on the device and rely on these bounds alone (bound_level + locate), so no tensor
// content can make them read or write outside value / grad_value.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <initializer_list>

#include "opforge/kernel_api.h"
#include "opforge_kernels/opforge/multi_scale_deformable_attn.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace multi_scale_deformable_attn {

namespace detail {

struct Dims { int64_t N, S, M, D, Lq, L, P; };

inline bool dims_are(const ::opforge::TensorView& t, std::initializer_list<int64_t> want) {
  if (t.rank != static_cast<int32_t>(want.size())) return false;
  int32_t i = 0;
  for (int64_t w : want)
    if (t.sizes[i++] != w) return false;
  return true;
}

// Shapes and dtypes, shared by the forward and backward entry points (CPU and CUDA). The hosts have checked
// them against the declaration already; kernels still refuse what they cannot index.
inline ::opforge::Status check_dims(const ::opforge::TensorView& value, const ::opforge::TensorView& spatial_shapes,
                                    const ::opforge::TensorView& level_start_index,
                                    const ::opforge::TensorView& sampling_locations,
                                    const ::opforge::TensorView& attention_weights, Dims* g) {
  using ::opforge::Status;
  if (value.rank != 4 || sampling_locations.rank != 6 || spatial_shapes.rank != 2)
    return Status::error(Status::kInvalidArgument,
                         "multi_scale_deformable_attn: value must be [N, S, M, D], spatial_shapes [L, 2] and "
                         "sampling_locations [N, Lq, M, L, P, 2]");
  g->N = value.sizes[0];
  g->S = value.sizes[1];
  g->M = value.sizes[2];
  g->D = value.sizes[3];
  g->L = spatial_shapes.sizes[0];
  g->Lq = sampling_locations.sizes[1];
  g->P = sampling_locations.sizes[4];
  if (spatial_shapes.dtype != ::opforge::DType::kInt64 || level_start_index.dtype != ::opforge::DType::kInt64)
    return Status::error(Status::kInvalidArgument,
                         "multi_scale_deformable_attn: spatial_shapes and level_start_index must be int64");
  if (sampling_locations.dtype != value.dtype || attention_weights.dtype != value.dtype)
    return Status::error(Status::kInvalidArgument,
                         "multi_scale_deformable_attn: value, sampling_locations and attention_weights must share a "
                         "dtype");
  if (!dims_are(spatial_shapes, {g->L, 2}) || !dims_are(level_start_index, {g->L}) ||
      !dims_are(sampling_locations, {g->N, g->Lq, g->M, g->L, g->P, 2}) ||
      !dims_are(attention_weights, {g->N, g->Lq, g->M, g->L, g->P}))
    return Status::error(Status::kInvalidArgument,
                         "multi_scale_deformable_attn: spatial_shapes must be [L, 2], level_start_index [L], "
                         "sampling_locations [N, Lq, M, L, P, 2] and attention_weights [N, Lq, M, L, P]");
  // The CUDA kernels index one batch element's value and one (n, q, m)'s points with 32-bit integers.
  const int64_t big = int64_t{1} << 31;
  if (g->M >= big || g->D >= big || g->L >= big || g->P >= big || (g->S > 0 ? g->S : 1) * g->M * g->D >= big ||
      g->L * g->P >= (int64_t{1} << 24) || g->Lq >= big)
    return Status::error(Status::kInvalidArgument,
                         "multi_scale_deformable_attn: value too large (S*M*D must be < 2^31, L*P < 2^24)");
  return Status::ok();
}

// A message with values in it: Status keeps a pointer, so the text lives in a per-thread buffer until this
// thread's next such error (the hosts copy it at once).
inline const char* format_message(const char* fmt, ...) {
  thread_local char buffer[320];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buffer, sizeof buffer, fmt, args);
  va_end(args);
  return buffer;
}

// One level as the kernels use it.
struct Level { int64_t H, W, start; };

// The CUDA kernels' bound (see the top of this file): a level that no consistent input can have (H or W outside
// [0, S], start outside [0, S]) is read as empty, which also keeps start + r * W + c far from overflowing.
OPFORGE_HOST_DEVICE inline Level bound_level(int64_t H, int64_t W, int64_t start, int64_t S) {
  if (H < 0 || W < 0 || H > S || W > S || start < 0 || start > S) return Level{0, 0, 0};
  return Level{H, W, start};
}

// CPU only (the data are host memory there): spatial_shapes and level_start_index against value's S.
inline ::opforge::Status read_levels(const ::opforge::TensorView& spatial_shapes,
                                     const ::opforge::TensorView& level_start_index, const Dims& g, Level* levels) {
  using ::opforge::Status;
  const int64_t* shapes = spatial_shapes.ptr<const int64_t>();
  const int64_t* starts = level_start_index.ptr<const int64_t>();
  bool partial = false;
  int64_t total = 0;  // stays <= S + S^2 < 2^63: H, W <= S < 2^31, and the loop stops once it passes S
  for (int64_t l = 0; l < g.L; ++l) {
    const long long h = shapes[2 * l], w = shapes[2 * l + 1];
    if (h < 0 || w < 0 || h > g.S || w > g.S)
      return Status::error(Status::kInvalidArgument,
                           format_message("opforge::multi_scale_deformable_attn: spatial_shapes[%lld] = (%lld, %lld) "
                                          "does not fit value.shape[1] (S) = %lld: H and W must be in [0, S]",
                                          static_cast<long long>(l), h, w, static_cast<long long>(g.S)));
    if (starts[l] != total)
      return Status::error(
          Status::kInvalidArgument,
          format_message("opforge::multi_scale_deformable_attn: level_start_index[%lld] = %lld, "
                         "expected %lld (the sum of H*W over the levels before it)",
                         static_cast<long long>(l), static_cast<long long>(starts[l]), static_cast<long long>(total)));
    levels[l] = Level{h, w, starts[l]};
    total += h * w;
    if (total > g.S && l + 1 < g.L) {  // levels left: only a lower bound is known (and no overflow can follow)
      partial = true;
      break;
    }
  }
  if (total != g.S)
    return Status::error(Status::kInvalidArgument,
                         format_message("opforge::multi_scale_deformable_attn: spatial_shapes has %s%lld pixels (sum "
                                        "of H*W over its %lld levels), but value.shape[1] (S) is %lld",
                                        partial ? "at least " : "", static_cast<long long>(total),
                                        static_cast<long long>(g.L), static_cast<long long>(g.S)));
  return Status::ok();
}

// Where one point samples: corner k (0: (y0, x0), 1: (y0, x0+1), 2: (y0+1, x0), 3: (y0+1, x0+1)) is value row
// row + (k >> 1) * w + (k & 1), counted when bit k of flags is set; bit 4: NaN point.
struct Point {
  int32_t row;  // value row of corner 0 (0 when no corner counts)
  int32_t w;    // the level's W (row step)
  float lx, ly;  // fractional parts
  int32_t flags;
};

constexpr int32_t kNaNPoint = 16;

OPFORGE_HOST_DEVICE inline float scale_coordinate(float loc, float size) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(loc, size) - 0.5f;  // no fused multiply-add: rounded as the reference rounds it
#else
  return loc * size - 0.5f;
#endif
}

OPFORGE_HOST_DEVICE inline Point locate(float loc_x, float loc_y, const Level& lv, int64_t S) {
  Point p;
  p.row = 0;
  p.w = static_cast<int32_t>(lv.W);
  p.lx = p.ly = 0.0f;
  p.flags = 0;
  const float wf = static_cast<float>(lv.W), hf = static_cast<float>(lv.H);
  const float x = scale_coordinate(loc_x, wf), y = scale_coordinate(loc_y, hf);
  if (x != x || y != y) {
    p.flags = kNaNPoint;
    return p;
  }
  if (!(x >= -1.0f && x <= wf && y >= -1.0f && y <= hf)) return p;  // every corner outside the level
  const float fx = floorf(x), fy = floorf(y);
  p.lx = x - fx;
  p.ly = y - fy;
  const int64_t x0 = static_cast<int64_t>(fx), y0 = static_cast<int64_t>(fy);  // in [-1, W] x [-1, H]
  const int64_t row0 = lv.start + y0 * lv.W + x0;
  for (int k = 0; k < 4; ++k) {
    const int64_t r = y0 + (k >> 1), c = x0 + (k & 1), row = row0 + (k >> 1) * lv.W + (k & 1);
    if (r >= 0 && r < lv.H && c >= 0 && c < lv.W && row >= 0 && row < S) p.flags |= 1 << k;
  }
  // A counted corner's row is in [0, S), so row0 is in [-W - 1, S): it fits 32 bits (S < 2^31).
  if (p.flags != 0) p.row = static_cast<int32_t>(row0);
  return p;
}

// Bilinear weights of the four corners, in the reference's form.
OPFORGE_HOST_DEVICE inline void corner_weights(float lx, float ly, float w[4]) {
  const float hx = 1.0f - lx, hy = 1.0f - ly;
  w[0] = hy * hx;
  w[1] = hy * lx;
  w[2] = ly * hx;
  w[3] = ly * lx;
}

// d(sample)/dx and d(sample)/dy (in pixels) from the sums over channels of grad * corner value, gw[k] (corners
// outside the level included, with value 0), in the reference's autograd form.
OPFORGE_HOST_DEVICE inline void coordinate_grads(const float gw[4], float lx, float ly, float* gx, float* gy) {
  const float hx = 1.0f - lx, hy = 1.0f - ly;
  *gx = (gw[1] * hy + gw[3] * ly) - (gw[0] * hy + gw[2] * ly);
  *gy = (gw[2] * hx + gw[3] * lx) - (gw[0] * hx + gw[1] * lx);
}

}  // namespace detail
}  // namespace multi_scale_deformable_attn
}  // namespace opforge
}  // namespace opforge_kernels
