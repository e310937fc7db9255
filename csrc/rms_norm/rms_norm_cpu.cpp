#include "rms_norm.h"

#include "opforge/cpu_isa.h"

#include <cmath>
#include <memory>
#include <new>
#include <type_traits>

// Speed: rows are spread over the host's thread pool (ctx.parallel_for); half rows go through float32
// stack blocks (opforge::load_block/store_block, vectorised) instead of a branchy conversion per
// element; the loops are compiled twice, baseline and AVX2+FMA (on aarch64: baseline and ASIMD with FMA
// and NEON float16 conversion), picked at run time (opforge/cpu_isa.h).
namespace opforge_kernels {
namespace opforge {
namespace rms_norm {
namespace {

// Elements converted at a time: 2 KB of float32, L1-resident between conversion and use.
constexpr int64_t kBlock = 512;
// Elements per parallel chunk at least (~10 us of work on one core), so small tensors stay on the caller.
constexpr int64_t kGrainElements = 32768;
// Independent partial sums of squares: 4 AVX2 vectors (8 SSE ones), enough to hide the add latency.
// They also keep the float32 rounding error of long rows small, like a tree reduction, and let the
// compiler vectorise without -ffast-math (the order of the additions is the one written here).
constexpr int kLanes = 32;

template <bool kAvx2>
OPFORGE_ALWAYS_INLINE float madd(float a, float b, float c) {
  if constexpr (kAvx2)
    return std::fma(a, b, c);
  else
    return a * b + c;
}

// acc[j % kLanes] += v[j]^2 for j < n; n is a multiple of kLanes except for the row's last block.
template <bool kAvx2>
OPFORGE_ALWAYS_INLINE void add_squares(const float* v, int64_t n, float (&acc)[kLanes]) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] = madd<kAvx2>(v[j + k], v[j + k], acc[k]);
  for (int k = 0; j < n; ++j, ++k) acc[k] = madd<kAvx2>(v[j], v[j], acc[k]);
}

OPFORGE_ALWAYS_INLINE float total(float (&acc)[kLanes]) {
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int k = 0; k < width; ++k) acc[k] += acc[k + width];
  return acc[0];
}

// out[j] = x[j] * inv * w[j], in that order (the reference's (x * inv) * w).
OPFORGE_ALWAYS_INLINE void scale(const float* x, const float* w, float inv, float* out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = x[j] * inv * w[j];
}

// Rows [r0, r1).
template <typename T, bool kAvx2>
OPFORGE_ALWAYS_INLINE void rows_impl(const T* x, const T* w, T* y, int64_t cols, float eps, int64_t r0, int64_t r1) {
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      float acc[kLanes] = {};
      add_squares<kAvx2>(xr, cols, acc);
      const float inv = 1.0f / std::sqrt(total(acc) / static_cast<float>(cols) + eps);
      scale(xr, w, inv, y + r * cols, cols);
    }
  } else {
    // The weight in float32 once per chunk when it is reused (several rows) and small enough to stay in
    // cache; otherwise (or if the allocation fails: this runs in a pool task, which must not throw) it is
    // converted block by block next to x.
    std::unique_ptr<float[]> w_heap;
    if (r1 - r0 > 1 && cols <= (int64_t{1} << 16)) {
      w_heap.reset(new (std::nothrow) float[static_cast<size_t>(cols)]);
      if (w_heap) ::opforge::load_block_for<kAvx2>(w, w_heap.get(), cols);
    }
    const float* w32 = w_heap.get();
    float xb[kBlock], wb[kBlock];
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      float acc[kLanes] = {};
      for (int64_t j = 0; j < cols; j += kBlock) {
        const int64_t len = cols - j < kBlock ? cols - j : kBlock;
        ::opforge::load_block_for<kAvx2>(xr + j, xb, len);
        add_squares<kAvx2>(xb, len, acc);
      }
      const float inv = 1.0f / std::sqrt(total(acc) / static_cast<float>(cols) + eps);
      // Second pass re-reads x (a row of half is at most a few hundred KB, still in L2) rather than
      // keeping the whole float32 row, which has no size bound.
      for (int64_t j = 0; j < cols; j += kBlock) {
        const int64_t len = cols - j < kBlock ? cols - j : kBlock;
        ::opforge::load_block_for<kAvx2>(xr + j, xb, len);
        const float* wj = w32 ? w32 + j : wb;
        if (!w32) ::opforge::load_block_for<kAvx2>(w + j, wb, len);
        scale(xb, wj, inv, xb, len);
        ::opforge::store_block_for<kAvx2>(xb, yr + j, len);
      }
    }
  }
}

template <typename T>
void rows_baseline(const T* x, const T* w, T* y, int64_t cols, float eps, int64_t r0, int64_t r1) {
  rows_impl<T, false>(x, w, y, cols, eps, r0, r1);
}

#if OPFORGE_HAVE_AVX2_CLONE
template <typename T>
OPFORGE_TARGET_AVX2 void rows_avx2(const T* x, const T* w, T* y, int64_t cols, float eps, int64_t r0, int64_t r1) {
  rows_impl<T, true>(x, w, y, cols, eps, r0, r1);
}
#endif
#if OPFORGE_HAVE_ASIMD
// AArch64's wide form: fused multiply-adds and NEON float16 conversions (opforge/cpu_isa.h).
template <typename T>
void rows_asimd(const T* x, const T* w, T* y, int64_t cols, float eps, int64_t r0, int64_t r1) {
  rows_impl<T, true>(x, w, y, cols, eps, r0, r1);
}
#endif

template <typename T>
void run(const T* x, const T* w, T* y, int64_t rows, int64_t cols, float eps, const ::opforge::DeviceContext& ctx) {
  auto* rows_fn = &rows_baseline<T>;
#if OPFORGE_HAVE_AVX2_CLONE
  if (::opforge::cpu_has_avx2_fma()) rows_fn = &rows_avx2<T>;
#endif
#if OPFORGE_HAVE_ASIMD
  if (::opforge::cpu_has_asimd()) rows_fn = &rows_asimd<T>;
#endif
  const int64_t grain = cols >= kGrainElements ? 1 : kGrainElements / cols;
  ctx.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) { rows_fn(x, w, y, cols, eps, r0, r1); });
}

}  // namespace
}  // namespace rms_norm
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, rms_norm) {
  int64_t rows = 0, cols = 0;
  const ::opforge::Status st = detail::check_args(x, weight, y, &rows, &cols);
  if (!st.is_ok()) return st;
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    if (rows > 0) run(x.ptr<const T>(), weight.ptr<const T>(), y.ptr<T>(), rows, cols, static_cast<float>(eps), ctx);
    return ::opforge::Status::ok();
  });
}
