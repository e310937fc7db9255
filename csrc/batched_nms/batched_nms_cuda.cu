// CUDA batched NMS, entirely on the device (no host sync, no allocation: TensorRT-enqueue safe).
//
//  1. order = box indices by descending score (equal scores: lower index first): a stable CUB radix sort
//     of (score key, index) pairs.
//  2. positions p = the boxes grouped by class, score order kept inside a class: a stable radix sort of
//     (class key, score rank) pairs. A class is a contiguous segment [seg_begin, seg_end) of positions.
//  3. gather: float32 boxes and areas in position order, and seg_end per position (binary search).
//  4. mask: for 64-position chunks gi <= gj, bit c of word mask[p * W + gj] says whether box p suppresses
//     position 64 * gj + c: same class (p < j < seg_end[p]) and IoU > threshold. Only column chunks inside
//     p's class are computed, so the work is sum over classes of n_c^2 / 2 IoUs, not N^2 / 2.
//  5. walk: one block per class segment (found at its head's chunk) walks the segment's chunks in order:
//     the surviving boxes of a chunk follow serially from the chunk's removed-bits word and the diagonal
//     mask words (one warp, ballot-free: a loop over the surviving bits), then every thread ORs the kept
//     rows into the removed words of the later chunks. Classes run in parallel.
//  6. the survivors' flags by score rank -> exclusive scan -> keep[] in score order, capped by max_output;
//     count written on the device.
#include "batched_nms.h"

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "opforge/kernel_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace batched_nms {
namespace {

constexpr int kChunk = 64;         // boxes per mask word
constexpr int kWalkThreads = 256;  // threads of a segment-walk block
constexpr int kMaxColumnSplit = 16;

using ::opforge::cuda::to_float;

__device__ __forceinline__ float max_f(float a, float b) { return a < b ? b : a; }  // std::max's NaN handling
__device__ __forceinline__ float min_f(float a, float b) { return b < a ? b : a; }  // std::min's

// IoU(a, b) > thr, rounded exactly like the CPU kernel and the reference: no contraction into FMAs.
__device__ __forceinline__ bool overlaps(float4 a, float area_a, float4 b, float area_b, float thr) {
  const float w = max_f(__fsub_rn(min_f(a.z, b.z), max_f(a.x, b.x)), 0.0f);
  const float h = max_f(__fsub_rn(min_f(a.w, b.w), max_f(a.y, b.y)), 0.0f);
  const float inter = __fmul_rn(w, h);
  const float uni = __fsub_rn(__fadd_rn(area_a, area_b), inter);
  return __fdiv_rn(inter, uni) > thr;
}

template <typename T>
__global__ void score_keys_kernel(const T* scores, int n, uint32_t* keys, int32_t* order) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    keys[i] = detail::descending_score_key(to_float(scores[i]));
    order[i] = i;
  }
}

template <typename I>
__global__ void class_keys_kernel(const I* idxs, const int32_t* order, int n, uint64_t* keys, int32_t* rank) {
  for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < n; r += gridDim.x * blockDim.x) {
    keys[r] = detail::class_key(idxs[order[r]]);
    rank[r] = r;
  }
}

template <typename T>
__global__ void gather_kernel(const T* boxes, const int32_t* order, const int32_t* rank, const uint64_t* class_keys,
                              int n, float4* sorted, float* area, int32_t* seg_end) {
  for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < n; p += gridDim.x * blockDim.x) {
    const int64_t i = order[rank[p]];
    const float4 b = make_float4(to_float(boxes[4 * i]), to_float(boxes[4 * i + 1]), to_float(boxes[4 * i + 2]),
                                 to_float(boxes[4 * i + 3]));
    sorted[p] = b;
    area[p] = __fmul_rn(__fsub_rn(b.z, b.x), __fsub_rn(b.w, b.y));
    // The end of p's class: the first position after p with another class key.
    const uint64_t key = class_keys[p];
    int lo = p + 1, hi = n;
    while (lo < hi) {
      const int mid = lo + (hi - lo) / 2;
      if (class_keys[mid] == key)
        lo = mid + 1;
      else
        hi = mid;
    }
    seg_end[p] = lo;
  }
}

