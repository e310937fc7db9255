// The plugin host harness: drives libopforge_trt_plugins.so through TensorRT's own plugin interfaces
// (IPluginCreatorV3One, IPluginV3, IPluginV3OneCore/Build/Runtime) WITHOUT the TensorRT library.
//
// What it proves: the plugin honours the interface as the headers define it (creation from fields,
// output shapes through an IExprBuilder, format combinations, configure, serialize -> recreate, clone
// independence, enqueue on a GPU). What it does NOT prove: that a TensorRT build accepts the plugin;
// only a real TensorRT (ops.build_engine / trtexec) shows that.
//
// It stands in for TensorRT where TensorRT provides objects to the plugin: an ILogger/ILoggerFinder that
// records messages, an IExprBuilder/IDimensionExpr (implemented through the apiv::V* classes of
// NvInferImpl.h, the way libnvinfer does) that folds constants and tracks symbolic dims as text, and an
// IPluginResourceContext. Driven from Python through the C functions below (ops/trt/harness/host.py).
#include <dlfcn.h>

#include <NvInferRuntime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#define HX_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using namespace nvinfer1;

// ---- logger -----------------------------------------------------------------------------------------

class HarnessLogger final : public ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    std::lock_guard<std::mutex> lock(mu);
    text += "[" + std::to_string(static_cast<int>(severity)) + "] " + (msg ? msg : "(null)") + "\n";
  }
  std::mutex mu;
  std::string text;
};

class HarnessLoggerFinder final : public ILoggerFinder {
 public:
  explicit HarnessLoggerFinder(ILogger* l) : logger(l) {}
  ILogger* findLogger() override { return logger; }
  ~HarnessLoggerFinder() override = default;
  ILogger* logger;
};

// ---- expression builder ---------------------------------------------------------------------------

// One node; TensorRT's IDimensionExpr is a thin public face over an apiv::VDimensionExpr, so the node is
// both and points mImpl at itself.
class Expr final : public IDimensionExpr, public apiv::VDimensionExpr {
 public:
  Expr(bool constant, int64_t value, std::string text, bool size_tensor)
      : constant_(constant), value_(value), text_(std::move(text)), size_(size_tensor) {
    mImpl = this;
  }
  ~Expr() noexcept override = default;
  bool isConstant() const override { return constant_; }
  int64_t getConstantValue() const override { return constant_ ? value_ : std::numeric_limits<int64_t>::min(); }
  bool isSizeTensor() const override { return size_; }
  const std::string& text() const { return text_; }
  int64_t value() const { return value_; }

 private:
  bool constant_;
  int64_t value_;
  std::string text_;
  bool size_;
};

const char* op_symbol(DimensionOperation op) {
  switch (op) {
    case DimensionOperation::kSUM: return "+";
    case DimensionOperation::kPROD: return "*";
    case DimensionOperation::kSUB: return "-";
    case DimensionOperation::kFLOOR_DIV: return "//";
    case DimensionOperation::kMAX: return "max";
    case DimensionOperation::kMIN: return "min";
    case DimensionOperation::kCEIL_DIV: return "ceil_div";
    case DimensionOperation::kEQUAL: return "eq";
    case DimensionOperation::kLESS: return "lt";
  }
  return nullptr;
}

int64_t floordiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a % b < 0) != (b < 0))) ? q - 1 : q;
}

class ExprBuilder final : public IExprBuilder, public apiv::VExprBuilder {
 public:
  ExprBuilder() { mImpl = this; }
  ~ExprBuilder() noexcept override = default;

  const IDimensionExpr* constant(int64_t v) override { return make(true, v, std::to_string(v), false); }
  const IDimensionExpr* symbol(const std::string& name) { return make(false, 0, name, false); }

