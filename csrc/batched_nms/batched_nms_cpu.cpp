#include "batched_nms.h"

#include <algorithm>
#include <cstring>
#include <vector>

// IoU decisions must match the reference bit for bit, so no multiply-add may be fused (GCC contracts
// across statements by default wherever the target has FMA, e.g. aarch64).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace opforge_kernels {
namespace opforge {
namespace batched_nms {
namespace {

// Stable LSD radix sort of (key, value) pairs on 8-bit digits. A pass whose digit is the same for every
// key is skipped, so class ids 0..255 sort in one pass and the constant high bytes cost nothing.
template <typename K>
void radix_sort_pairs(std::vector<K>& keys, std::vector<int32_t>& vals) {
  const size_t n = keys.size();
  std::vector<K> keys_tmp(n);
  std::vector<int32_t> vals_tmp(n);
  for (unsigned shift = 0; shift < 8 * sizeof(K); shift += 8) {
    size_t offset[256] = {};
    for (size_t i = 0; i < n; ++i) ++offset[(keys[i] >> shift) & 0xFF];
    if (std::any_of(offset, offset + 256, [n](size_t c) { return c == n; })) continue;
    size_t sum = 0;
    for (size_t& c : offset) {
      const size_t here = c;
      c = sum;
      sum += here;
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t dst = offset[(keys[i] >> shift) & 0xFF]++;
      keys_tmp[dst] = keys[i];
      vals_tmp[dst] = vals[i];
    }
    keys.swap(keys_tmp);
    vals.swap(vals_tmp);
  }
}

// Boxes of one class in score order, as separate coordinate arrays so the overlap test vectorises.
struct BoxArrays {
  std::vector<float> x1, y1, x2, y2, area;
  void resize(size_t n) {
    x1.resize(n);
    y1.resize(n);
    x2.resize(n);
    y2.resize(n);
    area.resize(n);
  }
};

// IoU(a, b) > thr with the reference's exact rounding (see batched_nms.h).
inline bool overlaps(float ax1, float ay1, float ax2, float ay2, float aa, float bx1, float by1, float bx2, float by2,
                     float ba, float thr) {
  const float w = std::max(std::min(ax2, bx2) - std::max(ax1, bx1), 0.0f);
  const float h = std::max(std::min(ay2, by2) - std::max(ay1, by1), 0.0f);
  const float inter = w * h;
  const float uni = (aa + ba) - inter;
  return inter / uni > thr;
}

// Whether any of the kept boxes [k, k + kBlock) overlaps box b: a fixed-length, branch-free loop that the
// compiler turns into SIMD (min/max/sub/mul/div/compare on 4-8 lanes, no FMA).
constexpr int64_t kBlock = 8;
inline int block_overlaps(const float* __restrict x1, const float* __restrict y1, const float* __restrict x2,
                          const float* __restrict y2, const float* __restrict area, float bx1, float by1, float bx2,
                          float by2, float ba, float thr) {
  int any = 0;
  for (int64_t q = 0; q < kBlock; ++q) {
    const float w = std::max(std::min(x2[q], bx2) - std::max(x1[q], bx1), 0.0f);
    const float h = std::max(std::min(y2[q], by2) - std::max(y1[q], by1), 0.0f);
    const float inter = w * h;
    const float uni = (area[q] + ba) - inter;
    any |= inter / uni > thr ? 1 : 0;
  }
  return any;
}

// Greedy suppression inside one class: box j (in score order) survives unless a kept box overlaps it.
// Checking each candidate against the kept boxes (stopping at the first block with an overlap) visits no
// more pairs than torchvision's forward sweep. Marks keep_by_rank[rank[j]] for survivors; stops after
// `cap` keeps (a class cannot contribute more than max_output boxes to the output).
void suppress_class(const BoxArrays& b, const int32_t* rank, int64_t begin, int64_t end, float thr, int64_t cap,
                    BoxArrays& kept, uint8_t* keep_by_rank) {
  float* __restrict kx1 = kept.x1.data();
  float* __restrict ky1 = kept.y1.data();
  float* __restrict kx2 = kept.x2.data();
  float* __restrict ky2 = kept.y2.data();
  float* __restrict ka = kept.area.data();
  int64_t m = 0;
  for (int64_t j = begin; j < end && m < cap; ++j) {
    const float bx1 = b.x1[j], by1 = b.y1[j], bx2 = b.x2[j], by2 = b.y2[j], ba = b.area[j];
    bool hit = false;
    int64_t k = 0;
    for (; k + kBlock <= m; k += kBlock) {
      if (block_overlaps(kx1 + k, ky1 + k, kx2 + k, ky2 + k, ka + k, bx1, by1, bx2, by2, ba, thr)) {
        hit = true;
        break;
      }
    }
    for (; k < m && !hit; ++k) hit = overlaps(kx1[k], ky1[k], kx2[k], ky2[k], ka[k], bx1, by1, bx2, by2, ba, thr);
    if (hit) continue;
    kx1[m] = bx1;
    ky1[m] = by1;
    kx2[m] = bx2;
    ky2[m] = by2;
    ka[m] = ba;
    ++m;
    keep_by_rank[rank[j]] = 1;
  }
}

template <typename T, typename I>
void run(const T* boxes, const T* scores, const I* idxs, int64_t n, float thr, int64_t max_output, int64_t* keep,
         int64_t* count, const ::opforge::DeviceContext& ctx) {
  // 1. Score order: descending score, equal scores by ascending index (LSD radix sorts are stable).
  std::vector<uint32_t> score_keys(n);
  std::vector<int32_t> order(n);
  for (int64_t i = 0; i < n; ++i) {
    score_keys[i] = detail::descending_score_key(::opforge::load(scores, i));
    order[i] = static_cast<int32_t>(i);
  }
  radix_sort_pairs(score_keys, order);
  // 2. Group by class, keeping score order inside each class: values are score ranks.
  std::vector<uint64_t> class_keys(n);
  std::vector<int32_t> rank(n);
  for (int64_t r = 0; r < n; ++r) {
    class_keys[r] = detail::class_key(static_cast<int64_t>(idxs[order[r]]));
    rank[r] = static_cast<int32_t>(r);
  }
  radix_sort_pairs(class_keys, rank);
  // 3. Boxes in (class, score) order, upcast to float32, with their areas.
  BoxArrays sorted;
  sorted.resize(n);
  for (int64_t p = 0; p < n; ++p) {
    const int64_t i = order[rank[p]];
    const float x1 = ::opforge::load(boxes, 4 * i), y1 = ::opforge::load(boxes, 4 * i + 1);
    const float x2 = ::opforge::load(boxes, 4 * i + 2), y2 = ::opforge::load(boxes, 4 * i + 3);
    sorted.x1[p] = x1;
    sorted.y1[p] = y1;
    sorted.x2[p] = x2;
    sorted.y2[p] = y2;
    sorted.area[p] = (x2 - x1) * (y2 - y1);
  }
  std::vector<int64_t> seg_begin;
  for (int64_t p = 0; p < n; ++p)
    if (p == 0 || class_keys[p] != class_keys[p - 1]) seg_begin.push_back(p);
  const int64_t segments = static_cast<int64_t>(seg_begin.size());
  seg_begin.push_back(n);
  // 4. Classes are independent: suppress them in parallel (each writes only its own ranks' flags).
  std::vector<uint8_t> keep_by_rank(n, 0);
  const int64_t cap = max_output >= 0 ? max_output : n;
  const int64_t grain = std::max<int64_t>(1, segments * 1024 / n);  // ~1k boxes a chunk on average
  ctx.parallel_for(segments, grain, [&](int64_t s0, int64_t s1) {
    BoxArrays kept;
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t size = seg_begin[s + 1] - seg_begin[s];
      if (static_cast<int64_t>(kept.x1.size()) < size) kept.resize(size);
      suppress_class(sorted, rank.data(), seg_begin[s], seg_begin[s + 1], thr, cap, kept, keep_by_rank.data());
    }
  });
  // 5. Merge the classes in score order.
  int64_t c = 0;
  for (int64_t r = 0; r < n && c < cap; ++r)
    if (keep_by_rank[r]) keep[c++] = order[r];
  *count = c;
}

}  // namespace
}  // namespace batched_nms
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CPU_KERNEL(opforge, batched_nms) {
  int64_t n = 0;
  const ::opforge::Status st = detail::check_args(boxes, scores, idxs, keep, count, &n);
  if (!st.is_ok()) return st;
  int64_t* keep_out = keep.ptr<int64_t>();
  int64_t* count_out = count.ptr<int64_t>();
  const float thr = static_cast<float>(iou_threshold);
  return OPFORGE_DISPATCH_FLOATING_CPU(boxes.dtype, T, [&] {
    if (n == 0) {
      *count_out = 0;
    } else if (idxs.dtype == ::opforge::DType::kInt64) {
      run(boxes.ptr<const T>(), scores.ptr<const T>(), idxs.ptr<const int64_t>(), n, thr, max_output, keep_out,
          count_out, ctx);
    } else {
      run(boxes.ptr<const T>(), scores.ptr<const T>(), idxs.ptr<const int32_t>(), n, thr, max_output, keep_out,
          count_out, ctx);
    }
    return ::opforge::Status::ok();
  });
}