// Block (gi, y): rows = chunk gi, columns = chunks gi + y, gi + y + gridDim.y, ... up to the chunk holding
// the end of the last row's class (rows are class-sorted, so no row of the chunk needs more).
__global__ void __launch_bounds__(kChunk) mask_kernel(const float4* boxes, const float* area, const int32_t* seg_end,
                                                      int n, int64_t words, float thr, uint64_t* mask) {
  __shared__ float4 col_box[kChunk];
  __shared__ float col_area[kChunk];
  const int gi = blockIdx.x;
  const int row0 = gi * kChunk;
  const int last_row = min(row0 + kChunk, n) - 1;
  const int last_chunk = (seg_end[last_row] - 1) / kChunk;
  const int p = row0 + threadIdx.x;
  const bool has_row = p < n;
  const float4 row_box = has_row ? boxes[p] : make_float4(0.f, 0.f, 0.f, 0.f);
  const float row_area = has_row ? area[p] : 0.0f;
  const int row_end = has_row ? seg_end[p] : 0;
  for (int gj = gi + blockIdx.y; gj <= last_chunk; gj += gridDim.y) {
    const int col0 = gj * kChunk;
    __syncthreads();  // the previous tile's reads are done
    if (col0 + threadIdx.x < n) {
      col_box[threadIdx.x] = boxes[col0 + threadIdx.x];
      col_area[threadIdx.x] = area[col0 + threadIdx.x];
    }
    __syncthreads();
    if (!has_row) continue;
    // Columns of p's class after p: (p, row_end) intersected with this chunk.
    const int c_begin = max(p + 1 - col0, 0);
    const int c_end = min(row_end - col0, kChunk);
    uint64_t bits = 0;
    for (int c = c_begin; c < c_end; ++c)
      if (overlaps(row_box, row_area, col_box[c], col_area[c], thr)) bits |= 1ull << c;
    mask[static_cast<int64_t>(p) * words + gj] = bits;
  }
}

// One block per 64-position chunk; it walks every class segment whose first position lies in the chunk.
__global__ void __launch_bounds__(kWalkThreads)
    walk_kernel(const uint64_t* mask, const int32_t* seg_end, const int32_t* rank, int n, int64_t words, int64_t cap,
                uint64_t* removed, int32_t* keep_by_rank) {
  __shared__ uint64_t diag[kChunk];
  __shared__ uint64_t heads_sh;
  __shared__ uint64_t kept_sh;
  const int base = blockIdx.x * kChunk;
  const int tid = threadIdx.x;
  if (tid < 32) {
    const int p0 = base + tid, p1 = base + 32 + tid;
    const bool h0 = p0 < n && (p0 == 0 || seg_end[p0 - 1] == p0);
    const bool h1 = p1 < n && (p1 == 0 || seg_end[p1 - 1] == p1);
    const uint64_t lo = __ballot_sync(0xFFFFFFFFu, h0), hi = __ballot_sync(0xFFFFFFFFu, h1);
    if (tid == 0) heads_sh = lo | (hi << 32);
  }
  __syncthreads();
  uint64_t heads = heads_sh;
  while (heads) {
    const int head = base + __ffsll(static_cast<long long>(heads)) - 1;
    heads &= heads - 1;
    const int end = seg_end[head];
    const int last = (end - 1) / kChunk;
    int64_t kept_total = 0;  // uniform across the block
    for (int gc = head / kChunk; gc <= last; ++gc) {
      const int c0 = gc * kChunk;
      const int lo = max(head, c0) - c0, hi = min(end, c0 + kChunk) - c0;  // this class's bits: [lo, hi)
      const uint64_t valid = (hi - lo == 64 ? ~0ull : ((1ull << (hi - lo)) - 1)) << lo;
      if (tid < kChunk) {
        const int r = c0 + tid;
        diag[tid] = (tid >= lo && tid < hi) ? mask[static_cast<int64_t>(r) * words + gc] : 0ull;
      }
      __syncthreads();
      if (tid < 32) {
        // Every lane runs the same serial loop over the chunk's candidates (uniform values).
        // An atomic read: other blocks' atomicOr on a shared boundary word are L2 operations.
        uint64_t rem = tid == 0 ? atomicOr(reinterpret_cast<unsigned long long*>(removed) + gc, 0ull) : 0ull;
        rem = __shfl_sync(0xFFFFFFFFu, rem, 0) & valid;
        uint64_t kept = 0;
        uint64_t avail = valid & ~rem;
        int64_t total = kept_total;
        while (avail && total < cap) {
          const int b = __ffsll(static_cast<long long>(avail)) - 1;
          kept |= 1ull << b;
          ++total;
          rem |= diag[b];
          avail = valid & ~rem & ((~0ull << b) << 1);
        }
        for (int t = tid; t < kChunk; t += 32)
          if (t >= lo && t < hi) keep_by_rank[rank[c0 + t]] = static_cast<int32_t>((kept >> t) & 1ull);
        if (tid == 0) kept_sh = kept;
      }
      __syncthreads();
      const uint64_t kept = kept_sh;
      kept_total += __popcll(kept);
      // The kept rows remove boxes of later chunks of this class.
      for (int gj = gc + 1 + tid; gj <= last; gj += blockDim.x) {
        uint64_t acc = 0;
        for (uint64_t k = kept; k; k &= k - 1) {
          const int b = __ffsll(static_cast<long long>(k)) - 1;
          acc |= mask[static_cast<int64_t>(c0 + b) * words + gj];
        }
        if (acc) atomicOr(reinterpret_cast<unsigned long long*>(removed) + gj, static_cast<unsigned long long>(acc));
      }
      __threadfence();
      __syncthreads();  // also: diag and kept_sh are rewritten next iteration
    }
  }
}

