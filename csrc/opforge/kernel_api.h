// opforge kernel API: the only header a kernel includes.
//
// Kernels are framework-free: they see raw pointers, sizes/strides, typed attributes, a workspace and
// a stream, never ATen or TensorRT types. Host glue (generated from the op declaration into the build
// directory) turns at::Tensor or nvinfer1::PluginTensorDesc + device pointers into these views, so the
// same kernel serves torch, ONNX Runtime and TensorRT.
//
// Calling convention for an op `ns::name` (the glue relies on it, so keep it exact):
//
//   namespace opforge_kernels { namespace <ns> { namespace <name> {
//     opforge::Status cpu (<inputs>, <outputs>, <attrs>, const opforge::DeviceContext& opforge_ctx);
//     opforge::Status cuda(<inputs>, <outputs>, <attrs>, const opforge::DeviceContext& opforge_ctx);
//   }}}
//
//   inputs : const opforge::TensorView&   (optional input: const opforge::TensorView*, nullptr if absent)
//   outputs: const opforge::TensorView&   (data is writable; the view itself is not)
//   attrs  : int -> int64_t, float -> double, bool -> bool, str -> opforge::StringView,
//            list[int] -> opforge::Span<int64_t>, list[float] -> opforge::Span<double>
//
// The build generates these prototypes from the declaration (ops/prototypes.py) into
// <build>/gen/include/opforge_kernels/<ns>/<name>.h; a kernel file includes that header and writes only
// the bodies, at global scope, with the declaration's names as parameters:
//
//   #include "opforge_kernels/myops/scale_shift.h"
//   OPFORGE_CPU_KERNEL(myops, scale_shift) { ... x, y, scale, shift, ctx ... }
//
// (`ctx` is the DeviceContext; `opforge_ctx` names it too, and is its only name in an op with a field `ctx`.)
//
// The glue guarantees before the call: dtypes are among the declared ones, ranks/shapes satisfy the
// declaration, views are contiguous (TensorRT linear format / torch .contiguous()), pointers are on the
// device the entry point is for, and ctx.workspace holds at least the declared workspace bytes.
// Kernels still return a Status instead of aborting, so no host crashes on a case the glue missed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

// The definition of an op's entry point, its parameter list coming from the generated prototypes header
// (OPFORGE_KERNEL_PARAMS_<ns>__<name>). Use at global scope: C++ forbids a qualified definition inside the
// namespace it names. The entry point forwards (inlined) to the body written after the macro, a function of the
// op's namespace declared in the same header, whose parameters are the declaration's names plus the
// DeviceContext twice: `opforge_ctx` and its short alias `ctx`, which the body has unless the op declares a
// field of that name (OPFORGE_KERNEL_BODY_PARAMS_<ns>__<name>). Every name the macros add starts with
// `opforge_`, which no declared name may.
#define OPFORGE_CPU_KERNEL(ns, name) OPFORGE_KERNEL_DEFINITION_(ns, name, cpu)
#define OPFORGE_CUDA_KERNEL(ns, name) OPFORGE_KERNEL_DEFINITION_(ns, name, cuda)
#define OPFORGE_KERNEL_DEFINITION_(ns, name, device)                                                 \
  ::opforge::Status opforge_kernels::ns::name::device(OPFORGE_KERNEL_PARAMS_##ns##__##name) {        \
    return ::opforge_kernels::ns::name::opforge_##device##_body(OPFORGE_KERNEL_ARGS_##ns##__##name); \
  }                                                                                                   \
  ::opforge::Status opforge_kernels::ns::name::opforge_##device##_body(OPFORGE_KERNEL_BODY_PARAMS_##ns##__##name)

#if defined(__CUDACC__)
#define OPFORGE_HOST_DEVICE __host__ __device__
#else
#define OPFORGE_HOST_DEVICE
#endif

namespace opforge {

constexpr int kMaxRank = 8;

// Stable numbering shared by every host; the glue maps its framework's dtype enum onto it.
enum class DType : int32_t {
  kFloat32 = 0,
  kFloat16 = 1,
  kBFloat16 = 2,
  kFloat64 = 3,
  kInt8 = 4,
  kUInt8 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 8,
};

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat64: return "float64";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kBool: return "bool";
  }
  return "unknown";
}

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32: case DType::kInt32: return 4;
    case DType::kFloat16: case DType::kBFloat16: return 2;
    case DType::kFloat64: case DType::kInt64: return 8;
    case DType::kInt8: case DType::kUInt8: case DType::kBool: return 1;
  }
  return 0;
}

// A strided view of one tensor. Sizes and strides are in elements.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  int32_t rank = 0;
  int64_t sizes[kMaxRank] = {};
  int64_t strides[kMaxRank] = {};

  int64_t numel() const {
    int64_t n = 1;
    for (int32_t i = 0; i < rank; ++i) n *= sizes[i];
    return n;
  }
  // Size of dim i, negative i counting from the end (as in Python).
  int64_t size(int32_t i) const { return sizes[i < 0 ? i + rank : i]; }
  bool is_contiguous() const {
    int64_t expected = 1;
    for (int32_t i = rank - 1; i >= 0; --i) {
      if (sizes[i] != 1 && strides[i] != expected) return false;
      expected *= sizes[i];
    }
    return true;
  }
  template <typename T> T* ptr() const { return static_cast<T*>(data); }
};

template <typename T>
struct Span {
  const T* data = nullptr;
  int64_t size = 0;
  const T& operator[](int64_t i) const { return data[i]; }
  const T* begin() const { return data; }
  const T* end() const { return data + size; }
};