  const IDimensionExpr* operation(DimensionOperation op, const IDimensionExpr& a, const IDimensionExpr& b) override {
    const Expr* x = owned(&a);
    const Expr* y = owned(&b);
    const char* sym = op_symbol(op);
    if (x == nullptr || y == nullptr || sym == nullptr) {
      errors += "operation() got an expression this builder did not create, or an invalid op\n";
      return nullptr;
    }
    if (x->isConstant() && y->isConstant()) {  // TensorRT folds constants: so does the harness
      const int64_t p = x->value(), q = y->value();
      int64_t v = 0;
      switch (op) {
        case DimensionOperation::kSUM: v = p + q; break;
        case DimensionOperation::kPROD: v = p * q; break;
        case DimensionOperation::kSUB: v = p - q; break;
        case DimensionOperation::kMAX: v = p > q ? p : q; break;
        case DimensionOperation::kMIN: v = p < q ? p : q; break;
        case DimensionOperation::kEQUAL: v = p == q; break;
        case DimensionOperation::kLESS: v = p < q; break;
        case DimensionOperation::kFLOOR_DIV:
        case DimensionOperation::kCEIL_DIV:
          if (q == 0) {
            errors += "division by zero in a constant dimension expression\n";
            return nullptr;
          }
          v = op == DimensionOperation::kFLOOR_DIV ? floordiv(p, q) : -floordiv(-p, q);
          break;
      }
      return constant(v);
    }
    const std::string s(sym);
    const std::string text = (s == "max" || s == "min" || s == "ceil_div" || s == "eq" || s == "lt")
                                 ? s + "(" + x->text() + ", " + y->text() + ")"
                                 : "(" + x->text() + " " + s + " " + y->text() + ")";
    return make(false, 0, text, false);
  }

  const IDimensionExpr* declareSizeTensor(int32_t index, const IDimensionExpr& opt,
                                          const IDimensionExpr& upper) override {
    const Expr* o = owned(&opt);
    const Expr* u = owned(&upper);
    if (o == nullptr || u == nullptr || o->isSizeTensor()) {
      errors += "declareSizeTensor got an invalid opt/upper expression\n";
      return nullptr;
    }
    sizes += "size" + std::to_string(index) + "\t" + o->text() + "\t" + u->text() + "\n";
    return make(false, 0, "size" + std::to_string(index), true);
  }

  const Expr* owned(const IDimensionExpr* e) const {
    for (const auto& p : exprs_) {
      if (static_cast<const IDimensionExpr*>(p.get()) == e) return p.get();
    }
    return nullptr;
  }

  std::string errors;
  std::string sizes;

 private:
  const IDimensionExpr* make(bool c, int64_t v, std::string text, bool size) {
    exprs_.emplace_back(new Expr(c, v, std::move(text), size));
    return exprs_.back().get();
  }
  std::vector<std::unique_ptr<Expr>> exprs_;
};

class ResourceContext final : public IPluginResourceContext {
 public:
  IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
  IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
};

// ---- the host -----------------------------------------------------------------------------------

struct Host {
  void* handle = nullptr;
  std::vector<IPluginCreatorV3One*> creators;
  HarnessLogger logger;
  std::unique_ptr<HarnessLoggerFinder> finder;
};

struct Plugin {
  IPluginV3* plugin;
  IPluginV3OneCore* core;
  IPluginV3OneBuild* build;
  IPluginV3OneRuntime* runtime;
};

// A tensor as the Python side describes it (mirrored by ctypes in host.py).
struct HxTensor {
  int32_t rank;
  int64_t dims[8];  // -1: symbolic (output shapes) / unknown (configurePlugin)
  int64_t min[8];
  int64_t max[8];
  int32_t type;    // nvinfer1::DataType
  int32_t format;  // nvinfer1::TensorFormat
};

Dims to_dims(int32_t rank, const int64_t* d) {
  Dims out{};
  out.nbDims = rank;
  for (int32_t i = 0; i < rank && i < Dims::MAX_DIMS; ++i) out.d[i] = d[i];
  return out;
}

PluginTensorDesc to_desc(const HxTensor& t) {
  PluginTensorDesc d{};
  d.dims = to_dims(t.rank, t.dims);
  d.type = static_cast<DataType>(t.type);
  d.format = static_cast<TensorFormat>(t.format);
  d.scale = -1.0F;
  return d;
}

DynamicPluginTensorDesc to_dyn(const HxTensor& t) {
  DynamicPluginTensorDesc d{};
  d.desc = to_desc(t);
  d.min = to_dims(t.rank, t.min);
  d.max = to_dims(t.rank, t.max);
  d.opt = to_dims(t.rank, t.max);
  return d;
}

int copy_out(const std::string& s, char* buf, int32_t n) {
  if (buf != nullptr && n > 0) {
    const size_t k = s.size() < static_cast<size_t>(n - 1) ? s.size() : static_cast<size_t>(n - 1);
    std::memcpy(buf, s.data(), k);
    buf[k] = '\0';
  }
  return static_cast<int>(s.size());
}

Plugin* wrap(IPluginV3* p) {
  if (p == nullptr) return nullptr;
  auto* w = new Plugin{p, nullptr, nullptr, nullptr};
  w->core = static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
  w->build = static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
  w->runtime = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  return w;
}

}  // namespace

