// The generic IPluginV3 adapter (see opforge_trt_plugin.h). Every method is noexcept toward TensorRT:
// failures are logged through TensorRT's logger and reported as a non-zero return / nullptr / false.
#include "opforge_trt_plugin.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>

namespace opforge {
namespace trt {

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;
using Severity = nvinfer1::ILogger::Severity;

// ---- logging ------------------------------------------------------------------------------------

namespace {
nvinfer1::ILoggerFinder* g_logger_finder = nullptr;
}

void set_logger_finder(nvinfer1::ILoggerFinder* finder) { g_logger_finder = finder; }

void log(Severity severity, const std::string& message) {
  nvinfer1::ILogger* logger = g_logger_finder ? g_logger_finder->findLogger() : nullptr;
  const std::string text = "[opforge] " + message;
  if (logger != nullptr) {
    logger->log(severity, text.c_str());
  } else if (severity <= Severity::kWARNING) {
    std::fprintf(stderr, "%s\n", text.c_str());
  }
}

// ---- dtype mapping -------------------------------------------------------------------------------

bool dtype_from_trt(DataType t, ::opforge::DType* out) {
  switch (t) {
    case DataType::kFLOAT: *out = ::opforge::DType::kFloat32; return true;
    case DataType::kHALF: *out = ::opforge::DType::kFloat16; return true;
    case DataType::kBF16: *out = ::opforge::DType::kBFloat16; return true;
    case DataType::kINT8: *out = ::opforge::DType::kInt8; return true;
    case DataType::kUINT8: *out = ::opforge::DType::kUInt8; return true;
    case DataType::kINT32: *out = ::opforge::DType::kInt32; return true;
    case DataType::kINT64: *out = ::opforge::DType::kInt64; return true;
    case DataType::kBOOL: *out = ::opforge::DType::kBool; return true;
    default: return false;  // fp8/int4/fp4/e8m0 have no opforge dtype
  }
}

bool dtype_to_trt(int32_t d, DataType* out) {
  switch (static_cast<::opforge::DType>(d)) {
    case ::opforge::DType::kFloat32: *out = DataType::kFLOAT; return true;
    case ::opforge::DType::kFloat16: *out = DataType::kHALF; return true;
    case ::opforge::DType::kBFloat16: *out = DataType::kBF16; return true;
    case ::opforge::DType::kInt8: *out = DataType::kINT8; return true;
    case ::opforge::DType::kUInt8: *out = DataType::kUINT8; return true;
    case ::opforge::DType::kInt32: *out = DataType::kINT32; return true;
    case ::opforge::DType::kInt64: *out = DataType::kINT64; return true;
    case ::opforge::DType::kBool: *out = DataType::kBOOL; return true;
    case ::opforge::DType::kFloat64: return false;  // TensorRT has no float64 tensors
  }
  return false;
}

namespace {
bool allowed(const InputSpec& s, DataType t) {
  ::opforge::DType d;
  return dtype_from_trt(t, &d) && (s.dtypes & (1u << static_cast<uint32_t>(d))) != 0;
}

// The declared dtypes of an input (its InputSpec::dtypes bits) as a list; returns how many.
size_t allowed_dtypes(const InputSpec& s, ::opforge::DType* out) {
  size_t n = 0;
  for (uint32_t d = 0; d < 32; ++d)
    if ((s.dtypes & (1u << d)) != 0) out[n++] = static_cast<::opforge::DType>(d);
  return n;
}

// dims as int64 (-1: unknown at build time), for opforge/host.h's checks.
void dims_of(const Dims& d, int64_t* out) {
  for (int32_t i = 0; i < d.nbDims && i < Dims::MAX_DIMS; ++i) out[i] = d.d[i];
}
}  // namespace

// ---- known-int arithmetic (concrete shape checks) -----------------------------------------------

KnownInt k_binary(const char* op, KnownInt a, KnownInt b) {
  if (!a.known || !b.known) return KnownInt::unknown();
  const std::string o(op);
  if (o == "add") return KnownInt::of(a.v + b.v);
  if (o == "sub") return KnownInt::of(a.v - b.v);
  if (o == "mul") return KnownInt::of(a.v * b.v);
  if (o == "max") return KnownInt::of(host::max(a.v, b.v));
  if (o == "min") return KnownInt::of(host::min(a.v, b.v));
  if (b.v == 0) return KnownInt::unknown();  // division by zero: nothing to compare against
  if (o == "floordiv") return KnownInt::of(host::floordiv(a.v, b.v));
  if (o == "ceil_div") return KnownInt::of(host::ceil_div(a.v, b.v));
  return KnownInt::unknown();
}

KnownInt k_dim(const Dims* in, int32_t nb_in, int32_t input, int32_t index) {
  if (input >= nb_in) return KnownInt::unknown();
  const Dims& d = in[input];
  const int32_t i = index < 0 ? index + d.nbDims : index;
  if (d.nbDims < 0 || i < 0 || i >= d.nbDims || d.d[i] < 0) return KnownInt::unknown();
  return KnownInt::of(d.d[i]);
}

// ---- Plugin --------------------------------------------------------------------------------------

Plugin::Plugin(const OpSpec& spec, std::string layer_name, Attrs attrs)
    : spec_(&spec), layer_name_(std::move(layer_name)), attrs_(std::move(attrs)) {}

Plugin::Plugin(const Plugin& other)
    : nvinfer1::IPluginV3(),
      nvinfer1::IPluginV3OneCore(),
      nvinfer1::IPluginV3OneBuild(),
      nvinfer1::IPluginV3OneRuntime(),
      spec_(other.spec_),
      layer_name_(other.layer_name_),
      attrs_(other.attrs_),
      nb_inputs_seen_(other.nb_inputs_seen_) {}

bool Plugin::fail(const std::string& what) const {
  log(Severity::kERROR, std::string(spec_->op_id) + " (layer '" + layer_name_ + "'): " + what);
  return false;
}

nvinfer1::IPluginCapability* Plugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
  switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
  }
  return nullptr;
}

