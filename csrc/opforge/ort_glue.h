// Runtime support for the generated ONNX Runtime glue (<build>/opforge/<package>/ort/gen/*_ort.cpp).
//
// Each op's glue is generated from its declaration; this header holds what every op's glue shares:
// the OrtCustomOp adapter (one per op, execution provider and dtype variant), reading attributes exactly
// as the model stores them, validating ORT tensors against the declaration with messages that name the op,
// the argument, what was expected, what was given and the fix; turning OrtValues into opforge::TensorView;
// memory from ORT's allocator (workspace, upper-bound buffers of data-dependent outputs); ORT's intra-op
// thread pool as DeviceContext::parallel_run. Only this file and generated code see the ORT C API.
//
// Errors never cross the C ABI as exceptions: the glue throws opforge::ort::Error, and the entry points
// ORT calls (CreateKernelV2, KernelComputeV2) turn it into an OrtStatus, so a bad input is a clean
// ORT error (Python: onnxruntime's Fail/InvalidArgument exception), never a crash.
#pragma once

#include <onnxruntime_c_api.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#ifdef OPFORGE_ORT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "opforge/kernel_api.h"

namespace opforge {

// Shape-rule arithmetic with Python/TensorRT semantics (floor division, not C++ truncation): the
// functions opforge::shape_rule.CppAlgebra spells.
namespace glue {
inline int64_t floordiv(int64_t a, int64_t b);  // defined below: it reports a zero divisor as an ORT error
inline int64_t ceil_div(int64_t a, int64_t b) { return -floordiv(-a, b); }
inline int64_t max(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
}  // namespace glue

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

// Messages are built without iostreams (see torch_glue.h: locale facets of a mismatched libstdc++).
inline void append(std::string& out, const char* s) { out += s; }
inline void append(std::string& out, const std::string& s) { out += s; }
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline void append(std::string& out, T v) { out += std::to_string(v); }
inline void append(std::string& out, double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  out += buf;
}
template <typename... Args>
std::string format(const Args&... args) {
  std::string out;
  (append(out, args), ...);
  return out;
}

#define OPFORGE_ORT_REQUIRE(code, cond, ...) \
  do {                                       \
    if (!(cond)) throw ::opforge::ort::Error(code, ::opforge::ort::format(__VA_ARGS__)); \
  } while (0)

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

inline std::string dtype_list(std::initializer_list<DType> dtypes) {
  std::string out;
  for (DType d : dtypes) out += format(out.empty() ? "" : ", ", dtype_name(d));
  return out;
}

inline std::string shape_text(const int64_t* dims, int32_t rank) {
  std::string out = "[";
  for (int32_t i = 0; i < rank; ++i) out += format(i ? ", " : "", dims[i]);
  return out + "]";
}

inline std::string shape_text(const TensorView& v) { return shape_text(v.sizes, v.rank); }

inline void set_contiguous(TensorView& v, const int64_t* dims, int32_t rank) {
  v.rank = rank;
  int64_t stride = 1;
  for (int32_t i = rank - 1; i >= 0; --i) {
    v.sizes[i] = dims[i];
    v.strides[i] = stride;
    stride *= dims[i];
  }
}

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
  OrtStatus* s = std::strcmp(expected, "INTS") == 0 ? api().KernelInfoGetAttributeArray_float(info, name, nullptr, &other)
                                                    : api().KernelInfoGetAttributeArray_int64(info, name, nullptr, &other);
  if (s != nullptr) api().ReleaseStatus(s);
  OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, s != nullptr || other == 0, op, ": attribute '", name, "' must be ", expected,
                      ", got ", std::strcmp(expected, "INTS") == 0 ? "FLOATS" : "INTS",
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
  check(api().KernelInfoGetAttribute_string(info, name, out.data(), &size), format(op, ": reading attribute '", name, "'"));
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
    check(api().KernelInfoGetAttributeArray_int64(info, name, out.data(), &size), format(op, ": reading attribute '", name, "'"));
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
    check(api().KernelInfoGetAttributeArray_float(info, name, raw.data(), &size), format(op, ": reading attribute '", name, "'"));
  else
    expect_not_other_list(op, info, name, "FLOATS");
  return std::vector<double>(raw.begin(), raw.end());
}

inline void expect_choice(const char* op, const char* attr, const std::string& value,
                          std::initializer_list<const char*> choices) {
  std::string allowed;
  for (const char* c : choices) {
    if (value == c) return;
    allowed += format(" '", c, "'");
  }
  OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, false, op, ": attribute '", attr, "' must be one of", allowed, ", got '",
                      value, "'. Fix: set one of those on the node.");
}