// ---- C ABI -----------------------------------------------------------------------------------------

HX_EXPORT void* hx_open(const char* path, char* err, int32_t n) {
  void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    copy_out(std::string("dlopen failed: ") + dlerror(), err, n);
    return nullptr;
  }
  using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
  using SetLoggerFinder = void (*)(ILoggerFinder*);
  auto get = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
  auto set_finder = reinterpret_cast<SetLoggerFinder>(dlsym(handle, "setLoggerFinder"));
  if (get == nullptr || set_finder == nullptr) {
    copy_out("the library does not export getCreators and setLoggerFinder", err, n);
    dlclose(handle);
    return nullptr;
  }
  auto* host = new Host();
  host->handle = handle;
  host->finder.reset(new HarnessLoggerFinder(&host->logger));
  set_finder(host->finder.get());  // what IPluginRegistry::loadLibrary does first
  int32_t count = -1;
  IPluginCreatorInterface* const* list = get(count);
  for (int32_t i = 0; list != nullptr && i < count; ++i) {
    InterfaceInfo info = list[i]->getInterfaceInfo();
    if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0 && info.major == 1) {
      host->creators.push_back(static_cast<IPluginCreatorV3One*>(list[i]));
    } else {
      host->logger.log(ILogger::Severity::kERROR, (std::string("unexpected creator interface ") + info.kind).c_str());
    }
  }
  return host;
}

HX_EXPORT int32_t hx_num_creators(void* h) { return static_cast<int32_t>(static_cast<Host*>(h)->creators.size()); }

// "name\nversion\nnamespace\ninterface major.minor\nfield\ttype\tlength\n..."
HX_EXPORT int32_t hx_creator_info(void* h, int32_t i, char* buf, int32_t n) {
  IPluginCreatorV3One* c = static_cast<Host*>(h)->creators.at(i);
  InterfaceInfo info = c->getInterfaceInfo();
  std::string s = std::string(c->getPluginName()) + "\n" + c->getPluginVersion() + "\n" + c->getPluginNamespace() +
                  "\n" + info.kind + " " + std::to_string(info.major) + "." + std::to_string(info.minor) + "\n";
  const PluginFieldCollection* fc = c->getFieldNames();
  for (int32_t k = 0; fc != nullptr && k < fc->nbFields; ++k) {
    s += std::string(fc->fields[k].name) + "\t" + std::to_string(static_cast<int>(fc->fields[k].type)) + "\t" +
         std::to_string(fc->fields[k].length) + "\n";
  }
  return copy_out(s, buf, n);
}

HX_EXPORT int32_t hx_log(void* h, char* buf, int32_t n, int32_t clear) {
  Host* host = static_cast<Host*>(h);
  std::lock_guard<std::mutex> lock(host->logger.mu);
  const int32_t size = copy_out(host->logger.text, buf, n);
  if (clear) host->logger.text.clear();
  return size;
}

HX_EXPORT void* hx_create(void* h, int32_t creator, const char* name, const PluginField* fields, int32_t nb,
                          int32_t phase) {
  IPluginCreatorV3One* c = static_cast<Host*>(h)->creators.at(creator);
  PluginFieldCollection fc{nb, fields};
  return wrap(c->createPlugin(name, &fc, static_cast<TensorRTPhase>(phase)));
}

// Creation with a null collection pointer (TensorRT never does this, but a plugin must not crash).
HX_EXPORT void* hx_create_null_fc(void* h, int32_t creator) {
  return wrap(static_cast<Host*>(h)->creators.at(creator)->createPlugin("null_fc", nullptr, TensorRTPhase::kBUILD));
}

HX_EXPORT void hx_destroy(void* p) {
  if (p == nullptr) return;
  Plugin* w = static_cast<Plugin*>(p);
  delete w->plugin;  // TensorRT deletes IPluginV3 objects with delete
  delete w;
}

// "name\nversion\nnamespace\nnb_outputs\ncapabilities(core build runtime as 0/1)\ninterface kinds"
HX_EXPORT int32_t hx_plugin_info(void* p, char* buf, int32_t n) {
  Plugin* w = static_cast<Plugin*>(p);
  std::string s;
  s += std::string(w->core ? w->core->getPluginName() : "?") + "\n";
  s += std::string(w->core ? w->core->getPluginVersion() : "?") + "\n";
  s += std::string(w->core ? w->core->getPluginNamespace() : "?") + "\n";
  s += std::to_string(w->build ? w->build->getNbOutputs() : -1) + "\n";
  s += std::to_string(w->core != nullptr) + std::to_string(w->build != nullptr) +
       std::to_string(w->runtime != nullptr) + "\n";
  if (w->core && w->build && w->runtime) {
    s += std::string(w->plugin->getInterfaceInfo().kind) + " " + w->core->getInterfaceInfo().kind + " " +
         w->build->getInterfaceInfo().kind + " " + w->runtime->getInterfaceInfo().kind + "\n";
  }
  return copy_out(s, buf, n);
}

