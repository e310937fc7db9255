"""modelops::box_blur: the mean of each window of `kernel` values along the last dim ('valid' windows only).

Its attribute is named `kernel` and its output `out`, names generated code once took for itself: they are the
user's to choose (generated identifiers carry an opforge prefix)."""

import torch

from ops import FLOATING, Attr, Input, Output, Sample, register_op


def samples(device, dtype):
    def rand(*shape):
        return torch.randn(*shape).to(device=device, dtype=dtype)

    return [
        Sample(rand(2, 3, 9)),
        Sample(rand(3, 1, 17), kernel=5),
        Sample(rand(1, 2, 4), kernel=4),
        Sample(rand(0, 2, 6), kernel=2),
    ]


def backward(ctx, grad):
    """Each input value receives grad / kernel from every window that covers it."""
    k = ctx.kernel
    g = grad.float() / k
    padded = torch.nn.functional.pad(g, (k - 1, k - 1))
    return padded.unfold(-1, k, 1).sum(-1).to(ctx.x.dtype)


@register_op(
    "modelops::box_blur",
    inputs=[Input("x", dtypes=FLOATING, rank=3)],
    outputs=[Output("out", shape="[x.shape[0], x.shape[1], x.shape[2] - kernel + 1]", dtype="like(x)")],
    attrs=[Attr("kernel", int, 3)],
    samples=samples,
    backward=backward,
    saves=("x",),
)
def box_blur(x, kernel=3):
    """avg_pool1d(x, kernel, stride 1) in float32."""
    return torch.nn.functional.avg_pool1d(x.float(), kernel, stride=1).to(x.dtype)
