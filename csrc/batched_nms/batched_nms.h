// opforge::batched_nms: class-aware greedy non-maximum suppression (torchvision.ops.batched_nms semantics).
//
// keep[0:count] = indices of the surviving boxes in descending score order (equal scores: lower index
// first). IoU in float32 (fp16/bf16 coordinates upcast exactly): inter = w * h, union = (area_a + area_b) -
// inter, iou = inter / union, each rounded separately (no fused multiply-add) so every kernel and the
// PyTorch reference reach the same bits and therefore the same decisions; suppress when iou >
// (float)iou_threshold. max_output >= 0 caps count.
#pragma once

#include "opforge/kernel_api.h"
#include "opforge_kernels/opforge/batched_nms.h"  // the entry points, generated from the declaration

namespace opforge_kernels {
namespace opforge {
namespace batched_nms {

namespace detail {

// Shared by both entry points so CPU and CUDA reject exactly the same inputs. On success *n is the number
// of boxes.
inline ::opforge::Status check_args(const ::opforge::TensorView& boxes, const ::opforge::TensorView& scores,
                                    const ::opforge::TensorView& idxs, const ::opforge::TensorView& keep,
                                    const ::opforge::TensorView& count, int64_t* n) {
  using ::opforge::DType;
  using ::opforge::Status;
  if (boxes.rank != 2 || boxes.sizes[1] != 4)
    return Status::error(Status::kInvalidArgument, "batched_nms: boxes must have shape [N, 4]");
  const int64_t num = boxes.sizes[0];
  if (scores.rank != 1 || scores.sizes[0] != num)
    return Status::error(Status::kInvalidArgument, "batched_nms: scores must have shape [N]");
  if (idxs.rank != 1 || idxs.sizes[0] != num)
    return Status::error(Status::kInvalidArgument, "batched_nms: idxs must have shape [N]");
  if (scores.dtype != boxes.dtype)
    return Status::error(Status::kInvalidArgument, "batched_nms: scores must have the dtype of boxes");
  if (idxs.dtype != DType::kInt64 && idxs.dtype != DType::kInt32)
    return Status::error(Status::kUnsupportedDType, "batched_nms: idxs must be int64 or int32");
  if (keep.dtype != DType::kInt64 || keep.rank != 1 || keep.sizes[0] < num)
    return Status::error(Status::kInvalidArgument, "batched_nms: keep must be int64 with room for N indices");
  if (count.dtype != DType::kInt64 || count.numel() != 1)
    return Status::error(Status::kInvalidArgument, "batched_nms: count must be a single int64");
  if (num > 0x7FFFFFFF)
    return Status::error(Status::kInvalidArgument, "batched_nms: at most 2^31 - 1 boxes are supported");
  *n = num;
  return Status::ok();
}

// Order-preserving maps to unsigned keys for radix sorts (ascending key = the wanted order).
// Descending score: NaN first (as torch.sort(descending=True) puts it), -0.0 equal to +0.0.
OPFORGE_HOST_DEVICE inline uint32_t descending_score_key(float v) {
  uint32_t bits;
  if (v != v) {
    bits = 0x7FC00000u;
  } else {
    if (v == 0.0f) v = 0.0f;
#if defined(__CUDA_ARCH__)
    bits = __float_as_uint(v);
#else
    std::memcpy(&bits, &v, sizeof bits);
#endif
  }
  const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return ~ascending;
}

OPFORGE_HOST_DEVICE inline uint64_t class_key(int64_t c) { return static_cast<uint64_t>(c) ^ 0x8000000000000000ull; }
// int32 classes: the same order in the low 32 bits (a radix sort then needs only those).
OPFORGE_HOST_DEVICE inline uint64_t class_key(int32_t c) {
  return static_cast<uint64_t>(static_cast<uint32_t>(c) ^ 0x80000000u);
}

}  // namespace detail
}  // namespace batched_nms
}  // namespace opforge
}  // namespace opforge_kernels