// Output shapes through the harness IExprBuilder. Input dims of -1 become symbols "in<k>_<i>".
// Writes one line per output: "<rank>\t<dim>\t<dim>..." (constants folded to numbers, symbolic dims as
// expression text), then "sizes:" lines; returns the plugin's status (or 100 on a harness-detected fault).
HX_EXPORT int32_t hx_output_shapes(void* p, const HxTensor* in, int32_t nb_in, int32_t nb_out, char* buf, int32_t n) {
  Plugin* w = static_cast<Plugin*>(p);
  ExprBuilder eb;
  std::vector<DimsExprs> ins(nb_in);
  for (int32_t k = 0; k < nb_in; ++k) {
    ins[k].nbDims = in[k].rank;
    for (int32_t i = 0; i < in[k].rank && i < Dims::MAX_DIMS; ++i) {
      ins[k].d[i] = in[k].dims[i] >= 0 ? eb.constant(in[k].dims[i])
                                       : eb.symbol("in" + std::to_string(k) + "_" + std::to_string(i));
    }
  }
  std::vector<DimsExprs> outs(nb_out > 0 ? nb_out : 1);
  for (auto& o : outs) {
    o.nbDims = -1;
    for (auto& d : o.d) d = nullptr;
  }
  const int32_t st = w->build->getOutputShapes(ins.data(), nb_in, nullptr, 0, outs.data(), nb_out, eb);
  std::string s;
  int32_t fault = 0;
  for (int32_t j = 0; st == 0 && j < nb_out; ++j) {
    if (outs[j].nbDims < 0 || outs[j].nbDims > Dims::MAX_DIMS) {
      s += "bad rank\n";
      fault = 100;
      continue;
    }
    s += std::to_string(outs[j].nbDims);
    for (int32_t i = 0; i < outs[j].nbDims; ++i) {
      const Expr* e = eb.owned(outs[j].d[i]);
      if (e == nullptr) {  // null, or an object the builder never made: TensorRT would crash or reject it
        s += "\t<foreign>";
        fault = 100;
      } else {
        s += "\t" + (e->isConstant() ? std::to_string(e->value()) : e->text());
      }
    }
    s += "\n";
  }
  if (!eb.sizes.empty()) s += "sizes:\n" + eb.sizes;
  if (!eb.errors.empty()) s += "errors:\n" + eb.errors;
  copy_out(s, buf, n);
  return st != 0 ? st : fault;
}

HX_EXPORT int32_t hx_output_types(void* p, const int32_t* in_types, int32_t nb_in, int32_t* out_types, int32_t nb_out) {
  Plugin* w = static_cast<Plugin*>(p);
  std::vector<DataType> in(nb_in), out(nb_out > 0 ? nb_out : 1);
  for (int32_t k = 0; k < nb_in; ++k) in[k] = static_cast<DataType>(in_types[k]);
  const int32_t st = w->build->getOutputDataTypes(out.data(), nb_out, in.data(), nb_in);
  for (int32_t j = 0; j < nb_out; ++j) out_types[j] = static_cast<int32_t>(out[j]);
  return st;
}

HX_EXPORT int32_t hx_supports(void* p, int32_t pos, const HxTensor* io, int32_t nb_in, int32_t nb_out) {
  Plugin* w = static_cast<Plugin*>(p);
  std::vector<DynamicPluginTensorDesc> d(nb_in + nb_out);
  for (int32_t k = 0; k < nb_in + nb_out; ++k) d[k] = to_dyn(io[k]);
  return w->build->supportsFormatCombination(pos, d.data(), nb_in, nb_out) ? 1 : 0;
}

HX_EXPORT int32_t hx_configure(void* p, const HxTensor* in, int32_t nb_in, const HxTensor* out, int32_t nb_out) {
  Plugin* w = static_cast<Plugin*>(p);
  std::vector<DynamicPluginTensorDesc> i(nb_in), o(nb_out);
  for (int32_t k = 0; k < nb_in; ++k) i[k] = to_dyn(in[k]);
  for (int32_t k = 0; k < nb_out; ++k) o[k] = to_dyn(out[k]);
  return w->build->configurePlugin(i.data(), nb_in, o.data(), nb_out);
}

