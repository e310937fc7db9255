#include "roi_align/roi_align.h"
#include "opforge_kernels/opforge/roi_align_backward.h"
OPFORGE_CUDA_KERNEL(opforge, roi_align_backward) {
  return ::opforge::Status::error(::opforge::Status::kInternal, "roi_align_backward: skeleton");
}
