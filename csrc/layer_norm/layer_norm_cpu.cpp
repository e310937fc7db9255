#include "layer_norm.h"

#include "opforge/cpu_isa.h"

#include <cmath>
#include <memory>
#include <new>
#include <type_traits>

// Speed: as rms_norm_cpu.cpp. Rows are spread over the host's thread pool (ctx.parallel_for); half rows go
// through float32 stack blocks (opforge::load_block/store_block, vectorised); the loops are compiled twice,
// baseline and AVX2+FMA (aarch64: baseline and ASIMD), picked at run time (opforge/cpu_isa.h).
// Accuracy: two passes over the row for the statistics (the mean, then the sum of squared deviations from
// it), so a row whose mean dwarfs its spread loses nothing to the cancellation of E[x^2] - E[x]^2.
namespace opforge_kernels {
namespace opforge {
namespace layer_norm {
namespace {

// Elements converted at a time: 2 KB of float32, L1-resident between conversion and use.
constexpr int64_t kBlock = 512;
// Elements per parallel chunk at least (~10 us of work on one core), so small tensors stay on the caller.
constexpr int64_t kGrainElements = 32768;
// Independent partial sums: enough to hide the add latency, keep the float32 rounding error of long rows
// small (like a tree reduction) and let the compiler vectorise without -ffast-math.
constexpr int kLanes = 32;

template <bool kAvx2>
OPFORGE_ALWAYS_INLINE float madd(float a, float b, float c) {
  if constexpr (kAvx2)
    return std::fma(a, b, c);
  else
    return a * b + c;
}

// acc[j % kLanes] += v[j] for j < n; n is a multiple of kLanes except for the row's last block.
OPFORGE_ALWAYS_INLINE void add_values(const float* v, int64_t n, float (&acc)[kLanes]) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += v[j + k];
  for (int k = 0; j < n; ++j, ++k) acc[k] += v[j];
}

// acc[j % kLanes] += (v[j] - mean)^2 for j < n.
template <bool kAvx2>
OPFORGE_ALWAYS_INLINE void add_squared_deviations(const float* v, int64_t n, float mean, float (&acc)[kLanes]) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float d = v[j + k] - mean;
      acc[k] = madd<kAvx2>(d, d, acc[k]);
    }
  for (int k = 0; j < n; ++j, ++k) {
    const float d = v[j] - mean;
    acc[k] = madd<kAvx2>(d, d, acc[k]);
  }
}

OPFORGE_ALWAYS_INLINE float total(float (&acc)[kLanes]) {
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int k = 0; k < width; ++k) acc[k] += acc[k + width];
  return acc[0];
}

// out[j] = (x[j] - mean) * rstd * w[j] (+ b[j] when b is given); out may be x.
OPFORGE_ALWAYS_INLINE void normalize(const float* x, const float* w, const float* b, float mean, float rstd, float* out,
                                     int64_t n) {
  if (b != nullptr) {
    for (int64_t j = 0; j < n; ++j) out[j] = (x[j] - mean) * rstd * w[j] + b[j];
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = (x[j] - mean) * rstd * w[j];
  }
}

OPFORGE_ALWAYS_INLINE float inverse_std(float sum_squared_deviations, int64_t cols, float eps) {
  return 1.0f / std::sqrt(sum_squared_deviations / static_cast<float>(cols) + eps);
}