// A list attribute declared with a fixed length (so shape rules may index it, as in stride[0]).
inline void expect_length(const char* op, const char* attr, size_t got, int64_t length) {
  OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, static_cast<int64_t>(got) == length, op, ": attribute '", attr,
                      "' must have ", length, " elements, got ", got, ". Fix: set a list of ", length,
                      " values on the node.");
}

inline StringView string_view(const std::string& s) { return StringView{s.data(), s.size()}; }
template <typename T>
inline Span<T> span(const std::vector<T>& v) { return Span<T>{v.data(), static_cast<int64_t>(v.size())}; }

// ---- memory from ORT's allocator -----------------------------------------------------------------

// One allocation from the kernel's allocator (device memory for the CUDA EP), freed with the call.
class Buffer {
 public:
  Buffer() = default;
  Buffer(OrtAllocator* allocator, size_t bytes) : allocator_(allocator) {
    if (bytes > 0) {
      data_ = allocator->Alloc(allocator, bytes);
      OPFORGE_ORT_REQUIRE(ORT_FAIL, data_ != nullptr, "opforge: ORT's allocator could not provide ", bytes, " bytes");
    }
  }
  Buffer(Buffer&& o) noexcept : allocator_(o.allocator_), data_(o.data_) { o.data_ = nullptr; }
  Buffer& operator=(Buffer&&) = delete;
  Buffer(const Buffer&) = delete;
  ~Buffer() {
    if (data_ != nullptr) allocator_->Free(allocator_, data_);
  }
  void* data() const { return data_; }

 private:
  OrtAllocator* allocator_ = nullptr;
  void* data_ = nullptr;
};

// ---- the kernel of one node ----------------------------------------------------------------------

// What ORT creates per node: the attributes (in the generated subclass) and the allocator of its EP.
class KernelBase {
 public:
  KernelBase(const OrtKernelInfo* info, const char* op, Device device) : op_(op), device_(device) {
    check(api().KernelInfoGetAllocator(info, OrtMemTypeDefault, &allocator_), format(op, ": getting ORT's allocator"));
  }
  virtual ~KernelBase() {
    if (allocator_ != nullptr) api().ReleaseAllocator(allocator_);
  }
  virtual void compute(OrtKernelContext* context) = 0;

  const char* op() const { return op_; }
  Device device() const { return device_; }
  OrtAllocator* allocator() const { return allocator_; }

 private:
  const char* op_;
  Device device_;
  OrtAllocator* allocator_ = nullptr;
};

// One run of one node: reads and validates inputs, allocates outputs, provides the DeviceContext.
class Call {
 public:
  Call(const KernelBase& kernel, OrtKernelContext* context) : kernel_(kernel), context_(context), op_(kernel.op()) {
    check(api().KernelContext_GetInputCount(context, &input_count_), format(op_, ": counting inputs"));
  }

