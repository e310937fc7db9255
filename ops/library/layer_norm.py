"""opforge::layer_norm: (x - mean) / sqrt(var + eps) * weight (+ bias) over the last dim, mean and (biased)
variance in float32 for every input dtype.

Like rms_norm, the statistics must not be accumulated in half precision: the sum of 4096 fp16 values of
magnitude ~300 passes fp16's 65504 (and their squares far more). The kernels compute the mean first and then
the sum of squared deviations from it (two passes), which loses nothing to cancellation when |mean| >> std.
`bias` is optional: without it the op is y = x_hat * weight (torch.nn.functional.layer_norm with bias=None)."""

import torch

from ops import FLOATING, Attr, Input, Output, Sample, Triton, register_op

from ._row_triton import ROW_CONFIGS


def samples(device, dtype):
    def rand(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, dtype=torch.float32) * scale + shift).to(device=device, dtype=dtype)

    def weight(n):
        return (1 + 0.1 * torch.randn(n)).to(device=device, dtype=dtype)

    def bias(n):
        return (0.1 * torch.randn(n)).to(device=device, dtype=dtype)

    return [
        Sample(rand(4, 64), weight(64), bias(64)),
        Sample(rand(4, 64), weight(64)),  # no bias
        Sample(rand(2, 3, 1000), weight(1000), bias(1000), eps=1e-6),  # rank 3
        Sample(rand(3, 4096, scale=300.0), weight(4096), bias(4096)),  # overflows a half accumulator
        Sample(rand(2, 4096, scale=20.0, shift=200.0), weight(4096)),  # |mean| >> std: a one-pass var cancels
        Sample(rand(5, 7), weight(7), bias(7), eps=0.1),  # cols not a multiple of any vector width
        Sample(rand(9, 1003), weight(1003)),  # long misaligned rows
        Sample(rand(6, 1), weight(1), bias(1)),  # var = 0: y = bias
        Sample(rand(129), weight(129), bias(129)),  # rank 1: one row
        Sample(rand(0, 32), weight(32), bias(32)),  # empty
    ]


def backward(ctx, grad):
    x, w = ctx.x.float(), ctx.weight.float()
    g = grad.float()
    mean = x.mean(-1, keepdim=True)
    xc = x - mean
    inv = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + ctx.eps)
    xhat = xc * inv
    gw = g * w
    grad_x = inv * (gw - gw.mean(-1, keepdim=True) - xhat * (gw * xhat).mean(-1, keepdim=True))
    cols = x.shape[-1]
    grad_w = (g * xhat).reshape(-1, cols).sum(0)
    grad_b = g.reshape(-1, cols).sum(0).to(ctx.bias.dtype) if ctx.bias is not None else None
    return grad_x.to(ctx.x.dtype), grad_w.to(ctx.weight.dtype), grad_b


def tune_samples(device, dtype):
    """What ops.tune times the Triton configs on: 16M elements (32 MB in half precision) at each row length."""
    return [
        Sample(
            torch.randn(2**24 // cols, cols, device=device).to(dtype),
            torch.ones(cols, device=device, dtype=dtype),
            torch.zeros(cols, device=device, dtype=dtype),
        )
        for cols in (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
    ]


# The Triton variant of the CUDA kernel (csrc/layer_norm/layer_norm_triton.py), used when a build selects it
# (OPFORGE_CUDA_KERNELS=triton): the shared configs by row length. The bias pointer is null when bias is
# absent; has_bias says which.
TRITON = Triton(
    kernel="layer_norm_fwd",
    args={
        "x": "x",
        "w": "weight",
        "b": "bias",
        "y": "y",
        "rows": "numel(x) // x.shape[-1]",
        "cols": "x.shape[-1]",
        "eps": "eps",
        "has_bias": "present(bias)",
    },
    grid=["ceil_div(numel(x) // x.shape[-1], ROWS)"],
    key="x.shape[-1]",
    configs=list(ROW_CONFIGS),  # by row length (ops/library/_row_triton.py)
    aligned=("cols",),  # rows of a multiple of 16 elements: masked loads along them vectorise
    tune=tune_samples,
)


@register_op(
    "opforge::layer_norm",
    inputs=[
        Input("x", dtypes=FLOATING, min_rank=1),
        Input("weight", dtypes="like(x)", shape="[x.shape[-1]]"),
        Input("bias", dtypes="like(x)", optional=True, shape="[x.shape[-1]]"),
    ],
    outputs=[Output("y", shape="like(x)", dtype="like(x)")],
    attrs=[Attr("eps", float, 1e-5)],
    backward=backward,
    saves=("x", "weight", "bias"),  # bias only to tell whether it was given (its gradient is then returned)
    samples=samples,
    triton=TRITON,
)
def layer_norm(x, weight, bias=None, eps=1e-5):
    """LayerNorm over the last dim with float32 statistics for every input dtype. Spelled out rather than
    torch.nn.functional.layer_norm(xf, (x.shape[-1],), ...): a traced x.shape[-1] is not a constant, so the
    ONNX fallback export (torchscript, opsets < 20) refuses it. tests/library/test_layer_norm.py checks that
    the two agree."""
    xf = x.float()
    xc = xf - xf.mean(-1, keepdim=True)
    y = xc * torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)