nvinfer1::IPluginV3* Plugin::clone() noexcept {
  try {
    return new Plugin(*this);
  } catch (...) {
    fail("out of memory while cloning");
    return nullptr;
  }
}

const char* Plugin::getPluginName() const noexcept { return spec_->name; }
const char* Plugin::getPluginVersion() const noexcept { return spec_->version; }
const char* Plugin::getPluginNamespace() const noexcept { return spec_->plugin_namespace; }
int32_t Plugin::getNbOutputs() const noexcept { return spec_->nb_outputs; }

bool Plugin::check_counts(int32_t nb_in, int32_t nb_out) const {
  if (nb_in < spec_->nb_required_inputs || nb_in > spec_->nb_inputs)
    return fail("expected " + std::to_string(spec_->nb_required_inputs) +
                (spec_->nb_required_inputs == spec_->nb_inputs ? "" : "-" + std::to_string(spec_->nb_inputs)) +
                " inputs, got " + std::to_string(nb_in));
  if (nb_out != spec_->nb_outputs)
    return fail("expected " + std::to_string(spec_->nb_outputs) + " outputs, got " + std::to_string(nb_out));
  return true;
}

// Ranks, dtypes, formats and declared input shapes. `dims` entries may hold -1 (unknown) dims.
bool Plugin::check_tensors(const Dims* dims, const DataType* types, const nvinfer1::TensorFormat* formats,
                           int32_t nb_in) const {
  for (int32_t k = 0; k < nb_in; ++k) {
    const InputSpec& s = spec_->inputs[k];
    const std::string who = std::string("input '") + s.name + "'";
    const int32_t rank = dims[k].nbDims;
    if (rank < 0 || rank > Dims::MAX_DIMS) return fail(who + " has invalid rank " + std::to_string(rank));
    int64_t d[Dims::MAX_DIMS] = {};
    dims_of(dims[k], d);
    if (host::Error e = host::check_rank(Host::kTensorRT, nullptr, s.name, d, rank, s.rank, s.min_rank))
      return fail(e.message);
    if (types != nullptr) {
      ::opforge::DType got = ::opforge::DType::kFloat32;
      const bool known = dtype_from_trt(types[k], &got);
      ::opforge::DType declared[32];
      const size_t n = allowed_dtypes(s, declared);
      const std::string got_text = "nvinfer1::DataType " + std::to_string(static_cast<int>(types[k]));
      if (host::Error e =
              host::check_dtype(Host::kTensorRT, nullptr, s.name, declared, n, got, known, got_text.c_str()))
        return fail(e.message);
      ::opforge::DType like = got;
      if (s.dtype_like >= 0 && dtype_from_trt(types[s.dtype_like], &like)) {
        if (host::Error e =
                host::check_same_dtype(Host::kTensorRT, nullptr, s.name, got, spec_->inputs[s.dtype_like].name, like))
          return fail(e.message);
      }
    }
    if (formats != nullptr && formats[k] != nvinfer1::TensorFormat::kLINEAR)
      return fail(who + " must be in TensorFormat::kLINEAR");
  }
  std::string why;
  if (!spec_->check_input_shapes(attrs_, dims, nb_in, &why)) return fail(why);
  return true;
}

