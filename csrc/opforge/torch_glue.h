// Runtime support for the generated torch glue (build/opforge_gen/*_torch.cpp).
//
// The glue for each op is generated from its declaration; this header holds what every op's glue
// shares: validating ATen tensors against the declaration with messages that name the op, the argument,
// what was expected, what was given and the fix; turning tensors into opforge::TensorView; the CUDA
// stream/device guard; workspace allocation; the autograd kernel's test for whether a call needs a
// graph node, and the interface of the autograd node every op shares (torch_autograd.cpp: compiled once
// per extension, so the per-op translation units stay free of torch's heavy autograd headers). Only
// these files and generated code see ATen. Nothing here needs Python: the extension loads into libtorch
// programs too.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/core/stack.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <c10/util/FunctionRef.h>
#include <torch/library.h>

#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <string>

#ifdef OPFORGE_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "opforge/kernel_api.h"

namespace opforge {
namespace glue {

inline DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    case at::kDouble: return DType::kFloat64;
    case at::kChar: return DType::kInt8;
    case at::kByte: return DType::kUInt8;
    case at::kInt: return DType::kInt32;
    case at::kLong: return DType::kInt64;
    case at::kBool: return DType::kBool;
    default: TORCH_CHECK(false, "opforge: no kernel dtype for ", c10::toString(t));
  }
}

// For messages only: dtypes the kernel API cannot name (complex, fp8, ...) print as their ATen name.
inline const char* to_dtype_or_double(at::ScalarType t) {
  switch (t) {
    case at::kFloat: case at::kHalf: case at::kBFloat16: case at::kDouble: case at::kChar: case at::kByte:
    case at::kInt: case at::kLong: case at::kBool: return dtype_name(to_dtype(t));
    default: return c10::toString(t);
  }
}

inline TensorView view(const at::Tensor& t) {
  TensorView v;
  v.data = t.data_ptr();
  v.dtype = to_dtype(t.scalar_type());
  v.rank = static_cast<int32_t>(t.dim());
  for (int32_t i = 0; i < v.rank; ++i) {
    v.sizes[i] = t.size(i);
    v.strides[i] = t.stride(i);
  }
  return v;
}

inline StringView string_view(c10::string_view s) { return StringView{s.data(), s.size()}; }
template <typename T>
inline Span<T> span(c10::ArrayRef<T> a) { return Span<T>{a.data(), static_cast<int64_t>(a.size())}; }

// Messages are built here without iostreams. Formatting a number through std::ostream goes through the
// locale's num_put facet, and when the process has loaded a libstdc++ older than the headers this file
// was compiled with (seen with torch 2.11+cu130 on the GPU machine) that lookup crashes. Strings and
// std::to_string never touch the locale.
inline void append(std::string& out, const char* s) { out += s; }
inline void append(std::string& out, const std::string& s) { out += s; }
inline void append(std::string& out, c10::string_view s) { out.append(s.data(), s.size()); }
inline void append(std::string& out, const at::Device& d) { out += d.str(); }
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline void append(std::string& out, T v) { out += std::to_string(v); }

template <typename... Args>
std::string format(const Args&... args) {
  std::string out;
  (append(out, args), ...);
  return out;
}

enum class ErrorKind { kType, kValue, kRuntime };

[[noreturn]] inline void raise(ErrorKind kind, const std::string& message) {
  switch (kind) {
    case ErrorKind::kType: TORCH_CHECK_TYPE(false, message);
    case ErrorKind::kValue: TORCH_CHECK_VALUE(false, message);
    default: TORCH_CHECK(false, message);
  }
  std::abort();  // unreachable: each case throws
}

#define OPFORGE_REQUIRE(kind, cond, ...) \
  do {                                   \
    if (!(cond)) ::opforge::glue::raise(::opforge::glue::ErrorKind::kind, ::opforge::glue::format(__VA_ARGS__)); \
  } while (0)

// Shape-rule arithmetic with Python/TensorRT semantics (floor division, not C++ truncation).
inline int64_t floordiv(int64_t a, int64_t b) {
  OPFORGE_REQUIRE(kValue, b != 0, "opforge: shape rule divides by zero");
  const int64_t q = a / b;
  return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}
inline int64_t ceil_div(int64_t a, int64_t b) { return -floordiv(-a, b); }
inline int64_t max(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }

inline std::string dtype_list(std::initializer_list<at::ScalarType> dtypes) {
  std::string out;
  for (auto d : dtypes) out += format(out.empty() ? "" : ", ", dtype_name(to_dtype(d)));
  return out;
}

inline std::string shape_text(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += format(i ? ", " : "", s[i]);
  return out + "]";
}

// One call of one op on one device: validates arguments, then provides the kernel's DeviceContext.
class Call {
 public:
  Call(const char* op, c10::DeviceType device) : op_(op), device_type_(device) {}

  // Validates a tensor input against its declaration and returns the contiguous tensor the kernel reads.
  at::Tensor input(const char* name, const at::Tensor& t, std::initializer_list<at::ScalarType> dtypes,
                   int64_t rank, int64_t min_rank) {
    OPFORGE_REQUIRE(kValue, t.defined(), op_, ": input '", name, "' is undefined. Fix: pass a tensor.");
    bool dtype_ok = false;
    for (auto d : dtypes) dtype_ok = dtype_ok || d == t.scalar_type();
    OPFORGE_REQUIRE(kType, dtype_ok, op_, ": input '", name, "' must have dtype in {", dtype_list(dtypes), "}, got ",
                     to_dtype_or_double(t.scalar_type()), ". Fix: cast it with .to(<one of those dtypes>).");
    OPFORGE_REQUIRE(kValue, rank < 0 || t.dim() == rank, op_, ": input '", name, "' must have rank ", rank, ", got rank ",
                      t.dim(), " (shape ", shape_text(t.sizes()), "). Fix: reshape it.");
    OPFORGE_REQUIRE(kValue, t.dim() >= min_rank, op_, ": input '", name, "' must have rank >= ", min_rank, ", got rank ",
                      t.dim(), " (shape ", shape_text(t.sizes()), "). Fix: reshape it.");
    OPFORGE_REQUIRE(kValue, t.dim() <= kMaxRank, op_, ": input '", name, "' has rank ", t.dim(), "; kernels take at most ",
                      kMaxRank, " dims. Fix: flatten leading dims.");
    check_device(name, t);
    return t.contiguous();
  }

  void same_dtype(const char* name, const at::Tensor& t, const char* other, const at::Tensor& o) {
    OPFORGE_REQUIRE(kType, t.scalar_type() == o.scalar_type(), op_, ": input '", name, "' must have the dtype of '", other,
                     "' (", dtype_name(to_dtype(o.scalar_type())), "), got ", dtype_name(to_dtype(t.scalar_type())), ". Fix: cast it with .to(", other, ".dtype).");
  }

  void expect_shape(const char* name, const at::Tensor& t, std::initializer_list<int64_t> expected, const char* rule) {
    expect_shape(name, t, at::IntArrayRef(expected.begin(), expected.size()), rule);
  }
  void expect_shape(const char* name, const at::Tensor& t, at::IntArrayRef expected, const char* rule) {
    OPFORGE_REQUIRE(kValue, t.sizes() == expected, op_, ": input '", name, "' must have shape ", rule, " = ",
                      shape_text(expected), ", got ", shape_text(t.sizes()), ". Fix: pass a tensor of that shape.");
  }

  void expect_length(const char* attr, size_t got, int64_t length) {
    OPFORGE_REQUIRE(kValue, static_cast<int64_t>(got) == length, op_, ": attribute '", attr, "' must have ", length,
                      " elements, got ", got, ". Fix: pass a list of ", length, " values.");
  }

  void expect_choice(const char* attr, c10::string_view value, std::initializer_list<const char*> choices) {
    std::string allowed;
    for (const char* c : choices) {
      if (value == c) return;
      allowed += format(" '", c, "'");
    }
    OPFORGE_REQUIRE(kValue, false, op_, ": attribute '", attr, "' must be one of", allowed, ", got '", value,
                      "'. Fix: pass one of those.");
  }

  // Output dims come from the shape rule; a negative one means the inputs violate an unstated rule.
  std::vector<int64_t> output_shape(const char* name, std::initializer_list<int64_t> dims, const char* rule) {
    for (int64_t d : dims)
      OPFORGE_REQUIRE(kValue, d >= 0, op_, ": output '", name, "' would have shape ", rule, " = ",
                        shape_text(at::IntArrayRef(dims.begin(), dims.size())),
                        " with a negative dim. Fix: check the inputs against the op's shape rule.");
    return std::vector<int64_t>(dims);
  }