  // A present input, validated against its declaration. Returns false for an absent optional input.
  bool input(size_t index, const char* name, std::initializer_list<DType> dtypes, int32_t rank, int32_t min_rank,
             bool optional, TensorView* out) {
    const OrtValue* value = nullptr;
    if (index < input_count_) check(api().KernelContext_GetInput(context_, index, &value), format(op_, ": reading input '", name, "'"));
    if (value == nullptr) {
      OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, optional, op_, ": required input '", name, "' (input ", index,
                          ") is missing. Fix: connect a tensor to it.");
      return false;
    }
    int is_tensor = 0;
    check(api().IsTensor(value, &is_tensor), format(op_, ": inspecting input '", name, "'"));
    OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, is_tensor, op_, ": input '", name, "' must be a tensor. Fix: feed a tensor.");
    OrtTensorTypeAndShapeInfo* info = nullptr;
    check(api().GetTensorTypeAndShape(value, &info), format(op_, ": reading the shape of input '", name, "'"));
    ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    size_t dims = 0;
    OrtStatus* s = api().GetTensorElementType(info, &type);
    if (s == nullptr) s = api().GetDimensionsCount(info, &dims);
    int64_t sizes[kMaxRank] = {};
    if (s == nullptr && dims <= static_cast<size_t>(kMaxRank)) s = api().GetDimensions(info, sizes, dims);
    api().ReleaseTensorTypeAndShapeInfo(info);
    check(s, format(op_, ": reading the shape of input '", name, "'"));
    bool known = false;
    const DType dtype = to_dtype(type, &known);
    bool dtype_ok = false;
    for (DType d : dtypes) dtype_ok = dtype_ok || (known && d == dtype);
    OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, dtype_ok, op_, ": input '", name, "' must have dtype in {",
                        dtype_list(dtypes), "}, got ", onnx_type_name(type), ". Fix: Cast it in the graph.");
    const int32_t r = static_cast<int32_t>(dims);
    OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, dims <= static_cast<size_t>(kMaxRank), op_, ": input '", name,
                        "' has rank ", dims, "; kernels take at most ", kMaxRank, " dims. Fix: Reshape it in the graph.");
    OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, rank < 0 || r == rank, op_, ": input '", name, "' must have rank ", rank,
                        ", got rank ", r, " (shape ", shape_text(sizes, r), "). Fix: Reshape it in the graph.");
    OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, r >= min_rank, op_, ": input '", name, "' must have rank >= ", min_rank,
                        ", got rank ", r, " (shape ", shape_text(sizes, r), "). Fix: Reshape it in the graph.");
    void* data = nullptr;
    check(api().GetTensorMutableData(const_cast<OrtValue*>(value), &data), format(op_, ": reading input '", name, "'"));
    out->data = data;
    out->dtype = dtype;
    set_contiguous(*out, sizes, r);  // ORT tensors are always dense and row-major
    return true;
  }

  void same_dtype(const char* name, const TensorView& t, const char* other, const TensorView& o) const {
    OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, t.dtype == o.dtype, op_, ": input '", name, "' must have the dtype of '",
                        other, "' (", dtype_name(o.dtype), "), got ", dtype_name(t.dtype), ". Fix: Cast it in the graph.");
  }

  void expect_shape(const char* name, const TensorView& t, std::initializer_list<int64_t> expected, const char* rule) const {
    expect_shape(name, t, expected.begin(), static_cast<int32_t>(expected.size()), rule);
  }
  void expect_shape(const char* name, const TensorView& t, const TensorView& like, const char* rule) const {
    expect_shape(name, t, like.sizes, like.rank, rule);
  }

  // Allocates output `index` through ORT with `dims` from the shape rule.
  TensorView output(size_t index, const char* name, const int64_t* dims, int32_t rank, DType dtype, const char* rule) {
    check_dims(name, dims, rank, rule);
    OrtValue* value = nullptr;
    check(api().KernelContext_GetOutput(context_, index, dims, static_cast<size_t>(rank), &value),
          format(op_, ": allocating output '", name, "' of shape ", shape_text(dims, rank)));
    TensorView v;
    check(api().GetTensorMutableData(value, &v.data), format(op_, ": writing output '", name, "'"));
    v.dtype = dtype;
    set_contiguous(v, dims, rank);
    return v;
  }
  TensorView output(size_t index, const char* name, std::initializer_list<int64_t> dims, DType dtype, const char* rule) {
    return output(index, name, dims.begin(), static_cast<int32_t>(dims.size()), dtype, rule);
  }
  TensorView output(size_t index, const char* name, const TensorView& like, DType dtype, const char* rule) {
    return output(index, name, like.sizes, like.rank, dtype, rule);
  }

  // A buffer from ORT's allocator for an output whose real size the kernel decides (its upper bound).
  TensorView temp(const char* name, std::initializer_list<int64_t> dims, DType dtype, const char* rule) {
    check_dims(name, dims.begin(), static_cast<int32_t>(dims.size()), rule);
    TensorView v;
    v.dtype = dtype;
    set_contiguous(v, dims.begin(), static_cast<int32_t>(dims.size()));
    buffers_.emplace_back(kernel_.allocator(), static_cast<size_t>(v.numel()) * dtype_size(dtype));
    v.data = buffers_.back().data();
    return v;
  }

  DeviceContext context(int64_t workspace_bytes) {
    OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, workspace_bytes >= 0, op_, ": the workspace rule gave ", workspace_bytes,
                        " bytes for these inputs.");
    DeviceContext ctx;
    if (kernel_.device() == Device::kCpu) {
      ctx.parallel_run = &parallel_run;
      ctx.parallel_pool = context_;
    } else {
      check(api().KernelContext_GetGPUComputeStream(context_, &ctx.stream), format(op_, ": getting the CUDA stream"));
    }
    if (workspace_bytes > 0) {
      buffers_.emplace_back(kernel_.allocator(), static_cast<size_t>(workspace_bytes));
      ctx.workspace = buffers_.back().data();
      ctx.workspace_bytes = static_cast<size_t>(workspace_bytes);
    }
    stream_ = ctx.stream;
    return ctx;
  }

  void check_kernel(const Status& s) const {
    OPFORGE_ORT_REQUIRE(ORT_FAIL, s.is_ok(), op_, ": ", kernel_.device() == Device::kCpu ? "CPU" : "CUDA",
                        " kernel failed: ", s.message);
  }

  // The value a kernel wrote into a size output's (0-d int64) buffer, checked against its bound.
  int64_t size_value(const char* name, const TensorView& t, int64_t upper) {
    int64_t v = 0;
    copy(&v, t.data, sizeof v, /*to_device=*/false);
    OPFORGE_ORT_REQUIRE(ORT_FAIL, v >= 0 && v <= upper, op_, ": the kernel reported ", name, "=", v, " outside [0, ",
                        upper, "] (its declared upper bound).");
    return v;
  }

  // Copies the leading box `dims` of a contiguous upper-bound buffer `src` into the ORT output.
  void narrow_into(const TensorView& dst, const TensorView& src) {
    const size_t elem = dtype_size(src.dtype);
    if (dst.numel() == 0) return;
    int64_t inner = 1;  // the contiguous run shared by both layouts: trailing dims that were not narrowed
    int32_t split = src.rank;
    while (split > 0 && dst.sizes[split - 1] == src.sizes[split - 1]) inner *= src.sizes[--split];
    if (split > 0) inner *= dst.sizes[split - 1], --split;  // the narrowed dim's rows are still one run
    int64_t outer = 1;
    for (int32_t i = 0; i < split; ++i) outer *= dst.sizes[i];
    int64_t index[kMaxRank] = {};
    for (int64_t k = 0; k < outer; ++k) {
      int64_t s = 0;
      int64_t d = 0;
      for (int32_t i = 0; i < split; ++i) s += index[i] * src.strides[i], d += index[i] * dst.strides[i];
      copy(static_cast<char*>(dst.data) + d * elem, static_cast<const char*>(src.data) + s * elem,
           static_cast<size_t>(inner) * elem, /*to_device=*/true);
      for (int32_t i = split - 1; i >= 0 && ++index[i] == dst.sizes[i]; --i) index[i] = 0;
    }
  }

  void write_size(const TensorView& dst, int64_t value) { copy(dst.data, &value, sizeof value, /*to_device=*/true); }

 private:
  void expect_shape(const char* name, const TensorView& t, const int64_t* expected, int32_t rank, const char* rule) const {
    bool same = t.rank == rank;
    for (int32_t i = 0; same && i < rank; ++i) same = t.sizes[i] == expected[i];
    OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, same, op_, ": input '", name, "' must have shape ", rule, " = ",
                        shape_text(expected, rank), ", got ", shape_text(t), ". Fix: feed a tensor of that shape.");
  }

  void check_dims(const char* name, const int64_t* dims, int32_t rank, const char* rule) const {
    for (int32_t i = 0; i < rank; ++i)
      OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, dims[i] >= 0, op_, ": output '", name, "' would have shape ", rule, " = ",
                          shape_text(dims, rank), " with a negative dim. Fix: check the inputs against the op's shape rule.");
  }

  // Host<->device aware copy: `to_device` says which side is the device's (the other is the host's on
  // CUDA; on CPU both are host memory).
  void copy(void* dst, const void* src, size_t bytes, bool to_device) {
    if (bytes == 0) return;
    if (kernel_.device() == Device::kCpu) {
      std::memcpy(dst, src, bytes);
      return;
    }
#ifdef OPFORGE_ORT_WITH_CUDA
    auto stream = static_cast<cudaStream_t>(stream_);
    // Size values are read by the host right after the kernel, so that direction synchronises the stream.
    const cudaMemcpyKind kind = to_device ? cudaMemcpyDefault : cudaMemcpyDeviceToHost;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, stream);
    if (e == cudaSuccess && !to_device) e = cudaStreamSynchronize(stream);
    OPFORGE_ORT_REQUIRE(ORT_FAIL, e == cudaSuccess, op_, ": copying a data-dependent output failed: ", cudaGetErrorString(e));
