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
// The build generates these prototypes from the declaration (ops/native/prototypes.py) into
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
  }                                                                                                  \
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
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kFloat64:
    case DType::kInt64: return 8;
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kBool: return 1;
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
    parallel_run(
        parallel_pool, n, grain < 1 ? 1 : grain,
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
      while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        --exponent;
      }
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

}  // namespace opforge

// Dispatch a CPU kernel body over the three floating storage types. `T` names the storage type inside.
#define OPFORGE_DISPATCH_FLOATING_CPU(dtype, T, ...)                                                                 \
  [&]() -> ::opforge::Status {                                                                                       \
    switch (dtype) {                                                                                                 \
      case ::opforge::DType::kFloat32: {                                                                             \
        using T = float;                                                                                             \
        return __VA_ARGS__();                                                                                        \
      }                                                                                                              \
      case ::opforge::DType::kFloat16: {                                                                             \
        using T = ::opforge::Half;                                                                                   \
        return __VA_ARGS__();                                                                                        \
      }                                                                                                              \
      case ::opforge::DType::kBFloat16: {                                                                            \
        using T = ::opforge::BFloat16;                                                                               \
        return __VA_ARGS__();                                                                                        \
      }                                                                                                              \
      default:                                                                                                       \
        return ::opforge::Status::error(::opforge::Status::kUnsupportedDType, "dtype not supported by this kernel"); \
    }                                                                                                                \
  }()