int32_t Plugin::configurePlugin(const nvinfer1::DynamicPluginTensorDesc* in, int32_t nb_in,
                                const nvinfer1::DynamicPluginTensorDesc* out, int32_t nb_out) noexcept {
  try {
    if (!check_counts(nb_in, nb_out)) return 1;
    if ((nb_in > 0 && in == nullptr) || (nb_out > 0 && out == nullptr)) return fail("null tensor descriptors"), 1;
    std::vector<Dims> dims(nb_in), mins(nb_in), maxs(nb_in);
    std::vector<DataType> types(nb_in);
    std::vector<nvinfer1::TensorFormat> formats(nb_in);
    for (int32_t k = 0; k < nb_in; ++k) {
      dims[k] = in[k].desc.dims;
      mins[k] = in[k].min;
      maxs[k] = in[k].max;
      types[k] = in[k].desc.type;
      formats[k] = in[k].desc.format;
    }
    // desc.dims may hold -1 wildcards; min and max are concrete profile bounds, checked as shapes too.
    if (!check_tensors(dims.data(), types.data(), formats.data(), nb_in)) return 1;
    if (!check_tensors(mins.data(), nullptr, nullptr, nb_in) || !check_tensors(maxs.data(), nullptr, nullptr, nb_in))
      return 1;
    for (int32_t j = 0; j < nb_out; ++j) {
      if (out[j].desc.format != nvinfer1::TensorFormat::kLINEAR)
        return fail(std::string("output '") + spec_->outputs[j].name + "' must be in TensorFormat::kLINEAR"), 1;
    }
    nb_inputs_seen_ = nb_in;
    return 0;
  } catch (...) {
    fail("internal error in configurePlugin");
    return 1;
  }
}

int32_t Plugin::getOutputDataTypes(DataType* out_types, int32_t nb_out, const DataType* in_types,
                                   int32_t nb_in) const noexcept {
  if (!check_counts(nb_in, nb_out) || out_types == nullptr || (nb_in > 0 && in_types == nullptr)) return 1;
  for (int32_t k = 0; k < nb_in; ++k) {
    if (!allowed(spec_->inputs[k], in_types[k]))
      return fail(std::string("input '") + spec_->inputs[k].name + "' has a dtype the declaration does not allow"), 1;
  }
  for (int32_t j = 0; j < nb_out; ++j) {
    const OutputSpec& o = spec_->outputs[j];
    if (o.is_size) {
      out_types[j] = DataType::kINT32;  // TensorRT requires kINT32 for size tensors
    } else if (o.dtype_like >= 0) {
      if (o.dtype_like >= nb_in)
        return fail(std::string("output '") + o.name + "' takes the dtype of a missing input"), 1;
      out_types[j] = in_types[o.dtype_like];
    } else if (!dtype_to_trt(o.dtype, &out_types[j])) {
      return fail(std::string("output '") + o.name + "' has a dtype TensorRT cannot represent"), 1;
    }
  }
  return 0;
}

