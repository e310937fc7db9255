// opforge's runtime for Triton kernels compiled ahead of time: what every generated launcher
// (ops/native/triton_launcher.py) links to turn a call into a cuLaunchKernel, in any host (the torch
// extension, the ONNX Runtime CUDA EP variant, the TensorRT plugin) and with no Python in the process.
//
// The CUDA driver API is reached through dlopen("libcuda.so.1") rather than linked: a library that holds
// launchers then loads on a machine without a GPU driver (CI, the plugin host harness) and fails only when
// a kernel is launched, with a Status that says why. The driver is the one CUDA runtime (cudart) and every
// host already use, so the module loads into the context current on the calling thread.
#pragma once

#include <cuda.h>
#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <type_traits>

#include "opforge/kernel_api.h"

namespace opforge {
namespace triton {

// One kernel compiled for one arch: its cubin, and its PTX for the driver to JIT on a newer GPU when the
// PTX's target is not arch-specific (Triton writes sm_90a for Hopper, which no other GPU can take).
struct Image {
  int arch;  // 87 for sm_87
  const unsigned char* cubin;
  size_t cubin_size;
  const char* ptx;  // NUL-terminated
  bool ptx_portable;
  int shared_bytes;  // dynamic shared memory a launch gives it
  int param_count;   // the declared parameters plus Triton's trailing scratch pointers (passed null)
};

// One compiled (dtype variant, pointer alignment, configuration): the entry point in `images` (one per arch)
// and its block size.
struct Kernel {
  const char* function;
  const Image* images;
  int image_count;
  int num_warps;
};

// A kernel loaded into a context: the function and the image it came from (its shared memory size).
struct Loaded {
  CUfunction function = nullptr;
  const Image* image = nullptr;
};

// The functions of the driver API a launch needs, resolved once per process.
struct Driver {
  CUresult (*ctx_get_current)(CUcontext*) = nullptr;
  CUresult (*ctx_get_device)(CUdevice*) = nullptr;
  CUresult (*device_get_attribute)(int*, CUdevice_attribute, CUdevice) = nullptr;
  CUresult (*module_load_data)(CUmodule*, const void*) = nullptr;
  CUresult (*module_get_function)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*func_set_attribute)(CUfunction, CUfunction_attribute, int) = nullptr;
  CUresult (*launch_kernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                            void**, void**) = nullptr;
  CUresult (*get_error_string)(CUresult, const char**) = nullptr;
  // Optional (a CUDA 11.2+ driver): stream-ordered allocation, for kernels with scratch buffers.
  CUresult (*mem_alloc_async)(CUdeviceptr*, size_t, CUstream) = nullptr;
  CUresult (*mem_free_async)(CUdeviceptr, CUstream) = nullptr;
  bool ok = false;
};

inline const Driver& driver() {
  static const Driver d = [] {
    Driver r;
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return r;
    auto sym = [lib](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      return fn != nullptr;
    };
    r.ok = sym(r.ctx_get_current, "cuCtxGetCurrent") && sym(r.ctx_get_device, "cuCtxGetDevice") &&
           sym(r.device_get_attribute, "cuDeviceGetAttribute") && sym(r.module_load_data, "cuModuleLoadData") &&
           sym(r.module_get_function, "cuModuleGetFunction") && sym(r.func_set_attribute, "cuFuncSetAttribute") &&
           sym(r.launch_kernel, "cuLaunchKernel") && sym(r.get_error_string, "cuGetErrorString");
    sym(r.mem_alloc_async, "cuMemAllocAsync");
    sym(r.mem_free_async, "cuMemFreeAsync");
    return r;
  }();
  return d;
}

// A driver failure as a Status. The text lives in a thread-local buffer (static storage, as Status asks),
// valid until this thread's next failure.
inline Status driver_error(const char* what, CUresult code) {
  thread_local char text[256];
  const char* name = nullptr;
  if (driver().get_error_string == nullptr || driver().get_error_string(code, &name) != CUDA_SUCCESS) name = "?";
  std::snprintf(text, sizeof text, "%s (CUDA driver error %d: %s)", what, static_cast<int>(code), name);
  return Status::error(Status::kCudaError, text);
}

// The function of one Kernel in each CUDA context it ran in (a process may use several devices).
class FunctionCache {
 public:
  Status get(const Kernel& k, Loaded* out) {
    const Driver& d = driver();
    if (!d.ok)
      return Status::error(Status::kCudaError,
                           "Triton kernel: the CUDA driver (libcuda.so.1) cannot be loaded on this machine");
    CUcontext ctx = nullptr;
    CUresult r = d.ctx_get_current(&ctx);
    if (r != CUDA_SUCCESS) return driver_error("Triton kernel: cuCtxGetCurrent failed", r);
    if (ctx == nullptr) return Status::error(Status::kCudaError, "Triton kernel: no CUDA context is current");
    std::lock_guard<std::mutex> lock(mutex_);
    for (int i = 0; i < count_; ++i) {
      if (contexts_[i] == ctx) {
        *out = functions_[i];
        return Status::ok();
      }
    }
    if (count_ == kMaxContexts) return Status::error(Status::kInternal, "Triton kernel: more than 16 CUDA contexts");
    Loaded loaded;
    const Status st = load(k, &loaded);
    if (!st.is_ok()) return st;
    contexts_[count_] = ctx;
    functions_[count_++] = loaded;
    *out = loaded;
    return Status::ok();
  }

