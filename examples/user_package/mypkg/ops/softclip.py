"""mypkg::softclip: y = bound * tanh(x / bound), a smooth clamp to (-bound, bound), computed in float32."""

import torch

from ops import FLOATING, Attr, Input, Output, Sample, register_op


def samples(device, dtype):
    def rand(*shape, scale=1.0):
        return (torch.randn(*shape) * scale).to(device=device, dtype=dtype)

    return [Sample(rand(4, 33)), Sample(rand(2, 3, 130, scale=8.0), bound=2.5), Sample(rand(0, 7))]


def backward(ctx, grad):
    t = torch.tanh(ctx.x.float() / ctx.bound)
    return (grad.float() * (1 - t * t)).to(ctx.x.dtype)


@register_op(
    "mypkg::softclip",
    inputs=[Input("x", dtypes=FLOATING)],
    outputs=[Output("y", shape="like(x)", dtype="like(x)")],
    attrs=[Attr("bound", float, 3.0)],
    samples=samples,
    backward=backward,
)
def softclip(x, bound=3.0):
    """bound * tanh(x / bound), in float32 for every input dtype."""
    return (bound * torch.tanh(x.float() / bound)).to(x.dtype)