struct StringView {
  const char* data = "";
  size_t size = 0;
  bool equals(const char* s) const { return std::strlen(s) == size && std::memcmp(s, data, size) == 0; }
};

// A host's thread pool, seen through two plain function pointers so kernels stay framework-free:
// `run(pool, n, grain, body, closure)` must call `body(closure, begin, end)` over disjoint chunks that
// cover [0, n), each at least `grain` long except possibly the last, and return when all are done.
// torch fills it with at::parallel_for, ONNX Runtime with KernelContext_ParallelFor; hosts without a
// pool (TensorRT's CPU side, the harness) leave it null and the work runs serially on the caller.
using ParallelBody = void (*)(void* closure, int64_t begin, int64_t end);
using ParallelRun = void (*)(void* pool, int64_t n, int64_t grain, ParallelBody body, void* closure);

// Where the kernel runs: the CUDA stream (a cudaStream_t, kept as void* so CPU translation units need
// no CUDA headers), the scratch memory the declaration asked for, and the host's CPU thread pool.
struct DeviceContext {
  void* stream = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  ParallelRun parallel_run = nullptr;
  void* parallel_pool = nullptr;

  // Calls f(begin, end) over chunks of [0, n), in parallel when the host has a pool. `f` must not throw
  // and must only write state private to its chunk. Chunks are at least `grain` long (pick a grain
  // worth ~10-50 us of work so a tiny tensor stays on one thread).
  template <typename F>
  void parallel_for(int64_t n, int64_t grain, const F& f) const {
    if (n <= 0) return;
    if (parallel_run == nullptr || n <= grain) {
      f(int64_t{0}, n);
      return;
    }
    parallel_run(parallel_pool, n, grain < 1 ? 1 : grain,
                 [](void* closure, int64_t begin, int64_t end) { (*static_cast<const F*>(closure))(begin, end); },
                 const_cast<void*>(static_cast<const void*>(&f)));
  }
};

// Kernels report failures instead of throwing or aborting: torch turns them into exceptions, TensorRT's
// enqueue into a non-zero return plus a log line.
struct Status {
  enum Code : int32_t { kOk = 0, kInvalidArgument = 1, kUnsupportedDType = 2, kCudaError = 3, kInternal = 4 };
  Code code = kOk;
  const char* message = "";  // static storage only: callers never free it

  static Status ok() { return {}; }
  static Status error(Code c, const char* msg) { return Status{c, msg}; }
  bool is_ok() const { return code == kOk; }
};

// ---- half-precision conversions for CPU kernels (CUDA kernels use cuda_fp16.h / cuda_bf16.h) ----

inline float fp16_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1Fu;
  uint32_t mantissa = h & 0x3FFu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalise it
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400u) == 0) { mantissa <<= 1; --exponent; }
      mantissa &= 0x3FFu;
      bits = sign | (exponent << 23) | (mantissa << 13);
    }
  } else if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // inf / nan
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round-to-nearest-even, as the hardware and torch do.
inline uint16_t float_to_fp16_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u : 0u));
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds past 65504 -> inf
  if (abs < 0x38800000u) {  // result is subnormal or zero in fp16
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);
    const uint32_t shift = 126 - (abs >> 23);
    const uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);  // a carry into bit 10 yields the smallest normal
  }
  uint32_t half = ((abs - 0x38000000u) >> 13);
  const uint32_t rem = abs & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

inline float bf16_bits_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t float_to_bf16_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet nan
  const uint32_t rounding = 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

// Storage types for CPU kernels: load()/store() convert through float so one templated kernel body
// serves float32, float16 and bfloat16.
struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const Half* p, int64_t i) { return fp16_bits_to_float(p[i].bits); }
inline float load(const BFloat16* p, int64_t i) { return bf16_bits_to_float(p[i].bits); }
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(Half* p, int64_t i, float v) { p[i].bits = float_to_fp16_bits(v); }
inline void store(BFloat16* p, int64_t i, float v) { p[i].bits = float_to_bf16_bits(v); }


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
OPFORGE_ALWAYS_INLINE uint32_t float_bits(float f) { uint32_t u; std::memcpy(&u, &f, sizeof u); return u; }
OPFORGE_ALWAYS_INLINE float bits_float(uint32_t u) { float f; std::memcpy(&f, &u, sizeof f); return f; }

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
  std::fprintf(stderr, "opforge: OPFORGE_CPU_ISA=%s is not one of baseline, avx2, avx512, avx512bf16; ignored\n",
               cap);
  return CpuIsa::kAvx512Bf16;
}
inline CpuIsa detect_cpu_isa() {
  CpuIsa have = CpuIsa::kBaseline;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    have = CpuIsa::kAvx2;
    // libgcc's and compiler-rt's checks include the OS saving the zmm state (XCR0).
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
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

// Dispatch a CPU kernel body over the three floating storage types. `T` names the storage type inside.
#define OPFORGE_DISPATCH_FLOATING_CPU(dtype, T, ...)                                        \
  [&]() -> ::opforge::Status {                                                              \
    switch (dtype) {                                                                        \
      case ::opforge::DType::kFloat32: { using T = float; return __VA_ARGS__(); }           \
      case ::opforge::DType::kFloat16: { using T = ::opforge::Half; return __VA_ARGS__(); } \
      case ::opforge::DType::kBFloat16: { using T = ::opforge::BFloat16; return __VA_ARGS__(); } \
      default:                                                                              \
        return ::opforge::Status::error(::opforge::Status::kUnsupportedDType,               \
                                        "dtype not supported by this kernel");              \
    }                                                                                       \
  }()
