"""opforge::scaled_gelu: alpha * gelu(x), exact (erf) or tanh-approximated, computed in float32."""

import math

import torch

from ops import FLOATING, Attr, Input, Output, Sample, register_op


def samples(device, dtype):
    def rand(*shape, scale=3.0):
        return (torch.randn(*shape, dtype=torch.float32) * scale).to(device=device, dtype=dtype)

    return [
        Sample(rand(8, 33)),
        Sample(rand(2, 3, 64), alpha=1.702, approximate="tanh"),
        Sample(rand(4, 5, 7, 3), alpha=-0.5, approximate="none"),
        Sample(rand(1000), alpha=2.0),
        Sample(rand(1, 1)),
        Sample(rand(0, 16)),  # empty
        Sample(rand(3, 257, scale=30.0), approximate="tanh"),  # saturated tails
    ]


def backward(ctx, grad):
    """d/dx alpha*gelu(x), in float32 like the forward."""
    x = ctx.x.float()
    if ctx.approximate == "tanh":
        k = math.sqrt(2.0 / math.pi)
        inner = k * (x + 0.044715 * x**3)
        t = torch.tanh(inner)
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
    else:
        cdf = 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2.0))))
        pdf = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        d = cdf + x * pdf
    return (grad.float() * d * ctx.alpha).to(ctx.x.dtype)


@register_op(
    "opforge::scaled_gelu",
    inputs=[Input("x", dtypes=FLOATING)],
    outputs=[Output("y", shape="like(x)", dtype="like(x)")],
    attrs=[Attr("alpha", float, 1.0), Attr("approximate", str, "none", choices=("none", "tanh"))],
    backward=backward,
    saves=("x",),  # what backward reads: the output need not be kept alive for it
    samples=samples,
    # For x < -3 the erf/tanh forms cancel (1 + erf(v) -> 0) in float32 in every implementation,
    # torch's own included: absolute errors reach ~1e-7 * |x| there, so float32 gets atol 1e-5.
    tolerances={"float32": (1e-5, 1e-5)},
)
def scaled_gelu(x, alpha=1.0, approximate="none"):
    """alpha * gelu(x): the GELU of torch.nn.functional.gelu, scaled; float32 math for every dtype.
    At +-inf it is its limit (gelu(inf) = inf, gelu(-inf) = 0), stated here because torch's own CPU gelu
    disagrees across versions (2.11 gives NaN for both, 2.13 NaN for -inf only)."""
    x32 = x.float()
    y = torch.nn.functional.gelu(x32, approximate=approximate)
    y = torch.where(torch.isinf(x32), torch.where(x32 > 0, x32, torch.zeros_like(x32)), y)
    return (y * alpha).to(x.dtype)
