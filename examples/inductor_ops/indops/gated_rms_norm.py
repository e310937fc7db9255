"""indops::gated_rms_norm: y = rms_norm(x * gate) * weight over the last dim, in float32. A fused op nobody wrote a
CUDA kernel for: Inductor writes it (one reduction kernel) from the reference."""

import torch

from ops import FLOATING, Attr, Inductor, Input, Output, Sample, register_op


def samples(device, dtype):
    def rand(*shape):
        return torch.randn(*shape).to(device=device, dtype=dtype)

    return [
        Sample(rand(4, 33), rand(4, 33), rand(33)),
        Sample(rand(2, 3, 64), rand(2, 3, 64), rand(64), eps=1e-5),
        Sample(rand(0, 8), rand(0, 8), rand(8)),
    ]


def tune_samples(device, dtype):
    """What ops.tune times the configurations on: rows of 512 to 8192 elements, 64 MB of float32 each."""
    out = []
    for cols in (512, 1024, 2048, 4096, 8192):
        rows = (1 << 24) // cols
        x, gate = (torch.randn(rows, cols, device=device).to(dtype) for _ in range(2))
        out.append(Sample(x, gate, torch.randn(cols, device=device).to(dtype)))
    return out


@register_op(
    "indops::gated_rms_norm",
    inputs=[
        Input("x", dtypes=FLOATING),
        Input("gate", dtypes="like(x)", shape="like(x)"),
        Input("weight", dtypes="like(x)", shape=["x.shape[-1]"]),
    ],
    outputs=[Output("y", shape="like(x)", dtype="like(x)")],
    attrs=[Attr("eps", float, 1e-6)],
    samples=samples,
    triton=Inductor(tune=tune_samples),
)
def gated_rms_norm(x, gate, weight, eps=1e-6):
    """y = h * rsqrt(mean(h^2, -1) + eps) * weight, h = (x * gate) in float32."""
    h = (x * gate).float()
    return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)
