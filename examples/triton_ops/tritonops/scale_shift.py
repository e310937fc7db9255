"""tritonops::scale_shift: y = x * scale + shift in float32, its CUDA kernel written in Triton."""

import torch

from ops import FLOATING, Attr, Input, Output, Sample, Triton, TritonConfig, register_op


def samples(device, dtype):
    def rand(*shape):
        return torch.randn(*shape).to(device=device, dtype=dtype)

    return [Sample(rand(4, 33)), Sample(rand(2, 3, 8), scale=-0.5, shift=3.0), Sample(rand(5000)), Sample(rand(0, 5))]


@register_op(
    "tritonops::scale_shift",
    inputs=[Input("x", dtypes=FLOATING)],
    outputs=[Output("y", shape="like(x)", dtype="like(x)")],
    attrs=[Attr("scale", float, 2.0), Attr("shift", float, 0.5)],
    samples=samples,
    triton=Triton(
        kernel="scale_shift_kernel",  # in csrc/scale_shift/scale_shift_triton.py
        args={"x": "x", "y": "y", "n": "numel(x)", "scale": "scale", "shift": "shift"},
        grid=["ceil_div(numel(x), BLOCK)"],
        key="numel(x)",
        configs=[TritonConfig(BLOCK=1024, num_warps=4), TritonConfig(BLOCK=4096, num_warps=8)],
        int64=("n",),  # numel may pass 2^31
        aligned=("n",),  # a multiple of 16 elements: the masked loads vectorise
    ),
)
def scale_shift(x, scale=2.0, shift=0.5):
    """y = x * scale + shift, in float32 for every input dtype."""
    return (x.float() * scale + shift).to(x.dtype)
