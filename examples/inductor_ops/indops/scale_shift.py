"""indops::scale_shift: y = x * scale + shift in float32. Its CUDA kernel is the one Inductor writes for the
reference; indops::scale_shift_cuda is the same op with the README's hand-written CUDA kernel."""

import torch

from ops import FLOATING, Attr, Inductor, Input, Output, Sample, register_op


def samples(device, dtype):
    def rand(*shape):
        return torch.randn(*shape).to(device=device, dtype=dtype)

    return [Sample(rand(4, 33)), Sample(rand(2, 3, 8), scale=-0.5, shift=3.0), Sample(rand(5000)), Sample(rand(0, 5))]


def tune_samples(device, dtype):
    """What ops.tune times the configurations on: 4 MB to 256 MB of float32."""
    return [Sample(torch.randn(n, device=device).to(dtype)) for n in (1 << 20, 1 << 24, 1 << 26)]


def scale_shift(x, scale=2.0, shift=0.5):
    """y = x * scale + shift, in float32 for every input dtype."""
    return (x.float() * scale + shift).to(x.dtype)


# The same declaration twice: Inductor writes indops::scale_shift's CUDA kernel; indops::scale_shift_cuda's is
# hand-written (csrc/scale_shift_cuda/scale_shift_cuda_cuda.cu).
for name, cuda in (("scale_shift", {"triton": Inductor(tune=tune_samples)}), ("scale_shift_cuda", {})):
    register_op(
        f"indops::{name}",
        inputs=[Input("x", dtypes=FLOATING)],
        outputs=[Output("y", shape="like(x)", dtype="like(x)")],
        attrs=[Attr("scale", float, 2.0), Attr("shift", float, 0.5)],
        samples=samples,
        **cuda,
    )(scale_shift)