int32_t Plugin::getOutputShapes(const nvinfer1::DimsExprs* in, int32_t nb_in, const nvinfer1::DimsExprs*, int32_t,
                                nvinfer1::DimsExprs* out, int32_t nb_out, nvinfer1::IExprBuilder& eb) noexcept {
  try {
    if (!check_counts(nb_in, nb_out) || (nb_in > 0 && in == nullptr) || out == nullptr) return 1;
    for (int32_t k = 0; k < nb_in; ++k) {
      const InputSpec& s = spec_->inputs[k];
      const int32_t rank = in[k].nbDims;
      if (rank < 0 || rank > Dims::MAX_DIMS)
        return fail(std::string("input '") + s.name + "' has invalid rank " + std::to_string(rank)), 1;
      int64_t unknown[Dims::MAX_DIMS];
      for (int64_t& d : unknown) d = -1;  // expressions: no values to show
      if (host::Error e = host::check_rank(Host::kTensorRT, nullptr, s.name, unknown, rank, s.rank, s.min_rank))
        return fail(e.message), 1;
    }
    const char* why = nullptr;
    if (spec_->output_shapes(attrs_, in, nb_in, out, eb, &why) != 0) {
      fail(std::string("getOutputShapes: ") + (why ? why : "the expression builder returned null"));
      return 1;
    }
    return 0;
  } catch (...) {
    fail("internal error in getOutputShapes");
    return 1;
  }
}

bool Plugin::supportsFormatCombination(int32_t pos, const nvinfer1::DynamicPluginTensorDesc* io, int32_t nb_in,
                                       int32_t nb_out) noexcept {
  if (io == nullptr || pos < 0 || pos >= nb_in + nb_out || nb_in > spec_->nb_inputs || nb_out != spec_->nb_outputs)
    return false;
  const nvinfer1::PluginTensorDesc& d = io[pos].desc;
  if (d.format != nvinfer1::TensorFormat::kLINEAR) return false;
  if (pos < nb_in) {
    const InputSpec& s = spec_->inputs[pos];
    // dtype_like always names an earlier input, so only io[0..pos] is read, as TensorRT requires.
    return allowed(s, d.type) && (s.dtype_like < 0 || d.type == io[s.dtype_like].desc.type);
  }
  const OutputSpec& o = spec_->outputs[pos - nb_in];
  if (o.is_size) return d.type == DataType::kINT32;
  if (o.dtype_like >= 0) return o.dtype_like < nb_in && d.type == io[o.dtype_like].desc.type;
  DataType fixed;
  return dtype_to_trt(o.dtype, &fixed) && d.type == fixed;
}

int64_t Plugin::workspace_for(const Dims* dims, int32_t nb_in) const {
  const KnownInt bytes = spec_->workspace_bytes(attrs_, dims, nb_in);
  if (!bytes.known || bytes.v < 0) return -1;
  int64_t total = bytes.v;
  for (int32_t j = 0; j < spec_->nb_outputs; ++j) {
    if (spec_->outputs[j].is_size) total = ((total + 7) / 8) * 8 + 8;  // int64 scratch per size output
  }
  return total;
}

