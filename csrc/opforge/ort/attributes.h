// Reading a node's attributes for the ONNX Runtime glue (opforge/ort/glue.h), once, when ORT creates the
// kernel: exactly as the model stores them, with the declared defaults when absent, and a clean error when
// an attribute has another type than the declared one.
#pragma once

#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "opforge/ort/api.h"

namespace opforge {
namespace ort {

// ---- attributes (read once, when ORT creates the kernel for a node) ------------------------------

// Which ONNX attribute type a node holds under `name`, probing each getter: ORT's C API can read an
// attribute only by type, and a getter failing means either "absent" or "another type".
inline const char* attribute_kind(const OrtKernelInfo* info, const char* name) {
  auto ok = [](OrtStatus* s) {
    if (s == nullptr) return true;
    api().ReleaseStatus(s);
    return false;
  };
  int64_t i = 0;
  float f = 0;
  size_t n = 0;
  if (ok(api().KernelInfoGetAttribute_int64(info, name, &i))) return "INT";
  if (ok(api().KernelInfoGetAttribute_float(info, name, &f))) return "FLOAT";
  if (ok(api().KernelInfoGetAttribute_string(info, name, nullptr, &n))) return "STRING";
  n = 0;
  if (ok(api().KernelInfoGetAttributeArray_int64(info, name, nullptr, &n))) return "INTS";
  n = 0;
  if (ok(api().KernelInfoGetAttributeArray_float(info, name, nullptr, &n))) return "FLOATS";
  return nullptr;
}

// A failed read of the declared type: absent (use the default, or fail for a required attribute) or of
// another type (always an error: silently taking the default would compute something else).
inline bool attribute_absent(const char* op, const OrtKernelInfo* info, const char* name, const char* expected,
                             bool has_default) {
  const char* kind = attribute_kind(info, name);
  OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, kind == nullptr, op, ": attribute '", name, "' must be ", expected,
                      ", got ", kind, ". Fix: export the model with opforge (ops.export_onnx) or correct the node.");
  OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, has_default, op, ": required attribute '", name, "' (", expected,
                      ") is missing from the node. Fix: set it on the node.");
  return true;
}

// ORT reads a list attribute of the other element type as an empty list instead of failing, so an empty
// result is checked against the other getter: a non-empty FLOATS where INTS is declared is an error.
inline void expect_not_other_list(const char* op, const OrtKernelInfo* info, const char* name, const char* expected) {
  size_t other = 0;
  OrtStatus* s = std::strcmp(expected, "INTS") == 0
                     ? api().KernelInfoGetAttributeArray_float(info, name, nullptr, &other)
                     : api().KernelInfoGetAttributeArray_int64(info, name, nullptr, &other);
  if (s != nullptr) api().ReleaseStatus(s);
  OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, s != nullptr || other == 0, op, ": attribute '", name, "' must be ",
                      expected, ", got ", std::strcmp(expected, "INTS") == 0 ? "FLOATS" : "INTS",
                      ". Fix: export the model with opforge (ops.export_onnx) or correct the node.");
}

inline int64_t attr_int(const char* op, const OrtKernelInfo* info, const char* name, bool has_default, int64_t dflt) {
  int64_t v = 0;
  OrtStatus* s = api().KernelInfoGetAttribute_int64(info, name, &v);
  if (s == nullptr) return v;
  api().ReleaseStatus(s);
  attribute_absent(op, info, name, "INT", has_default);
  return dflt;
}

// ONNX FLOAT attributes are float32: the kernel gets exactly the value the model holds, widened.
inline double attr_float(const char* op, const OrtKernelInfo* info, const char* name, bool has_default, double dflt) {
  float v = 0;
  OrtStatus* s = api().KernelInfoGetAttribute_float(info, name, &v);
  if (s == nullptr) return static_cast<double>(v);
  api().ReleaseStatus(s);
  attribute_absent(op, info, name, "FLOAT", has_default);
  return dflt;
}

inline std::string attr_string(const char* op, const OrtKernelInfo* info, const char* name, bool has_default,
                               const char* dflt) {
  size_t size = 0;
  OrtStatus* s = api().KernelInfoGetAttribute_string(info, name, nullptr, &size);
  if (s != nullptr) {
    api().ReleaseStatus(s);
    attribute_absent(op, info, name, "STRING", has_default);
    return dflt;
  }
  std::string out(size, '\0');  // size counts the terminating NUL
  check(api().KernelInfoGetAttribute_string(info, name, out.data(), &size),
        format(op, ": reading attribute '", name, "'"));
  out.resize(size > 0 ? size - 1 : 0);
  return out;
}

inline std::vector<int64_t> attr_ints(const char* op, const OrtKernelInfo* info, const char* name, bool has_default,
                                      std::initializer_list<int64_t> dflt) {
  size_t size = 0;
  OrtStatus* s = api().KernelInfoGetAttributeArray_int64(info, name, nullptr, &size);
  if (s != nullptr) {
    api().ReleaseStatus(s);
    attribute_absent(op, info, name, "INTS", has_default);
    return std::vector<int64_t>(dflt);
  }
  std::vector<int64_t> out(size);
  if (size > 0)
    check(api().KernelInfoGetAttributeArray_int64(info, name, out.data(), &size),
          format(op, ": reading attribute '", name, "'"));
  else
    expect_not_other_list(op, info, name, "INTS");
  return out;
}

inline std::vector<double> attr_floats(const char* op, const OrtKernelInfo* info, const char* name, bool has_default,
                                       std::initializer_list<double> dflt) {
  size_t size = 0;
  OrtStatus* s = api().KernelInfoGetAttributeArray_float(info, name, nullptr, &size);
  if (s != nullptr) {
    api().ReleaseStatus(s);
    attribute_absent(op, info, name, "FLOATS", has_default);
    return std::vector<double>(dflt);
  }
  std::vector<float> raw(size);
  if (size > 0)
    check(api().KernelInfoGetAttributeArray_float(info, name, raw.data(), &size),
          format(op, ": reading attribute '", name, "'"));
  else
    expect_not_other_list(op, info, name, "FLOATS");
  return std::vector<double>(raw.begin(), raw.end());
}

inline void expect_choice(const char* op, const char* attr, const std::string& value,
                          std::initializer_list<const char*> choices) {
  raise(host::check_choice(Host::kOnnxRuntime, op, attr, value, choices));
}

// A list attribute declared with a fixed length (so shape rules may index it, as in stride[0]).
inline void expect_length(const char* op, const char* attr, size_t got, int64_t length) {
  raise(host::check_length(Host::kOnnxRuntime, op, attr, got, length));
}

inline StringView string_view(const std::string& s) { return StringView{s.data(), s.size()}; }
template <typename T>
inline Span<T> span(const std::vector<T>& v) {
  return Span<T>{v.data(), static_cast<int64_t>(v.size())};
}

}  // namespace ort
}  // namespace opforge
