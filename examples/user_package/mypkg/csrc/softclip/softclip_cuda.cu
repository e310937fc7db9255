#include "softclip.h"

#include "opforge/kernel_cuda.cuh"

namespace opforge_kernels {
namespace mypkg {
namespace softclip {
namespace {

template <typename T>
__global__ void softclip_kernel(const T* x, T* y, int64_t n, float bound) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = ::opforge::cuda::from_float<T>(bound * tanhf(::opforge::cuda::to_float(x[i]) / bound));
}

}  // namespace

::opforge::Status cuda(const ::opforge::TensorView& x, const ::opforge::TensorView& y, double bound,
                       const ::opforge::DeviceContext& ctx) {
  const int64_t n = x.numel();
  if (n == 0) return ::opforge::Status::ok();
  const int64_t blocks = (n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096;
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {
    softclip_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, ::opforge::cuda::stream(ctx)>>>(
        x.ptr<const T>(), y.ptr<T>(), n, static_cast<float>(bound));
    return ::opforge::cuda::launch_status("softclip: CUDA launch failed");
  });
}

}  // namespace softclip
}  // namespace mypkg
}  // namespace opforge_kernels
