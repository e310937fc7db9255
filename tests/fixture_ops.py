"""Ops declared only for the tests, with `kernels=None` (the reference is the implementation), so the
generated per-op suite (tests/torch/test_library_ops.py and friends) also runs over declaration features
that the built-in ops do not use:

- opforge_fixture::masked_scale has an optional input (`mask=None`) and a backward;
- opforge_fixture::row_absmax declares no backward and no empty sample, and its output shape is not
  like its input's;
- opforge_fixture::odd_names names its fields what torch, C++ hosts and generated code like to use themselves
  (inputs `self`, `input`, `ctx`, output `out`, attributes `kernel`, `kernel_`, `cls`, `g`), so every backend
  shows that a declared name is the user's (tests/test_names.py builds a compiled twin of it).

Imported by tests/conftest.py, so they are registered in every test session. Run the whole generated
suite on one of them with `pytest tests/torch --op opforge_fixture::masked_scale`."""

import torch

from ops import FLOATING, Attr, Input, Output, Sample, register_op


def _rand(device, dtype, *shape):
    return torch.randn(*shape).to(device=device, dtype=dtype)


def _mask(device, *shape):
    return (torch.rand(*shape) > 0.5).to(device)


def masked_scale_samples(device, dtype):
    return [
        Sample(_rand(device, dtype, 4, 16), _mask(device, 4, 16)),
        Sample(_rand(device, dtype, 3, 5, 7), None, scale=-0.5),  # mask omitted explicitly
        Sample(_rand(device, dtype, 6, 9), _mask(device, 6, 9), scale=3.0),
        Sample(_rand(device, dtype, 2, 3, 4)),  # mask omitted by leaving it out
        Sample(_rand(device, dtype, 0, 8), _mask(device, 0, 8)),  # empty
    ]


def masked_scale_backward(ctx, grad):
    factor = (
        torch.full_like(grad, ctx.scale)
        if ctx.mask is None
        else torch.where(ctx.mask, torch.full_like(grad, ctx.scale), torch.ones_like(grad))
    )
    return grad * factor, None


@register_op(
    "opforge_fixture::masked_scale",
    inputs=[Input("x", dtypes=FLOATING), Input("mask", dtypes=("bool",), optional=True, shape="like(x)")],
    outputs=[Output("y", shape="like(x)", dtype="like(x)")],
    attrs=[Attr("scale", float, 2.0)],
    kernels=None,
    backward=masked_scale_backward,
    samples=masked_scale_samples,
)
def masked_scale(x, mask=None, scale=2.0):
    """y = x * scale where mask (everywhere without a mask), x elsewhere; float32 math."""
    xf = x.float()
    y = xf * scale if mask is None else torch.where(mask, xf * scale, xf)
    return y.to(x.dtype)


def row_absmax_samples(device, dtype):
    return [
        Sample(_rand(device, dtype, 4, 16)),
        Sample(_rand(device, dtype, 6, 3)),
        Sample(_rand(device, dtype, 2, 100)),
    ]


@register_op(
    "opforge_fixture::row_absmax",
    inputs=[Input("x", dtypes=FLOATING, rank=2)],
    outputs=[Output("y", shape="[x.shape[0]]", dtype="like(x)")],
    kernels=None,
    samples=row_absmax_samples,
)
def row_absmax(x):
    """max |x| over each row (no backward declared, no empty sample)."""
    return x.float().abs().amax(dim=1).to(x.dtype)


def masked_window_sum_samples(device, dtype):
    return [
        Sample(_rand(device, dtype, 2, 3, 8, 9), _mask(device, 2, 3, 8, 9)),
        Sample(_rand(device, dtype, 1, 2, 7, 6), None, kernel_size=[2, 3], stride=[2, 1], padding=[1, 0]),
        Sample(_rand(device, dtype, 3, 1, 5, 5), kernel_size=[1, 1]),  # mask omitted by leaving it out
        Sample(
            _rand(device, dtype, 2, 2, 9, 7),
            _mask(device, 2, 2, 9, 7),
            kernel_size=[3, 2],
            stride=[1, 3],
            padding=[0, 1],
        ),
        Sample(_rand(device, dtype, 0, 2, 4, 4), _mask(device, 0, 2, 4, 4)),  # empty
    ]


