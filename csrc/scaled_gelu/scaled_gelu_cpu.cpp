#include "scaled_gelu.h"
#include "gelu_math.h"
#include "opforge/cpu_isa.h"

#include <cmath>
#include <type_traits>

// Speed: the kernel must keep up with aten's vectorised gelu, so the per-element libm erf/tanh calls
// and the per-element half conversions are gone. Instead:
//  * erf and tanh are rational minimax approximations (gelu_math.h, shared with the CUDA kernel),
//    branch-free, so the element loop vectorises; their float64 relative error is < 3e-8 (under half an
//    ulp), so the float32 result is within a few ulp of a correctly rounded erf/tanh
//    (tests/library/test_scaled_gelu.py measures each form of the loop against float64);
//  * half inputs go through a float32 stack block (opforge::load_block/store_block, vectorised);
//  * the loop is compiled twice, baseline and AVX2+FMA, picked at run time (opforge/cpu_isa.h says why), and
//    written a third time with AVX-512 intrinsics for the CPUs where aten's gelu runs 16 lanes a vector:
//    there the division becomes a 14-bit reciprocal estimate and one Newton step (a vector divide's
//    throughput per element does not grow with the vector width), and T is read and written in registers;
//  * blocks are spread over the host's thread pool with ctx.parallel_for.
namespace opforge_kernels {
namespace opforge {
namespace scaled_gelu {
namespace {

// Elements converted at a time: 2 KB of float32, which stays in L1 between the three passes.
constexpr int64_t kBlock = 512;
// Blocks per parallel chunk at least: 32768 elements, ~10 us of work on one core (aten's GRAIN_SIZE),
// so small tensors stay on the calling thread.
constexpr int64_t kGrainBlocks = 64;

using math::kErfMaxX;
using math::kErfP;
using math::kErfQ;
using math::kKappa;
using math::kSqrt2OverPi;
using math::kTanhMaxU;
using math::kTanhP;
using math::kTanhQ;

// a * b + c, fused in the AVX2 clone (one rounding, half the instructions). kAvx2: compiled into it.
template <bool kAvx2>
OPFORGE_ALWAYS_INLINE float madd(float a, float b, float c) {
  if constexpr (kAvx2)
    return std::fma(a, b, c);
  else
    return a * b + c;
}

// c[K] + s * (c[K+1] + s * (...)): recursive rather than a loop, so it is straight-line code even where
// the unroller gives up (it does on the FMA clone), which the vectoriser needs.
template <bool kAvx2, int K = 0, int N>
OPFORGE_ALWAYS_INLINE float horner(const float (&c)[N], float s) {
  if constexpr (K == N - 1)
    return c[K];
  else
    return madd<kAvx2>(horner<kAvx2, K + 1>(c, s), s, c[K]);
}

OPFORGE_ALWAYS_INLINE float clamp(float v, float lo, float hi) {
  // Compare-and-select (minps/maxps). A NaN may come out as a bound, which is harmless here: the result
  // is multiplied by the NaN input itself.
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// y[i] = alpha * gelu(x[i]) over float32 buffers (in == out allowed: element-wise).
template <bool kTanh, bool kAvx2>
OPFORGE_ALWAYS_INLINE void gelu_floats(const float* in, float* out, int64_t n, float alpha) {
  const float half_alpha = 0.5f * alpha;
  for (int64_t i = 0; i < n; ++i) {
    const float v = in[i];
    float r;  // erf(v / sqrt(2)) or tanh(sqrt(2/pi) * (v + kappa v^3)), in [-1, 1]
    bool saturated_low, saturated_high;  // past the point where r rounds to -1 / +1 in float32
    if constexpr (kTanh) {
      const float u = v * madd<kAvx2>(kSqrt2OverPi * kKappa, v * v, kSqrt2OverPi);
      const float c = clamp(u, -kTanhMaxU, kTanhMaxU);
      const float s = c * c;
      r = c * horner<kAvx2>(kTanhP, s) / horner<kAvx2>(kTanhQ, s);
      saturated_low = u <= -kTanhMaxU;  // u is -inf (or NaN) for v = -inf, never past it
      saturated_high = u >= kTanhMaxU;
    } else {
      const float c = clamp(v, -kErfMaxX, kErfMaxX);
      const float s = c * c;
      r = c * horner<kAvx2>(kErfP, s) / horner<kAvx2>(kErfQ, s);
      saturated_low = v <= -kErfMaxX;
      saturated_high = v >= kErfMaxX;
    }
    // The rational stays within a few ulp of +-1 near the ends but must not pass them (1 + r < 0 would flip
    // the sign of a tiny negative result), and must be exactly +-1 past them: gelu(v) = v there, and
    // 0 on the left, which is also gelu(-inf), the formula's -inf * 0 = NaN aside. NaN stays NaN (via h).
    r = clamp(r, -1.0f, 1.0f);
    r = saturated_high ? 1.0f : r;
    const float h = half_alpha * v;
    out[i] = saturated_low ? 0.0f : madd<kAvx2>(h, r, h);
  }
}

// Blocks [b0, b1) of x (kBlock elements each, the last one possibly short).
template <typename T, bool kTanh, bool kAvx2>
OPFORGE_ALWAYS_INLINE void gelu_blocks(const T* x, T* y, int64_t n, int64_t b0, int64_t b1, float alpha) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t begin = b * kBlock;
    const int64_t len = n - begin < kBlock ? n - begin : kBlock;
    if constexpr (std::is_same_v<T, float>) {
      gelu_floats<kTanh, kAvx2>(x + begin, y + begin, len, alpha);
    } else {
      float buf[kBlock];
      ::opforge::load_block_for<kAvx2>(x + begin, buf, len);
      gelu_floats<kTanh, kAvx2>(buf, buf, len, alpha);
      ::opforge::store_block_for<kAvx2>(buf, y + begin, len);
    }
  }
}

template <typename T, bool kTanh>
void gelu_blocks_baseline(const T* x, T* y, int64_t n, int64_t b0, int64_t b1, float alpha) {
  gelu_blocks<T, kTanh, false>(x, y, n, b0, b1, alpha);
}

#if OPFORGE_HAVE_AVX2_CLONE
template <typename T, bool kTanh>
OPFORGE_TARGET_AVX2 void gelu_blocks_avx2(const T* x, T* y, int64_t n, int64_t b0, int64_t b1, float alpha) {
  gelu_blocks<T, kTanh, true>(x, y, n, b0, b1, alpha);
}
#endif

#if OPFORGE_HAVE_AVX2_CLONE
// c[K] + s * (c[K+1] + s * (...)) on 16 lanes.
template <int K = 0, int N>
OPFORGE_TARGET_AVX512 OPFORGE_ALWAYS_INLINE __m512 horner16(const float (&c)[N], __m512 s) {
  if constexpr (K == N - 1)
    return _mm512_set1_ps(c[K]);
  else
    return _mm512_fmadd_ps(horner16<K + 1>(c, s), s, _mm512_set1_ps(c[K]));
}

// c * P(s) / Q(s) with Q(s) >= 1 (every coefficient of Q is positive and s >= 0): the reciprocal estimate
// (relative error < 2^-14) after one Newton step is within 2^-27 of 1 / Q, so the quotient is within a
// couple of ulp of the divided one.
template <int NP, int NQ>
OPFORGE_TARGET_AVX512 OPFORGE_ALWAYS_INLINE __m512 rational16(const float (&p)[NP], const float (&q)[NQ], __m512 c) {
  const __m512 s = _mm512_mul_ps(c, c);
  const __m512 den = horner16(q, s);
  __m512 inv = _mm512_rcp14_ps(den);
  inv = _mm512_fmadd_ps(inv, _mm512_fnmadd_ps(den, inv, _mm512_set1_ps(1.0f)), inv);
  return _mm512_mul_ps(_mm512_mul_ps(c, horner16(p, s)), inv);
}

// v clamped to [-bound, bound] in one instruction: vrangeps, the smaller magnitude of v and bound, with v's
// sign (imm 0b0010). A NaN v stays NaN.
OPFORGE_TARGET_AVX512 OPFORGE_ALWAYS_INLINE __m512 clamp16(__m512 v, float bound) {
  return _mm512_range_ps(v, _mm512_set1_ps(bound), 0x02);
}

// gelu_floats on 16 lanes, the same steps (its comments say why each is there).
template <bool kTanh>
OPFORGE_TARGET_AVX512 OPFORGE_ALWAYS_INLINE __m512 gelu16(__m512 v, __m512 half_alpha) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 r;
  __mmask16 saturated_low, saturated_high;
  if constexpr (kTanh) {
    const __m512 u = _mm512_mul_ps(
        v, _mm512_fmadd_ps(_mm512_set1_ps(kSqrt2OverPi * kKappa), _mm512_mul_ps(v, v), _mm512_set1_ps(kSqrt2OverPi)));
    r = rational16(kTanhP, kTanhQ, clamp16(u, kTanhMaxU));
    saturated_low = _mm512_cmp_ps_mask(u, _mm512_set1_ps(-kTanhMaxU), _CMP_LE_OQ);
    saturated_high = _mm512_cmp_ps_mask(u, _mm512_set1_ps(kTanhMaxU), _CMP_GE_OQ);
  } else {
    r = rational16(kErfP, kErfQ, clamp16(v, kErfMaxX));
    saturated_low = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-kErfMaxX), _CMP_LE_OQ);
    saturated_high = _mm512_cmp_ps_mask(v, _mm512_set1_ps(kErfMaxX), _CMP_GE_OQ);
  }
  r = _mm512_mask_mov_ps(clamp16(r, 1.0f), saturated_high, one);
  const __m512 h = _mm512_mul_ps(half_alpha, v);
  return _mm512_mask_mov_ps(_mm512_fmadd_ps(h, r, h), saturated_low, _mm512_setzero_ps());
}

