// CUDA forward of multi_scale_deformable_attn (layout in msda_cuda.cuh): a group of lanes per (n, q, m), VEC
// channels per lane in one vector load per corner (16 bytes when D and the pointers allow), points located once
// per group and shuffled, float32 accumulation. The official Deformable-DETR kernel instead runs one thread per
// output element, each locating all L*P points again and reading one element per corner.
//
// No host sync: spatial_shapes and level_start_index are read on the device, and every corner row is bounded
// by S (multi_scale_deformable_attn.h), whatever those tensors hold.
#include "msda_cuda.cuh"

namespace opforge_kernels {
namespace opforge {
namespace multi_scale_deformable_attn {
namespace {

using cuda_detail::kFullMask;
using cuda_detail::Params;

template <typename T, int VEC>
__global__ void __launch_bounds__(cuda_detail::kThreads)
    forward_kernel(const T* __restrict__ value, const int64_t* __restrict__ shapes, const int64_t* __restrict__ starts,
                   const T* __restrict__ loc, const T* __restrict__ attn, T* __restrict__ out, Params p) {
  const int lane = threadIdx.x & 31;
  const int sub = lane & (p.G - 1);
  const int rows_per_warp = 32 >> p.log2G;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t nwarps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t base = warp * rows_per_warp; base < p.rows; base += nwarps * rows_per_warp) {
    const int64_t row = base + (lane >> p.log2G);  // (n, q, m)
    const bool active = row < p.rows;
    const int64_t n = active ? row / (static_cast<int64_t>(p.Lq) * p.M) : 0;
    const int32_t m = active ? static_cast<int32_t>(row % p.M) : 0;
    const T* vbase = value + n * p.S * p.MD + m * p.D;
    const T* lrow = loc + (active ? row : 0) * p.LP * 2;
    const T* arow = attn + (active ? row : 0) * p.LP;
    for (int32_t c0 = 0; c0 < p.D; c0 += p.G * VEC) {
      const int32_t c = c0 + sub * VEC;
      const bool has_c = active && c < p.D;
      float acc[VEC];
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[i] = 0.0f;
      for (int32_t pb = 0; pb < p.LP; pb += p.G) {
        detail::Point mine;
        mine.row = 0;
        mine.w = 0;
        mine.flags = 0;
        mine.lx = mine.ly = 0.0f;
        float a_mine = 0.0f;
        const int32_t pi = pb + sub;
        if (active && pi < p.LP) {
          const detail::Level lv = cuda_detail::read_level(shapes, starts, pi / p.P, p.S);
          mine = detail::locate(::opforge::cuda::to_float(lrow[2 * pi]), ::opforge::cuda::to_float(lrow[2 * pi + 1]),
                                lv, p.S);
          a_mine = ::opforge::cuda::to_float(arow[pi]);
        }
        const int32_t count = p.LP - pb < p.G ? p.LP - pb : p.G;
        for (int32_t k = 0; k < count; ++k) {
          const cuda_detail::SharedPoint sp = cuda_detail::broadcast(mine, a_mine, k, p.G);
          if (!has_c) continue;
          if (sp.flags & detail::kNaNPoint) {
#pragma unroll
            for (int i = 0; i < VEC; ++i) acc[i] += sp.a * NAN;
            continue;
          }
          float w[4];
          detail::corner_weights(sp.lx, sp.ly, w);
          float s[VEC];
#pragma unroll
          for (int i = 0; i < VEC; ++i) s[i] = 0.0f;
#pragma unroll
          for (int corner = 0; corner < 4; ++corner) {
            if (!(sp.flags & (1 << corner))) continue;
            const int32_t r = sp.row + (corner >> 1) * sp.w + (corner & 1);  // in [0, S): see locate
            float v[VEC];
            cuda_detail::load_vec<T, VEC>(vbase + r * p.MD + c, v);
#pragma unroll
            for (int i = 0; i < VEC; ++i) s[i] += w[corner] * v[i];
          }
#pragma unroll
          for (int i = 0; i < VEC; ++i) acc[i] += sp.a * s[i];
        }
      }
      if (has_c) cuda_detail::store_vec<T, VEC>(out + row * p.D + c, acc);
    }
  }
}

template <typename T, int VEC>
::opforge::Status launch(const T* value, const int64_t* shapes, const int64_t* starts, const T* loc, const T* attn,
                         T* out, Params p, cudaStream_t stream) {
  cuda_detail::set_group(&p, VEC);
  forward_kernel<T, VEC>
      <<<cuda_detail::grid_for(p), cuda_detail::kThreads, 0, stream>>>(value, shapes, starts, loc, attn, out, p);
  return ::opforge::cuda::launch_status("multi_scale_deformable_attn: CUDA launch failed");
}

template <typename T>
::opforge::Status dispatch(const T* value, const int64_t* shapes, const int64_t* starts, const T* loc, const T* attn,
                           T* out, const Params& p, cudaStream_t stream) {
  const auto fits = [&](int vec) {
    return p.D % vec == 0 && cuda_detail::aligned_to<T>(value, vec) && cuda_detail::aligned_to<T>(out, vec);
  };
  switch (cuda_detail::pick_vec<T>(p, fits)) {  // up to one 16-byte load per corner
    case 8:
      if constexpr (sizeof(T) <= 2) return launch<T, 8>(value, shapes, starts, loc, attn, out, p, stream);
      break;
    case 4:
      if constexpr (sizeof(T) <= 4) return launch<T, 4>(value, shapes, starts, loc, attn, out, p, stream);
      break;
    case 2: return launch<T, 2>(value, shapes, starts, loc, attn, out, p, stream);
    default: break;
  }
  return launch<T, 1>(value, shapes, starts, loc, attn, out, p, stream);
}

}  // namespace

}  // namespace multi_scale_deformable_attn
}  // namespace opforge
}  // namespace opforge_kernels

OPFORGE_CUDA_KERNEL(opforge, multi_scale_deformable_attn) {
  namespace msda = ::opforge_kernels::opforge::multi_scale_deformable_attn;
  msda::detail::Dims g;
  ::opforge::Status st =
      msda::detail::check_dims(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, &g);
  if (!st.is_ok()) return st;
  if (!msda::detail::dims_are(output, {g.N, g.Lq, g.M * g.D}) || output.dtype != value.dtype)
    return ::opforge::Status::error(::opforge::Status::kInvalidArgument,
                                    "multi_scale_deformable_attn: output must be [N, Lq, M*D] of value's dtype");
  if (output.numel() == 0) return ::opforge::Status::ok();
  const msda::cuda_detail::Params p = msda::cuda_detail::make_params(g);
  return OPFORGE_DISPATCH_FLOATING_CUDA(value.dtype, T, [&] {
    return msda::dispatch<T>(value.ptr<const T>(), spatial_shapes.ptr<const int64_t>(),
                             level_start_index.ptr<const int64_t>(), sampling_locations.ptr<const T>(),
                             attention_weights.ptr<const T>(), output.ptr<T>(), p, ::opforge::cuda::stream(ctx));
  });
}
