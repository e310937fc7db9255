#include "modulated_deform_conv2d.h"

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "gemm_cpu.h"

namespace opforge_kernels {
namespace opforge {
namespace modulated_deform_conv2d {
namespace {

using detail::Geometry;
using detail::Tap;

constexpr int64_t kTile = 64;  // output pixels of one image per task (a multiple of gemm::kNR)

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using FloatBuffer = std::unique_ptr<float[], FreeDeleter>;

inline FloatBuffer alloc_floats(int64_t n) {
  return FloatBuffer(static_cast<float*>(std::malloc(static_cast<size_t>(n > 0 ? n : 1) * sizeof(float))));
}

template <typename T>
void to_float(const T* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = ::opforge::load(in, i);
}

// Sampling positions of pixels [p0, p0 + np) of image b, all deformable groups and taps: taps[(d*K + k)*kTile + p].
template <typename T>
void locate_tile(const Geometry& g, const T* offset, int64_t b, int64_t p0, int64_t np, Tap* taps) {
  for (int64_t d = 0; d < g.dg; ++d)
    for (int64_t k = 0; k < g.K; ++k) {
      const int64_t i = k / g.kw, j = k % g.kw;
      const T* oy_ptr = offset + ((b * g.dg + d) * 2 * g.K + 2 * k) * g.P;
      const T* ox_ptr = oy_ptr + g.P;
      Tap* out = taps + (d * g.K + k) * kTile;
      for (int64_t q = 0; q < np; ++q) {
        const int64_t p = p0 + q, oy = p / g.OW, ox = p % g.OW;
        const float py = static_cast<float>(oy * g.sh - g.ph + i * g.dh) + ::opforge::load(oy_ptr, p);
        const float px = static_cast<float>(ox * g.sw - g.pw + j * g.dw) + ::opforge::load(ox_ptr, p);
        out[q] = detail::locate(py, px, g.H, g.W);
      }
    }
}

// Columns of channels [c0, c0 + nc) for the tile: col[((c - c0)*K + k)*kTile + q], zero past np.
template <typename T>
void fill_columns(const Geometry& g, const T* x, const T* mask, int64_t b, int64_t p0, int64_t np, const Tap* taps,
                  int64_t c0, int64_t nc, float* col) {
  for (int64_t c = c0; c < c0 + nc; ++c) {
    const int64_t d = c / g.Cd;
    const T* plane = x + (b * g.C + c) * g.H * g.W;
    for (int64_t k = 0; k < g.K; ++k) {
      const Tap* t = taps + (d * g.K + k) * kTile;
      float* row = col + ((c - c0) * g.K + k) * kTile;
      // Branch-free form of detail::sample: invalid corners have idx 0 (a safe read) and are selected
      // away (not multiplied by 0, so an inf there cannot leak in); kind 0/1 start from 0/NaN with no corner.
      for (int64_t q = 0; q < np; ++q) {
        const Tap& tq = t[q];
        float v = tq.kind == 1 ? NAN : 0.0f;
        for (int n = 0; n < 4; ++n) {
          const float xv = ::opforge::load(plane, tq.idx[n]);
          v += ((tq.valid >> n) & 1) ? tq.w[n] * xv : 0.0f;
        }
        row[q] = v;
      }
      if (mask != nullptr) {
        const T* m = mask + ((b * g.dg + d) * g.K + k) * g.P + p0;
        for (int64_t q = 0; q < np; ++q) row[q] *= ::opforge::load(m, q);
      }
      for (int64_t q = np; q < kTile; ++q) row[q] = 0.0f;
    }
  }
}

template <typename T>
::opforge::Status forward(const Geometry& g, const T* x, const T* offset, const T* weight, const T* mask, const T* bias,
                          T* y, const ::opforge::DeviceContext& ctx) {
  const int64_t R = g.Cg * g.K;
  const int64_t mpad = (g.Coutg + gemm::kMR - 1) / gemm::kMR * gemm::kMR;
  // The weight in float, packed per group for the GEMM.
  FloatBuffer wf = alloc_floats(g.Cout * R);
  FloatBuffer wpack = alloc_floats(g.groups * gemm::packed_a_size(g.Coutg, R));
  if (!wf || !wpack)
    return ::opforge::Status::error(::opforge::Status::kInternal, "modulated_deform_conv2d: out of memory");
  to_float(weight, g.Cout * R, wf.get());
  for (int64_t gi = 0; gi < g.groups; ++gi)
    gemm::pack_a(wf.get() + gi * g.Coutg * R, R, g.Coutg, R, wpack.get() + gi * gemm::packed_a_size(g.Coutg, R));
  std::vector<float> bf(static_cast<size_t>(g.Cout), 0.0f);
  if (bias != nullptr) to_float(bias, g.Cout, bf.data());

  const int64_t tiles_per_image = (g.P + kTile - 1) / kTile;
  const int64_t tasks = g.B * tiles_per_image;
  // ~C*K*kTile*10 sampled values per task: one task is already tens of microseconds for real layers.
  const int64_t grain = 1;
  std::atomic<bool> failed{false};
  ctx.parallel_for(tasks, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<Tap[]> taps(new (std::nothrow) Tap[static_cast<size_t>(g.dg * g.K * kTile)]);
    FloatBuffer col = alloc_floats(R * kTile);
    FloatBuffer out = alloc_floats(mpad * kTile);
    if (!taps || !col || !out) {
      failed = true;
      return;
    }
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles_per_image, p0 = (task % tiles_per_image) * kTile;
      const int64_t np = g.P - p0 < kTile ? g.P - p0 : kTile;
      locate_tile(g, offset, b, p0, np, taps.get());
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        fill_columns(g, x, mask, b, p0, np, taps.get(), gi * g.Cg, g.Cg, col.get());
        gemm::multiply(wpack.get() + gi * gemm::packed_a_size(g.Coutg, R), g.Coutg, R, col.get(), kTile, kTile,
                       out.get(), kTile);
        for (int64_t co = 0; co < g.Coutg; ++co) {
          const int64_t oc = gi * g.Coutg + co;
          T* dst = y + (b * g.Cout + oc) * g.P + p0;
          const float* src = out.get() + co * kTile;
          for (int64_t q = 0; q < np; ++q) ::opforge::store(dst, q, src[q] + bf[oc]);
        }
      }
    }
  });
  if (failed) return ::opforge::Status::error(::opforge::Status::kInternal, "modulated_deform_conv2d: out of memory");
  return ::opforge::Status::ok();
}

}  // namespace
}  // namespace modulated_deform_conv2d
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, modulated_deform_conv2d) {
  Geometry g;
  ::opforge::Status st =
      detail::check_args(x, offset, weight, mask, stride, padding, dilation, groups, deformable_groups, &g);
  if (!st.is_ok()) return st;
  if ((bias && (bias->rank != 1 || bias->sizes[0] != g.Cout || bias->dtype != x.dtype)) ||
      !detail::dims_are(y, g.B, g.Cout, g.OH, g.OW) || y.dtype != x.dtype)
    return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                    "modulated_deform_conv2d: bias must be [Cout] and y [B, Cout, oH, oW]");
  if (y.numel() == 0) return ::opforge::Status::ok();
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    return forward<T>(g, x.ptr<const T>(), offset.ptr<const T>(), weight.ptr<const T>(),
                      mask ? mask->ptr<const T>() : nullptr, bias ? bias->ptr<const T>() : nullptr, y.ptr<T>(), ctx);
  });
}
