// Host-side C++ shared by the three hosts of a kernel: the torch glue (opforge/torch/), the ONNX Runtime
// glue (opforge/ort/) and the TensorRT plugin (plugins/). Plain C++17, host-only, no framework types: a
// host turns its tensors' metadata (dtype, rank, dims) into plain values, asks here whether they satisfy
// the op's declaration, and raises the returned Error its own way (TORCH_CHECK_TYPE/VALUE, an OrtStatus,
// a TensorRT log line and an error return). So the shape arithmetic of the shape rules, the validation of
// declared inputs and attributes, and the wording of every user-facing message (op, argument, expected,
// got, fix) exist once. ops/torch/checks.py writes the same messages for the paths that never reach C++.
#pragma once

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "opforge/kernel_api.h"

namespace opforge {
namespace host {

// ---- messages -------------------------------------------------------------------------------------

// Built without iostreams: formatting a number through std::ostream goes through the locale's num_put
// facet, and when the process has loaded a libstdc++ older than the headers this was compiled with (seen
// with torch 2.11+cu130 on the GPU machine) that lookup crashes. Strings and std::to_string never touch
// the locale.
inline void append(std::string& out, const char* s) { out += s; }
inline void append(std::string& out, const std::string& s) { out += s; }
inline void append(std::string& out, std::string_view s) { out.append(s.data(), s.size()); }
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline void append(std::string& out, T v) {
  out += std::to_string(v);
}
inline void append(std::string& out, double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  out += buf;
}

template <typename... Args>
std::string format(const Args&... args) {
  std::string out;
  (append(out, args), ...);
  return out;
}

// Which host reports the message: the fix a user applies differs (a cast in Python, a Cast node in the
// ONNX graph, a layer in the TensorRT network).
enum class Host { kTorch, kOnnxRuntime, kTensorRT };

// The exception type a host raises for it (torch: TypeError, ValueError, RuntimeError; ONNX Runtime:
// INVALID_ARGUMENT for kType/kValue, FAIL for kRuntime; TensorRT logs it either way).
enum class ErrorKind { kNone = 0, kType, kValue, kRuntime };

// The outcome of a check: no error (false), or the kind and the whole message.
struct Error {
  ErrorKind kind = ErrorKind::kNone;
  std::string message;
  explicit operator bool() const { return kind != ErrorKind::kNone; }
};

// "<op>: <text>", or the text alone where the host prefixes the op itself (op == nullptr: the plugin's log
// line names the op and its layer).
template <typename... Args>
Error error(ErrorKind kind, const char* op, const Args&... args) {
  return Error{kind, op != nullptr ? format(op, ": ", args...) : format(args...)};
}

// ---- values in messages ---------------------------------------------------------------------------

// [2, 3, ?]: dims < 0 print as '?' where `unknown_below_zero` (TensorRT's build-time wildcards).
inline std::string shape_text(const int64_t* dims, int64_t rank, bool unknown_below_zero = false) {
  std::string out = "[";
  for (int64_t i = 0; i < rank; ++i)
    out += format(i ? ", " : "", unknown_below_zero && dims[i] < 0 ? std::string("?") : std::to_string(dims[i]));
  return out + "]";
}

inline std::string dtype_list(const DType* dtypes, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += format(i ? ", " : "", dtype_name(dtypes[i]));
  return out;
}

// ---- shape-rule arithmetic ------------------------------------------------------------------------

// Python/TensorRT semantics (floor division, not C++ truncation): the functions shape_rule.CppAlgebra
// spells, and the TensorRT plugin's concrete shape checks. Precondition: b != 0 (divisor_error first).
inline int64_t floordiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}
inline int64_t ceil_div(int64_t a, int64_t b) { return -floordiv(-a, b); }
inline int64_t max(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }

// A division of a shape rule whose divisor the inputs made zero. `rule` names the rule: "output 'y' =
// [x.shape[0] // stride[0]]" (generated from the declaration).
inline Error divisor_error(Host, const char* op, const char* rule, const char* symbol, int64_t a, int64_t b) {
  if (b != 0) return {};
  return error(ErrorKind::kValue, op, "the shape rule of ", rule, " divides by zero for these inputs: expected a ",
               "non-zero divisor, got ", a, " ", symbol, " 0. Fix: pass inputs and attributes that make every ",
               "divisor of that rule non-zero.");
}

// ---- declared inputs ------------------------------------------------------------------------------

inline const char* fix_dtype(Host host) {
  switch (host) {
    case Host::kTorch: return "cast it with .to(<one of those dtypes>)";
    case Host::kOnnxRuntime: return "Cast it in the graph";
    default: return "cast it in the network before this layer";
  }
}
inline const char* fix_rank(Host host) {
  switch (host) {
    case Host::kTorch: return "reshape it";
    case Host::kOnnxRuntime: return "Reshape it in the graph";
    default: return "reshape it in the network before this layer";
  }
}
inline const char* fix_shape(Host host) {
  switch (host) {
    case Host::kTorch: return "pass a tensor of that shape";
    case Host::kOnnxRuntime: return "feed a tensor of that shape";
    default: return "give the layer an input of that shape";
  }
}

// The dtype of input `name` against the declared ones. `got_known` is false for a dtype the kernel API
// cannot name (complex, fp8, ...); `got_text` names it then.
inline Error check_dtype(Host host, const char* op, const char* name, const DType* allowed, size_t nb_allowed,
                         DType got, bool got_known, const char* got_text = "") {
  for (size_t i = 0; i < nb_allowed; ++i)
    if (got_known && allowed[i] == got) return {};
  return error(ErrorKind::kType, op, "input '", name, "' must have dtype in {", dtype_list(allowed, nb_allowed),
               "}, got ", got_known ? dtype_name(got) : got_text, ". Fix: ", fix_dtype(host), ".");
}
inline Error check_dtype(Host host, const char* op, const char* name, std::initializer_list<DType> allowed, DType got,
                         bool got_known, const char* got_text = "") {
  return check_dtype(host, op, name, allowed.begin(), allowed.size(), got, got_known, got_text);
}

// An input declared with dtypes='like(other)'.
inline Error check_same_dtype(Host host, const char* op, const char* name, DType got, const char* other,
                              DType other_dtype) {
  if (got == other_dtype) return {};
  const std::string fix = host == Host::kTorch ? format("cast it with .to(", other, ".dtype)") : fix_dtype(host);
  return error(ErrorKind::kType, op, "input '", name, "' must have the dtype of '", other, "' (",
               dtype_name(other_dtype), "), got ", dtype_name(got), ". Fix: ", fix, ".");
}

// The rank of input `name`: the declared exact `rank` (-1: any), at least `min_rank`, at most kMaxRank.
inline Error check_rank(Host host, const char* op, const char* name, const int64_t* dims, int64_t got, int64_t rank,
                        int64_t min_rank) {
  const bool unknown = host == Host::kTensorRT;
  if (got > kMaxRank)
    return error(ErrorKind::kValue, op, "input '", name, "' has rank ", got, "; kernels take at most ", kMaxRank,
                 " dims. Fix: ", fix_rank(host), ".");
  if (rank >= 0 && got != rank)
    return error(ErrorKind::kValue, op, "input '", name, "' must have rank ", rank, ", got rank ", got, " (shape ",
                 shape_text(dims, got, unknown), "). Fix: ", fix_rank(host), ".");
  if (got < min_rank)
    return error(ErrorKind::kValue, op, "input '", name, "' must have rank >= ", min_rank, ", got rank ", got,
                 " (shape ", shape_text(dims, got, unknown), "). Fix: ", fix_rank(host), ".");
  return {};
}

// A declared input shape (Input(shape=...)) against the dims given; `rule` is its text ("[x.shape[0], 4]").
// `expected_known` (or nullptr: all known) and dims < 0 in `got` (TensorRT's build-time wildcards, when
// the host is TensorRT) mark values that match anything.
inline Error check_shape(Host host, const char* op, const char* name, const int64_t* got, int64_t got_rank,
                         const int64_t* expected, int64_t rank, const char* rule,
                         const bool* expected_known = nullptr) {
  const bool wildcards = host == Host::kTensorRT;
  bool same = got_rank == rank;
  for (int64_t i = 0; same && i < rank; ++i) {
    const bool known = expected_known == nullptr || expected_known[i];
    same = !known || (wildcards && got[i] < 0) || got[i] == expected[i];
  }
  if (same) return {};
  std::string expected_text = "[";
  for (int64_t i = 0; i < rank; ++i)
    expected_text += format(
        i ? ", " : "", expected_known == nullptr || expected_known[i] ? std::to_string(expected[i]) : std::string("?"));
  return error(ErrorKind::kValue, op, "input '", name, "' must have shape ", rule, " = ", expected_text + "]", ", got ",
               shape_text(got, got_rank, wildcards), ". Fix: ", fix_shape(host), ".");
}

// Output dims from the shape rule: a negative one means the inputs violate a rule the declaration does not state.
inline Error check_output_dims(Host, const char* op, const char* name, const int64_t* dims, int64_t rank,
                               const char* rule) {
  for (int64_t i = 0; i < rank; ++i)
    if (dims[i] < 0)
      return error(ErrorKind::kValue, op, "output '", name, "' would have shape ", rule, " = ", shape_text(dims, rank),
                   " with a negative dim. Fix: check the inputs against the op's shape rule.");
  return {};
}

inline Error check_workspace(Host, const char* op, int64_t bytes) {
  if (bytes >= 0) return {};
  return error(ErrorKind::kValue, op, "the workspace rule gave ", bytes,
               " bytes for these inputs. Fix: check the inputs against the op's workspace rule.");
}

// A size output's value as the kernel reported it, against its declared upper bound.
inline Error check_size_value(Host, const char* op, const char* name, int64_t value, int64_t upper) {
  if (value >= 0 && value <= upper) return {};
  return error(ErrorKind::kRuntime, op, "the kernel reported ", name, "=", value, " outside [0, ", upper,
               "] (its declared upper bound). Fix: the kernel must stay within the bound the declaration gives.");
}

// A kernel's Status: `device` is "CPU" or "CUDA".
inline Error check_kernel(Host, const char* op, const char* device, const Status& s) {
  if (s.is_ok()) return {};
  return error(ErrorKind::kRuntime, op, device, " kernel failed: ", s.message != nullptr ? s.message : "");
}

// ---- declared attributes --------------------------------------------------------------------------

// What the host calls an attribute (TensorRT: a plugin field), and how the user sets one.
inline const char* attribute_noun(Host host) { return host == Host::kTensorRT ? "field" : "attribute"; }
inline std::string fix_attribute(Host host, const std::string& what) {
  switch (host) {
    case Host::kTorch: return "pass " + what;
    case Host::kOnnxRuntime: return "set " + what + " on the node";
    default: return "set the plugin field to " + what;
  }
}

// A list attribute declared with a fixed length (so shape rules may index it, as in stride[0]).
inline Error check_length(Host host, const char* op, const char* attr, size_t got, int64_t length) {
  if (static_cast<int64_t>(got) == length) return {};
  return error(ErrorKind::kValue, op, attribute_noun(host), " '", attr, "' must have ", length, " elements, got ", got,
               ". Fix: ", fix_attribute(host, format("a list of ", length, " values")), ".");
}

// A str attribute declared with choices.
inline Error check_choice(Host host, const char* op, const char* attr, std::string_view value,
                          const char* const* choices, size_t nb_choices) {
  std::string allowed;
  for (size_t i = 0; i < nb_choices; ++i) {
    if (value == choices[i]) return {};
    allowed += format(" '", choices[i], "'");
  }
  return error(ErrorKind::kValue, op, attribute_noun(host), " '", attr, "' must be one of", allowed, ", got '", value,
               "'. Fix: ", fix_attribute(host, "one of those"), ".");
}
inline Error check_choice(Host host, const char* op, const char* attr, std::string_view value,
                          std::initializer_list<const char*> choices) {
  return check_choice(host, op, attr, value, choices.begin(), choices.size());
}

}  // namespace host
}  // namespace opforge