size_t Plugin::getWorkspaceSize(const nvinfer1::DynamicPluginTensorDesc* in, int32_t nb_in,
                                const nvinfer1::DynamicPluginTensorDesc*, int32_t) const noexcept {
  try {
    if (nb_in < 0 || nb_in > spec_->nb_inputs || (nb_in > 0 && in == nullptr)) return 0;
    // The declared workspace at the profile's max dims: enough for every smaller problem.
    std::vector<Dims> maxs(nb_in);
    for (int32_t k = 0; k < nb_in; ++k) maxs[k] = in[k].max;
    const int64_t bytes = workspace_for(maxs.data(), nb_in);
    if (bytes < 0) {
      fail("the declared workspace could not be evaluated at the profile's max dims");
      return 0;
    }
    return static_cast<size_t>(bytes);
  } catch (...) { return 0; }
}

const char* Plugin::getTimingCacheID() noexcept {
  // Timing depends on the attributes too (e.g. approximate='tanh'), not only on shapes and formats.
  try {
    timing_id_ = std::string(spec_->op_id) + "/" + spec_->version;
    const auto* fc = getFieldsToSerialize();
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
      const PluginField& f = fc->fields[i];
      const size_t width = f.type == PluginFieldType::kCHAR ? 1 : f.type == PluginFieldType::kINT32 ? 4 : 8;
      timing_id_ += std::string("/") + f.name + "=";
      const auto* bytes = static_cast<const unsigned char*>(f.data);
      static const char* hex = "0123456789abcdef";
      for (size_t b = 0; bytes != nullptr && b < width * static_cast<size_t>(f.length); ++b) {
        timing_id_ += hex[bytes[b] >> 4];
        timing_id_ += hex[bytes[b] & 15];
      }
    }
    return timing_id_.c_str();
  } catch (...) {
    return nullptr;  // disables timing caching for this plugin; never wrong
  }
}

const char* Plugin::getMetadataString() noexcept { return spec_->op_id; }

int32_t Plugin::onShapeChange(const nvinfer1::PluginTensorDesc* in, int32_t nb_in,
                              const nvinfer1::PluginTensorDesc* out, int32_t nb_out) noexcept {
  try {
    if (!check_counts(nb_in, nb_out)) return 1;
    if ((nb_in > 0 && in == nullptr) || out == nullptr) return fail("null tensor descriptors"), 1;
    std::vector<Dims> dims(nb_in);
    std::vector<DataType> types(nb_in);
    std::vector<nvinfer1::TensorFormat> formats(nb_in);
    for (int32_t k = 0; k < nb_in; ++k) {
      dims[k] = in[k].dims;
      types[k] = in[k].type;
      formats[k] = in[k].format;
      for (int32_t i = 0; i < dims[k].nbDims && i < Dims::MAX_DIMS; ++i) {
        if (dims[k].d[i] < 0)
          return fail(std::string("input '") + spec_->inputs[k].name + "' has a negative dim at runtime"), 1;
      }
    }
    if (!check_tensors(dims.data(), types.data(), formats.data(), nb_in)) return 1;
    // The outputs TensorRT allocated must have the shapes the rule gives (size-dependent dims excepted).
    for (int32_t j = 0; j < nb_out; ++j) {
      KnownInt expect[Dims::MAX_DIMS];
      const int32_t rank = spec_->output_dims(attrs_, dims.data(), nb_in, j, expect, nullptr);
      const Dims& got = out[j].dims;
      const std::string who = std::string("output '") + spec_->outputs[j].name + "'";
      if (rank >= 0 && got.nbDims != rank)
        return fail(who + " has rank " + std::to_string(got.nbDims) + ", the shape rule gives " + std::to_string(rank)),
               1;
      for (int32_t i = 0; rank >= 0 && i < rank; ++i) {
        if (expect[i].known && got.d[i] != expect[i].v)
          return fail(who + " dim " + std::to_string(i) + " is " + std::to_string(got.d[i]) +
                      ", the shape rule gives " + std::to_string(expect[i].v)),
                 1;
      }
    }
    nb_inputs_seen_ = nb_in;
    return 0;
  } catch (...) {
    fail("internal error in onShapeChange");
    return 1;
  }
}