constexpr __mmask16 kAllLanes = 0xFFFF;

// gelu_blocks with AVX-512: elements straight from and to T storage, 16 at a time (no float block).
template <typename T, bool kTanh>
OPFORGE_TARGET_AVX512 void gelu_blocks_avx512(const T* x, T* y, int64_t n, int64_t b0, int64_t b1, float alpha) {
  const __m512 half_alpha = _mm512_set1_ps(0.5f * alpha);
  const int64_t end = n < b1 * kBlock ? n : b1 * kBlock;
  int64_t i = b0 * kBlock;
  for (; i + 16 <= end; i += 16)  // a constant mask: no mask register written per vector (it takes port 5)
    ::opforge::store16(y + i, kAllLanes, gelu16<kTanh>(::opforge::load16(x + i, kAllLanes), half_alpha));
  if (i < end) {
    const __mmask16 mask = ::opforge::mask_first(end - i);
    ::opforge::store16(y + i, mask, gelu16<kTanh>(::opforge::load16(x + i, mask), half_alpha));
  }
}

// The same for bfloat16 on CPUs with AVX512_BF16: one instruction rounds the results. A function of its own
// because that instruction needs its own target attribute, which cannot depend on a template argument.
template <bool kTanh>
OPFORGE_TARGET_AVX512_BF16 void gelu_blocks_avx512_bf16(const ::opforge::BFloat16* x, ::opforge::BFloat16* y, int64_t n,
                                                        int64_t b0, int64_t b1, float alpha) {
  const __m512 half_alpha = _mm512_set1_ps(0.5f * alpha);
  const int64_t end = n < b1 * kBlock ? n : b1 * kBlock;
  int64_t i = b0 * kBlock;
  for (; i + 16 <= end; i += 16)
    ::opforge::store16_cvtne(y + i, kAllLanes, gelu16<kTanh>(::opforge::load16(x + i, kAllLanes), half_alpha));
  if (i < end) {
    const __mmask16 mask = ::opforge::mask_first(end - i);
    ::opforge::store16_cvtne(y + i, mask, gelu16<kTanh>(::opforge::load16(x + i, mask), half_alpha));
  }
}
#endif