@register_op(
    "opforge_fixture::masked_window_sum",
    inputs=[Input("x", dtypes=FLOATING, rank=4), Input("mask", dtypes=("bool",), optional=True, shape="like(x)")],
    outputs=[
        Output(
            "y",
            shape="[x.shape[0], x.shape[1], (x.shape[2] + 2 * padding[0] - kernel_size[0]) // stride[0] + 1, "
            "(x.shape[-1] + 2 * padding[-1] - kernel_size[-1]) // stride[-1] + 1]",
            dtype="like(x)",
        )
    ],
    attrs=[
        Attr("kernel_size", "list[int]", (3, 3), length=2),
        Attr("stride", "list[int]", (1, 1), length=2),
        Attr("padding", "list[int]", (0, 0), length=2),
    ],
    kernels=None,
    samples=masked_window_sum_samples,
)
def masked_window_sum(x, mask=None, kernel_size=(3, 3), stride=(1, 1), padding=(0, 0)):
    """Sum of the (masked) values in each kernel window, zero padding: list[int] attributes in the shape rule,
    an optional input, no backward."""
    xf = x.float() if mask is None else x.float() * mask
    pooled = torch.nn.functional.avg_pool2d(xf, list(kernel_size), list(stride), list(padding), count_include_pad=True)
    return (pooled * (kernel_size[0] * kernel_size[1])).to(x.dtype)


def select_rows_samples(device, dtype):
    return [
        Sample(_rand(device, dtype, 8, 5)),
        Sample(_rand(device, dtype, 6, 3), threshold=10.0),  # nothing selected: zero-length outputs
        Sample(_rand(device, dtype, 7, 4), threshold=-10.0),  # everything selected
        Sample(_rand(device, dtype, 0, 4)),  # empty
    ]


@register_op(
    "opforge_fixture::select_rows",
    inputs=[Input("x", dtypes=FLOATING, rank=2)],
    outputs=[
        Output("rows", shape="[count, x.shape[1]]", dtype="like(x)"),
        Output("index", shape="[count]", dtype="int64"),
        Output.size("count", upper="x.shape[0]", opt="x.shape[0] // 2"),
    ],
    attrs=[Attr("threshold", float, 0.5)],
    kernels=None,
    samples=select_rows_samples,
)
def select_rows(x, threshold=0.5):
    """The rows whose max exceeds `threshold`, their indices and their count: several outputs, an integer
    output and a data-dependent size, no backward."""
    index = (
        torch.nonzero(x.float().amax(dim=1) > threshold).flatten()
        if x.shape[1]
        else torch.zeros(0, dtype=torch.int64, device=x.device)
    )
    return x[index], index, torch.tensor(index.numel(), dtype=torch.int64)


def odd_names_samples(device, dtype):
    return [
        Sample(_rand(device, dtype, 4, 6), _rand(device, dtype, 4, 6), _rand(device, dtype, 4, 6)),
        Sample(_rand(device, dtype, 3, 5), _rand(device, dtype, 3, 5), kernel=-1.5, cls=2),  # ctx omitted
        Sample(_rand(device, dtype, 2, 3, 4), _rand(device, dtype, 2, 3, 4), None, kernel_=0.25, g=False),
        Sample(_rand(device, dtype, 0, 4), _rand(device, dtype, 0, 4)),  # empty
    ]


def odd_names_backward(ctx, grad):
    """`ctx` is the backward's context; the op's own input `ctx` is `ctx.ctx` (saved), its attributes too."""
    grad_ctx = None if ctx.ctx is None else (grad if ctx.g else torch.zeros_like(grad))
    return grad * ctx.kernel, grad * (ctx.cls * ctx.kernel_), grad_ctx


@register_op(
    "opforge_fixture::odd_names",
    inputs=[
        Input("self", dtypes=FLOATING),
        Input("input", dtypes="like(self)", shape="like(self)"),
        Input("ctx", dtypes="like(self)", optional=True, shape="like(self)"),
    ],
    outputs=[Output("out", shape="like(self)", dtype="like(self)")],
    attrs=[Attr("kernel", float, 2.0), Attr("kernel_", float, 0.5), Attr("cls", int, 3), Attr("g", bool, True)],
    kernels=None,
    backward=odd_names_backward,
    saves=("ctx",),
    samples=odd_names_samples,
)
def odd_names(self, input, ctx=None, kernel=2.0, kernel_=0.5, cls=3, g=True):
    """out = self * kernel + input * cls * kernel_ (+ ctx where g), in float32: every field is named what
    torch, the C++ hosts or generated code also use."""
    out = self.float() * kernel + input.float() * cls * kernel_
    if ctx is not None and g:
        out = out + ctx.float()
    return out.to(self.dtype)
