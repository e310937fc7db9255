// libopforge_trt_plugins_static.so: load it (trtexec --staticPlugins, ctypes.CDLL after `import
// tensorrt`) and every opforge creator is registered with TensorRT's global plugin registry, as
// REGISTER_TENSORRT_PLUGIN would. It links libopforge_trt_plugins.so (found next to it via $ORIGIN),
// which holds all the code; see opforge_trt_entry.cpp for why this is a separate file.
#include <cstdint>

extern "C" int32_t opforge_trt_register_static();

namespace {
struct Registrar {
  Registrar() { opforge_trt_register_static(); }
} const registrar;
}  // namespace
