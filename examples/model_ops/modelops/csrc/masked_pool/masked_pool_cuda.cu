#include "opforge_kernels/modelops/masked_pool.h"

#include "opforge/kernel_cuda.cuh"

namespace {

template <typename T>
__global__ void masked_pool_kernel(const T* x, const T* mask, T* y, int64_t c, int64_t h, int64_t w, int64_t total) {
  const int64_t oh = h / 2, ow = w / 2;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += stride) {
    const int64_t j = o % ow, i = (o / ow) % oh, plane = o / (ow * oh), b = plane / c;
    float sum = 0.0f;
    for (int di = 0; di < 2; ++di)
      for (int dj = 0; dj < 2; ++dj) {
        const int64_t pixel = (2 * i + di) * w + 2 * j + dj;
        const float value = ::opforge::cuda::to_float(x[plane * h * w + pixel]);
        sum += mask ? value * ::opforge::cuda::to_float(mask[b * h * w + pixel]) : value;
      }
    y[o] = ::opforge::cuda::from_float<T>(0.25f * sum);
  }
}

}  // namespace

OPFORGE_CUDA_KERNEL(modelops, masked_pool) {
  const int64_t total = y.numel();
  if (total == 0) return ::opforge::Status::ok();
  const int64_t blocks = (total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096;
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {
    masked_pool_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, ::opforge::cuda::stream(ctx)>>>(
        x.ptr<const T>(), mask ? mask->ptr<const T>() : nullptr, y.ptr<T>(), x.size(1), x.size(2), x.size(3), total);
    return ::opforge::cuda::launch_status("modelops::masked_pool: CUDA launch failed");
  });
}
