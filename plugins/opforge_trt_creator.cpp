// The generic IPluginCreatorV3One (see opforge_trt_plugin.h): the field list the ONNX parser reads, and
// createPlugin's bounded parsing of whatever PluginFieldCollection it is handed. Malformed fields make
// createPlugin return nullptr with a logged message, never a crash (fuzzed in tests/harness/fuzz.cpp).
#include "opforge_trt_plugin.h"

#include <cmath>
#include <cstring>
#include <new>

namespace opforge {
namespace trt {

using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;
using Severity = nvinfer1::ILogger::Severity;

// ---- Creator ---------------------------------------------------------------------------------------

Creator::Creator(const OpSpec& spec) : spec_(&spec) {
  // What the ONNX parser reads to decide which node attributes to pass, and as which type.
  for (int32_t k = 0; k < spec.nb_fields; ++k) {
    const FieldSpec& f = spec.fields[k];
    PluginFieldType t = PluginFieldType::kINT32;
    int32_t length = 1;
    switch (f.kind) {
      case FieldKind::kInt:
      case FieldKind::kBool: t = PluginFieldType::kINT32; break;
      case FieldKind::kInts:
        t = PluginFieldType::kINT32;
        length = 0;
        break;
      case FieldKind::kFloat: t = PluginFieldType::kFLOAT32; break;
      case FieldKind::kFloats:
        t = PluginFieldType::kFLOAT32;
        length = 0;
        break;
      case FieldKind::kStr:
        t = PluginFieldType::kCHAR;
        length = 0;
        break;
    }
    field_names_.emplace_back(f.name, nullptr, t, length);
  }
  fc_.nbFields = static_cast<int32_t>(field_names_.size());
  fc_.fields = field_names_.data();
}

const nvinfer1::PluginFieldCollection* Creator::getFieldNames() noexcept { return &fc_; }

namespace {
const char* type_name(PluginFieldType t) {
  switch (t) {
    case PluginFieldType::kFLOAT16: return "kFLOAT16";
    case PluginFieldType::kFLOAT32: return "kFLOAT32";
    case PluginFieldType::kFLOAT64: return "kFLOAT64";
    case PluginFieldType::kINT8: return "kINT8";
    case PluginFieldType::kINT16: return "kINT16";
    case PluginFieldType::kINT32: return "kINT32";
    case PluginFieldType::kCHAR: return "kCHAR";
    case PluginFieldType::kDIMS: return "kDIMS";
    case PluginFieldType::kUNKNOWN: return "kUNKNOWN";
    case PluginFieldType::kBF16: return "kBF16";
    case PluginFieldType::kINT64: return "kINT64";
    default: return "an unsupported PluginFieldType";
  }
}
const char* kind_name(FieldKind k) {
  switch (k) {
    case FieldKind::kInt: return "int (kINT32 or kINT64, length 1)";
    case FieldKind::kInts: return "list[int] (kINT32 or kINT64)";
    case FieldKind::kFloat: return "float (kFLOAT32 or kFLOAT64, length 1)";
    case FieldKind::kFloats: return "list[float] (kFLOAT32 or kFLOAT64)";
    case FieldKind::kStr: return "str (kCHAR)";
    case FieldKind::kBool: return "bool (kINT32 0 or 1, length 1)";
  }
  return "?";
}
}  // namespace

bool Creator::parse(const nvinfer1::PluginFieldCollection* fc, Attrs* attrs, std::string* why) const {
  const OpSpec& s = *spec_;
  attrs->ints.assign(s.nb_fields, {});
  attrs->floats.assign(s.nb_fields, {});
  attrs->strs.assign(s.nb_fields, {});
  std::vector<bool> seen(s.nb_fields, false);
  const int32_t n = fc == nullptr ? 0 : fc->nbFields;
  if (n < 0 || n > kMaxFields) return *why = "nbFields " + std::to_string(n) + " is out of range", false;
  if (n > 0 && fc->fields == nullptr) return *why = "nbFields > 0 but fields is null", false;
  for (int32_t i = 0; i < n; ++i) {
    const PluginField& pf = fc->fields[i];
    if (pf.name == nullptr) return *why = "field " + std::to_string(i) + " has no name", false;
    const size_t name_len = strnlen(pf.name, kMaxNameLength);
    if (name_len >= kMaxNameLength) return *why = "field " + std::to_string(i) + " has an over-long name", false;
    const std::string name(pf.name, name_len);
    int32_t k = 0;
    while (k < s.nb_fields && name != s.fields[k].name) ++k;
    if (k == s.nb_fields) {
      std::string known;
      for (int32_t j = 0; j < s.nb_fields; ++j) known += std::string(j ? ", " : "") + s.fields[j].name;
      return *why = "unknown field '" + name + "' (fields: " + known + ")", false;
    }
    if (seen[k]) return *why = "field '" + name + "' is given twice", false;
    seen[k] = true;
    const FieldSpec& f = s.fields[k];
    const std::string expected = std::string(" expected ") + kind_name(f.kind) + ", got " + type_name(pf.type) +
                                 " with length " + std::to_string(pf.length);
    const bool is_list = f.kind == FieldKind::kInts || f.kind == FieldKind::kFloats;
    const int32_t limit = f.kind == FieldKind::kStr ? kMaxStringLength : is_list ? kMaxListLength : 1;
    if (pf.length < 0 || pf.length > limit || (!is_list && f.kind != FieldKind::kStr && pf.length != 1))
      return *why = "field '" + name + "':" + expected, false;
    if (pf.length > 0 && pf.data == nullptr) return *why = "field '" + name + "' has length > 0 but no data", false;
    if (is_list && f.length >= 0) {
      if (host::Error e = host::check_length(Host::kTensorRT, nullptr, f.name, pf.length, f.length))
        return *why = e.message, false;
    }
    switch (f.kind) {
      case FieldKind::kInt:
      case FieldKind::kInts:
      case FieldKind::kBool: {
        std::vector<int64_t>& v = attrs->ints[k];
        if (pf.type == PluginFieldType::kINT32) {
          const auto* p = static_cast<const int32_t*>(pf.data);
          v.assign(p, p + pf.length);
        } else if (pf.type == PluginFieldType::kINT64 && f.kind != FieldKind::kBool) {
          const auto* p = static_cast<const int64_t*>(pf.data);
          v.assign(p, p + pf.length);
        } else {
          return *why = "field '" + name + "':" + expected, false;
        }
        if (f.kind == FieldKind::kBool && v[0] != 0 && v[0] != 1)
          return *why = "field '" + name + "' is a bool: expected 0 or 1, got " + std::to_string(v[0]), false;
        break;
      }
      case FieldKind::kFloat:
      case FieldKind::kFloats: {
        std::vector<double>& v = attrs->floats[k];
        if (pf.type == PluginFieldType::kFLOAT32) {
          const auto* p = static_cast<const float*>(pf.data);
          v.assign(p, p + pf.length);
        } else if (pf.type == PluginFieldType::kFLOAT64) {
          const auto* p = static_cast<const double*>(pf.data);
          v.assign(p, p + pf.length);
        } else {
          return *why = "field '" + name + "':" + expected, false;
        }
        break;
      }
      case FieldKind::kStr: {
        if (pf.type != PluginFieldType::kCHAR) return *why = "field '" + name + "':" + expected, false;
        // Producers disagree on whether length counts a trailing NUL; read at most `length` bytes and
        // stop at the first NUL, so both conventions (and unterminated buffers) are read exactly.
        const char* p = static_cast<const char*>(pf.data);
        attrs->strs[k].assign(p, pf.length > 0 ? strnlen(p, static_cast<size_t>(pf.length)) : 0);
        if (f.choices != nullptr) {
          if (host::Error e = host::check_choice(Host::kTensorRT, nullptr, f.name, attrs->strs[k], f.choices,
                                                 static_cast<size_t>(f.nb_choices)))
            return *why = e.message, false;
        }
        break;
      }
    }
  }
  for (int32_t k = 0; k < s.nb_fields; ++k) {
    if (seen[k]) continue;
    const FieldSpec& f = s.fields[k];
    if (f.required) return *why = std::string("required field '") + f.name + "' is missing", false;
    attrs->ints[k].assign(f.default_ints, f.default_ints + f.nb_default_ints);
    attrs->floats[k].assign(f.default_floats, f.default_floats + f.nb_default_floats);
    if (f.default_str != nullptr) attrs->strs[k] = f.default_str;
  }
  return true;
}

nvinfer1::IPluginV3* Creator::createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc,
                                           nvinfer1::TensorRTPhase phase) noexcept {
  try {
    const std::string layer = name == nullptr ? std::string() : std::string(name, strnlen(name, kMaxNameLength));
    Attrs attrs;
    std::string why;
    if (!parse(fc, &attrs, &why)) {
      log(Severity::kERROR, std::string(spec_->op_id) + ": createPlugin(" +
                                (phase == nvinfer1::TensorRTPhase::kBUILD ? "kBUILD" : "kRUNTIME") + ") for layer '" +
                                layer + "' rejected its fields: " + why);
      return nullptr;
    }
    return new Plugin(*spec_, layer, std::move(attrs));
  } catch (...) {
    log(Severity::kERROR, std::string(spec_->op_id) + ": createPlugin failed (out of memory)");
    return nullptr;
  }
}

}  // namespace trt
}  // namespace opforge