#else
    (void)to_device;
    OPFORGE_ORT_REQUIRE(ORT_FAIL, false, op_, ": this library was built without CUDA");
#endif
  }

  // ORT's intra-op thread pool (SessionOptions.intra_op_num_threads) through KernelContext_ParallelFor:
  // ORT runs `total` items, each a chunk of [0, n) at least `grain` long, and returns when all are done.
  struct Job {
    int64_t n, chunk;
    ParallelBody body;
    void* closure;
  };
  static void run_chunk(void* job, size_t i) {
    const Job& j = *static_cast<const Job*>(job);
    const int64_t begin = static_cast<int64_t>(i) * j.chunk;
    const int64_t end = begin + j.chunk < j.n ? begin + j.chunk : j.n;
    if (begin < end) j.body(j.closure, begin, end);
  }
  static void parallel_run(void* pool, int64_t n, int64_t grain, ParallelBody body, void* closure) {
    const int64_t max_chunks = 256;  // enough to balance any intra-op pool; each chunk is one pool task
    int64_t chunks = n / (grain < 1 ? 1 : grain);
    chunks = chunks < 1 ? 1 : (chunks > max_chunks ? max_chunks : chunks);
    const int64_t chunk = (n + chunks - 1) / chunks;  // >= grain, since chunks <= n / grain
    Job job{n, chunk, body, closure};
    const size_t total = static_cast<size_t>((n + chunk - 1) / chunk);
    OrtStatus* s = total > 1 ? api().KernelContext_ParallelFor(static_cast<const OrtKernelContext*>(pool), &run_chunk,
                                                                total, 0, &job)
                             : nullptr;
    if (s != nullptr || total <= 1) {  // no pool to hand the work to: run it here, serially
      if (s != nullptr) api().ReleaseStatus(s);
      body(closure, 0, n);
    }
  }

  const KernelBase& kernel_;
  OrtKernelContext* context_;
  const char* op_;
  size_t input_count_ = 0;
  void* stream_ = nullptr;
  std::vector<Buffer> buffers_;
};

