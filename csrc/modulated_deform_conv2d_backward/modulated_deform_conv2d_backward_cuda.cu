#include "modulated_deform_conv2d_backward.h"
#include "opforge/kernel_cuda.cuh"
namespace opforge_kernels { namespace opforge { namespace modulated_deform_conv2d_backward {
::opforge::Status cuda(const ::opforge::TensorView&, const ::opforge::TensorView&, const ::opforge::TensorView&,
                       const ::opforge::TensorView&, const ::opforge::TensorView*, const ::opforge::TensorView&,
                       const ::opforge::TensorView&, const ::opforge::TensorView&, const ::opforge::TensorView&,
                       const ::opforge::TensorView&, ::opforge::Span<int64_t>, ::opforge::Span<int64_t>,
                       ::opforge::Span<int64_t>, int64_t, int64_t, const ::opforge::DeviceContext&) {
  return ::opforge::Status::error(::opforge::Status::kInternal, "todo");
}
}}}
