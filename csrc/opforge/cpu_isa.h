// Vectorisable CPU helpers for kernels that must keep up with aten: block conversions between the
// storage types and float32, run-time ISA choice (AVX2+FMA, AVX-512, AVX-512 BF16 on x86-64; ASIMD on
// AArch64) and the intrinsics-based loads/stores those clones use. Only the CPU kernels that need them
// include this header; kernel_api.h holds the interface every kernel sees.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "opforge/kernel_api.h"

namespace opforge {

// ---- vectorisable CPU helpers: block conversions and an AVX2 clone of hot loops ----
//
// The scalar conversions above branch per element, which keeps any loop that calls them scalar. A fast
// kernel converts a block of a few hundred elements into a float32 stack buffer with load_block(),
// computes on floats in a loop the compiler vectorises, and writes back with store_block(). Their
// branch-free bodies are c10's float16 algorithm (FP16 library, M. Dukhan) and the usual bfloat16
// rounding: same results as fp16_bits_to_float / float_to_fp16_bits / float_to_bf16_bits for every
// input (round-to-nearest-even, subnormals, +-inf), NaN payloads aside (a NaN stays a NaN).

#if defined(__GNUC__) || defined(__clang__)
#define OPFORGE_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define OPFORGE_ALWAYS_INLINE inline
#endif

namespace detail {
OPFORGE_ALWAYS_INLINE uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
OPFORGE_ALWAYS_INLINE float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

OPFORGE_ALWAYS_INLINE float fp16_to_float_branchless(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  // Normal (and inf/nan): move exponent+mantissa into place and rebias by a multiply by 2^-112.
  const float normalized = bits_float((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  // Subnormal: the mantissa as the low bits of a float in [0.5, 1), minus 0.5, is exact.
  const float denormalized = bits_float((two_w >> 17) | (126u << 23)) - 0.5f;
  return bits_float(sign | (two_w < (1u << 27) ? float_bits(denormalized) : float_bits(normalized)));
}

OPFORGE_ALWAYS_INLINE uint16_t float_to_fp16_branchless(float f) {
  // Scaling |f| up then down lets the float adder do the rounding to 11 significant bits (and overflow
  // to inf); the two multiplies must not be folded, which holds without -ffast-math.
  const uint32_t w = float_bits(f);
  float base = (bits_float(w & 0x7FFFFFFFu) * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  base = bits_float((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = float_bits(base);
  const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

OPFORGE_ALWAYS_INLINE uint16_t float_to_bf16_branchless(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t rounded = (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>((x & 0x7FFFFFFFu) > 0x7F800000u ? (x >> 16) | 0x40u : rounded);  // quiet nan
}
}  // namespace detail

// out[i] = float(in[i]) for i < n (float32: a copy).
OPFORGE_ALWAYS_INLINE void load_block(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = in[i];
}
OPFORGE_ALWAYS_INLINE void load_block(const Half* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = detail::fp16_to_float_branchless(in[i].bits);
}
OPFORGE_ALWAYS_INLINE void load_block(const BFloat16* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = detail::bits_float(static_cast<uint32_t>(in[i].bits) << 16);
}
// out[i] = T(in[i]) for i < n, rounding to nearest even.
OPFORGE_ALWAYS_INLINE void store_block(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = in[i];
}
OPFORGE_ALWAYS_INLINE void store_block(const float* in, Half* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i].bits = detail::float_to_fp16_branchless(in[i]);
}
OPFORGE_ALWAYS_INLINE void store_block(const float* in, BFloat16* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i].bits = detail::float_to_bf16_branchless(in[i]);
}

// Run-time ISA choice for hot loops. A wheel is compiled for baseline x86-64 (SSE2: 4 floats a vector,
// no FMA) while aten picks AVX2/AVX-512 kernels at run time, so a loop that must keep up with aten is
// compiled again for wider vectors and picked at run time:
//  * AVX2+FMA: put the loop body in an OPFORGE_ALWAYS_INLINE template, instantiate it in one plain
//    function and one marked OPFORGE_TARGET_AVX2, and call the latter when cpu_has_avx2_fma(). (Manual
//    rather than target_clones: the clone also switches explicit std::fma on, which matters because torch
//    builds with -std=c++NN, i.e. -ffp-contract=off, so a*b+c is never fused on its own.) The clone also
//    gets F16C (every AVX2 CPU has it): load_block_for/store_block_for below convert float16 with one
//    instruction per 8 elements there.
//  * AVX-512 (F, VL, BW, DQ: every AVX-512 Xeon since Skylake-SP): a function marked
//    OPFORGE_TARGET_AVX512, called when cpu_has_avx512(), 16 floats a vector with masked tails;
//    load16/store16 below read and write 16 elements of any storage type in registers.
//  * AVX-512 with BF16 (Cooper Lake, Sapphire Rapids and later Xeons, Zen 4): the float32 -> bfloat16
//    rounding is one instruction there (store16_cvtne) instead of eight; OPFORGE_TARGET_AVX512_BF16,
//    cpu_has_avx512_bf16().
// OPFORGE_CPU_ISA=baseline|avx2|avx512|avx512bf16 caps the choice (read once per process): to compare the
// paths on one machine, or to test the narrower ones on a wide CPU.
//  * AArch64 (Jetson): ASIMD (NEON) and a fused multiply-add are part of the base architecture, so there is
//    nothing to detect and no target attribute. The templated loop body is instantiated a second time with
//    kAvx2 = true (read it as "the wide form": std::fma fused, float16 converted by FCVTL/FCVTN 8 lanes at a
//    time in load_block_for/store_block_for) and cpu_has_asimd() picks it. OPFORGE_CPU_ISA=baseline|asimd
//    chooses between it and the portable loop (plain C++, which the compiler also vectorises with NEON).
//    No x86 intrinsic header is included there.
enum class CpuIsa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Bf16 = 3, kAsimd = 16 };

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && !defined(__CUDACC__)
#define OPFORGE_HAVE_AVX2_CLONE 1
#define OPFORGE_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define OPFORGE_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))
#define OPFORGE_TARGET_AVX512_BF16 \
  __attribute__((target("avx512bf16,avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))
namespace detail {
inline CpuIsa cpu_isa_cap() {
  const char* cap = std::getenv("OPFORGE_CPU_ISA");
  if (cap == nullptr || *cap == '\0') return CpuIsa::kAvx512Bf16;
  if (std::strcmp(cap, "baseline") == 0) return CpuIsa::kBaseline;
  if (std::strcmp(cap, "avx2") == 0) return CpuIsa::kAvx2;
  if (std::strcmp(cap, "avx512") == 0) return CpuIsa::kAvx512;
  if (std::strcmp(cap, "avx512bf16") == 0) return CpuIsa::kAvx512Bf16;
  std::fprintf(stderr, "opforge: OPFORGE_CPU_ISA=%s is not one of baseline, avx2, avx512, avx512bf16; ignored\n", cap);
  return CpuIsa::kAvx512Bf16;
}
inline CpuIsa detect_cpu_isa() {
  CpuIsa have = CpuIsa::kBaseline;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    have = CpuIsa::kAvx2;
    // libgcc's and compiler-rt's checks include the OS saving the zmm state (XCR0).
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq"))
      have = __builtin_cpu_supports("avx512bf16") ? CpuIsa::kAvx512Bf16 : CpuIsa::kAvx512;
  }
  const CpuIsa cap = cpu_isa_cap();
  return static_cast<int>(cap) < static_cast<int>(have) ? cap : have;
}
}  // namespace detail
// The widest instruction set hot loops may use here.
inline CpuIsa cpu_isa() {
  static const CpuIsa isa = detail::detect_cpu_isa();
  return isa;
}
inline bool cpu_has_avx2_fma() { return cpu_isa() != CpuIsa::kBaseline; }
inline bool cpu_has_avx512() { return static_cast<int>(cpu_isa()) >= static_cast<int>(CpuIsa::kAvx512); }
inline bool cpu_has_avx512_bf16() { return cpu_isa() == CpuIsa::kAvx512Bf16; }
}  // namespace opforge
// GCC 12's AVX-512 intrinsics start some results as `__m512 __Y = __Y;`, which -Wmaybe-uninitialized
// reports at every use: a false positive of those headers. The state at the header's lines decides.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
namespace opforge {
OPFORGE_TARGET_AVX2 inline void load_block_f16c(const Half* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  for (; i < n; ++i) out[i] = detail::fp16_to_float_branchless(in[i].bits);
}
OPFORGE_TARGET_AVX2 inline void store_block_f16c(const float* in, Half* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)  // round to nearest even, as float_to_fp16_bits
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) out[i].bits = detail::float_to_fp16_branchless(in[i]);
}

// 16 elements as floats: the lanes of `mask` from p, zeros elsewhere; and back, rounding to nearest even
// as the scalar store() does (the lanes outside `mask` are not written). mask_first(k): the first k lanes.
OPFORGE_TARGET_AVX512 inline __mmask16 mask_first(int64_t k) {
  return k >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << k) - 1u);
}
OPFORGE_TARGET_AVX512 inline __m512 load16(const float* p, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, p); }
OPFORGE_TARGET_AVX512 inline __m512 load16(const Half* p, __mmask16 mask) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
}
OPFORGE_TARGET_AVX512 inline __m512 load16(const BFloat16* p, __mmask16 mask) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p)), 16));
}
OPFORGE_TARGET_AVX512 inline void store16(float* p, __mmask16 mask, __m512 v) { _mm512_mask_storeu_ps(p, mask, v); }
OPFORGE_TARGET_AVX512 inline void store16(Half* p, __mmask16 mask, __m512 v) {
  _mm256_mask_storeu_epi16(p, mask, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
OPFORGE_TARGET_AVX512 inline void store16(BFloat16* p, __mmask16 mask, __m512 v) {
  // float_to_bf16_branchless on 16 lanes: round to nearest even, NaN kept quiet.
  const __m512i x = _mm512_castps_si512(v);
  const __m512i high = _mm512_srli_epi32(x, 16);
  const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
  __m512i bits = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  bits = _mm512_mask_mov_epi32(bits, nan, _mm512_or_si512(high, _mm512_set1_epi32(0x40)));
  _mm256_mask_storeu_epi16(p, mask, _mm512_cvtepi32_epi16(bits));
}
// store16 for bfloat16 with vcvtneps2bf16: the same rounding (nearest even, NaN kept quiet), except that it
// reads float32 subnormals as zero; those lanes (|v| < 2^-126, rare) take the integer rounding above.
OPFORGE_TARGET_AVX512_BF16 inline void store16_cvtne(BFloat16* p, __mmask16 mask, __m512 v) {
  const __mmask16 subnormal = _mm512_fpclass_ps_mask(v, 0x20);
  if (subnormal) store16(p, static_cast<__mmask16>(mask & subnormal), v);
  __m256i bits;
  const __m256bh converted = _mm512_cvtneps_pbh(v);
  std::memcpy(&bits, &converted, sizeof bits);
  _mm256_mask_storeu_epi16(p, static_cast<__mmask16>(mask & ~subnormal), bits);
}
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__) && !defined(__CUDACC__)
#define OPFORGE_HAVE_AVX2_CLONE 0
#define OPFORGE_HAVE_ASIMD 1
#define OPFORGE_TARGET_AVX2
#define OPFORGE_TARGET_AVX512
#define OPFORGE_TARGET_AVX512_BF16
namespace detail {
inline CpuIsa detect_cpu_isa() {
  const char* cap = std::getenv("OPFORGE_CPU_ISA");
  if (cap == nullptr || *cap == '\0' || std::strcmp(cap, "asimd") == 0) return CpuIsa::kAsimd;
  if (std::strcmp(cap, "baseline") == 0) return CpuIsa::kBaseline;
  std::fprintf(stderr, "opforge: OPFORGE_CPU_ISA=%s is not one of baseline, asimd (aarch64); ignored\n", cap);
  return CpuIsa::kAsimd;
}
}  // namespace detail
inline CpuIsa cpu_isa() {
  static const CpuIsa isa = detail::detect_cpu_isa();
  return isa;
}
inline bool cpu_has_avx2_fma() { return false; }
inline bool cpu_has_avx512() { return false; }
inline bool cpu_has_avx512_bf16() { return false; }
inline bool cpu_has_asimd() { return cpu_isa() == CpuIsa::kAsimd; }
}  // namespace opforge
#include <arm_neon.h>
namespace opforge {
// float16 <-> float32 with the base ASIMD conversions (FCVTL/FCVTN, 4 lanes each): round to nearest even
// (FPCR's default mode, which Linux leaves set), subnormals kept, NaN kept a NaN; the same values as
// detail::fp16_to_float_branchless / float_to_fp16_branchless.
inline void load_block_neon(const Half* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(reinterpret_cast<const uint16_t*>(in + i)));
    vst1q_f32(out + i, vcvt_f32_f16(vget_low_f16(h)));
    vst1q_f32(out + i + 4, vcvt_high_f32_f16(h));
  }
  for (; i < n; ++i) out[i] = detail::fp16_to_float_branchless(in[i].bits);
}
inline void store_block_neon(const float* in, Half* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(in + i)), vld1q_f32(in + i + 4));
    vst1q_u16(reinterpret_cast<uint16_t*>(out + i), vreinterpretq_u16_f16(h));
  }
  for (; i < n; ++i) out[i].bits = detail::float_to_fp16_branchless(in[i]);
}
#else
#define OPFORGE_HAVE_AVX2_CLONE 0
#define OPFORGE_TARGET_AVX2
#define OPFORGE_TARGET_AVX512
#define OPFORGE_TARGET_AVX512_BF16
inline CpuIsa cpu_isa() { return CpuIsa::kBaseline; }
inline bool cpu_has_avx2_fma() { return false; }
inline bool cpu_has_avx512() { return false; }
inline bool cpu_has_avx512_bf16() { return false; }
#endif
#ifndef OPFORGE_HAVE_ASIMD
#define OPFORGE_HAVE_ASIMD 0
inline bool cpu_has_asimd() { return false; }
#endif

// load_block/store_block for a kernel body templated on kAvx2 (true only inside an OPFORGE_TARGET_AVX2
// function): the F16C forms there, the portable ones otherwise.
template <bool kAvx2, typename T>
OPFORGE_ALWAYS_INLINE void load_block_for(const T* in, float* out, int64_t n) {
#if OPFORGE_HAVE_AVX2_CLONE
  if constexpr (kAvx2 && std::is_same_v<T, Half>) return load_block_f16c(in, out, n);
#endif
#if OPFORGE_HAVE_ASIMD
  if constexpr (kAvx2 && std::is_same_v<T, Half>) return load_block_neon(in, out, n);
#endif
  load_block(in, out, n);
}
template <bool kAvx2, typename T>
OPFORGE_ALWAYS_INLINE void store_block_for(const float* in, T* out, int64_t n) {
#if OPFORGE_HAVE_AVX2_CLONE
  if constexpr (kAvx2 && std::is_same_v<T, Half>) return store_block_f16c(in, out, n);
#endif
#if OPFORGE_HAVE_ASIMD
  if constexpr (kAvx2 && std::is_same_v<T, Half>) return store_block_neon(in, out, n);
#endif
  store_block(in, out, n);
}

}  // namespace opforge
