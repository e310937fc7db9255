// The OrtCustomOp adapter of the ONNX Runtime glue (opforge/ort/glue.h): one OrtCustomOp per op, execution
// provider and dtype variant, the registry the generated files add them to, and the body of the library's
// RegisterCustomOps. Exceptions from the glue become OrtStatus here, never crossing the C ABI.
#pragma once

#include <exception>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "opforge/ort/api.h"
#include "opforge/ort/call.h"

namespace opforge {
namespace ort {

// ---- the OrtCustomOp adapter ---------------------------------------------------------------------

using Factory = KernelBase* (*)(const OrtKernelInfo* info, Device device);

// Converts an exception from generated code into an OrtStatus for ORT.
inline OrtStatus* to_status(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) { return api().CreateStatus(err.code(), err.what()); } catch (const std::exception& err) {
    return api().CreateStatus(ORT_FAIL, format("opforge: ", err.what()).c_str());
  } catch (...) { return api().CreateStatus(ORT_FAIL, "opforge: unknown C++ exception"); }
}

// One OrtCustomOp: an op on one execution provider for one combination of input dtypes. ORT merges the
// variants of an op into one schema and picks the variant whose declared types match the node's inputs,
// which also gives each output its type during ORT's type inference.
struct CustomOp : OrtCustomOp {
  const char* domain;  // the op's namespace
  const char* name;    // the op's name: the node's op_type
  const char* provider;
  Device device;
  int since_version;
  std::vector<ONNXTensorElementDataType> input_types;
  std::vector<bool> input_optional;
  std::vector<ONNXTensorElementDataType> output_types;
  Factory factory;

  CustomOp(const char* domain_, const char* name_, Device device_, int since_version_,
           std::vector<ONNXTensorElementDataType> inputs, std::vector<bool> optional,
           std::vector<ONNXTensorElementDataType> outputs, Factory factory_)
      : OrtCustomOp{},
        domain(domain_),
        name(name_),
        provider(device_ == Device::kCpu ? "CPUExecutionProvider" : "CUDAExecutionProvider"),
        device(device_),
        since_version(since_version_),
        input_types(std::move(inputs)),
        input_optional(std::move(optional)),
        output_types(std::move(outputs)),
        factory(factory_) {
    version = ORT_API_VERSION;  // the API version of the headers: what this library asks the runtime for
    GetName = [](const OrtCustomOp* op) { return self(op).name; };
    GetExecutionProviderType = [](const OrtCustomOp* op) { return self(op).provider; };
    GetInputTypeCount = [](const OrtCustomOp* op) { return self(op).input_types.size(); };
    GetInputType = [](const OrtCustomOp* op, size_t i) { return self(op).input_types[i]; };
    GetOutputTypeCount = [](const OrtCustomOp* op) { return self(op).output_types.size(); };
    GetOutputType = [](const OrtCustomOp* op, size_t i) { return self(op).output_types[i]; };
    GetInputCharacteristic = [](const OrtCustomOp* op, size_t i) {
      return self(op).input_optional[i] ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
    };
    GetOutputCharacteristic = [](const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; };
    GetInputMemoryType = [](const OrtCustomOp*, size_t) { return OrtMemTypeDefault; };
    GetVariadicInputMinArity = [](const OrtCustomOp*) { return 1; };
    GetVariadicInputHomogeneity = [](const OrtCustomOp*) { return 1; };
    GetVariadicOutputMinArity = [](const OrtCustomOp*) { return 1; };
    GetVariadicOutputHomogeneity = [](const OrtCustomOp*) { return 1; };
    CreateKernel = nullptr;  // the V2 entry points report errors as OrtStatus instead
    KernelCompute = nullptr;
    CreateKernelV2 = [](const OrtCustomOp* op, const OrtApi*, const OrtKernelInfo* info,
                        void** kernel) -> OrtStatusPtr {
      *kernel = nullptr;
      try {
        *kernel = self(op).factory(info, self(op).device);
        return nullptr;
      } catch (...) { return to_status(std::current_exception()); }
    };
    KernelComputeV2 = [](void* kernel, OrtKernelContext* context) -> OrtStatusPtr {
      try {
        static_cast<KernelBase*>(kernel)->compute(context);
        return nullptr;
      } catch (...) { return to_status(std::current_exception()); }
    };
    KernelDestroy = [](void* kernel) { delete static_cast<KernelBase*>(kernel); };
    InferOutputShapeFn = nullptr;  // the exporter already writes output shapes into the model's value_info
    GetStartVersion = [](const OrtCustomOp* op) { return self(op).since_version; };
    GetEndVersion = [](const OrtCustomOp*) { return 2147483647; };
    GetMayInplace = [](int** in, int** out) -> size_t {
      *in = *out = nullptr;
      return 0;
    };
    ReleaseMayInplace = [](int*, int*) {};
    GetAliasMap = [](int** in, int** out) -> size_t {
      *in = *out = nullptr;
      return 0;
    };
    ReleaseAliasMap = [](int*, int*) {};
  }

  static const CustomOp& self(const OrtCustomOp* op) { return *static_cast<const CustomOp*>(op); }
};

// Every op variant of the library, added by the generated per-op files at load time (static
// registration, so the index file holds no list of ops).
inline std::vector<const CustomOp*>& registry() {
  static std::vector<const CustomOp*> ops;
  return ops;
}

struct Register {
  explicit Register(std::initializer_list<const CustomOp*> ops) {
    for (const CustomOp* op : ops) registry().push_back(op);
  }
};

// The body of RegisterCustomOps: one OrtCustomOpDomain per op namespace, added to the session options.
// ORT keeps pointers to the domains and ops for the life of every session made from those options, so
// the domains are never released (a few bytes per registration) and the ops are static.
inline OrtStatus* register_all(OrtSessionOptions* options, const OrtApiBase* base) {
  const OrtApi* found = base->GetApi(ORT_API_VERSION);
  if (found == nullptr) {  // a runtime older than the headers: report it through the oldest API table
    const OrtApi* oldest = base->GetApi(1);
    const std::string message =
        format("opforge: this custom-op library was built against ONNX Runtime API version ", ORT_API_VERSION,
               " but the runtime is ", base->GetVersionString(),
               ". Fix: use a newer onnxruntime, or rebuild with older headers (ORT_INCLUDE_DIR).");
    return oldest != nullptr ? oldest->CreateStatus(ORT_FAIL, message.c_str()) : nullptr;
  }
  g_api = found;
  std::vector<std::pair<std::string, OrtCustomOpDomain*>> domains;
  for (const CustomOp* op : registry()) {
    OrtCustomOpDomain* domain = nullptr;
    for (auto& d : domains)
      if (d.first == op->domain) domain = d.second;
    if (domain == nullptr) {
      if (OrtStatus* s = api().CreateCustomOpDomain(op->domain, &domain)) return s;
      if (OrtStatus* s = api().AddCustomOpDomain(options, domain)) return s;
      domains.emplace_back(op->domain, domain);
    }
    if (OrtStatus* s = api().CustomOpDomain_Add(domain, op)) return s;
  }
  return nullptr;
}

}  // namespace ort
}  // namespace opforge
