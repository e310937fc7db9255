// A small float32 GEMM for the CPU kernels of modulated_deform_conv2d (forward and backward):
// C[M, N] (+)= A[M, R] * B[R, N], A packed in blocks of kMR rows ([M/kMR][R][kMR]), B and C row-major.
// The micro-kernel keeps a kMR x kNR accumulator in registers; it is compiled twice (AVX2+FMA and the
// baseline ISA) and picked at run time, since the extension is built without -march flags. On aarch64 the
// second form is NEON with fused multiply-adds (base ASIMD: no run-time check; OPFORGE_CPU_ISA=baseline
// picks the portable loop instead, opforge/cpu_isa.h).
#pragma once

#include <cstdint>
#include <cstring>

#include "opforge/cpu_isa.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPFORGE_DCN_X86 1
#elif OPFORGE_HAVE_ASIMD
#define OPFORGE_DCN_NEON 1
#endif

namespace opforge_kernels {
namespace opforge {
namespace modulated_deform_conv2d {
namespace gemm {

constexpr int kMR = 6;
constexpr int kNR = 16;

// Packs rows [0, M) of a row-major A (row stride lda, R columns) as [ceil(M/kMR)][R][kMR], zero-padded.
inline void pack_a(const float* a, int64_t lda, int64_t M, int64_t R, float* out) {
  for (int64_t m0 = 0; m0 < M; m0 += kMR) {
    float* blk = out + (m0 / kMR) * R * kMR;
    for (int64_t r = 0; r < R; ++r)
      for (int i = 0; i < kMR; ++i) blk[r * kMR + i] = m0 + i < M ? a[(m0 + i) * lda + r] : 0.0f;
  }
}

inline int64_t packed_a_size(int64_t M, int64_t R) { return (M + kMR - 1) / kMR * kMR * R; }

#define OPFORGE_DCN_MICRO_BODY                                 \
  float acc[kMR][kNR];                                         \
  for (int i = 0; i < kMR; ++i)                                \
    for (int j = 0; j < kNR; ++j) acc[i][j] = 0.0f;            \
  for (int64_t r = 0; r < R; ++r) {                            \
    const float* brow = b + r * ldb;                           \
    const float* arow = a + r * kMR;                           \
    for (int i = 0; i < kMR; ++i) {                            \
      const float av = arow[i];                                \
      for (int j = 0; j < kNR; ++j) acc[i][j] += av * brow[j]; \
    }                                                          \
  }                                                            \
  for (int i = 0; i < kMR; ++i)                                \
    for (int j = 0; j < kNR; ++j) c[i * ldc + j] = acc[i][j];

// c[kMR][kNR] = a_block[R][kMR]^T * b[R][kNR] (b row stride ldb, c row stride ldc): 12 ymm accumulators.
#if defined(OPFORGE_DCN_X86)
__attribute__((target("avx2,fma"))) inline void micro_avx2(const float* a, const float* b, int64_t ldb, int64_t R,
                                                           float* c, int64_t ldc) {
  static_assert(kNR == 16, "two 8-float vectors per row");
  __m256 acc[kMR][2];
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t r = 0; r < R; ++r) {
    const __m256 b0 = _mm256_loadu_ps(b + r * ldb), b1 = _mm256_loadu_ps(b + r * ldb + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + r * kMR + i);
      acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) {
    _mm256_storeu_ps(c + i * ldc, acc[i][0]);
    _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
  }
}
#endif
#if defined(OPFORGE_DCN_NEON)
// The same 6 x 16 block in 24 NEON accumulators (of 32 registers), 4 more for the row of b.
inline void micro_neon(const float* a, const float* b, int64_t ldb, int64_t R, float* c, int64_t ldc) {
  static_assert(kNR == 16, "four 4-float vectors per row");
  float32x4_t acc[kMR][4];
  for (int i = 0; i < kMR; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = vdupq_n_f32(0.0f);
  for (int64_t r = 0; r < R; ++r) {
    const float* brow = b + r * ldb;
    const float32x4_t b0 = vld1q_f32(brow), b1 = vld1q_f32(brow + 4), b2 = vld1q_f32(brow + 8),
                      b3 = vld1q_f32(brow + 12);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      const float32x4_t av = vdupq_n_f32(a[r * kMR + i]);
      acc[i][0] = vfmaq_f32(acc[i][0], av, b0);
      acc[i][1] = vfmaq_f32(acc[i][1], av, b1);
      acc[i][2] = vfmaq_f32(acc[i][2], av, b2);
      acc[i][3] = vfmaq_f32(acc[i][3], av, b3);
    }
  }
  for (int i = 0; i < kMR; ++i)
    for (int k = 0; k < 4; ++k) vst1q_f32(c + i * ldc + 4 * k, acc[i][k]);
}
#endif
inline void micro_base(const float* a, const float* b, int64_t ldb, int64_t R, float* c, int64_t ldc) {
  OPFORGE_DCN_MICRO_BODY
}
#undef OPFORGE_DCN_MICRO_BODY

inline bool has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

// C[Mpad, N] = Apacked * B[R, N]; N must be a multiple of kNR (callers pad B with zero columns), C has
// ceil(M/kMR)*kMR rows with row stride ldc.
inline void multiply(const float* apacked, int64_t M, int64_t R, const float* b, int64_t ldb, int64_t N, float* c,
                     int64_t ldc) {
  const bool avx2 = has_avx2();
  const bool neon = ::opforge::cpu_has_asimd();
  (void)avx2;
  (void)neon;
  for (int64_t n0 = 0; n0 < N; n0 += kNR)
    for (int64_t m0 = 0; m0 < M; m0 += kMR) {
      const float* ablk = apacked + (m0 / kMR) * R * kMR;
#if defined(OPFORGE_DCN_X86)
      if (avx2) {
        micro_avx2(ablk, b + n0, ldb, R, c + m0 * ldc + n0, ldc);
        continue;
      }
#endif
#if defined(OPFORGE_DCN_NEON)
      if (neon) {
        micro_neon(ablk, b + n0, ldb, R, c + m0 * ldc + n0, ldc);
        continue;
      }
#endif
      micro_base(ablk, b + n0, ldb, R, c + m0 * ldc + n0, ldc);
    }
}

}  // namespace gemm
}  // namespace modulated_deform_conv2d
}  // namespace opforge
}  // namespace opforge_kernels