namespace {
bool make_view(const nvinfer1::PluginTensorDesc& d, void* data, ::opforge::TensorView* v) {
  if (d.dims.nbDims < 0 || d.dims.nbDims > ::opforge::kMaxRank || !dtype_from_trt(d.type, &v->dtype)) return false;
  v->data = data;
  v->rank = d.dims.nbDims;
  int64_t stride = 1;  // kLINEAR is row-major contiguous
  for (int32_t i = v->rank - 1; i >= 0; --i) {
    v->sizes[i] = d.dims.d[i];
    v->strides[i] = stride;
    stride *= std::max<int64_t>(d.dims.d[i], 1);
  }
  return true;
}
}  // namespace

// A data-dependent output whose descriptor leaves a dim unknown (-1) is written at the dims its size
// outputs' declared upper bounds give: TensorRT allocates a data-dependent plugin output from the bound
// declared with declareSizeTensor, and the kernel's view must never be smaller than what it may write.
bool Plugin::bound_data_dependent_dims(const Dims* in, int32_t nb_in, int32_t j, ::opforge::TensorView* v) const {
  bool unknown = false;
  for (int32_t i = 0; i < v->rank; ++i) unknown = unknown || v->sizes[i] < 0;
  if (!unknown) return true;
  KnownInt upper[64];
  for (int32_t k = 0; k < spec_->nb_outputs && k < 64; ++k) upper[k] = spec_->size_upper(attrs_, in, nb_in, k);
  KnownInt bound[Dims::MAX_DIMS];
  if (spec_->output_dims(attrs_, in, nb_in, j, bound, upper) != v->rank) return false;
  int64_t stride = 1;
  for (int32_t i = v->rank - 1; i >= 0; --i) {
    if (v->sizes[i] < 0) {
      if (!bound[i].known || bound[i].v < 0) return false;
      v->sizes[i] = bound[i].v;
    }
    v->strides[i] = stride;
    stride *= std::max<int64_t>(v->sizes[i], 1);
  }
  return true;
}

int32_t Plugin::enqueue(const nvinfer1::PluginTensorDesc* in_desc, const nvinfer1::PluginTensorDesc* out_desc,
                        const void* const* inputs, void* const* outputs, void* workspace,
                        cudaStream_t stream) noexcept {
  try {
    const int32_t nb_in = nb_inputs_seen_;
    if (nb_in < 0) return fail("enqueue called before configurePlugin/onShapeChange"), 1;
    if ((nb_in > 0 && (in_desc == nullptr || inputs == nullptr)) || out_desc == nullptr || outputs == nullptr)
      return fail("enqueue got null descriptors or pointers"), 1;
    ::opforge::TensorView in[64];
    bool present[64] = {};
    ::opforge::TensorView out[64];
    if (spec_->nb_inputs > 64 || spec_->nb_outputs > 64) return fail("more than 64 inputs or outputs"), 1;
    std::vector<Dims> dims(nb_in);
    for (int32_t k = 0; k < nb_in; ++k) {
      if (!make_view(in_desc[k], const_cast<void*>(inputs[k]), &in[k]))
        return fail(std::string("input '") + spec_->inputs[k].name + "' has an unsupported descriptor"), 1;
      present[k] = true;
      dims[k] = in_desc[k].dims;
    }
    const int64_t ws_total = workspace_for(dims.data(), nb_in);
    if (ws_total < 0) return fail("the declared workspace could not be evaluated"), 1;
    const int64_t kernel_ws = spec_->workspace_bytes(attrs_, dims.data(), nb_in).v;
    if (ws_total > 0 && workspace == nullptr) return fail("TensorRT passed no workspace"), 1;
    // Size outputs: the kernel writes an int64 into workspace scratch; TensorRT's tensor is int32.
    std::vector<std::pair<int32_t, char*>> size_scratch;
    int64_t offset = kernel_ws;
    for (int32_t j = 0; j < spec_->nb_outputs; ++j) {
      if (spec_->outputs[j].is_size) {
        offset = ((offset + 7) / 8) * 8;
        char* p = static_cast<char*>(workspace) + offset;
        offset += 8;
        size_scratch.emplace_back(j, p);
        out[j] = ::opforge::TensorView{};
        out[j].data = p;
        out[j].dtype = ::opforge::DType::kInt64;
        out[j].rank = 0;
      } else if (!make_view(out_desc[j], outputs[j], &out[j])) {
        return fail(std::string("output '") + spec_->outputs[j].name + "' has an unsupported descriptor"), 1;
      } else if (!bound_data_dependent_dims(dims.data(), nb_in, j, &out[j])) {
        return fail(std::string("output '") + spec_->outputs[j].name +
                    "' has a dim that is neither given nor "
                    "bounded by the declaration"),
               1;
      }
    }
    ::opforge::DeviceContext ctx;
    ctx.stream = stream;
    ctx.workspace = kernel_ws > 0 ? workspace : nullptr;
    ctx.workspace_bytes = static_cast<size_t>(kernel_ws);
    const ::opforge::Status st = spec_->launch(attrs_, in, present, out, ctx);
    if (host::Error e = host::check_kernel(Host::kTensorRT, nullptr, "CUDA", st)) return fail(e.message), 1;
#ifdef OPFORGE_TRT_WITH_KERNELS
    for (auto& s : size_scratch) {  // little-endian: the low 4 bytes of the int64 are the int32 value
      if (cudaMemcpyAsync(outputs[s.first], s.second, 4, cudaMemcpyDeviceToDevice, stream) != cudaSuccess)
        return fail("copying a size output failed"), 1;
    }
#endif
    return 0;
  } catch (...) {
    fail("internal error in enqueue");
    return 1;
  }
}

