// opforge::grid_sample3d: the sampling geometry shared by the CPU and CUDA kernels of the op and of its
// backward (csrc/grid_sample3d_backward/), written once so every host computes the same source indices.
//
// The semantics are aten's grid_sampler_3d on the CPU (aten/src/ATen/native/GridSampler.{h,cpp}): the
// unnormalisation, 'border' clamping (std::min/std::max order, so a NaN index clamps to size - 1 in the
// forward), the replacement of a non-finite or out-of-int-range index by -100 (outside), nearest rounding
// half to even, and the corner order and weight formulas of the trilinear sum. An index is only turned into
// an offset when it is inside the volume: nothing outside is read or written.
#pragma once

#include <math.h>

#include <cstdint>
#include <cstdlib>

#include "opforge/kernel_api.h"
#include "opforge_kernels/opforge/grid_sample3d.h"  // the entry points, generated from the declaration

// `#pragma unroll` in the device pass only (host compilers under -Wall warn about an unknown pragma).
#if defined(__CUDA_ARCH__)
#define OPFORGE_GS3D_UNROLL _Pragma("unroll")
#else
#define OPFORGE_GS3D_UNROLL
#endif

namespace opforge_kernels {
namespace opforge {
namespace grid_sample3d {
namespace detail {

struct Params {
  int64_t N = 0, C = 0, D = 0, H = 0, W = 0;  // input
  int64_t Do = 0, Ho = 0, Wo = 0;              // grid / output
  bool nearest = false, border = false, align = false;
  OPFORGE_HOST_DEVICE int64_t in_plane() const { return D * H * W; }
  OPFORGE_HOST_DEVICE int64_t out_plane() const { return Do * Ho * Wo; }
};

// Checks shared by the forward and the backward (which passes its grad_out as `out`), in every host.
inline ::opforge::Status check_args(const ::opforge::TensorView& input, const ::opforge::TensorView& grid,
                                    const ::opforge::TensorView& out, ::opforge::StringView mode,
                                    ::opforge::StringView padding_mode, bool align_corners, Params* p) {
  using ::opforge::Status;
  if (mode.equals("bilinear")) {
    p->nearest = false;
  } else if (mode.equals("nearest")) {
    p->nearest = true;
  } else {
    return Status::error(Status::kInvalidArgument, "grid_sample3d: mode must be 'bilinear' or 'nearest'");
  }
  if (padding_mode.equals("zeros")) {
    p->border = false;
  } else if (padding_mode.equals("border")) {
    p->border = true;
  } else {
    return Status::error(Status::kInvalidArgument, "grid_sample3d: padding_mode must be 'zeros' or 'border'");
  }
  p->align = align_corners;
  if (input.rank != 5 || grid.rank != 5 || out.rank != 5)
    return Status::error(Status::kInvalidArgument, "grid_sample3d: input, grid and output must be 5-D");
  p->N = input.sizes[0], p->C = input.sizes[1], p->D = input.sizes[2], p->H = input.sizes[3], p->W = input.sizes[4];
  p->Do = grid.sizes[1], p->Ho = grid.sizes[2], p->Wo = grid.sizes[3];
  if (grid.sizes[0] != p->N || grid.sizes[4] != 3)
    return Status::error(Status::kInvalidArgument, "grid_sample3d: grid must be [N, Do, Ho, Wo, 3] with input's N");
  if (out.sizes[0] != p->N || out.sizes[1] != p->C || out.sizes[2] != p->Do || out.sizes[3] != p->Ho ||
      out.sizes[4] != p->Wo)
    return Status::error(Status::kInvalidArgument, "grid_sample3d: output must be [N, C, Do, Ho, Wo]");
  if (grid.dtype != input.dtype || out.dtype != input.dtype)
    return Status::error(Status::kInvalidArgument, "grid_sample3d: input, grid and output must have one dtype");
  // Offsets inside one channel volume are 32-bit in the kernels.
  if (p->in_plane() >= (int64_t{1} << 31) || p->out_plane() >= (int64_t{1} << 31))
    return Status::error(Status::kInvalidArgument, "grid_sample3d: D*H*W and Do*Ho*Wo must each be below 2^31 voxels");
  return Status::ok();
}

// Channel lanes per output voxel in the CUDA kernels (the block is (256 / lanes voxels, lanes)). One lane
// walks all C channels of its voxel and locates it once, which is what the kernels are fastest at (2026-12-06,
// H100: 8 lanes at C = 8..32 recomputed each voxel's corners 8 times and ran at 0.41-0.86x aten's forward).
// More lanes only where the voxels alone leave the GPU short of threads (small outputs, many channels); each
// lane keeps at least 8 channels. OPFORGE_GRID_SAMPLE3D_LANES=1|2|4|8 forces a count (for measurements).
inline unsigned channel_lanes(int64_t voxels, int64_t channels) {
  constexpr int64_t kEnoughThreads = int64_t{1} << 19;  // about twice an H100's resident threads (132 x 2048)
  if (const char* forced = std::getenv("OPFORGE_GRID_SAMPLE3D_LANES")) {
    const int f = std::atoi(forced);
    if (f == 1 || f == 2 || f == 4 || f == 8) return static_cast<unsigned>(f);
  }
  unsigned lanes = 1;
  while (lanes < 8 && voxels * lanes < kEnoughThreads && channels >= 16 * static_cast<int64_t>(lanes)) lanes *= 2;
  return lanes;
}

// grid value -> voxel index (float), before padding.
OPFORGE_HOST_DEVICE inline float unnormalize(float g, int64_t size, bool align) {
  return align ? ((g + 1.0f) / 2.0f) * static_cast<float>(size - 1)
               : ((g + 1.0f) * static_cast<float>(size) - 1.0f) / 2.0f;
}

// aten's safe_downgrade_to_int_range: keeps x only where it is finite and within the int range (x <= 2^31,
// as INT_MAX - 1 rounds to float), else -100, which is outside every volume. NaN fails both comparisons.
OPFORGE_HOST_DEVICE inline float safe_index(float x) {
  return (x <= 2147483648.0f && x >= -2147483648.0f) ? x : -100.0f;
}

// Forward source index (grid_sampler_compute_source_index): clip_coordinates is
// std::min(size - 1, std::max(x, 0)); std::max(x, 0) keeps a NaN and std::min(size - 1, NaN) is size - 1.
OPFORGE_HOST_DEVICE inline float source_index(float g, int64_t size, bool border, bool align) {
  float x = unnormalize(g, size, align);
  if (border) {
    const float hi = static_cast<float>(size - 1);
    const float m = x < 0.0f ? 0.0f : x;
    x = m < hi ? m : hi;
  }
  return safe_index(x);
}

// Backward source index (grid_sampler_compute_source_index_set_grad): also d(index)/d(grid) in *mult.
// clip_coordinates_set_grad passes no gradient at or beyond the borders, and keeps a NaN (gradient 1),
// which safe_index then sends outside.
OPFORGE_HOST_DEVICE inline float source_index_grad(float g, int64_t size, bool border, bool align, float* mult) {
  float x = unnormalize(g, size, align);
  *mult = align ? static_cast<float>(size - 1) / 2.0f : static_cast<float>(size) / 2.0f;
  if (border) {
    const float hi = static_cast<float>(size - 1);
    if (x <= 0.0f) {
      x = 0.0f;
      *mult = 0.0f;
    } else if (x >= hi) {
      x = hi;
      *mult = 0.0f;
    }
  }
  return safe_index(x);
}

// Whether the integer-valued float index i is inside [0, size).
OPFORGE_HOST_DEVICE inline bool inside(float i, int64_t size) { return i >= 0.0f && i < static_cast<float>(size); }

// The 8 corners of a trilinear sample, in aten's order: bit 0 = x + 1 (east), bit 1 = y + 1 (south),
// bit 2 = z + 1 (bottom): tnw, tne, tsw, tse, bnw, bne, bsw, bse. off[k] is the offset in one channel volume
// (set only for corners inside: `valid` bit k), w[k] the weight (x * y * z factors, as aten multiplies).
// lx = x - x0, hx = x0 + 1 - x etc. are kept for the coordinate gradients.
struct Trilinear {
  int32_t off[8];
  float w[8];
  unsigned valid;
  float lx, hx, ly, hy, lz, hz;
};

OPFORGE_HOST_DEVICE inline void locate_trilinear(float ix, float iy, float iz, const Params& p, Trilinear* t) {
  const float x0 = floorf(ix), y0 = floorf(iy), z0 = floorf(iz);
  const float x1 = x0 + 1.0f, y1 = y0 + 1.0f, z1 = z0 + 1.0f;
  t->lx = ix - x0, t->hx = x1 - ix;
  t->ly = iy - y0, t->hy = y1 - iy;
  t->lz = iz - z0, t->hz = z1 - iz;
  const bool vx[2] = {inside(x0, p.W), inside(x1, p.W)};
  const bool vy[2] = {inside(y0, p.H), inside(y1, p.H)};
  const bool vz[2] = {inside(z0, p.D), inside(z1, p.D)};
  const float fx[2] = {t->hx, t->lx}, fy[2] = {t->hy, t->ly}, fz[2] = {t->hz, t->lz};
  // Offsets only from indices known to be inside: no float -> int conversion of an outside value.
  const int32_t ox[2] = {vx[0] ? static_cast<int32_t>(x0) : 0, vx[1] ? static_cast<int32_t>(x1) : 0};
  const int32_t oy[2] = {vy[0] ? static_cast<int32_t>(y0) : 0, vy[1] ? static_cast<int32_t>(y1) : 0};
  const int32_t oz[2] = {vz[0] ? static_cast<int32_t>(z0) : 0, vz[1] ? static_cast<int32_t>(z1) : 0};
  const int32_t H = static_cast<int32_t>(p.H), W = static_cast<int32_t>(p.W);
  t->valid = 0;
  OPFORGE_GS3D_UNROLL
  for (int k = 0; k < 8; ++k) {
    const int dx = k & 1, dy = (k >> 1) & 1, dz = k >> 2;
    t->w[k] = fx[dx] * fy[dy] * fz[dz];
    t->off[k] = (oz[dz] * H + oy[dy]) * W + ox[dx];
    if (vx[dx] && vy[dy] && vz[dz]) t->valid |= 1u << k;
  }
}

// Nearest voxel (std::nearbyint: half to even in the default rounding mode); -1 when outside.
OPFORGE_HOST_DEVICE inline int32_t locate_nearest(float ix, float iy, float iz, const Params& p) {
  const float x = nearbyintf(ix), y = nearbyintf(iy), z = nearbyintf(iz);
  if (!(inside(x, p.W) && inside(y, p.H) && inside(z, p.D))) return -1;
  return (static_cast<int32_t>(z) * static_cast<int32_t>(p.H) + static_cast<int32_t>(y)) * static_cast<int32_t>(p.W) +
         static_cast<int32_t>(x);
}

// d(sample)/d(ix, iy, iz) for one channel, times gv: the sum over the corners inside of
// +-(corner value) * (the other two factors) * gv, as aten's backward forms it (corner order, signs).
OPFORGE_HOST_DEVICE inline void coordinate_grads(const Trilinear& t, const float v[8], float gv, float* gx, float* gy,
                                                 float* gz) {
  const float fx[2] = {t.hx, t.lx}, fy[2] = {t.hy, t.ly}, fz[2] = {t.hz, t.lz};
  OPFORGE_GS3D_UNROLL
  for (int k = 0; k < 8; ++k) {
    if (!(t.valid & (1u << k))) continue;
    const int dx = k & 1, dy = (k >> 1) & 1, dz = k >> 2;
    const float ax = v[k] * fy[dy] * fz[dz] * gv;
    const float ay = v[k] * fx[dx] * fz[dz] * gv;
    const float az = v[k] * fx[dx] * fy[dy] * gv;
    *gx = dx ? *gx + ax : *gx - ax;
    *gy = dy ? *gy + ay : *gy - ay;
    *gz = dz ? *gz + az : *gz - az;
  }
}

}  // namespace detail
}  // namespace grid_sample3d
}  // namespace opforge
}  // namespace opforge_kernels