#if OPFORGE_HAVE_ASIMD
// AArch64's wide form: the same loop with fused multiply-adds and NEON float16 conversions (opforge/cpu_isa.h).
template <typename T, bool kTanh>
void gelu_blocks_asimd(const T* x, T* y, int64_t n, int64_t b0, int64_t b1, float alpha) {
  gelu_blocks<T, kTanh, true>(x, y, n, b0, b1, alpha);
}
#endif

// The widest form of the loop this CPU runs (opforge/cpu_isa.h: cpu_isa()).
template <typename T, bool kTanh>
auto widest_blocks() -> void (*)(const T*, T*, int64_t, int64_t, int64_t, float) {
#if OPFORGE_HAVE_ASIMD
  if (::opforge::cpu_has_asimd()) return &gelu_blocks_asimd<T, kTanh>;
#endif
#if OPFORGE_HAVE_AVX2_CLONE
  if constexpr (std::is_same_v<T, ::opforge::BFloat16>) {
    if (::opforge::cpu_has_avx512_bf16()) return &gelu_blocks_avx512_bf16<kTanh>;
  }
  if (::opforge::cpu_has_avx512()) return &gelu_blocks_avx512<T, kTanh>;
  if (::opforge::cpu_has_avx2_fma()) return &gelu_blocks_avx2<T, kTanh>;
#endif
  return &gelu_blocks_baseline<T, kTanh>;
}

template <typename T, bool kTanh>
void run(const T* x, T* y, int64_t n, float alpha, const ::opforge::DeviceContext& ctx) {
  const auto blocks = widest_blocks<T, kTanh>();
  ctx.parallel_for((n + kBlock - 1) / kBlock, kGrainBlocks,
                   [&](int64_t b0, int64_t b1) { blocks(x, y, n, b0, b1, alpha); });
}

}  // namespace
}  // namespace scaled_gelu
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, scaled_gelu) {
  bool use_tanh = false;
  const ::opforge::Status st = detail::check_args(x, y, approximate, &use_tanh);
  if (!st.is_ok()) return st;
  const int64_t n = x.numel();
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    const float a = static_cast<float>(alpha);
    if (use_tanh)
      run<T, true>(x.ptr<const T>(), y.ptr<T>(), n, a, ctx);
    else
      run<T, false>(x.ptr<const T>(), y.ptr<T>(), n, a, ctx);
    return ::opforge::Status::ok();
  });
}
