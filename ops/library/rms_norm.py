"""opforge::rms_norm: x / sqrt(mean(x^2, last dim) + eps) * weight, accumulated in float32.

Accumulating in float32 matters: the sum of squares of 4096 fp16 values of magnitude ~300 is ~3.7e8,
far past fp16's 65504, so a naive half-precision reduction returns inf and the output collapses to 0."""

import torch

from ops import FLOATING, Attr, Input, Output, Sample, Triton, register_op

from ._row_triton import ROW_CONFIGS


def samples(device, dtype):
    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, dtype=torch.float32) * scale).to(device=device, dtype=dtype)

    def weight(n):
        return (1 + 0.1 * torch.randn(n)).to(device=device, dtype=dtype)

    return [
        Sample(rand(4, 64), weight(64)),
        Sample(rand(2, 3, 1000), weight(1000), eps=1e-5),
        Sample(rand(3, 4096, scale=300.0), weight(4096)),  # overflows a half accumulator
        Sample(rand(5, 7), weight(7), eps=0.1),
        Sample(rand(6, 1), weight(1)),
        Sample(rand(129), weight(129)),  # rank 1: one row
        Sample(rand(0, 32), weight(32)),  # empty
    ]


def backward(ctx, grad):
    x, w = ctx.x.float(), ctx.weight.float()
    g = grad.float()
    inv = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + ctx.eps)
    xhat = x * inv
    gw = g * w
    grad_x = inv * (gw - xhat * (gw * xhat).mean(-1, keepdim=True))
    grad_w = (g * xhat).reshape(-1, x.shape[-1]).sum(0)
    return grad_x.to(ctx.x.dtype), grad_w.to(ctx.weight.dtype)


def tune_samples(device, dtype):
    """What ops.tune times the Triton configs on: 16M elements (32 MB in half precision) at each row length."""
    return [
        Sample(torch.randn(2**24 // cols, cols, device=device).to(dtype), torch.ones(cols, device=device, dtype=dtype))
        for cols in (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
    ]


# The Triton variant of the CUDA kernel (csrc/rms_norm/rms_norm_triton.py), used when a build selects it
# (OPFORGE_CUDA_KERNELS=triton): the shared configs by row length.
TRITON = Triton(
    kernel="rms_norm_fwd",
    args={"x": "x", "w": "weight", "y": "y", "rows": "numel(x) // x.shape[-1]", "cols": "x.shape[-1]", "eps": "eps"},
    grid=["ceil_div(numel(x) // x.shape[-1], ROWS)"],
    key="x.shape[-1]",
    configs=list(ROW_CONFIGS),  # by row length (ops/library/_row_triton.py)
    aligned=("cols",),  # rows of a multiple of 16 elements: masked loads along them vectorise
    tune=tune_samples,
)


@register_op(
    "opforge::rms_norm",
    inputs=[
        Input("x", dtypes=FLOATING, min_rank=1),
        Input("weight", dtypes="like(x)", shape="[x.shape[-1]]"),
    ],
    outputs=[Output("y", shape="like(x)", dtype="like(x)")],
    attrs=[Attr("eps", float, 1e-6)],
    backward=backward,
    saves=("x", "weight"),  # what backward reads: the output need not be kept alive for it
    samples=samples,
    triton=TRITON,
)
def rms_norm(x, weight, eps=1e-6):
    """RMSNorm over the last dim with a float32 accumulator for every input dtype."""
    xf = x.float()
    inv = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * inv * weight.float()).to(x.dtype)