  at::TensorOptions options(at::ScalarType dtype) const {
    return at::TensorOptions().dtype(dtype).device(device_.value_or(at::Device(device_type_)));
  }

  DeviceContext context(int64_t workspace_bytes) {
    OPFORGE_REQUIRE(kValue, workspace_bytes >= 0, op_, ": workspace rule gave ", workspace_bytes, " bytes.");
    DeviceContext ctx;
    if (device_type_ == c10::DeviceType::CPU) ctx.parallel_run = &parallel_run;
    if (workspace_bytes > 0) {
      workspace_ = at::empty({workspace_bytes}, options(at::kByte));
      ctx.workspace = workspace_.data_ptr();
      ctx.workspace_bytes = static_cast<size_t>(workspace_bytes);
    }
#ifdef OPFORGE_WITH_CUDA
    if (device_type_ == c10::DeviceType::CUDA) {
      guard_.emplace(*device_);
      ctx.stream = static_cast<void*>(c10::cuda::getCurrentCUDAStream(device_->index()).stream());
    }
#endif
    return ctx;
  }

  void check(const Status& s) {
    OPFORGE_REQUIRE(kRuntime, s.is_ok(), op_, ": ", c10::DeviceTypeName(device_type_, true), " kernel failed: ", s.message);
  }

 private:
  // ATen's intra-op pool (OpenMP or native, torch.set_num_threads), so opforge CPU kernels use the same
  // threads as aten ops and never oversubscribe the machine.
  static void parallel_run(void* /*pool*/, int64_t n, int64_t grain, ParallelBody body, void* closure) {
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { body(closure, begin, end); });
  }

  void check_device(const char* name, const at::Tensor& t) {
    OPFORGE_REQUIRE(kRuntime, t.device().type() == device_type_, op_, ": input '", name, "' is on ", t.device(), " but the op runs on ",
                c10::DeviceTypeName(device_type_, true), " here (inputs on different devices?). Fix: move all inputs to one device.");
    if (!device_) {
      device_ = t.device();
      first_input_ = name;
    }
    OPFORGE_REQUIRE(kRuntime, t.device() == *device_, op_, ": input '", name, "' is on ", t.device(), " but '", first_input_,
                "' is on ", *device_, ". Fix: move all inputs to one device.");
  }

  const char* op_;
  c10::DeviceType device_type_;
  std::optional<at::Device> device_;
  const char* first_input_ = "";
  at::Tensor workspace_;
#ifdef OPFORGE_WITH_CUDA
  std::optional<c10::cuda::CUDAGuard> guard_;
#endif
};

// -- autograd --------------------------------------------------------------------------------------

// Whether a call must record an autograd node: grad mode is on and a tensor input requires grad (nullptr:
// an absent optional input). Otherwise the autograd kernel goes straight to the device kernel.
inline bool requires_grad(std::initializer_list<const at::Tensor*> inputs) {
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor* t : inputs)
    if (t != nullptr && t->defined() && t->requires_grad()) return true;
  return false;
}
inline const at::Tensor* maybe(const std::optional<at::Tensor>& t) { return t.has_value() ? &*t : nullptr; }
inline at::Tensor or_undefined(const std::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); }

// What the shared autograd node (torch_autograd.cpp) needs to know of one op; one static instance per op,
// generated from its declaration.
struct AutogradSpec {
  const char* op;           // "ns::name", for messages
  const char* backward_op;  // "ns::name_opforge_backward": runs the declared Python backward
  bool has_backward;        // false: differentiating raises (the helper op says so from Python, typed)
  size_t num_inputs;
  size_t num_outputs;
  size_t num_attrs;
  std::vector<size_t> saves;  // what the backward reads: k < num_inputs is input k, else output k - num_inputs
};

// Runs the op below autograd (`below`: the generated kernel's unboxed redispatch, called under
// AutoDispatchBelowADInplaceOrView) and records the autograd node whose backward runs the declared backward
// on the saved tensors and `attrs`. `inputs` has one entry per declared input, undefined where an optional
// one is absent. Returns the outputs. For calls where requires_grad() held.
using BelowAutograd = c10::function_ref<std::vector<at::Tensor>()>;
std::vector<at::Tensor> call_with_autograd(const AutogradSpec& spec, std::vector<at::Tensor> inputs,
                                           c10::impl::GenericList attrs, BelowAutograd below);

}  // namespace glue
}  // namespace opforge