nvinfer1::IPluginV3* Plugin::attachToContext(nvinfer1::IPluginResourceContext*) noexcept {
  return clone();  // no per-context resources: a full independent clone is all TensorRT needs
}

const nvinfer1::PluginFieldCollection* Plugin::getFieldsToSerialize() noexcept {
  try {
    // Lossless: ints as kINT64 and floats as kFLOAT64, so a kRUNTIME re-creation sees the exact attrs
    // (the ONNX parser's kINT32/kFLOAT32 are accepted by createPlugin too).
    serial_fields_.clear();
    serial_bools_.assign(spec_->nb_fields, 0);
    for (int32_t k = 0; k < spec_->nb_fields; ++k) {
      const FieldSpec& f = spec_->fields[k];
      switch (f.kind) {
        case FieldKind::kInt:
        case FieldKind::kInts:
          serial_fields_.emplace_back(f.name, attrs_.ints[k].data(), PluginFieldType::kINT64,
                                      static_cast<int32_t>(attrs_.ints[k].size()));
          break;
        case FieldKind::kBool:
          serial_bools_[k] = attrs_.b(k) ? 1 : 0;
          serial_fields_.emplace_back(f.name, &serial_bools_[k], PluginFieldType::kINT32, 1);
          break;
        case FieldKind::kFloat:
        case FieldKind::kFloats:
          serial_fields_.emplace_back(f.name, attrs_.floats[k].data(), PluginFieldType::kFLOAT64,
                                      static_cast<int32_t>(attrs_.floats[k].size()));
          break;
        case FieldKind::kStr:
          serial_fields_.emplace_back(f.name, attrs_.strs[k].c_str(), PluginFieldType::kCHAR,
                                      static_cast<int32_t>(attrs_.strs[k].size()));
          break;
      }
    }
    serial_fc_.nbFields = static_cast<int32_t>(serial_fields_.size());
    serial_fc_.fields = serial_fields_.data();
    return &serial_fc_;
  } catch (...) {
    fail("out of memory in getFieldsToSerialize");
    return nullptr;
  }
}

}  // namespace trt
}  // namespace opforge