 private:
  static constexpr int kMaxContexts = 16;

  static Status load(const Kernel& k, Loaded* out) {
    const Driver& d = driver();
    CUdevice dev = 0;
    int major = 0, minor = 0;
    CUresult r = d.ctx_get_device(&dev);
    if (r == CUDA_SUCCESS) r = d.device_get_attribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    if (r == CUDA_SUCCESS) r = d.device_get_attribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    if (r != CUDA_SUCCESS) return driver_error("Triton kernel: cannot read the device's compute capability", r);
    const int arch = major * 10 + minor;
    // The cubin of this arch; else the newest portable PTX of an older arch, JIT-compiled by the driver.
    const Image* cubin = nullptr;
    const Image* ptx = nullptr;
    for (int i = 0; i < k.image_count; ++i) {
      const Image& im = k.images[i];
      if (im.arch == arch) cubin = &im;
      if (im.arch < arch && im.ptx_portable && (ptx == nullptr || im.arch > ptx->arch)) ptx = &im;
    }
    if (cubin == nullptr && ptx == nullptr) {
      thread_local char text[200];
      std::snprintf(text, sizeof text,
                    "Triton kernel %s was not compiled for sm_%d (nor for an older arch with portable PTX). Fix: "
                    "rebuild with OPFORGE_TRITON_ARCHS including %d",
                    k.function, arch, arch);
      return Status::error(Status::kCudaError, text);
    }
    CUmodule module = nullptr;
    r = d.module_load_data(&module, cubin != nullptr ? static_cast<const void*>(cubin->cubin) : ptx->ptx);
    if (r != CUDA_SUCCESS) return driver_error("Triton kernel: cuModuleLoadData failed", r);
    out->image = cubin != nullptr ? cubin : ptx;
    r = d.module_get_function(&out->function, module, k.function);
    if (r != CUDA_SUCCESS) return driver_error("Triton kernel: cuModuleGetFunction failed", r);
    if (out->image->shared_bytes > 48 * 1024) {  // beyond the default dynamic shared memory limit: opt in
      r = d.func_set_attribute(out->function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                               out->image->shared_bytes);
      if (r != CUDA_SUCCESS) return driver_error("Triton kernel: the GPU cannot give the shared memory it needs", r);
    }
    return Status::ok();
  }

