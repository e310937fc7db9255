// The ONNX Runtime glue's base (opforge/ort/glue.h includes it with the rest): the API table of the
// runtime that loaded the library, opforge::ort::Error and the checks that throw it, and ORT's element
// types as kernel dtypes.
#pragma once

#include <onnxruntime_c_api.h>

#include <cstdint>
#include <exception>
#include <string>
#include <utility>

#include "opforge/host.h"
#include "opforge/kernel_api.h"

namespace opforge {
namespace ort {

// The API table of the runtime that loaded the library, at the version of the headers it was built with
// (set once by RegisterCustomOps; the C API is backward compatible, so a newer runtime serves it).
inline const OrtApi* g_api = nullptr;
inline const OrtApi& api() { return *g_api; }

enum class Device { kCpu, kCuda };

class Error : public std::exception {
 public:
  Error(OrtErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }
  OrtErrorCode code() const { return code_; }

 private:
  OrtErrorCode code_;
  std::string message_;
};

// Messages are built with opforge/host.h's format (no iostreams: see there).
using host::format;
using host::Host;

#define OPFORGE_ORT_REQUIRE(code, cond, ...)                                             \
  do {                                                                                   \
    if (!(cond)) throw ::opforge::ort::Error(code, ::opforge::ort::format(__VA_ARGS__)); \
  } while (0)

// Throws a failed check of opforge/host.h: INVALID_ARGUMENT for the inputs' or attributes' faults, FAIL for
// the kernel's.
inline void raise(const host::Error& e) {
  if (e) throw Error(e.kind == host::ErrorKind::kRuntime ? ORT_FAIL : ORT_INVALID_ARGUMENT, e.message);
}

// Throws the message of a failed ORT call (and releases its status).
inline void check(OrtStatus* status, const std::string& what) {
  if (status == nullptr) return;
  std::string message = format(what, ": ", api().GetErrorMessage(status));
  const OrtErrorCode code = api().GetErrorCode(status);
  api().ReleaseStatus(status);
  throw Error(code, message);
}

// ---- dtypes ------------------------------------------------------------------------------------

inline DType to_dtype(ONNXTensorElementDataType t, bool* ok) {
  *ok = true;
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return DType::kFloat32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return DType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return DType::kBFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return DType::kFloat64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return DType::kInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return DType::kUInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return DType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return DType::kInt64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return DType::kBool;
    default: *ok = false; return DType::kFloat32;
  }
}

inline const char* onnx_type_name(ONNXTensorElementDataType t) {
  bool ok = false;
  const DType d = to_dtype(t, &ok);
  return ok ? dtype_name(d) : "a dtype opforge kernels do not take";
}

inline std::string shape_text(const TensorView& v) { return host::shape_text(v.sizes, v.rank); }

inline void set_contiguous(TensorView& v, const int64_t* dims, int32_t rank) {
  v.rank = rank;
  int64_t stride = 1;
  for (int32_t i = rank - 1; i >= 0; --i) {
    v.sizes[i] = dims[i];
    v.strides[i] = stride;
    stride *= dims[i];
  }
}

}  // namespace ort

// Shape-rule divisions as shape_rule.CppAlgebra spells them (the generated code's namespace is glue, as in
// the torch glue): a zero divisor is an INVALID_ARGUMENT error that names the op and the rule.
namespace glue {
inline int64_t floordiv(int64_t a, int64_t b, const char* op, const char* rule) {
  ort::raise(host::divisor_error(host::Host::kOnnxRuntime, op, rule, "//", a, b));
  return host::floordiv(a, b);
}
inline int64_t ceil_div(int64_t a, int64_t b, const char* op, const char* rule) {
  ort::raise(host::divisor_error(host::Host::kOnnxRuntime, op, rule, "ceil_div", a, b));
  return host::ceil_div(a, b);
}
}  // namespace glue

}  // namespace opforge
