// One node's kernel and one run of it, for the ONNX Runtime glue (opforge/ort/glue.h): memory from ORT's
// allocator (workspace, upper-bound buffers of data-dependent outputs), validating the inputs against the
// declaration (opforge/host.h's checks), allocating the outputs, and ORT's intra-op thread pool as
// DeviceContext::parallel_run.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#ifdef OPFORGE_ORT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "opforge/ort/api.h"

namespace opforge {
namespace ort {

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
    if (index < input_count_)
      check(api().KernelContext_GetInput(context_, index, &value), format(op_, ": reading input '", name, "'"));
    if (value == nullptr) {
      OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, optional, op_, ": required input '", name, "' (input ", index,
                          ") is missing. Fix: connect a tensor to it.");
      return false;
    }
    int is_tensor = 0;
    check(api().IsTensor(value, &is_tensor), format(op_, ": inspecting input '", name, "'"));
    OPFORGE_ORT_REQUIRE(ORT_INVALID_ARGUMENT, is_tensor, op_, ": input '", name,
                        "' must be a tensor. Fix: feed a tensor.");
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
    raise(host::check_dtype(Host::kOnnxRuntime, op_, name, dtypes, dtype, known, onnx_type_name(type)));
    const int32_t r = static_cast<int32_t>(dims);  // dims > kMaxRank: GetDimensions was not called; sizes stay 0
    raise(host::check_rank(Host::kOnnxRuntime, op_, name, sizes, r, rank, min_rank));
    void* data = nullptr;
    check(api().GetTensorMutableData(const_cast<OrtValue*>(value), &data), format(op_, ": reading input '", name, "'"));
    out->data = data;
    out->dtype = dtype;
    set_contiguous(*out, sizes, r);  // ORT tensors are always dense and row-major
    return true;
  }

  void same_dtype(const char* name, const TensorView& t, const char* other, const TensorView& o) const {
    raise(host::check_same_dtype(Host::kOnnxRuntime, op_, name, t.dtype, other, o.dtype));
  }

  void expect_shape(const char* name, const TensorView& t, std::initializer_list<int64_t> expected,
                    const char* rule) const {
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
          format(op_, ": allocating output '", name, "' of shape ", host::shape_text(dims, rank)));
    TensorView v;
    check(api().GetTensorMutableData(value, &v.data), format(op_, ": writing output '", name, "'"));
    v.dtype = dtype;
    set_contiguous(v, dims, rank);
    return v;
  }
  TensorView output(size_t index, const char* name, std::initializer_list<int64_t> dims, DType dtype,
                    const char* rule) {
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
    raise(host::check_workspace(Host::kOnnxRuntime, op_, workspace_bytes));
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
    raise(host::check_kernel(Host::kOnnxRuntime, op_, kernel_.device() == Device::kCpu ? "CPU" : "CUDA", s));
  }

  // The value a kernel wrote into a size output's (0-d int64) buffer, checked against its bound.
  int64_t size_value(const char* name, const TensorView& t, int64_t upper) {
    int64_t v = 0;
    copy(&v, t.data, sizeof v, /*to_device=*/false);
    raise(host::check_size_value(Host::kOnnxRuntime, op_, name, v, upper));
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
  void expect_shape(const char* name, const TensorView& t, const int64_t* expected, int32_t rank,
                    const char* rule) const {
    raise(host::check_shape(Host::kOnnxRuntime, op_, name, t.sizes, t.rank, expected, rank, rule));
  }

  void check_dims(const char* name, const int64_t* dims, int32_t rank, const char* rule) const {
    raise(host::check_output_dims(Host::kOnnxRuntime, op_, name, dims, rank, rule));
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
    OPFORGE_ORT_REQUIRE(ORT_FAIL, e == cudaSuccess, op_,
                        ": copying a data-dependent output failed: ", cudaGetErrorString(e));
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

}  // namespace ort
}  // namespace opforge
