"""modelops::masked_pool: 2x2 average pooling of x * mask, the mask optional (a conv-like op's
`forward(x, mask=None)`). The first sample passes the mask as an explicit None, as models do, so the dynamic
exports start from a graph without it."""

import torch
import torch.nn.functional as F

from ops import FLOATING, Input, Output, Sample, register_op


def samples(device, dtype):
    def rand(*shape):
        return torch.randn(*shape).to(device=device, dtype=dtype)

    def mask(*shape):
        return (torch.rand(*shape) > 0.3).to(device=device, dtype=dtype)

    return [
        Sample(rand(2, 3, 6, 8), None),
        Sample(rand(3, 2, 7, 5), mask(3, 1, 7, 5)),  # odd sizes: the last row and column are dropped
        Sample(rand(1, 4, 2, 2)),
        Sample(rand(0, 3, 4, 4), None),
    ]


@register_op(
    "modelops::masked_pool",
    inputs=[
        Input("x", dtypes=FLOATING, rank=4),
        Input("mask", dtypes="like(x)", optional=True, shape="[x.shape[0], 1, x.shape[2], x.shape[3]]"),
    ],
    outputs=[Output("y", shape="[x.shape[0], x.shape[1], x.shape[2] // 2, x.shape[3] // 2]", dtype="like(x)")],
    samples=samples,
)
def masked_pool(x, mask=None):
    """avg_pool2d(x * mask, 2) in float32."""
    xf = x.float() if mask is None else x.float() * mask.float()
    return F.avg_pool2d(xf, 2).to(x.dtype)