// Rows [r0, r1). b is null when the op has no bias.
template <typename T, bool kAvx2>
OPFORGE_ALWAYS_INLINE void rows_impl(const T* x, const T* w, const T* b, T* y, int64_t cols, float eps, int64_t r0,
                                     int64_t r1) {
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      float acc[kLanes] = {};
      add_values(xr, cols, acc);
      const float mean = total(acc) / static_cast<float>(cols);
      float dev[kLanes] = {};
      add_squared_deviations<kAvx2>(xr, cols, mean, dev);
      normalize(xr, w, b, mean, inverse_std(total(dev), cols, eps), y + r * cols, cols);
    }
  } else {
    // Weight and bias in float32 once per chunk when they are reused (several rows) and small enough to stay
    // in cache; otherwise (or if an allocation fails: this runs in a pool task, which must not throw) they
    // are converted block by block next to x.
    std::unique_ptr<float[]> wb_heap;
    if (r1 - r0 > 1 && cols <= (int64_t{1} << 16)) {
      wb_heap.reset(new (std::nothrow) float[static_cast<size_t>(2 * cols)]);
      if (wb_heap) {
        ::opforge::load_block_for<kAvx2>(w, wb_heap.get(), cols);
        if (b != nullptr) ::opforge::load_block_for<kAvx2>(b, wb_heap.get() + cols, cols);
      }
    }
    const float* w32 = wb_heap.get();
    const float* b32 = wb_heap ? wb_heap.get() + cols : nullptr;
    float xb[kBlock], wb[kBlock], bb[kBlock];
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      float acc[kLanes] = {};
      for (int64_t j = 0; j < cols; j += kBlock) {
        const int64_t len = cols - j < kBlock ? cols - j : kBlock;
        ::opforge::load_block_for<kAvx2>(xr + j, xb, len);
        add_values(xb, len, acc);
      }
      const float mean = total(acc) / static_cast<float>(cols);
      // The second and third passes re-read x (a half row is at most a few hundred KB, still in L2) rather
      // than keeping the whole float32 row, which has no size bound.
      float dev[kLanes] = {};
      for (int64_t j = 0; j < cols; j += kBlock) {
        const int64_t len = cols - j < kBlock ? cols - j : kBlock;
        ::opforge::load_block_for<kAvx2>(xr + j, xb, len);
        add_squared_deviations<kAvx2>(xb, len, mean, dev);
      }
      const float rstd = inverse_std(total(dev), cols, eps);
      for (int64_t j = 0; j < cols; j += kBlock) {
        const int64_t len = cols - j < kBlock ? cols - j : kBlock;
        ::opforge::load_block_for<kAvx2>(xr + j, xb, len);
        const float* wj = w32 ? w32 + j : wb;
        const float* bj = b == nullptr ? nullptr : (b32 ? b32 + j : bb);
        if (!w32) {
          ::opforge::load_block_for<kAvx2>(w + j, wb, len);
          if (b != nullptr) ::opforge::load_block_for<kAvx2>(b + j, bb, len);
        }
        normalize(xb, wj, bj, mean, rstd, xb, len);
        ::opforge::store_block_for<kAvx2>(xb, yr + j, len);
      }
    }
  }
}

template <typename T>
void rows_baseline(const T* x, const T* w, const T* b, T* y, int64_t cols, float eps, int64_t r0, int64_t r1) {
  rows_impl<T, false>(x, w, b, y, cols, eps, r0, r1);
}

#if OPFORGE_HAVE_AVX2_CLONE
template <typename T>
OPFORGE_TARGET_AVX2 void rows_avx2(const T* x, const T* w, const T* b, T* y, int64_t cols, float eps, int64_t r0,
                                   int64_t r1) {
  rows_impl<T, true>(x, w, b, y, cols, eps, r0, r1);
}
#endif
#if OPFORGE_HAVE_ASIMD
// AArch64's wide form: fused multiply-adds and NEON float16 conversions (opforge/cpu_isa.h).
template <typename T>
void rows_asimd(const T* x, const T* w, const T* b, T* y, int64_t cols, float eps, int64_t r0, int64_t r1) {
  rows_impl<T, true>(x, w, b, y, cols, eps, r0, r1);
}
#endif

template <typename T>
void run(const T* x, const T* w, const T* b, T* y, int64_t rows, int64_t cols, float eps,
         const ::opforge::DeviceContext& ctx) {
  auto* rows_fn = &rows_baseline<T>;
#if OPFORGE_HAVE_AVX2_CLONE
  if (::opforge::cpu_has_avx2_fma()) rows_fn = &rows_avx2<T>;
#endif
#if OPFORGE_HAVE_ASIMD
  if (::opforge::cpu_has_asimd()) rows_fn = &rows_asimd<T>;
#endif
  const int64_t grain = cols >= kGrainElements ? 1 : kGrainElements / cols;
  ctx.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) { rows_fn(x, w, b, y, cols, eps, r0, r1); });
}

}  // namespace
}  // namespace layer_norm
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, layer_norm) {
  int64_t rows = 0, cols = 0;
  const ::opforge::Status st = detail::check_args(x, weight, bias, y, &rows, &cols);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    if (rows > 0)
      run(x.ptr<const T>(), weight.ptr<const T>(), bias != nullptr ? bias->ptr<const T>() : nullptr, y.ptr<T>(), rows,
          cols, static_cast<float>(eps), ctx);
    return ::opforge::Status::ok();
  });
}
