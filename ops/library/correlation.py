"""opforge::correlation: the FlowNet/PWC-Net cost volume, with the semantics of the spatial_correlation_sampler
package (`spatial_correlation_sample(input1, input2, kernel_size, patch_size, stride, padding, dilation,
dilation_patch)`, its CPU implementation), every pair attribute a list of two ints (H, W):

    out[b, ph, pw, oy, ox] = sum_c sum_{i < kH, j < kW} f1[b, c, y, x] * f2[b, c, y + sy, x + sx]
    y  = oy * stride[0] - padding[0] + i * dilation[0]          (x likewise with index 1)
    sy = (ph - (patch_size[0] - 1) // 2) * dilation_patch[0]     (sx likewise)

with zero padding (a term counts only where both f1 and f2 are inside the image), output
[B, patch_size[0], patch_size[1], oH, oW], oH = (H + 2 * padding[0] - dilation[0] * (kernel_size[0] - 1) - 1)
// stride[0] + 1. The kernel window starts at the output position (it is not centred) and there is no
normalisation by the channel count, as in that package. Note: for an even patch size its CUDA kernel centres
the patch differently from its CPU kernel ((dilation_patch * (patch - 1)) // 2 vs ((patch - 1) // 2) *
dilation_patch); this op follows the CPU kernel everywhere.

opforge::correlation_backward(f1, f2, grad_out, <same attrs>) -> (grad_f1, grad_f2) is its gradient, a declared
op with its own kernels (no ONNX export). Both kernels gather: each output element of the backward owns its
sum over displacements, so no atomics are needed (see csrc/correlation_backward/)."""

import torch
import torch.nn.functional as F

from ops import FLOATING, Attr, Input, Output, Sample, register_op

PAIR_ATTRS = [
    Attr("kernel_size", "list[int]", (1, 1), length=2),
    Attr("patch_size", "list[int]", (1, 1), length=2),
    Attr("stride", "list[int]", (1, 1), length=2),
    Attr("padding", "list[int]", (0, 0), length=2),
    Attr("dilation", "list[int]", (1, 1), length=2),
    Attr("dilation_patch", "list[int]", (1, 1), length=2),
]

OUTPUT_SHAPE = (
    "[f1.shape[0], patch_size[0], patch_size[1], "
    "(f1.shape[2] + 2 * padding[0] - dilation[0] * (kernel_size[0] - 1) - 1) // stride[0] + 1, "
    "(f1.shape[3] + 2 * padding[1] - dilation[1] * (kernel_size[1] - 1) - 1) // stride[1] + 1]"
)

# Every sample config: (B, C, H, W), attrs. Small, because ops.check runs opcheck and both exporters on each.
CONFIGS = [
    # first: the generated NaN/inf tests poison the first and middle elements of each input; with a patch of 2
    # (displacements 0 and +1) those land on terms that count, also for grad_out in the backward
    ((2, 4, 7, 9), dict(patch_size=[2, 2])),
    ((1, 3, 6, 5), dict(patch_size=[5, 3], dilation_patch=[2, 1], padding=[1, 0])),
    ((2, 3, 8, 7), dict(kernel_size=[3, 3], patch_size=[3, 3], stride=[2, 2], padding=[1, 1])),
    # even patch sizes (asymmetric displacements), a dilated non-square kernel, mixed strides
    ((1, 2, 9, 8), dict(kernel_size=[2, 3], patch_size=[4, 2], stride=[1, 2], dilation=[2, 1], dilation_patch=[1, 2])),
    ((1, 5, 4, 4), dict()),  # every default: patch 1, a plain per-pixel dot product
    ((1, 3, 3, 4), dict(patch_size=[7, 7], dilation_patch=[2, 2])),  # most displacements leave the image
    ((1, 20, 5, 6), dict(patch_size=[3, 3], padding=[2, 1])),  # more channels than one CUDA chunk
    ((0, 3, 5, 5), dict(patch_size=[3, 3])),  # empty batch
]


def _rand(shape, device, dtype):
    return torch.randn(*shape).to(device=device, dtype=dtype)


def samples(device, dtype):
    return [Sample(_rand(s, device, dtype), _rand(s, device, dtype), **attrs) for s, attrs in CONFIGS]


def output_hw(h, w, kernel_size, stride, padding, dilation):
    return tuple(
        (n + 2 * padding[k] - dilation[k] * (kernel_size[k] - 1) - 1) // stride[k] + 1 for k, n in enumerate((h, w))
    )


