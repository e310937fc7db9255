#include "opforge_kernels/modelops/box_blur.h"

#include "opforge/kernel_cuda.cuh"

namespace {

template <typename T>
__global__ void box_blur_kernel(const T* x, T* y, int64_t w, int64_t ow, int64_t k, int64_t total) {
  const float inv = 1.0f / static_cast<float>(k);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += stride) {
    const int64_t r = o / ow, j = o % ow;
    float sum = 0.0f;
    for (int64_t t = 0; t < k; ++t) sum += ::opforge::cuda::to_float(x[r * w + j + t]);
    y[o] = ::opforge::cuda::from_float<T>(sum * inv);
  }
}

}  // namespace

OPFORGE_CUDA_KERNEL(modelops, box_blur) {
  const int64_t w = x.size(2), ow = out.size(2), total = out.numel();
  if (kernel < 1 || kernel > w)
    return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                    "modelops::box_blur: kernel must be in [1, x.shape[2]]");
  if (total == 0) return ::opforge::Status::ok();
  const int64_t blocks = (total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096;
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {
    box_blur_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, ::opforge::cuda::stream(ctx)>>>(
        x.ptr<const T>(), out.ptr<T>(), w, ow, kernel, total);
    return ::opforge::cuda::launch_status("modelops::box_blur: CUDA launch failed");
  });
}
