// Entry points of libopforge_trt_plugins.so.
//
//  * getCreators / setLoggerFinder: what IPluginRegistry::loadLibrary and `trtexec --dynamicPlugins`
//    (and engines that serialize the library, --setPluginsToSerialize) look up with dlsym.
//  * opforge_trt_register_static: registers every creator with libnvinfer's global registry. It is
//    what the companion libopforge_trt_plugins_static.so runs when it is loaded (the
//    REGISTER_TENSORRT_PLUGIN equivalent for `trtexec --staticPlugins` / ctypes.CDLL).
//
// Why static registration is not a constructor in this library: loadLibrary dlopens the library
// (running its constructors) and then registers what getCreators returns, and it fails if any of those
// creators is already registered. A library that registered itself on load could therefore never be
// loaded with --dynamicPlugins. Keeping it in a separate shim gives both paths without a conflict.
//
// No symbol from libnvinfer is linked: getPluginRegistry() is looked up at run time (dlsym), so this
// library loads, and the plugin host harness drives it, on machines without TensorRT.
#include <dlfcn.h>

#include <NvInferVersion.h>

#include <memory>
#include <string>
#include <vector>

#include "opforge_trt_plugin.h"

#define OPFORGE_TRT_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using opforge::trt::Creator;

std::vector<std::unique_ptr<Creator>>& creators() {
  // Built on first use (not at load time) and never destroyed before the library is unloaded.
  static std::vector<std::unique_ptr<Creator>>* all = [] {
    auto* v = new std::vector<std::unique_ptr<Creator>>();
    int32_t n = 0;
    const opforge::trt::OpSpec* const* specs = opforge::trt::all_specs(&n);
    for (int32_t i = 0; i < n; ++i) v->emplace_back(new Creator(*specs[i]));
    return v;
  }();
  return *all;
}

std::vector<nvinfer1::IPluginCreatorInterface*>& creator_interfaces() {
  static std::vector<nvinfer1::IPluginCreatorInterface*>* list = [] {
    auto* v = new std::vector<nvinfer1::IPluginCreatorInterface*>();
    for (auto& c : creators()) v->push_back(c.get());
    return v;
  }();
  return *list;
}

#define OPFORGE_STR2(x) #x
#define OPFORGE_STR(x) OPFORGE_STR2(x)

using GetRegistryFn = nvinfer1::IPluginRegistry* (*)();

GetRegistryFn find_get_plugin_registry() {
  // Already in the global scope (an executable linked against libnvinfer, e.g. trtexec)?
  if (void* sym = dlsym(RTLD_DEFAULT, "getPluginRegistry")) return reinterpret_cast<GetRegistryFn>(sym);
  // Loaded privately (Python's `import tensorrt` loads it RTLD_LOCAL)? RTLD_NOLOAD never loads a new copy.
  const char* names[] = {"libnvinfer.so." OPFORGE_STR(NV_TENSORRT_MAJOR), "libnvinfer.so"};
  for (const char* name : names) {
    if (void* handle = dlopen(name, RTLD_LAZY | RTLD_NOLOAD)) {
      void* sym = dlsym(handle, "getPluginRegistry");
      dlclose(handle);  // drops only the reference RTLD_NOLOAD added
      if (sym) return reinterpret_cast<GetRegistryFn>(sym);
    }
  }
  return nullptr;
}

int32_t g_static_state = 0;  // 0 not attempted, >0 creators registered, -1 no libnvinfer, -2 registry refused

}  // namespace

OPFORGE_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { opforge::trt::set_logger_finder(finder); }

OPFORGE_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  auto& list = creator_interfaces();
  nbCreators = static_cast<int32_t>(list.size());
  return list.data();
}

// Registers every creator with libnvinfer's global plugin registry if libnvinfer is in the process.
// Returns the number registered, -1 if libnvinfer is not loaded (nothing to register with: the
// harness case), -2 if the registry refused a creator (e.g. it was already registered).
OPFORGE_TRT_EXPORT int32_t opforge_trt_register_static() {
  GetRegistryFn get = find_get_plugin_registry();
  if (get == nullptr || get() == nullptr) {
    g_static_state = -1;
    opforge::trt::log(nvinfer1::ILogger::Severity::kINFO,
                      "libnvinfer is not loaded: static plugin registration skipped (use getCreators / "
                      "--dynamicPlugins, or load TensorRT first)");
    return -1;
  }
  nvinfer1::IPluginRegistry* registry = get();
  int32_t count = 0;
  for (auto& c : creators()) {
    if (!registry->registerCreator(*c, c->getPluginNamespace())) {
      opforge::trt::log(nvinfer1::ILogger::Severity::kERROR,
                        std::string("the TensorRT plugin registry refused ") + c->spec().op_id +
                            " (already registered? a library loaded with --dynamicPlugins must not also be "
                            "loaded with --staticPlugins)");
      g_static_state = -2;
      return -2;
    }
    ++count;
  }
  g_static_state = count;
  return count;
}

OPFORGE_TRT_EXPORT int32_t opforge_trt_static_registration_state() { return g_static_state; }

OPFORGE_TRT_EXPORT const char* opforge_trt_build_info() {
  return "opforge TensorRT plugins; built against TensorRT headers " OPFORGE_STR(NV_TENSORRT_MAJOR) "." OPFORGE_STR(
      NV_TENSORRT_MINOR) "." OPFORGE_STR(NV_TENSORRT_PATCH)
#ifdef OPFORGE_TRT_WITH_KERNELS
      "; CUDA kernels linked"
#else
      "; no CUDA kernels (enqueue fails with a message)"
#endif
      ;
}
