#include "opforge_kernels/modelops/embedding_rows.h"

#include "opforge/kernel_cuda.cuh"

namespace {

// One warp per index: lanes stride over the row's D values and reduce the squared sum with shuffles.
template <typename T, typename I>
__global__ void gather_rows(const T* table, const I* idx, const T* weight, T* rows, float* norms, int64_t v, int64_t d,
                            int64_t n) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= n) return;
  const int64_t raw = static_cast<int64_t>(idx[warp]);
  const bool valid = raw >= -v && raw < v;  // an invalid index gives a zero row, never a wild read
  const int64_t r = raw < 0 ? raw + v : raw;
  const float scale = weight ? ::opforge::cuda::to_float(weight[warp]) : 1.0f;
  float sum = 0.0f;
  for (int64_t j = lane; j < d; j += 32) {
    const float value = valid ? ::opforge::cuda::to_float(table[r * d + j]) * scale : 0.0f;
    sum += value * value;
    rows[warp * d + j] = ::opforge::cuda::from_float<T>(value);
  }
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
  if (lane == 0) norms[warp] = sqrtf(sum);
}

}  // namespace

OPFORGE_CUDA_KERNEL(modelops, embedding_rows) {
  const int64_t n = idx.size(0);
  if (n == 0) return ::opforge::Status::ok();
  const unsigned blocks = static_cast<unsigned>((n * 32 + 255) / 256);
  return OPFORGE_DISPATCH_FLOATING_CUDA(table.dtype, T, [&] {
    const T* w = weight ? weight->ptr<const T>() : nullptr;
    if (idx.dtype == ::opforge::DType::kInt64)
      gather_rows<T, int64_t><<<blocks, 256, 0, ::opforge::cuda::stream(ctx)>>>(
          table.ptr<const T>(), idx.ptr<const int64_t>(), w, rows.ptr<T>(), norms.ptr<float>(), table.size(0),
          table.size(1), n);
    else
      gather_rows<T, int32_t><<<blocks, 256, 0, ::opforge::cuda::stream(ctx)>>>(
          table.ptr<const T>(), idx.ptr<const int32_t>(), w, rows.ptr<T>(), norms.ptr<float>(), table.size(0),
          table.size(1), n);
    return ::opforge::cuda::launch_status("modelops::embedding_rows: CUDA launch failed");
  });
}
