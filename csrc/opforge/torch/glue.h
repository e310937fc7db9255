// Runtime support for the generated torch glue (<build>/opforge/<package>/gen/*_torch.cpp).
//
// The glue for each op is generated from its declaration; this header holds what every op's glue
// shares: validating ATen tensors against the declaration (the checks and their messages, which name the
// op, the argument, what was expected, what was given and the fix, are opforge/host.h's, shared with the
// ONNX Runtime glue and the TensorRT plugin); turning tensors into opforge::TensorView; the CUDA
// stream/device guard; workspace allocation; the autograd kernel's test for whether a call needs a
// graph node, and the interface of the autograd node every op shares (autograd.cpp: compiled once
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

#include "opforge/host.h"
#include "opforge/kernel_api.h"

namespace opforge {
namespace glue {

using host::Host;

inline DType to_dtype(at::ScalarType t, bool* known) {
  *known = true;
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
    default: *known = false; return DType::kFloat32;
  }
}

inline DType to_dtype(at::ScalarType t) {
  bool known = false;
  const DType d = to_dtype(t, &known);
  TORCH_CHECK(known, "opforge: no kernel dtype for ", c10::toString(t));
  return d;
}

inline at::ScalarType to_scalar_type(DType d) {
  switch (d) {
    case DType::kFloat32: return at::kFloat;
    case DType::kFloat16: return at::kHalf;
    case DType::kBFloat16: return at::kBFloat16;
    case DType::kFloat64: return at::kDouble;
    case DType::kInt8: return at::kChar;
    case DType::kUInt8: return at::kByte;
    case DType::kInt32: return at::kInt;
    case DType::kInt64: return at::kLong;
    case DType::kBool: return at::kBool;
  }
  TORCH_CHECK(false, "opforge: unknown kernel dtype ", static_cast<int>(d));
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
inline Span<T> span(c10::ArrayRef<T> a) {
  return Span<T>{a.data(), static_cast<int64_t>(a.size())};
}

// Raises a failed check (opforge/host.h) as the Python exception its kind names: TypeError, ValueError,
// RuntimeError.
[[noreturn]] inline void fail(const host::Error& e) {
  switch (e.kind) {
    case host::ErrorKind::kType: TORCH_CHECK_TYPE(false, e.message);
    case host::ErrorKind::kValue: TORCH_CHECK_VALUE(false, e.message);
    default: TORCH_CHECK(false, e.message);
  }
  std::abort();  // unreachable: each case throws
}
inline void raise(const host::Error& e) {
  if (e) fail(e);
}

// Raises `kind` (kType, kValue, kRuntime) with the message of `...` unless `cond` holds.
#define OPFORGE_REQUIRE(kind, cond, ...)                                                                   \
  do {                                                                                                     \
    if (!(cond))                                                                                           \
      ::opforge::glue::fail(                                                                               \
          ::opforge::host::Error{::opforge::host::ErrorKind::kind, ::opforge::host::format(__VA_ARGS__)}); \
  } while (0)

// Shape-rule divisions as shape_rule.CppAlgebra spells them: a zero divisor is a ValueError that names the
// op and the rule.
inline int64_t floordiv(int64_t a, int64_t b, const char* op, const char* rule) {
  raise(host::divisor_error(Host::kTorch, op, rule, "//", a, b));
  return host::floordiv(a, b);
}
inline int64_t ceil_div(int64_t a, int64_t b, const char* op, const char* rule) {
  raise(host::divisor_error(Host::kTorch, op, rule, "ceil_div", a, b));
  return host::ceil_div(a, b);
}

// One call of one op on one device: validates arguments, then provides the kernel's DeviceContext.
class Call {
 public:
  Call(const char* op, c10::DeviceType device) : op_(op), device_type_(device) {}

  // Validates a tensor input against its declaration and returns the contiguous tensor the kernel reads.
  at::Tensor input(const char* name, const at::Tensor& t, std::initializer_list<DType> dtypes, int64_t rank,
                   int64_t min_rank) {
    TORCH_CHECK_VALUE(t.defined(), op_, ": input '", name, "' is undefined. Fix: pass a tensor.");
    bool known = false;
    const DType dtype = to_dtype(t.scalar_type(), &known);
    raise(host::check_dtype(Host::kTorch, op_, name, dtypes, dtype, known, c10::toString(t.scalar_type())));
    raise(host::check_rank(Host::kTorch, op_, name, t.sizes().data(), t.dim(), rank, min_rank));
    check_device(name, t);
    return t.contiguous();
  }

  void same_dtype(const char* name, const at::Tensor& t, const char* other, const at::Tensor& o) {
    raise(host::check_same_dtype(Host::kTorch, op_, name, to_dtype(t.scalar_type()), other, to_dtype(o.scalar_type())));
  }

  void expect_shape(const char* name, const at::Tensor& t, std::initializer_list<int64_t> expected, const char* rule) {
    expect_shape(name, t, at::IntArrayRef(expected.begin(), expected.size()), rule);
  }
  void expect_shape(const char* name, const at::Tensor& t, at::IntArrayRef expected, const char* rule) {
    raise(host::check_shape(Host::kTorch, op_, name, t.sizes().data(), t.dim(), expected.data(),
                            static_cast<int64_t>(expected.size()), rule));
  }

  void expect_length(const char* attr, size_t got, int64_t length) {
    raise(host::check_length(Host::kTorch, op_, attr, got, length));
  }

  void expect_choice(const char* attr, c10::string_view value, std::initializer_list<const char*> choices) {
    raise(host::check_choice(Host::kTorch, op_, attr, std::string_view(value.data(), value.size()), choices));
  }

  // Output dims come from the shape rule; a negative one means the inputs violate an unstated rule.
  std::vector<int64_t> output_shape(const char* name, std::initializer_list<int64_t> dims, const char* rule) {
    raise(host::check_output_dims(Host::kTorch, op_, name, dims.begin(), static_cast<int64_t>(dims.size()), rule));
    return std::vector<int64_t>(dims);
  }

  at::TensorOptions options(at::ScalarType dtype) const {
    return at::TensorOptions().dtype(dtype).device(device_.value_or(at::Device(device_type_)));
  }
  at::TensorOptions options(DType dtype) const { return options(to_scalar_type(dtype)); }

  DeviceContext context(int64_t workspace_bytes) {
    raise(host::check_workspace(Host::kTorch, op_, workspace_bytes));
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
    raise(host::check_kernel(Host::kTorch, op_, c10::DeviceTypeName(device_type_, true).c_str(), s));
  }

  // The value the kernel wrote into a size output (0-d int64), checked against its declared upper bound.
  int64_t size_value(const char* name, const at::Tensor& t, int64_t upper) {
    const int64_t value = t.item<int64_t>();  // syncs with the device: unavoidable for a data-dependent size
    raise(host::check_size_value(Host::kTorch, op_, name, value, upper));
    return value;
  }

 private:
  // ATen's intra-op pool (OpenMP or native, torch.set_num_threads), so opforge CPU kernels use the same
  // threads as aten ops and never oversubscribe the machine.
  static void parallel_run(void* /*pool*/, int64_t n, int64_t grain, ParallelBody body, void* closure) {
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { body(closure, begin, end); });
  }

  void check_device(const char* name, const at::Tensor& t) {
    TORCH_CHECK(t.device().type() == device_type_, op_, ": input '", name, "' is on ", t.device().str(),
                " but the op runs on ", c10::DeviceTypeName(device_type_, true),
                " here (inputs on different devices?). Fix: move all inputs to one device.");
    if (!device_) {
      device_ = t.device();
      first_input_ = name;
    }
    TORCH_CHECK(t.device() == *device_, op_, ": input '", name, "' is on ", t.device().str(), " but '", first_input_,
                "' is on ", device_->str(), ". Fix: move all inputs to one device.");
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

// What the shared autograd node (autograd.cpp) needs to know of one op; one static instance per op,
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
