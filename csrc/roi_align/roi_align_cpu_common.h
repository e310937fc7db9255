// CPU pieces shared by opforge::roi_align and opforge::roi_align_backward: the rois as float with their batch
// indices validated (an error Status naming the op, the row and the value), and the per-roi table of sample
// corners and weights that every channel reuses.
#pragma once

#include <cstdio>
#include <vector>

#include "roi_align/roi_align.h"

namespace opforge_kernels {
namespace opforge {
namespace roi_align {
namespace cpu_common {

using detail::Corners;
using detail::Params;
using detail::Roi;

// The rois as float32 [K * 5]; a batch index that is not an integer in [0, N) is an error naming `op`, the roi
// row and the value. The message lives in a thread-local buffer: the host copies it before this thread calls
// the kernel again.
template <typename T>
::opforge::Status load_rois(const char* op, const T* rois, const Params& p, std::vector<float>* out) {
  out->resize(static_cast<size_t>(p.rois * 5));
  for (int64_t i = 0; i < p.rois * 5; ++i) (*out)[i] = ::opforge::load(rois, i);
  for (int64_t k = 0; k < p.rois; ++k) {
    const float b = (*out)[k * 5];
    if (!detail::batch_index_ok(b, p.batch)) {
      thread_local char message[256];
      std::snprintf(message, sizeof message,
                    "%s: rois[%lld, 0] (the batch index) is %.9g; it must be an integer in [0, N) where features' N "
                    "is %lld",
                    op, static_cast<long long>(k), static_cast<double>(b), static_cast<long long>(p.batch));
      return ::opforge::Status::error(::opforge::Status::kInvalidArgument, message);
    }
  }
  return ::opforge::Status::ok();
}

// At most this many samples are tabulated at once (48 bytes each); a roi with more (a huge adaptive grid) is
// processed one bin, and one piece of a bin, at a time, summing in the same order.
constexpr int64_t kMaxTable = 16384;

// The taken samples (inside [-1, H] x [-1, W]) among samples [s_begin, s_end) of bin (ph, pw), in (iy, ix)
// order, appended to *table. A sample that is not taken adds exactly 0, so leaving it out keeps the sums.
inline void tabulate(const Roi& g, const Params& p, int ph, int pw, int64_t s_begin, int64_t s_end,
                     std::vector<Corners>* table) {
  for (int64_t s = s_begin; s < s_end; ++s) {
    const int iy = static_cast<int>(s / g.grid_w), ix = static_cast<int>(s % g.grid_w);
    detail::Axis ya, xa;
    if (!detail::bilinear_axis(detail::sample_coord(g.y_start, ph, g.bin_h, iy, g.grid_h), p.height, &ya)) continue;
    if (!detail::bilinear_axis(detail::sample_coord(g.x_start, pw, g.bin_w, ix, g.grid_w), p.width, &xa)) continue;
    table->push_back(detail::corners(ya, xa, p.width));
  }
}

// Calls f(starts) over the roi's samples with `table` holding their corners, bin `bin` being
// table[starts[bin], starts[bin + 1]): the whole roi in one call when it is small (every channel then walks one
// table), else one call per piece of one bin (the other bins' ranges empty), bins and pieces in order, so a
// running sum per (channel, bin) adds the samples in torchvision's order either way.
template <typename F>
void for_each_piece(const Roi& g, const Params& p, std::vector<Corners>* table, std::vector<int64_t>* starts,
                    const F& f) {
  const int64_t per_bin = g.samples(), bins = p.bins();
  if (per_bin <= 0) return;
  table->clear();
  starts->assign(static_cast<size_t>(bins + 1), 0);
  if (per_bin * bins <= kMaxTable) {
    for (int64_t bin = 0; bin < bins; ++bin) {
      (*starts)[bin] = static_cast<int64_t>(table->size());
      tabulate(g, p, static_cast<int>(bin / p.pooled_w), static_cast<int>(bin % p.pooled_w), 0, per_bin, table);
    }
    (*starts)[bins] = static_cast<int64_t>(table->size());
    f(*starts);
    return;
  }
  for (int64_t bin = 0; bin < bins; ++bin)
    for (int64_t s = 0; s < per_bin; s += kMaxTable) {
      table->clear();
      tabulate(g, p, static_cast<int>(bin / p.pooled_w), static_cast<int>(bin % p.pooled_w), s,
               s + kMaxTable < per_bin ? s + kMaxTable : per_bin, table);
      for (int64_t b = 0; b <= bins; ++b) (*starts)[b] = b <= bin ? 0 : static_cast<int64_t>(table->size());
      f(*starts);
    }
}

}  // namespace cpu_common
}  // namespace roi_align
}  // namespace opforge
}  // namespace opforge_kernels
