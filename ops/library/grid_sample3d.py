"""opforge::grid_sample3d: torch.nn.functional.grid_sample on volumes.

input [N, C, D, H, W], grid [N, Do, Ho, Wo, 3] with (x, y, z) in [-1, 1] (x indexes W, y H, z D)
-> output [N, C, Do, Ho, Wo]. mode 'bilinear' (trilinear: 8 corners) or 'nearest'; padding_mode 'zeros'
(corners outside the volume count as 0) or 'border' (coordinates clamped to the volume); align_corners as in
torch (True: -1 and 1 are the centres of the corner voxels; False: their outer edges). The semantics are
aten's grid_sampler_3d on the CPU, the reference's own implementation:

- source index: align_corners ? ((g + 1) / 2) * (size - 1) : ((g + 1) * size - 1) / 2, in float32;
  'border' clamps it to [0, size - 1] (a NaN index becomes size - 1 in the forward, as std::min/std::max
  order it); then an index that is not finite or outside the int range becomes -100 (outside), so a NaN or
  infinite grid value samples 0 under 'zeros'. Nothing outside the volume is ever read.
- 'nearest' rounds half to even (std::nearbyint), e.g. index 0.5 -> 0 and 1.5 -> 2.
- bilinear sums corner value * weight over the corners inside the volume, in aten's corner order.

Backward (its own op, opforge::grid_sample3d_backward, CPU and CUDA kernels): the gradients of aten's
grid_sampler_3d_backward: grad_input scatters grad_out * weight to the corners inside the volume; grad_grid is
d(sample)/d(index) * d(index)/d(grid) summed over channels, 0 for 'nearest'. 'border' passes no gradient to a
clamped coordinate (index <= 0 or >= size - 1); there a NaN index stays NaN and becomes -100 (no gradient at
all), as in aten's backward.

ONNX: the op exports as a custom node (domain opforge). Standard ONNX GridSample takes 5-D input only from
opset 20 (GridSample-16 is 4-D only; the TorchScript exporter refuses 5-D below opset 20: "Unsupported: ONNX
export of operator GridSample with 5D volumetric input"), and TensorRT's GridSample layer takes rank-4
tensors only (IGridSampleLayer in NvInfer.h, still so in 10.14; onnx-tensorrt's table: "Input must be 4D
input"), so Jetson's TensorRT 10.3 cannot run a 5-D GridSample at any opset: there this op's plugin is the
way. No fallback body is declared (onnx_fallback=False): the reference's standard-ONNX form is GridSample on
5-D input, which exists only from opset 20, and one declared fallback must serve every opset the op exports
at (11-23; ops.check's ort.fallback exports at 11, 17 and 20)."""

import torch
import torch.nn.functional as F

from ops import FLOATING, Attr, Input, Output, Sample, register_op

ATTRS = [
    Attr("mode", str, "bilinear", choices=("bilinear", "nearest")),
    Attr("padding_mode", str, "zeros", choices=("zeros", "border")),
    Attr("align_corners", bool, False),
]

GRID_SHAPE = "[input.shape[0], grid.shape[1], grid.shape[2], grid.shape[3], 3]"
OUT_SHAPE = "[input.shape[0], input.shape[1], grid.shape[1], grid.shape[2], grid.shape[3]]"

# (N, C, D, H, W, Do, Ho, Wo, grid kind, attrs). Grid kinds: 'uniform' in [-1.25, 1.25] (about a fifth of the
# points outside), 'lattice' multiples of 1/4 in [-1.5, 1.5] (exact voxel centres, half-way points where
# 'nearest' rounds half to even, and the borders themselves).
CONFIGS = [
    # first: the generated NaN/inf tests poison this one; bilinear so that input values reach both gradients
    ((2, 3, 4, 5, 6), (3, 4, 5), "uniform", dict(mode="bilinear", padding_mode="zeros", align_corners=False)),
    ((2, 2, 4, 4, 4), (2, 3, 4), "lattice", dict(mode="nearest", padding_mode="zeros", align_corners=False)),
    ((1, 3, 4, 4, 8), (3, 2, 5), "lattice", dict(mode="nearest", padding_mode="border", align_corners=True)),
    ((1, 4, 3, 5, 4), (2, 4, 3), "uniform", dict(mode="bilinear", padding_mode="border", align_corners=True)),
    ((2, 2, 4, 4, 4), (3, 3, 2), "lattice", dict(mode="bilinear", padding_mode="zeros", align_corners=True)),
    ((1, 5, 2, 3, 4), (2, 2, 6), "uniform", dict(mode="nearest", padding_mode="border", align_corners=False)),
    ((1, 2, 4, 4, 4), (2, 3, 3), "lattice", dict(mode="bilinear", padding_mode="border", align_corners=False)),
    ((3, 1, 1, 2, 3), (1, 2, 2), "uniform", dict(mode="nearest", padding_mode="zeros", align_corners=True)),
    ((0, 3, 4, 5, 6), (2, 3, 4), "uniform", dict()),  # empty batch, torch's defaults
]