// ---- the OrtCustomOp adapter ---------------------------------------------------------------------

using Factory = KernelBase* (*)(const OrtKernelInfo* info, Device device);

// Converts an exception from generated code into an OrtStatus for ORT.
inline OrtStatus* to_status(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    return api().CreateStatus(err.code(), err.what());
  } catch (const std::exception& err) {
    return api().CreateStatus(ORT_FAIL, format("opforge: ", err.what()).c_str());
  } catch (...) {
    return api().CreateStatus(ORT_FAIL, "opforge: unknown C++ exception");
  }
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

  CustomOp(const char* domain_, const char* name_, Device device_, int since_version_, std::vector<ONNXTensorElementDataType> inputs,
           std::vector<bool> optional, std::vector<ONNXTensorElementDataType> outputs, Factory factory_)
      : OrtCustomOp{}, domain(domain_), name(name_), provider(device_ == Device::kCpu ? "CPUExecutionProvider" : "CUDAExecutionProvider"),
        device(device_), since_version(since_version_), input_types(std::move(inputs)),
        input_optional(std::move(optional)), output_types(std::move(outputs)), factory(factory_) {
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
    CreateKernelV2 = [](const OrtCustomOp* op, const OrtApi*, const OrtKernelInfo* info, void** kernel) -> OrtStatusPtr {
      *kernel = nullptr;
      try {
        *kernel = self(op).factory(info, self(op).device);
        return nullptr;
      } catch (...) {
        return to_status(std::current_exception());
      }
    };
    KernelComputeV2 = [](void* kernel, OrtKernelContext* context) -> OrtStatusPtr {
      try {
        static_cast<KernelBase*>(kernel)->compute(context);
        return nullptr;
      } catch (...) {
        return to_status(std::current_exception());
      }
    };
    KernelDestroy = [](void* kernel) { delete static_cast<KernelBase*>(kernel); };
    InferOutputShapeFn = nullptr;  // the exporter already writes output shapes into the model's value_info
    GetStartVersion = [](const OrtCustomOp* op) { return self(op).since_version; };
    GetEndVersion = [](const OrtCustomOp*) { return 2147483647; };
    GetMayInplace = [](int** in, int** out) -> size_t { *in = *out = nullptr; return 0; };
    ReleaseMayInplace = [](int*, int*) {};
    GetAliasMap = [](int** in, int** out) -> size_t { *in = *out = nullptr; return 0; };
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
    const std::string message = format("opforge: this custom-op library was built against ONNX Runtime API version ",
                                       ORT_API_VERSION, " but the runtime is ", base->GetVersionString(),
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

inline int64_t glue::floordiv(int64_t a, int64_t b) {
  OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, b != 0, "opforge: a shape rule divides by zero for these inputs");
  const int64_t q = a / b;
  return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}

}  // namespace opforge
