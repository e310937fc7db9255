#pragma once

#include "opforge/kernel_api.h"

namespace opforge_kernels {
namespace mypkg {
namespace softclip {

::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& y, double bound,
                      const ::opforge::DeviceContext& ctx);
::opforge::Status cuda(const ::opforge::TensorView& x, const ::opforge::TensorView& y, double bound,
                       const ::opforge::DeviceContext& ctx);

}  // namespace softclip
}  // namespace mypkg
}  // namespace opforge_kernels
