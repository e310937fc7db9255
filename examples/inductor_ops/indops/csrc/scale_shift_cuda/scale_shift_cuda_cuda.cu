// The README's hand-written CUDA kernel of scale_shift: what indops::scale_shift's Inductor kernel is measured
// against (benchmarks/bench_inductor.py).
#include "opforge_kernels/indops/scale_shift_cuda.h"

#include "opforge/kernel_cuda.cuh"

namespace {

template <typename T>
__global__ void scale_shift_kernel(const T* x, T* y, int64_t n, float scale, float shift) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = ::opforge::cuda::from_float<T>(::opforge::cuda::to_float(x[i]) * scale + shift);
}

}  // namespace

OPFORGE_CUDA_KERNEL(indops, scale_shift_cuda) {
  const int64_t n = x.numel();
  if (n == 0) return ::opforge::Status::ok();
  const int64_t blocks = (n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096;
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {
    scale_shift_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, ::opforge::cuda::stream(ctx)>>>(
        x.ptr<const T>(), y.ptr<T>(), n, static_cast<float>(scale), static_cast<float>(shift));
    return ::opforge::cuda::launch_status("scale_shift_cuda: CUDA launch failed");
  });
}
