// The generic TensorRT IPluginV3 adapter: one plugin class and one creator class for every opforge op.
//
// Nothing here is per-op. Each op contributes an `OpSpec` generated from its declaration by
// ops/trt/codegen.py (into the build directory, never committed): its name/version/namespace, its
// fields, input/output dtype rules, and four generated functions (output shapes through IExprBuilder,
// concrete shape checks, workspace bytes, and the call into opforge_kernels::<ns>::<name>::cuda).
// The adapter turns TensorRT's plugin calls into those, so the per-op code is data, not boilerplate.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "opforge/host.h"
#include "opforge/kernel_api.h"

namespace opforge {
namespace trt {

// Input and field checks, their messages and the shape arithmetic are opforge/host.h's, shared with the torch
// and ONNX Runtime glue; the plugin logs a failed check's message after "<op> (layer '<name>'): ".
using host::Host;

// Limits that keep createPlugin's parsing bounded whatever a caller passes in a PluginFieldCollection.
constexpr int32_t kMaxFields = 1024;
constexpr int32_t kMaxListLength = 1 << 16;
constexpr int32_t kMaxStringLength = 1 << 16;
constexpr size_t kMaxNameLength = 1024;  // TensorRT's own limit for names, NUL included

enum class FieldKind : int32_t { kInt = 0, kInts = 1, kFloat = 2, kFloats = 3, kStr = 4, kBool = 5 };

struct FieldSpec {
  const char* name;
  FieldKind kind;
  bool required;  // no default: createPlugin fails without it
  // Default value (used when the field is absent): ints/bools in `ints`, floats in `floats`, str in `str`.
  const int64_t* default_ints;
  int32_t nb_default_ints;
  const double* default_floats;
  int32_t nb_default_floats;
  const char* default_str;
  const char* const* choices;  // allowed values of a str field, or nullptr
  int32_t nb_choices;
  int32_t length;  // list fields: the declared number of elements (shape rules index it), or -1 for any
};

struct InputSpec {
  const char* name;
  uint32_t dtypes;     // bit (1 << opforge::DType) for each allowed dtype
  int32_t dtype_like;  // index of an earlier input whose dtype this one must equal, or -1
  bool optional;
  int32_t rank;  // exact rank, or -1
  int32_t min_rank;
};

struct OutputSpec {
  const char* name;
  int32_t dtype;       // a fixed opforge::DType, or -1
  int32_t dtype_like;  // index of the input whose dtype it takes, or -1
  bool is_size;        // a data-dependent size (0-d); TensorRT wants kINT32 for these
};

// The parsed field values of one plugin instance. Indexed by field position in the OpSpec.
struct Attrs {
  std::vector<std::vector<int64_t>> ints;  // int, bool, list[int]
  std::vector<std::vector<double>> floats;  // float, list[float]
  std::vector<std::string> strs;            // str