  std::mutex mutex_;
  CUcontext contexts_[kMaxContexts] = {};
  Loaded functions_[kMaxContexts] = {};
  int count_ = 0;
};

// Launch expressions (ops/core/triton_launch.py) in C++: Python's floor division, and division by zero
// recorded rather than trapping, so the launcher returns a Status naming the op.
struct Arith {
  bool divided_by_zero = false;
  int64_t floordiv(int64_t a, int64_t b) {
    if (b == 0) {
      divided_by_zero = true;
      return 0;
    }
    const int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
  }
  int64_t ceil_div(int64_t a, int64_t b) { return -floordiv(-a, b); }
  static int64_t max(int64_t a, int64_t b) { return a > b ? a : b; }
  static int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
};

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// The configuration for `key`: the tuned table's entry for its bucket (the next power of two) when there is
// one, else the documented default: among configs whose max_key (-1: none) admits the key, the smallest
// max_key; else the first config without one. Mirrors ops.core.triton_launch.default_config.
inline int choose_config(int64_t key, const int64_t* max_keys, int config_count, const int64_t* tuned_buckets,
                         const int* tuned_configs, int tuned_count) {
  int64_t b = 1;
  while (b < key) b *= 2;
  for (int i = 0; i < tuned_count; ++i)
    if (tuned_buckets[i] == b && (max_keys[tuned_configs[i]] < 0 || key <= max_keys[tuned_configs[i]]))
      return tuned_configs[i];
  int best = -1;
  for (int i = 0; i < config_count; ++i)
    if (max_keys[i] >= 0 && key <= max_keys[i] && (best < 0 || max_keys[i] < max_keys[best])) best = i;
  if (best >= 0) return best;
  for (int i = 0; i < config_count; ++i)
    if (max_keys[i] < 0) return i;
  return 0;  // unreachable: the declaration requires a config without max_key
}

// A kernel's scratch buffer (ops.Scratch: e.g. the float32 intermediates Inductor keeps for a half-precision
// reduction): stream-ordered from the device's default memory pool, so no host synchronisation, and freed on the
// same stream after the launch (scratch_free). Zero bytes: a null pointer.
inline Status scratch_alloc(CUdeviceptr* out, int64_t bytes, void* stream) {
  *out = 0;
  if (bytes <= 0) return Status::ok();
  const Driver& d = driver();
  if (!d.ok || d.mem_alloc_async == nullptr)
    return Status::error(Status::kCudaError,
                         "Triton kernel: a scratch buffer needs the CUDA driver's cuMemAllocAsync (a CUDA 11.2+ "
                         "driver), which this process cannot load");
  const CUresult r = d.mem_alloc_async(out, static_cast<size_t>(bytes), static_cast<CUstream>(stream));
  if (r != CUDA_SUCCESS) return driver_error("Triton kernel: cuMemAllocAsync of a scratch buffer failed", r);
  return Status::ok();
}

inline void scratch_free(CUdeviceptr p, void* stream) {
  if (p != 0 && driver().mem_free_async != nullptr) driver().mem_free_async(p, static_cast<CUstream>(stream));
}

// Launch `k` with `params` on `stream`: pointers to each declared argument, then `kScratchSlots` pointers to a
// null device pointer for Triton's scratch parameters (an image takes as many as its param_count says). A
// grid with a zero dimension launches nothing.
constexpr int kScratchSlots = 4;
inline Status launch(const Kernel& k, FunctionCache& cache, const int64_t grid[3], void** params, int declared,
                     void* stream) {
  constexpr int64_t kGridLimits[3] = {0x7FFFFFFF, 65535, 65535};
  for (int i = 0; i < 3; ++i) {
    if (grid[i] == 0) return Status::ok();
    if (grid[i] < 0 || grid[i] > kGridLimits[i])
      return Status::error(Status::kInvalidArgument,
                           "Triton kernel: the launch grid is negative or beyond CUDA's limits (x < 2^31, y and z "
                           "< 65536) for this input");
  }
  Loaded loaded;
  const Status st = cache.get(k, &loaded);
  if (!st.is_ok()) return st;
  if (loaded.image->param_count < declared || loaded.image->param_count > declared + kScratchSlots)
    return Status::error(Status::kInternal, "Triton kernel: the compiled entry takes an unexpected parameter count");
  const CUresult r = driver().launch_kernel(
      loaded.function, static_cast<unsigned>(grid[0]), static_cast<unsigned>(grid[1]), static_cast<unsigned>(grid[2]),
      32u * static_cast<unsigned>(k.num_warps), 1, 1, static_cast<unsigned>(loaded.image->shared_bytes),
      static_cast<CUstream>(stream), params, nullptr);
  if (r != CUDA_SUCCESS) return driver_error("Triton kernel: cuLaunchKernel failed", r);
  return Status::ok();
}

}  // namespace triton
}  // namespace opforge