__global__ void write_kernel(const int32_t* flags, const int32_t* position, const int32_t* order, int n, int64_t cap,
                             int64_t* keep, int64_t* count) {
  for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < n; r += gridDim.x * blockDim.x) {
    if (flags[r] && position[r] < cap) keep[position[r]] = order[r];
    if (r == n - 1) {
      const int64_t total = static_cast<int64_t>(position[r]) + flags[r];
      *count = total < cap ? total : cap;
    }
  }
}

// Carves the workspace into aligned regions; fails (without touching memory) when it is too small.
struct Carver {
  char* base;
  size_t size, used = 0;
  template <typename U>
  U* take(size_t count) {
    used = (used + 255) / 256 * 256;
    U* out = reinterpret_cast<U*>(base + used);
    used += count * sizeof(U);
    return out;
  }
  bool fits() const { return used <= size; }
};

inline unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
}

template <typename T, typename I>
::opforge::Status launch(const T* boxes, const T* scores, const I* idxs, int n, float thr, int64_t cap, int64_t* keep,
                         int64_t* count, const ::opforge::DeviceContext& ctx) {
  using ::opforge::Status;
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  const int64_t words = (n + kChunk - 1) / kChunk;
  Carver ws{static_cast<char*>(ctx.workspace), ctx.workspace_bytes};
  uint32_t* score_keys[2] = {ws.take<uint32_t>(n), ws.take<uint32_t>(n)};
  int32_t* order_buf[2] = {ws.take<int32_t>(n), ws.take<int32_t>(n)};
  uint64_t* class_keys_buf[2] = {ws.take<uint64_t>(n), ws.take<uint64_t>(n)};
  int32_t* rank_buf[2] = {ws.take<int32_t>(n), ws.take<int32_t>(n)};
  float4* sorted = ws.take<float4>(n);
  float* area = ws.take<float>(n);
  int32_t* seg_end = ws.take<int32_t>(n);
  int32_t* flags = ws.take<int32_t>(n);
  int32_t* position = ws.take<int32_t>(n);
  uint64_t* removed = ws.take<uint64_t>(words);
  uint64_t* mask = ws.take<uint64_t>(static_cast<size_t>(n) * words);

  cub::DoubleBuffer<uint32_t> d_score(score_keys[0], score_keys[1]);
  cub::DoubleBuffer<int32_t> d_order(order_buf[0], order_buf[1]);
  cub::DoubleBuffer<uint64_t> d_class(class_keys_buf[0], class_keys_buf[1]);
  cub::DoubleBuffer<int32_t> d_rank(rank_buf[0], rank_buf[1]);
  const int class_bits = sizeof(I) == 4 ? 32 : 64;
  size_t sort1_bytes = 0, sort2_bytes = 0, scan_bytes = 0;
  if (cub::DeviceRadixSort::SortPairs(nullptr, sort1_bytes, d_score, d_order, n, 0, 32, stream) != cudaSuccess ||
      cub::DeviceRadixSort::SortPairs(nullptr, sort2_bytes, d_class, d_rank, n, 0, class_bits, stream) != cudaSuccess ||
      cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, flags, position, n, stream) != cudaSuccess)
    return Status::error(Status::kCudaError, "batched_nms: querying CUB temporary storage failed");
  size_t temp_bytes = sort1_bytes > sort2_bytes ? sort1_bytes : sort2_bytes;
  if (scan_bytes > temp_bytes) temp_bytes = scan_bytes;
  void* temp = ws.take<char>(temp_bytes);
  if (!ws.fits())
    return Status::error(Status::kInvalidArgument, "batched_nms: workspace smaller than the declared size");

  const unsigned grid = grid_for(n, 256);
  score_keys_kernel<T><<<grid, 256, 0, stream>>>(scores, n, d_score.Current(), d_order.Current());
  if (cub::DeviceRadixSort::SortPairs(temp, sort1_bytes, d_score, d_order, n, 0, 32, stream) != cudaSuccess)
    return Status::error(Status::kCudaError, "batched_nms: score sort failed");
  const int32_t* order = d_order.Current();
  class_keys_kernel<I><<<grid, 256, 0, stream>>>(idxs, order, n, d_class.Current(), d_rank.Current());
  if (cub::DeviceRadixSort::SortPairs(temp, sort2_bytes, d_class, d_rank, n, 0, class_bits, stream) != cudaSuccess)
    return Status::error(Status::kCudaError, "batched_nms: class sort failed");
  const int32_t* rank = d_rank.Current();
  gather_kernel<T><<<grid, 256, 0, stream>>>(boxes, order, rank, d_class.Current(), n, sorted, area, seg_end);
  const unsigned split = static_cast<unsigned>(words < kMaxColumnSplit ? words : kMaxColumnSplit);
  mask_kernel<<<dim3(static_cast<unsigned>(words), split), kChunk, 0, stream>>>(sorted, area, seg_end, n, words, thr,
                                                                                mask);
  if (cudaMemsetAsync(removed, 0, words * sizeof(uint64_t), stream) != cudaSuccess)
    return Status::error(Status::kCudaError, "batched_nms: clearing the removed bits failed");
  walk_kernel<<<static_cast<unsigned>(words), kWalkThreads, 0, stream>>>(mask, seg_end, rank, n, words, cap, removed,
                                                                         flags);
  if (cub::DeviceScan::ExclusiveSum(temp, scan_bytes, flags, position, n, stream) != cudaSuccess)
    return Status::error(Status::kCudaError, "batched_nms: scan failed");
  write_kernel<<<grid, 256, 0, stream>>>(flags, position, order, n, cap, keep, count);
  return ::opforge::cuda::launch_status("batched_nms: CUDA launch failed");
}

}  // namespace
}  // namespace batched_nms
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, batched_nms) {
  using ::opforge::Status;
  int64_t n = 0;
  const Status st = detail::check_args(boxes, scores, idxs, keep, count, &n);
  if (!st.is_ok()) return st;
  cudaStream_t stream = ::opforge::cuda::stream(ctx);
  int64_t* count_out = count.ptr<int64_t>();
  if (n == 0) {
    if (cudaMemsetAsync(count_out, 0, sizeof(int64_t), stream) != cudaSuccess)
      return Status::error(Status::kCudaError, "batched_nms: writing count failed");
    return Status::ok();
  }
  const float thr = static_cast<float>(iou_threshold);
  const int64_t cap = max_output >= 0 ? max_output : n;
  const int num = static_cast<int>(n);
  return OPFORGE_DISPATCH_FLOATING_CUDA(boxes.dtype, T, [&] {
    if (idxs.dtype == ::opforge::DType::kInt64)
      return launch<T>(boxes.ptr<const T>(), scores.ptr<const T>(), idxs.ptr<const int64_t>(), num, thr, cap,
                       keep.ptr<int64_t>(), count_out, ctx);
    return launch<T>(boxes.ptr<const T>(), scores.ptr<const T>(), idxs.ptr<const int32_t>(), num, thr, cap,
                     keep.ptr<int64_t>(), count_out, ctx);
  });
}