  int64_t i(int k) const { return ints[k].empty() ? 0 : ints[k][0]; }
  bool b(int k) const { return i(k) != 0; }
  double f(int k) const { return floats[k].empty() ? 0.0 : floats[k][0]; }
  ::opforge::StringView s(int k) const { return {strs[k].data(), strs[k].size()}; }
  ::opforge::Span<int64_t> is(int k) const { return {ints[k].data(), static_cast<int64_t>(ints[k].size())}; }
  ::opforge::Span<double> fs(int k) const { return {floats[k].data(), static_cast<int64_t>(floats[k].size())}; }
};

// An int64 that may be unknown (a -1 "runtime" dim seen in configurePlugin). Arithmetic on an unknown
// value is unknown; checks only compare values that are known.
struct KnownInt {
  int64_t v = 0;
  bool known = false;
  static KnownInt of(int64_t x) { return {x, true}; }
  static KnownInt unknown() { return {0, false}; }
};
KnownInt k_binary(const char* op, KnownInt a, KnownInt b);
KnownInt k_dim(const nvinfer1::Dims* in, int32_t nb_in, int32_t input, int32_t index);

// Generated per op (see ops/trt/codegen.py).
struct OpSpec {
  const char* op_id;  // "ns::name", for messages
  const char* name;
  const char* version;
  const char* plugin_namespace;
  const FieldSpec* fields;
  int32_t nb_fields;
  const InputSpec* inputs;
  int32_t nb_inputs;
  int32_t nb_required_inputs;
  const OutputSpec* outputs;
  int32_t nb_outputs;
  // Output dims as IDimensionExpr (size outputs declared with declareSizeTensor). 0 on success; on
  // failure a static message in *why.
  int32_t (*output_shapes)(const Attrs& a, const nvinfer1::DimsExprs* in, int32_t nb_in, nvinfer1::DimsExprs* out,
                           nvinfer1::IExprBuilder& eb, const char** why);
  // Output `k`'s dims over concrete (possibly unknown) input dims; returns its rank (-1: like() of a
  // missing input). `sizes` (indexed by output number, or null = unknown) gives the data-dependent sizes.
  // Used to check what onShapeChange is given, and at enqueue to size data-dependent outputs at their bound.
  int32_t (*output_dims)(const Attrs& a, const nvinfer1::Dims* in, int32_t nb_in, int32_t k, KnownInt* dims,
                         const KnownInt* sizes);
  // The declared upper bound of size output `k` (unknown for other outputs).
  KnownInt (*size_upper)(const Attrs& a, const nvinfer1::Dims* in, int32_t nb_in, int32_t k);
  // Declared input shapes (Input(shape=...)): fills *why and returns false on a known mismatch.
  bool (*check_input_shapes)(const Attrs& a, const nvinfer1::Dims* in, int32_t nb_in, std::string* why);
  KnownInt (*workspace_bytes)(const Attrs& a, const nvinfer1::Dims* in, int32_t nb_in);
  ::opforge::Status (*launch)(const Attrs& a, const ::opforge::TensorView* in, const bool* present,
                              const ::opforge::TensorView* out, const ::opforge::DeviceContext& ctx);
};

// Logging goes to the logger TensorRT hands over through setLoggerFinder, else to stderr.
void set_logger_finder(nvinfer1::ILoggerFinder* finder);
void log(nvinfer1::ILogger::Severity severity, const std::string& message);

bool dtype_from_trt(nvinfer1::DataType t, ::opforge::DType* out);
bool dtype_to_trt(int32_t opforge_dtype, nvinfer1::DataType* out);

class Plugin final : public nvinfer1::IPluginV3,
                     public nvinfer1::IPluginV3OneCore,
                     public nvinfer1::IPluginV3OneBuild,
                     public nvinfer1::IPluginV3OneRuntime {
 public:
  Plugin(const OpSpec& spec, std::string layer_name, Attrs attrs);
  Plugin(const Plugin& other);  // a full, independent copy (what clone/attachToContext return)
  Plugin& operator=(const Plugin&) = delete;
  ~Plugin() override = default;

  const Attrs& attrs() const { return attrs_; }

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;
  // IPluginV3OneCore
  const char* getPluginName() const noexcept override;
  const char* getPluginVersion() const noexcept override;
  const char* getPluginNamespace() const noexcept override;
  // IPluginV3OneBuild
  int32_t configurePlugin(const nvinfer1::DynamicPluginTensorDesc* in, int32_t nb_in,
                          const nvinfer1::DynamicPluginTensorDesc* out, int32_t nb_out) noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* out_types, int32_t nb_out, const nvinfer1::DataType* in_types,
                             int32_t nb_in) const noexcept override;
  int32_t getOutputShapes(const nvinfer1::DimsExprs* in, int32_t nb_in, const nvinfer1::DimsExprs* shape_in,
                          int32_t nb_shape_in, nvinfer1::DimsExprs* out, int32_t nb_out,
                          nvinfer1::IExprBuilder& eb) noexcept override;
  bool supportsFormatCombination(int32_t pos, const nvinfer1::DynamicPluginTensorDesc* in_out, int32_t nb_in,
                                 int32_t nb_out) noexcept override;
  int32_t getNbOutputs() const noexcept override;
  size_t getWorkspaceSize(const nvinfer1::DynamicPluginTensorDesc* in, int32_t nb_in,
                          const nvinfer1::DynamicPluginTensorDesc* out, int32_t nb_out) const noexcept override;
  const char* getTimingCacheID() noexcept override;
  const char* getMetadataString() noexcept override;
  // IPluginV3OneRuntime
  int32_t onShapeChange(const nvinfer1::PluginTensorDesc* in, int32_t nb_in, const nvinfer1::PluginTensorDesc* out,
                        int32_t nb_out) noexcept override;
  int32_t enqueue(const nvinfer1::PluginTensorDesc* in_desc, const nvinfer1::PluginTensorDesc* out_desc,
                  const void* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
  const nvinfer1::PluginFieldCollection* getFieldsToSerialize() noexcept override;

 private:
  bool fail(const std::string& what) const;  // logs "<op> (<layer>): what"; returns false
  bool check_counts(int32_t nb_in, int32_t nb_out) const;
  bool check_tensors(const nvinfer1::Dims* dims, const nvinfer1::DataType* types, const nvinfer1::TensorFormat* formats,
                     int32_t nb_in) const;
  int64_t workspace_for(const nvinfer1::Dims* dims, int32_t nb_in) const;  // -1 when unknown or invalid
  bool bound_data_dependent_dims(const nvinfer1::Dims* in, int32_t nb_in, int32_t j, ::opforge::TensorView* v) const;

  const OpSpec* spec_;
  std::string layer_name_;
  Attrs attrs_;
  int32_t nb_inputs_seen_ = -1;  // set by configurePlugin/onShapeChange; enqueue has no count of its own
  // Backing storage for getFieldsToSerialize, rebuilt on every call (never shared with a clone).
  std::vector<nvinfer1::PluginField> serial_fields_;
  std::vector<int32_t> serial_bools_;
  nvinfer1::PluginFieldCollection serial_fc_{};
  std::string timing_id_;
};

class Creator final : public nvinfer1::IPluginCreatorV3One {
 public:
  explicit Creator(const OpSpec& spec);
  const OpSpec& spec() const { return *spec_; }

  nvinfer1::IPluginV3* createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;
  const nvinfer1::PluginFieldCollection* getFieldNames() noexcept override;
  const char* getPluginName() const noexcept override { return spec_->name; }
  const char* getPluginVersion() const noexcept override { return spec_->version; }
  const char* getPluginNamespace() const noexcept override { return spec_->plugin_namespace; }

  // Parses and validates fields into attrs; on failure returns false with the reason in *why.
  bool parse(const nvinfer1::PluginFieldCollection* fc, Attrs* attrs, std::string* why) const;

 private:
  const OpSpec* spec_;
  std::vector<nvinfer1::PluginField> field_names_;
  nvinfer1::PluginFieldCollection fc_{};
};

// The generated list of every op's spec (build/opforge_trt/gen/opforge_trt_ops.cpp).
const OpSpec* const* all_specs(int32_t* count);

}  // namespace trt
}  // namespace opforge
