#include "correlation.h"

#include "opforge/kernel_cuda.cuh"

#include <cstdint>

namespace opforge_kernels {
namespace opforge {
namespace correlation {
namespace {

using ::opforge::cuda::from_float;
using ::opforge::cuda::to_float;

// ---- the tiled kernel: kernel_size 1, stride 1 (the FlowNet/PWC-Net case), any patch, dilation_patch,
// padding --------------------------------------------------------------------------------------------
//
// A block owns a tile of kTileW x tile_h output pixels of one batch element and a range of "slots"; a slot is
// one displacement row ph and a group of G consecutive displacement columns. Thread (tx, ty, tz) computes
// pixel (ty, tx) of the tile for slot tz: G float accumulators in registers. Channels go through shared
// memory in chunks: the f1 tile [chunk][tile_h][kTileW] and the haloed f2 tile
// [chunk][rows][cols] covering every displacement of the block's slots. Per channel a thread reads one f1
// value and G f2 values; a warp (32 consecutive tx, one ty and tz) reads consecutive words, so shared
// memory is conflict-free for any dilation_patch. Half inputs are widened to float when staged.
constexpr int kTileW = 32;
constexpr int kMaxGroup = 9;  // displacement columns per thread, at most (patch 9: one group)
constexpr int kMaxThreads = 1024;
constexpr size_t kSmemBudget = 48 * 1024;  // no opt-in needed on any architecture

struct TileConfig {
  int tile_h, group, groups_w, slots, slots_per_block, splits, chunk, rows_cap, cols;
  size_t smem_bytes() const {
    return static_cast<size_t>(chunk) * (static_cast<size_t>(tile_h) * kTileW + static_cast<size_t>(rows_cap) * cols) *
           sizeof(float);
  }
};

template <typename T, int G>
__global__ void __launch_bounds__(kMaxThreads)
    correlation_tiled_kernel(const T* __restrict__ f1, const T* __restrict__ f2, T* __restrict__ out,
                             const detail::Params p, const TileConfig cfg) {
  extern __shared__ float smem[];
  const int tile_h = cfg.tile_h, rows_cap = cfg.rows_cap, cols = cfg.cols;
  float* f1s = smem;                                           // [chunk][tile_h][kTileW]
  float* f2s = smem + static_cast<size_t>(cfg.chunk) * tile_h * kTileW;  // [chunk][rows_cap][cols]

  const int b = static_cast<int>(blockIdx.z / cfg.splits);
  const int split = static_cast<int>(blockIdx.z % cfg.splits);
  const int slot0 = split * cfg.slots_per_block;
  const int slot_end = min(cfg.slots, slot0 + cfg.slots_per_block);
  const int ph_lo = slot0 / cfg.groups_w;
  const int ph_hi = (slot_end - 1) / cfg.groups_w;
  const int rows = tile_h + (ph_hi - ph_lo) * p.dp_h;  // <= rows_cap (host-checked)

  const int ox0 = blockIdx.x * kTileW, oy0 = blockIdx.y * tile_h;
  const int tx = threadIdx.x, ty = threadIdx.y, tz = threadIdx.z;
  const int slot = slot0 + tz;
  const bool active = slot < slot_end;
  const int ph = active ? slot / cfg.groups_w : ph_lo;
  const int pw0 = active ? (slot % cfg.groups_w) * G : 0;

  // f2 tile origin in image coordinates (may be negative: zero-filled)
  const int y2_origin = oy0 - p.pad_h + (ph_lo - p.rad_h) * p.dp_h;
  const int x2_origin = ox0 - p.pad_w - p.rad_w * p.dp_w;
  const int H = static_cast<int>(p.height), W = static_cast<int>(p.width);
  const int64_t plane = p.height * p.width;
  const T* f1b = f1 + static_cast<int64_t>(b) * p.channels * plane;
  const T* f2b = f2 + static_cast<int64_t>(b) * p.channels * plane;

  // blockDim.x == kTileW: every warp is one (ty, tz) row of threads
  const int warp = tz * blockDim.y + ty, lane = tx;
  const int nwarps = blockDim.y * blockDim.z;
  const int f1_tile = tile_h * kTileW;

  float acc[G];
#pragma unroll
  for (int k = 0; k < G; ++k) acc[k] = 0.0f;

  const int f2_row = ty + (ph - ph_lo) * p.dp_h;
  const int f2_col = tx + pw0 * p.dp_w;

  for (int64_t c0 = 0; c0 < p.channels; c0 += cfg.chunk) {
    const int nch = static_cast<int>(min(static_cast<int64_t>(cfg.chunk), p.channels - c0));
    __syncthreads();  // the previous chunk's reads are done
    // Staging: one warp per (channel, row), lanes along the row: coalesced global loads, and the index
    // divisions are paid once per row rather than once per element.
    for (int cr = warp; cr < nch * tile_h; cr += nwarps) {
      const int c = cr / tile_h, r = cr % tile_h;
      const int y = oy0 + r - p.pad_h, x = ox0 + lane - p.pad_w;
      float v = 0.0f;
      if (y >= 0 && y < H && x >= 0 && x < W) v = to_float(f1b[(c0 + c) * plane + static_cast<int64_t>(y) * W + x]);
      f1s[c * f1_tile + r * kTileW + lane] = v;
    }
    for (int cr = warp; cr < nch * rows; cr += nwarps) {
      const int c = cr / rows, r = cr % rows;
      const int y = y2_origin + r;
      float* dst = f2s + (static_cast<size_t>(c) * rows_cap + r) * cols;
      if (y < 0 || y >= H) {
        for (int q = lane; q < cols; q += kTileW) dst[q] = 0.0f;
        continue;
      }
      const T* src = f2b + (c0 + c) * plane + static_cast<int64_t>(y) * W;
      for (int q = lane; q < cols; q += kTileW) {
        const int x = x2_origin + q;
        dst[q] = x >= 0 && x < W ? to_float(src[x]) : 0.0f;
      }
    }
    __syncthreads();
    if (active) {
      const float* a_ptr = f1s + ty * kTileW + tx;
      const float* b_ptr = f2s + f2_row * cols + f2_col;
      for (int c = 0; c < nch; ++c) {
        const float a = a_ptr[c * f1_tile];
        const float* row = b_ptr + static_cast<size_t>(c) * rows_cap * cols;
#pragma unroll
        for (int k = 0; k < G; ++k) acc[k] = fmaf(a, row[k * p.dp_w], acc[k]);
      }
    }
  }

  const int oy = oy0 + ty, ox = ox0 + tx;
  if (!active || oy >= p.out_h || ox >= p.out_w) return;
  const int64_t hw = p.out_h * p.out_w;
  T* dst = out + ((static_cast<int64_t>(b) * p.patch_h + ph) * p.patch_w + pw0) * hw +
           static_cast<int64_t>(oy) * p.out_w + ox;
  // With kernel 1 an output is one product summed over channels, and a product with a position outside the
  // image is excluded (it is not a multiplication by the zero fill: inf * 0 would be NaN), so such an output
  // is exactly 0, as in the reference and the general kernel.
  const int y1 = oy - p.pad_h, x1 = ox - p.pad_w;
  const bool f1_inside = y1 >= 0 && y1 < H && x1 >= 0 && x1 < W;
  const int y2 = y1 + p.shift_h(ph);
#pragma unroll
  for (int k = 0; k < G; ++k) {
    if (pw0 + k >= p.patch_w) continue;
    const int x2 = x1 + p.shift_w(pw0 + k);
    const bool inside = f1_inside && y2 >= 0 && y2 < H && x2 >= 0 && x2 < W;
    dst[k * hw] = from_float<T>(inside ? acc[k] : 0.0f);
  }
}

// Picks the tile shape, slot split and channel chunk; false when the tiled kernel cannot take the case.
bool tile_config(const detail::Params& p, TileConfig* cfg) {
  if (p.k_h != 1 || p.k_w != 1 || p.stride_h != 1 || p.stride_w != 1) return false;
  cfg->groups_w = (p.patch_w + kMaxGroup - 1) / kMaxGroup;
  cfg->group = (p.patch_w + cfg->groups_w - 1) / cfg->groups_w;
  cfg->slots = p.patch_h * cfg->groups_w;
  cfg->splits = (cfg->slots + 31) / 32;
  cfg->slots_per_block = (cfg->slots + cfg->splits - 1) / cfg->splits;
  int tile_h = 32 / cfg->slots_per_block;  // <= 1024 threads a block
  if (tile_h > 8) tile_h = 8;
  if (tile_h < 1) tile_h = 1;
  if (tile_h > p.out_h) tile_h = static_cast<int>(p.out_h);
  cfg->tile_h = tile_h;
  // The most displacement rows one block's slots span.
  int span = 0;
  for (int s = 0; s < cfg->splits; ++s) {
    const int first = s * cfg->slots_per_block;
    if (first >= cfg->slots) break;
    const int last = (first + cfg->slots_per_block < cfg->slots ? first + cfg->slots_per_block : cfg->slots) - 1;
    const int rows = last / cfg->groups_w - first / cfg->groups_w;
    if (rows > span) span = rows;
  }
  const int64_t rows_cap = tile_h + static_cast<int64_t>(span) * p.dp_h;
  const int64_t cols = kTileW + static_cast<int64_t>(cfg->groups_w * cfg->group - 1) * p.dp_w;
  const int64_t per_channel = (static_cast<int64_t>(tile_h) * kTileW + rows_cap * cols) * 4;
  if (per_channel > static_cast<int64_t>(kSmemBudget)) return false;
  int64_t chunk = static_cast<int64_t>(kSmemBudget) / per_channel;
  if (chunk > 32) chunk = 32;
  if (chunk > p.channels) chunk = p.channels > 0 ? p.channels : 1;
  cfg->chunk = static_cast<int>(chunk);
  cfg->rows_cap = static_cast<int>(rows_cap);
  cfg->cols = static_cast<int>(cols);
  const int64_t blocks_y = (p.out_h + tile_h - 1) / tile_h;
  const int64_t blocks_z = p.batch * cfg->splits;
  return blocks_y <= 65535 && blocks_z <= 65535;
}

template <typename T, int G>
void launch_tiled(const T* f1, const T* f2, T* out, const detail::Params& p, const TileConfig& cfg,
                  cudaStream_t stream) {
  const dim3 block(kTileW, cfg.tile_h, cfg.slots_per_block);
  const dim3 grid(static_cast<unsigned>((p.out_w + kTileW - 1) / kTileW),
                  static_cast<unsigned>((p.out_h + cfg.tile_h - 1) / cfg.tile_h),
                  static_cast<unsigned>(p.batch * cfg.splits));
  correlation_tiled_kernel<T, G><<<grid, block, cfg.smem_bytes(), stream>>>(f1, f2, out, p, cfg);
}

template <typename T>
void dispatch_tiled(const T* f1, const T* f2, T* out, const detail::Params& p, const TileConfig& cfg,
                    cudaStream_t stream) {
  switch (cfg.group) {
    case 1: launch_tiled<T, 1>(f1, f2, out, p, cfg, stream); break;
    case 2: launch_tiled<T, 2>(f1, f2, out, p, cfg, stream); break;
    case 3: launch_tiled<T, 3>(f1, f2, out, p, cfg, stream); break;
    case 4: launch_tiled<T, 4>(f1, f2, out, p, cfg, stream); break;
    case 5: launch_tiled<T, 5>(f1, f2, out, p, cfg, stream); break;
    case 6: launch_tiled<T, 6>(f1, f2, out, p, cfg, stream); break;
    case 7: launch_tiled<T, 7>(f1, f2, out, p, cfg, stream); break;
    case 8: launch_tiled<T, 8>(f1, f2, out, p, cfg, stream); break;
    default: launch_tiled<T, 9>(f1, f2, out, p, cfg, stream); break;
  }
}

// ---- the general kernel: any kernel_size, stride, dilation -------------------------------------------
// One thread per output element (grid-stride, int64 indices), ox fastest so a warp's loads of one channel
// are coalesced; the inputs are read through L1/L2.
template <typename T>
__global__ void correlation_general_kernel(const T* __restrict__ f1, const T* __restrict__ f2, T* __restrict__ out,
                                           const detail::Params p, int64_t total) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int H = static_cast<int>(p.height), W = static_cast<int>(p.width);
  const int64_t plane = p.height * p.width;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += step) {
    const int ox = static_cast<int>(idx % p.out_w);
    int64_t rest = idx / p.out_w;
    const int oy = static_cast<int>(rest % p.out_h);
    rest /= p.out_h;
    const int pw = static_cast<int>(rest % p.patch_w);
    rest /= p.patch_w;
    const int ph = static_cast<int>(rest % p.patch_h);
    const int64_t b = rest / p.patch_h;
    const int sy = p.shift_h(ph), sx = p.shift_w(pw);
    const T* f1b = f1 + b * p.channels * plane;
    const T* f2b = f2 + b * p.channels * plane;
    float acc = 0.0f;
    for (int i = 0; i < p.k_h; ++i) {
      const int y = oy * p.stride_h - p.pad_h + i * p.dil_h;
      if (y < 0 || y >= H || y + sy < 0 || y + sy >= H) continue;
      for (int j = 0; j < p.k_w; ++j) {
        const int x = ox * p.stride_w - p.pad_w + j * p.dil_w;
        if (x < 0 || x >= W || x + sx < 0 || x + sx >= W) continue;
        const int64_t o1 = static_cast<int64_t>(y) * W + x;
        const int64_t o2 = static_cast<int64_t>(y + sy) * W + x + sx;
        for (int64_t c = 0; c < p.channels; ++c)
          acc = fmaf(to_float(f1b[c * plane + o1]), to_float(f2b[c * plane + o2]), acc);
      }
    }
    out[idx] = from_float<T>(acc);
  }
}

template <typename T>
void launch_general(const T* f1, const T* f2, T* out, const detail::Params& p, int64_t total, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t needed = (total + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(needed < 65536 * 8 ? needed : 65536 * 8);
  correlation_general_kernel<T><<<blocks, kThreads, 0, stream>>>(f1, f2, out, p, total);
}

}  // namespace
}  // namespace correlation
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, correlation) {
  detail::Params p;
  const ::opforge::Status st =
      detail::check_args(f1, f2, corr, kernel_size, patch_size, stride, padding, dilation, dilation_patch, &p);
  if (!st.is_ok()) return st;
  const int64_t total = corr.numel();
  if (total == 0) return ::opforge::Status::ok();
  const cudaStream_t stream = ::opforge::cuda::stream(ctx);
  return OPFORGE_DISPATCH_FLOATING_CUDA(f1.dtype, T, [&] {
    const T* a = f1.ptr<const T>();
    const T* b = f2.ptr<const T>();
    T* o = corr.ptr<T>();
    TileConfig cfg;
    if (tile_config(p, &cfg)) {
      dispatch_tiled<T>(a, b, o, p, cfg, stream);
    } else {
      launch_general<T>(a, b, o, p, total, stream);
    }
    return ::opforge::cuda::launch_status("correlation: CUDA launch failed");
  });
}