def check_attrs(op, kernel_size, patch_size, stride, padding, dilation, dilation_patch):
    for name, value, low in (
        ("kernel_size", kernel_size, 1),
        ("patch_size", patch_size, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("dilation", dilation, 1),
        ("dilation_patch", dilation_patch, 1),
    ):
        if len(value) != 2 or any(v < low for v in value):
            raise ValueError(f"{op}: {name} must be two ints >= {low}, got {list(value)}")


def correlation_float(f1, f2, kernel_size, patch_size, stride, padding, dilation, dilation_patch):
    """The cost volume in float32, vectorised: one product-and-channel-sum map per displacement on zero-padded
    inputs, then the (dilated, strided) kernel window sum of each map as a grouped convolution with ones."""
    check_attrs("opforge::correlation", kernel_size, patch_size, stride, padding, dilation, dilation_patch)
    b, _, h, w = f1.shape
    oh, ow = output_hw(h, w, kernel_size, stride, padding, dilation)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"opforge::correlation: the kernel window does not fit the padded input ({h}x{w})")
    lo = [(patch_size[k] - 1) // 2 * dilation_patch[k] for k in range(2)]
    hi = [(patch_size[k] - 1) * dilation_patch[k] - lo[k] for k in range(2)]
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    f1p = F.pad(f1.float(), (padding[1], padding[1], padding[0], padding[0]))
    f2p = F.pad(f2.float(), (padding[1] + lo[1], padding[1] + hi[1], padding[0] + lo[0], padding[0] + hi[0]))
    # A term counts only where both positions are inside the image: padding is excluded, not multiplied (so
    # an inf next to the border gives no inf * 0 = NaN), as in spatial_correlation_sampler's kernels.
    rows, cols = torch.arange(hp, device=f1.device), torch.arange(wp, device=f1.device)
    maps = []
    for ph in range(patch_size[0]):
        for pw in range(patch_size[1]):
            y0, x0 = ph * dilation_patch[0], pw * dilation_patch[1]
            sy, sx = y0 - lo[0], x0 - lo[1]
            inside_y = (
                (rows >= padding[0])
                & (rows < padding[0] + h)
                & (rows + sy >= padding[0])
                & (rows + sy < padding[0] + h)
            )
            inside_x = (
                (cols >= padding[1])
                & (cols < padding[1] + w)
                & (cols + sx >= padding[1])
                & (cols + sx < padding[1] + w)
            )
            product = (f1p * f2p[:, :, y0 : y0 + hp, x0 : x0 + wp]).sum(1)
            maps.append(torch.where(inside_y[:, None] & inside_x[None, :], product, 0.0))
    m = torch.stack(maps, 1)  # [B, P, Hp, Wp]
    p = patch_size[0] * patch_size[1]
    if list(kernel_size) == [1, 1]:
        m = m[:, :, : (oh - 1) * stride[0] + 1 : stride[0], : (ow - 1) * stride[1] + 1 : stride[1]]
    else:
        ones = m.new_ones(p, 1, kernel_size[0], kernel_size[1])
        m = F.conv2d(m, ones, stride=list(stride), dilation=list(dilation), groups=p)
    return m.reshape(b, patch_size[0], patch_size[1], oh, ow)


def backward(ctx, grad):
    attrs = [ctx.kernel_size, ctx.patch_size, ctx.stride, ctx.padding, ctx.dilation, ctx.dilation_patch]
    grad_f1, grad_f2 = torch.ops.opforge.correlation_backward(ctx.f1, ctx.f2, grad, *attrs)
    return grad_f1, grad_f2


@register_op(
    "opforge::correlation",
    inputs=[Input("f1", dtypes=FLOATING, rank=4), Input("f2", dtypes="like(f1)", shape="like(f1)")],
    outputs=[Output("corr", shape=OUTPUT_SHAPE, dtype="like(f1)")],
    attrs=PAIR_ATTRS,
    backward=backward,
    samples=samples,
    # fp32: the kernels and the reference sum up to C * kH * kW products in different orders; where those
    # cancel to a value near 0 the absolute rounding difference is ~1e-7 * sum|f1 * f2| (a few 1e-6 for the
    # samples), above the default atol of 1e-6.
    tolerances={"float32": (1e-5, 1e-5)},
)
def correlation(
    f1, f2, kernel_size=(1, 1), patch_size=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1), dilation_patch=(1, 1)
):
    """spatial_correlation_sample(f1, f2, ...) with float32 accumulation for every input dtype."""
    out = correlation_float(f1, f2, kernel_size, patch_size, stride, padding, dilation, dilation_patch)
    return out.to(f1.dtype)


def backward_samples(device, dtype):
    out = []
    for s, attrs in CONFIGS:
        full = {a.name: list(attrs.get(a.name, a.default)) for a in PAIR_ATTRS}
        oh, ow = output_hw(s[2], s[3], full["kernel_size"], full["stride"], full["padding"], full["dilation"])
        grad_shape = (s[0], *full["patch_size"], oh, ow)
        out.append(Sample(_rand(s, device, dtype), _rand(s, device, dtype), _rand(grad_shape, device, dtype), **attrs))
    return out


@register_op(
    "opforge::correlation_backward",
    # grad_out last: a declared shape may only use earlier inputs, and its shape ties its batch dim to f1's
    inputs=[
        Input("f1", dtypes=FLOATING, rank=4),
        Input("f2", dtypes="like(f1)", shape="like(f1)"),
        Input("grad_out", dtypes="like(f1)", shape=OUTPUT_SHAPE),
    ],
    outputs=[
        Output("grad_f1", shape="like(f1)", dtype="like(f1)"),
        Output("grad_f2", shape="like(f2)", dtype="like(f2)"),
    ],
    attrs=PAIR_ATTRS,
    samples=backward_samples,
    onnx=False,
    # fp32: each gradient element sums up to patch * kernel products per channel (see correlation above).
    tolerances={"float32": (1e-5, 1e-5)},
)
def correlation_backward(
    f1,
    f2,
    grad_out,
    kernel_size=(1, 1),
    patch_size=(1, 1),
    stride=(1, 1),
    padding=(0, 0),
    dilation=(1, 1),
    dilation_patch=(1, 1),
):
    """(grad_f1, grad_f2) of opforge::correlation: autograd through its float32 reference."""
    with torch.enable_grad():
        a = f1.detach().float().requires_grad_()
        c = f2.detach().float().requires_grad_()
        out = correlation_float(a, c, kernel_size, patch_size, stride, padding, dilation, dilation_patch)
        grad_a, grad_c = torch.autograd.grad(out, (a, c), grad_out.float(), allow_unused=True)
    grad_a = torch.zeros_like(a) if grad_a is None else grad_a
    grad_c = torch.zeros_like(c) if grad_c is None else grad_c
    return grad_a.to(f1.dtype), grad_c.to(f2.dtype)