HX_EXPORT int64_t hx_workspace(void* p, const HxTensor* in, int32_t nb_in, const HxTensor* out, int32_t nb_out) {
  Plugin* w = static_cast<Plugin*>(p);
  std::vector<DynamicPluginTensorDesc> i(nb_in), o(nb_out);
  for (int32_t k = 0; k < nb_in; ++k) i[k] = to_dyn(in[k]);
  for (int32_t k = 0; k < nb_out; ++k) o[k] = to_dyn(out[k]);
  return static_cast<int64_t>(w->build->getWorkspaceSize(i.data(), nb_in, o.data(), nb_out));
}

HX_EXPORT int32_t hx_on_shape_change(void* p, const HxTensor* in, int32_t nb_in, const HxTensor* out, int32_t nb_out) {
  Plugin* w = static_cast<Plugin*>(p);
  std::vector<PluginTensorDesc> i(nb_in), o(nb_out);
  for (int32_t k = 0; k < nb_in; ++k) i[k] = to_desc(in[k]);
  for (int32_t k = 0; k < nb_out; ++k) o[k] = to_desc(out[k]);
  return w->runtime->onShapeChange(i.data(), nb_in, o.data(), nb_out);
}

HX_EXPORT int32_t hx_enqueue(void* p, const HxTensor* in, int32_t nb_in, const void* const* in_ptrs,
                             const HxTensor* out, int32_t nb_out, void* const* out_ptrs, void* workspace,
                             void* stream) {
  Plugin* w = static_cast<Plugin*>(p);
  std::vector<PluginTensorDesc> i(nb_in), o(nb_out);
  for (int32_t k = 0; k < nb_in; ++k) i[k] = to_desc(in[k]);
  for (int32_t k = 0; k < nb_out; ++k) o[k] = to_desc(out[k]);
  return w->runtime->enqueue(i.data(), o.data(), in_ptrs, out_ptrs, workspace, static_cast<cudaStream_t>(stream));
}

// getFieldsToSerialize, dumped as "name\ttype\tlength\thex-bytes" lines (exact, whatever the type).
HX_EXPORT int32_t hx_serialized_fields(void* p, char* buf, int32_t n) {
  Plugin* w = static_cast<Plugin*>(p);
  const PluginFieldCollection* fc = w->runtime->getFieldsToSerialize();
  if (fc == nullptr) return -1;
  std::string s;
  static const char* hex = "0123456789abcdef";
  for (int32_t k = 0; k < fc->nbFields; ++k) {
    const PluginField& f = fc->fields[k];
    size_t width = 0;
    switch (f.type) {
      case PluginFieldType::kINT64:
      case PluginFieldType::kFLOAT64: width = 8; break;
      case PluginFieldType::kINT32:
      case PluginFieldType::kFLOAT32: width = 4; break;
      case PluginFieldType::kINT16:
      case PluginFieldType::kFLOAT16:
      case PluginFieldType::kBF16: width = 2; break;
      default: width = 1; break;
    }
    s += std::string(f.name) + "\t" + std::to_string(static_cast<int>(f.type)) + "\t" + std::to_string(f.length) + "\t";
    const auto* b = static_cast<const unsigned char*>(f.data);
    for (size_t i = 0; b != nullptr && i < width * static_cast<size_t>(f.length); ++i) {
      s += hex[b[i] >> 4];
      s += hex[b[i] & 15];
    }
    s += "\n";
  }
  return copy_out(s, buf, n);
}

// What TensorRT does when deserializing an engine: getFieldsToSerialize -> createPlugin(kRUNTIME).
HX_EXPORT void* hx_recreate(void* h, int32_t creator, void* p) {
  Plugin* w = static_cast<Plugin*>(p);
  const PluginFieldCollection* fc = w->runtime->getFieldsToSerialize();
  if (fc == nullptr) return nullptr;
  return wrap(static_cast<Host*>(h)->creators.at(creator)->createPlugin("recreated", fc, TensorRTPhase::kRUNTIME));
}

HX_EXPORT void* hx_clone(void* p) { return wrap(static_cast<Plugin*>(p)->plugin->clone()); }

HX_EXPORT void* hx_attach(void* p) {
  static ResourceContext ctx;
  return wrap(static_cast<Plugin*>(p)->runtime->attachToContext(&ctx));
}

HX_EXPORT const char* hx_timing_cache_id(void* p) { return static_cast<Plugin*>(p)->build->getTimingCacheID(); }