def make_grid(n, do, ho, wo, kind, gen):
    if kind == "lattice":
        return torch.randint(-6, 7, (n, do, ho, wo, 3), generator=gen).float() / 4
    return torch.rand(n, do, ho, wo, 3, generator=gen) * 2.5 - 1.25


def _samples(device, dtype, grad):
    gen = torch.Generator().manual_seed(1234)
    out = []
    for (n, c, d, h, w), (do, ho, wo), kind, attrs in CONFIGS:
        x = torch.randn(n, c, d, h, w, generator=gen)
        grid = make_grid(n, do, ho, wo, kind, gen)
        inputs = [x, grid] + ([torch.randn(n, c, do, ho, wo, generator=gen)] if grad else [])
        out.append(Sample(*[t.to(device=device, dtype=dtype) for t in inputs], **attrs))
    return out


def samples(device, dtype):
    return _samples(device, dtype, grad=False)


def backward_samples(device, dtype):
    return _samples(device, dtype, grad=True)


def backward(ctx, grad):
    grad_input, grad_grid = torch.ops.opforge.grid_sample3d_backward(
        ctx.input, ctx.grid, grad, ctx.mode, ctx.padding_mode, ctx.align_corners
    )
    return grad_input, grad_grid


@register_op(
    "opforge::grid_sample3d",
    inputs=[Input("input", dtypes=FLOATING, rank=5), Input("grid", dtypes="like(input)", shape=GRID_SHAPE)],
    outputs=[Output("output", shape=OUT_SHAPE, dtype="like(input)")],
    attrs=ATTRS,
    backward=backward,
    saves=("input", "grid"),
    samples=samples,
    onnx_fallback=False,  # GridSample takes 5-D input only from opset 20 (dynamo exporter): see the module doc
)
def grid_sample3d(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False):
    """F.grid_sample(input, grid, mode, padding_mode, align_corners) on 5-D input, in float32."""
    out = F.grid_sample(input.float(), grid.float(), mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    return out.to(input.dtype)


@register_op(
    "opforge::grid_sample3d_backward",
    inputs=[
        Input("input", dtypes=FLOATING, rank=5),
        Input("grid", dtypes="like(input)", shape=GRID_SHAPE),
        Input("grad_out", dtypes="like(input)", shape=OUT_SHAPE),
    ],
    outputs=[
        Output("grad_input", shape="like(input)", dtype="like(input)"),
        Output("grad_grid", shape="like(grid)", dtype="like(input)"),
    ],
    attrs=ATTRS,
    # CUDA, float16/bfloat16: grad_input is accumulated in float32 with atomics, then converted.
    workspace="4 * input.shape[0] * input.shape[1] * input.shape[2] * input.shape[3] * input.shape[4]",
    samples=backward_samples,
    onnx=False,
    # float32: grad_input sums every output voxel's share (other order than aten's), grad_grid sums over
    # channels; where those cancel, the absolute difference is ~1e-7 times the sum of the terms' magnitudes.
    tolerances={"float32": (1e-5, 1e-5)},
)
def grid_sample3d_backward(input, grid, grad_out, mode="bilinear", padding_mode="zeros", align_corners=False):
    """(grad_input, grad_grid) of opforge::grid_sample3d: autograd through F.grid_sample in float32."""
    with torch.enable_grad():
        x = input.detach().float().requires_grad_()
        g = grid.detach().float().requires_grad_()
        out = F.grid_sample(x, g, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
        gx, gg = torch.autograd.grad(out, (x, g), grad_out.float(), allow_unused=True)
    gx = torch.zeros_like(x) if gx is None else gx
    gg = torch.zeros_like(g) if gg is None else gg
    return gx.to(input.dtype), gg.to(input.dtype)
