#include "modulated_deform_conv2d_backward.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "modulated_deform_conv2d/gemm_cpu.h"

namespace opforge_kernels {
namespace opforge {
namespace modulated_deform_conv2d_backward {
namespace {

namespace fwd = ::opforge_kernels::opforge::modulated_deform_conv2d::detail;
namespace gemm = ::opforge_kernels::opforge::modulated_deform_conv2d::gemm;
using fwd::Geometry;
using fwd::Tap;

constexpr int64_t kTile = 64;  // output pixels per step (a multiple of gemm::kNR)
constexpr int kLanes = 8;

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using FloatBuffer = std::unique_ptr<float[], FreeDeleter>;

inline FloatBuffer zeros(int64_t n) {
  return FloatBuffer(static_cast<float*>(std::calloc(static_cast<size_t>(n > 0 ? n : 1), sizeof(float))));
}

// sum_q a[q] * b[q] over kTile values, with independent lanes (vectorisable without -ffast-math).
__attribute__((target("avx2,fma"))) inline float dot_avx2(const float* a, const float* b) {
  float lanes[kLanes] = {};
  for (int64_t q = 0; q < kTile; q += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[q + l] * b[q + l];
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  return s;
}
inline float dot_base(const float* a, const float* b) {
  float lanes[kLanes] = {};
  for (int64_t q = 0; q < kTile; q += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[q + l] * b[q + l];
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  return s;
}

// Per image b (one task): grad_x[b], grad_offset[b], grad_mask[b] and this image's share of grad_weight.
template <typename T>
struct Image {
  const Geometry& g;
  const T *gout, *x, *offset, *mask;
  const float* wt_packed;  // per group: W^T [Cg*K, Coutg] packed for gemm::multiply
  T *grad_x, *grad_offset, *grad_mask;

  bool run(int64_t b, float* gw) const {
    const int64_t R = g.Cg * g.K;
    const int64_t rpad = (R + gemm::kMR - 1) / gemm::kMR * gemm::kMR;
    std::unique_ptr<Tap[]> taps(new (std::nothrow) Tap[static_cast<size_t>(g.dg * g.K * kTile)]);
    FloatBuffer gx = zeros(g.C * g.H * g.W), gtile = zeros(g.Cout * kTile), gcol = zeros(rpad * kTile),
                col = zeros(R * kTile), goff = zeros(2 * g.dg * g.K * kTile), gm = zeros(g.dg * g.K * kTile);
    if (!taps || !gx || !gtile || !gcol || !col || !goff || !gm) return false;
    for (int64_t p0 = 0; p0 < g.P; p0 += kTile) {
      const int64_t np = g.P - p0 < kTile ? g.P - p0 : kTile;
      locate(b, p0, np, taps.get());
      for (int64_t co = 0; co < g.Cout; ++co) {
        const T* src = gout + (b * g.Cout + co) * g.P + p0;
        float* dst = gtile.get() + co * kTile;
        for (int64_t q = 0; q < kTile; ++q) dst[q] = q < np ? ::opforge::load(src, q) : 0.0f;
      }
      std::memset(goff.get(), 0, sizeof(float) * 2 * g.dg * g.K * kTile);
      std::memset(gm.get(), 0, sizeof(float) * g.dg * g.K * kTile);
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        // Gradient of the columns: W_g^T [R, Coutg] x grad_out tile [Coutg, kTile].
        gemm::multiply(wt_packed + gi * gemm::packed_a_size(R, g.Coutg), R, g.Coutg, gtile.get() + gi * g.Coutg * kTile,
                       kTile, kTile, gcol.get(), kTile);
        for (int64_t cl = 0; cl < g.Cg; ++cl) {
          const int64_t c = gi * g.Cg + cl, d = c / g.Cd;
          const T* plane = x + (b * g.C + c) * g.H * g.W;
          float* gxp = gx.get() + c * g.H * g.W;
          for (int64_t k = 0; k < g.K; ++k)
            channel_tap(b, d, k, p0, np, taps.get() + (d * g.K + k) * kTile, plane, gxp,
                        gcol.get() + (cl * g.K + k) * kTile, col.get() + (cl * g.K + k) * kTile,
                        goff.get() + (d * g.K + k) * 2 * kTile, gm.get() + (d * g.K + k) * kTile);
        }
        // grad_weight[co, r] += sum_q grad_out[co, q] * col[r, q] (zero past np on both sides).
        const bool avx2 = gemm::has_avx2();
        for (int64_t co = 0; co < g.Coutg; ++co) {
          const float* a = gtile.get() + (gi * g.Coutg + co) * kTile;
          float* wrow = gw + (gi * g.Coutg + co) * R;
          for (int64_t r = 0; r < R; ++r)
            wrow[r] += avx2 ? dot_avx2(a, col.get() + r * kTile) : dot_base(a, col.get() + r * kTile);
        }
      }
      for (int64_t dk = 0; dk < g.dg * g.K; ++dk) {
        T* oy = grad_offset + (b * g.dg * g.K + dk) * 2 * g.P + p0;
        T* ox = oy + g.P;
        T* om = grad_mask + (b * g.dg * g.K + dk) * g.P + p0;
        for (int64_t q = 0; q < np; ++q) {
          ::opforge::store(oy, q, goff[dk * 2 * kTile + q]);
          ::opforge::store(ox, q, goff[dk * 2 * kTile + kTile + q]);
          ::opforge::store(om, q, gm[dk * kTile + q]);
        }
      }
    }
    T* gxb = grad_x + b * g.C * g.H * g.W;
    for (int64_t i = 0; i < g.C * g.H * g.W; ++i) ::opforge::store(gxb, i, gx[i]);
    return true;
  }

  void locate(int64_t b, int64_t p0, int64_t np, Tap* taps) const {
    for (int64_t d = 0; d < g.dg; ++d)
      for (int64_t k = 0; k < g.K; ++k) {
        const int64_t i = k / g.kw, j = k % g.kw;
        const T* oy_ptr = offset + ((b * g.dg + d) * 2 * g.K + 2 * k) * g.P;
        const T* ox_ptr = oy_ptr + g.P;
        for (int64_t q = 0; q < np; ++q) {
          const int64_t p = p0 + q, oy = p / g.OW, ox = p % g.OW;
          const float py = static_cast<float>(oy * g.sh - g.ph + i * g.dh) + ::opforge::load(oy_ptr, p);
          const float px = static_cast<float>(ox * g.sw - g.pw + j * g.dw) + ::opforge::load(ox_ptr, p);
          taps[(d * g.K + k) * kTile + q] = fwd::locate(py, px, g.H, g.W);
        }
      }
  }

  // One (channel, tap) row of the tile: the forward column (for grad_weight) and the gradients it
  // sends to x, offset and mask.
  void channel_tap(int64_t b, int64_t d, int64_t k, int64_t p0, int64_t np, const Tap* taps, const T* plane, float* gxp,
                   const float* gc, float* col, float* goff, float* gm) const {
    const T* m = mask ? mask + ((b * g.dg + d) * g.K + k) * g.P + p0 : nullptr;
    const auto load = [plane](int32_t idx) { return ::opforge::load(plane, idx); };
    for (int64_t q = 0; q < np; ++q) {
      const Tap& t = taps[q];
      const float mv = m ? ::opforge::load(m, q) : 1.0f;
      const float val = fwd::sample(t, load);
      col[q] = m ? val * mv : val;
      gm[q] += gc[q] * val;
      if (t.kind != 2) continue;
      const float gv = m ? gc[q] * mv : gc[q];
      float v[4];
      for (int n = 0; n < 4; ++n) {
        v[n] = 0.0f;
        if (t.valid & (1 << n)) {
          v[n] = load(t.idx[n]);
          gxp[t.idx[n]] += t.w[n] * gv;
        }
      }
      float gy, gx;
      detail::coordinate_grads(gv, v, t.ly, t.lx, &gy, &gx);
      goff[q] += gy;
      goff[kTile + q] += gx;
    }
    for (int64_t q = np; q < kTile; ++q) col[q] = 0.0f;
  }
};

template <typename T>
::opforge::Status backward(const Geometry& g, const T* gout, const T* x, const T* offset, const T* weight,
                           const T* mask, T* grad_x, T* grad_offset, T* grad_weight, T* grad_mask, T* grad_bias,
                           const ::opforge::DeviceContext& ctx) {
  const ::opforge::Status oom =
      ::opforge::Status::error(::opforge::Status::kInternal, "modulated_deform_conv2d_backward: out of memory");
  const int64_t R = g.Cg * g.K;
  // W^T per group, packed: A = [R, Coutg] with A[r][co] = weight[gi*Coutg + co][r].
  FloatBuffer wt = zeros(R * g.Coutg), packed = zeros(g.groups * gemm::packed_a_size(R, g.Coutg));
  FloatBuffer gw = zeros(g.B * g.Cout * R);  // one grad_weight share per image, summed below
  if (!wt || !packed || !gw) return oom;
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    for (int64_t co = 0; co < g.Coutg; ++co)
      for (int64_t r = 0; r < R; ++r) wt[r * g.Coutg + co] = ::opforge::load(weight, (gi * g.Coutg + co) * R + r);
    gemm::pack_a(wt.get(), g.Coutg, R, g.Coutg, packed.get() + gi * gemm::packed_a_size(R, g.Coutg));
  }
  const Image<T> image{g, gout, x, offset, mask, packed.get(), grad_x, grad_offset, grad_mask};
  std::atomic<bool> failed{false};
  ctx.parallel_for(g.B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      if (!image.run(b, gw.get() + b * g.Cout * R)) failed = true;
  });
  if (failed) return oom;
  for (int64_t i = 0; i < g.Cout * R; ++i) {
    float s = 0.0f;
    for (int64_t b = 0; b < g.B; ++b) s += gw[b * g.Cout * R + i];
    ::opforge::store(grad_weight, i, s);
  }
  for (int64_t co = 0; co < g.Cout; ++co) {
    float lanes[kLanes] = {};
    for (int64_t b = 0; b < g.B; ++b) {
      const T* src = gout + (b * g.Cout + co) * g.P;
      for (int64_t p = 0; p < g.P; ++p) lanes[p % kLanes] += ::opforge::load(src, p);
    }
    float s = 0.0f;
    for (int l = 0; l < kLanes; ++l) s += lanes[l];
    ::opforge::store(grad_bias, co, s);
  }
  return ::opforge::Status::ok();
}

}  // namespace
}  // namespace modulated_deform_conv2d_backward
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, modulated_deform_conv2d_backward) {
  Geometry g;
  const ::opforge::Status st =
      detail::check_args(grad_out, x, offset, weight, mask, grad_x, grad_offset, grad_weight, grad_mask, grad_bias,
                         stride, padding, dilation, groups, deformable_groups, &g);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    return backward<T>(g, grad_out.ptr<const T>(), x.ptr<const T>(), offset.ptr<const T>(), weight.ptr<const T>(),
                       mask ? mask->ptr<const T>() : nullptr, grad_x.ptr<T>(), grad_offset.ptr<T>(),
                       grad_weight.ptr<T>(), grad_mask.ptr<T>(), grad_bias.ptr<T>(), ctx);
  });
}
