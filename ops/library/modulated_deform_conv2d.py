"""opforge::modulated_deform_conv2d: modulated deformable convolution (DCNv2), as
torchvision.ops.deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask) with
offset_groups = deformable_groups.

For output pixel (oy, ox), kernel tap (i, j) and deformable group d, the sampling position is
    py = oy * stride[0] - padding[0] + i * dilation[0] + offset[b, d*2*K + 2*(i*kw + j),     oy, ox]
    px = ox * stride[1] - padding[1] + j * dilation[1] + offset[b, d*2*K + 2*(i*kw + j) + 1, oy, ox]
(K = kh*kw: per deformable group, per tap, (dy, dx) interleaved), x is sampled there bilinearly with
zeros outside the image (corners outside the image count as 0, so a position with py <= -1, py >= H,
px <= -1 or px >= W samples 0, as in torchvision), multiplied by mask[b, d*K + i*kw + j, oy, ox], and the
sampled columns are multiplied with weight per convolution group, plus bias. Gradients are those of that
bilinear form, which is what torchvision's backward computes, also on the border lines -1 and H.

Non-finite positions: an infinite offset puts the position outside (0, like torchvision); a NaN position
samples NaN and passes no gradient to x or offset (torchvision leaves that case undefined).

The backward is its own op, opforge::modulated_deform_conv2d_backward (CPU and CUDA kernels), which
always computes grad_mask (the gradient at mask = 1 when no mask is given) and grad_bias; the forward's
backward drops those whose input was absent."""

import torch

from ops import FLOATING, Attr, Input, Output, Sample, register_op

_OH = "(x.shape[2] + 2 * padding[0] - dilation[0] * (weight.shape[2] - 1) - 1) // stride[0] + 1"
_OW = "(x.shape[3] + 2 * padding[1] - dilation[1] * (weight.shape[3] - 1) - 1) // stride[1] + 1"
_TAPS = "weight.shape[2] * weight.shape[3]"

ATTRS = [
    Attr("stride", "list[int]", (1, 1), length=2),
    Attr("padding", "list[int]", (0, 0), length=2),
    Attr("dilation", "list[int]", (1, 1), length=2),
    Attr("groups", int, 1),
    Attr("deformable_groups", int, 1),
]


def _sample_inputs(
    device,
    dtype,
    b,
    cin,
    h,
    w,
    cout,
    kh,
    kw,
    *,
    stride=(1, 1),
    padding=(0, 0),
    dilation=(1, 1),
    groups=1,
    dg=1,
    mask=True,
    bias=True,
    offset_scale=2.0,
    grad=False,
):
    """Random inputs of one case (offsets ~ N(0, offset_scale^2), so many samples cross pixel and image
    borders; mask in (0, 1)); with grad=True, grad_out before the mask (the backward op's order)."""
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1

    def t(*shape, scale=1.0):
        return (torch.randn(*shape) * scale).to(device=device, dtype=dtype)

    x = t(b, cin, h, w)
    offset = t(b, 2 * dg * kh * kw, oh, ow, scale=offset_scale)
    weight = t(cout, cin // groups, kh, kw, scale=(cin // groups * kh * kw) ** -0.5)
    m = torch.sigmoid(torch.randn(b, dg * kh * kw, oh, ow)).to(device=device, dtype=dtype) if mask else None
    bb = t(cout) if bias else None
    attrs = dict(
        stride=list(stride), padding=list(padding), dilation=list(dilation), groups=groups, deformable_groups=dg
    )
    inputs = [x, offset, weight, t(b, cout, oh, ow), m] if grad else [x, offset, weight, m] + ([bb] if bias else [])
    while inputs and inputs[-1] is None:
        inputs.pop()
    return Sample(*inputs, **attrs)


def samples(device, dtype):
    s = lambda *a, **k: _sample_inputs(device, dtype, *a, **k)  # noqa: E731
    return [
        # Batch 2 != Cout 3: the dynamic-batch tests resize every input whose dim 0 is the batch.
        s(2, 4, 7, 6, 3, 3, 3, padding=(1, 1)),
        s(1, 4, 9, 8, 6, 3, 3, padding=(1, 1), stride=(2, 2), groups=2, dg=2, bias=False),
        s(2, 3, 8, 7, 5, 2, 3, padding=(2, 1), dilation=(2, 1), mask=False),
        s(1, 3, 5, 9, 5, 1, 1, stride=(1, 2), offset_scale=4.0),  # 1x1 taps, many samples outside
        s(1, 4, 5, 5, 2, 3, 3, groups=1, dg=4, mask=True, bias=False),  # one channel per deformable group
        s(1, 6, 6, 5, 4, 3, 2, groups=2, dg=3, stride=(1, 2), dilation=(1, 2), padding=(1, 2)),
        s(0, 4, 5, 5, 3, 3, 3, padding=(1, 1)),  # empty batch
    ]


def backward_samples(device, dtype):
    s = lambda *a, **k: _sample_inputs(device, dtype, *a, grad=True, **k)  # noqa: E731
    return [
        s(2, 4, 7, 6, 3, 3, 3, padding=(1, 1)),
        s(1, 4, 9, 8, 6, 3, 3, padding=(1, 1), stride=(2, 2), groups=2, dg=2),
        s(2, 3, 8, 7, 5, 2, 3, padding=(2, 1), dilation=(2, 1), mask=False),
        s(1, 6, 6, 5, 4, 3, 2, groups=2, dg=3, stride=(1, 2), dilation=(1, 2), padding=(1, 2)),
        # No empty sample: with an empty batch grad_weight and grad_bias are zeros of their full shapes, and the
        # generated empty-input test expects every output to be empty. tests/library covers the empty batch.
    ]


def _sampled_columns(x, offset, mask, kh, kw, stride, padding, dilation, dg):
    """[B, C, kh*kw, oH*oW]: x sampled bilinearly at the deformed positions (times mask), float32."""
    b, c, h, w = x.shape
    oh, ow = offset.shape[2], offset.shape[3]
    k, p = kh * kw, oh * ow
    dev = x.device
    ii, jj = torch.meshgrid(torch.arange(kh, device=dev), torch.arange(kw, device=dev), indexing="ij")
    oy, ox = torch.meshgrid(torch.arange(oh, device=dev), torch.arange(ow, device=dev), indexing="ij")
    base_y = (oy.reshape(1, -1) * stride[0] - padding[0] + ii.reshape(-1, 1) * dilation[0]).float()  # [K, P]
    base_x = (ox.reshape(1, -1) * stride[1] - padding[1] + jj.reshape(-1, 1) * dilation[1]).float()
    off = offset.reshape(b, dg, k, 2, p)
    py = base_y + off[:, :, :, 0]  # [B, dg, K, P]
    px = base_x + off[:, :, :, 1]
    # Outside [-1, H] x [-1, W] every corner is outside the image. On the lines -1 and H the value is 0 too
    # (the corners inside have weight 0) but it is computed, so the offset gradient there is torchvision's.
    outside = (py < -1) | (py > h) | (px < -1) | (px > w)
    nan = torch.isnan(py) | torch.isnan(px)
    skip = outside | nan
    # Positions that are not sampled are replaced by 0 before the arithmetic, so they pass no gradient
    # (not even NaN * 0) to x or offset.
    sy = torch.where(skip, torch.zeros_like(py), py)
    sx = torch.where(skip, torch.zeros_like(px), px)
    y0, x0 = torch.floor(sy), torch.floor(sx)
    ly, lx = sy - y0, sx - x0
    hy, hx = 1 - ly, 1 - lx
    xg = x.reshape(b, dg, c // dg, h * w)
    val = None
    for dy, dx, wt in ((0, 0, hy * hx), (0, 1, hy * lx), (1, 0, ly * hx), (1, 1, ly * lx)):
        yc, xc = y0 + dy, x0 + dx  # float: clamped before the integer conversion (ONNX Clip has no int64)
        valid = (yc >= 0) & (yc < h) & (xc >= 0) & (xc < w)
        idx = (yc.clamp(0, h - 1).long() * w + xc.clamp(0, w - 1).long()).reshape(b, dg, 1, k * p)
        v = xg.gather(3, idx.expand(b, dg, c // dg, k * p)).reshape(b, dg, c // dg, k, p)
        v = torch.where(valid.unsqueeze(2), v, torch.zeros_like(v))
        term = wt.unsqueeze(2) * v
        val = term if val is None else val + term
    val = torch.where(outside.unsqueeze(2), torch.zeros_like(val), val)
    val = torch.where(nan.unsqueeze(2), torch.full_like(val, float("nan")), val)
    if mask is not None:
        val = val * mask.reshape(b, dg, 1, k, p)
    return val.reshape(b, c, k, p)


def _forward_float(x, offset, weight, mask, bias, stride, padding, dilation, groups, deformable_groups):
    b, c, h, w = x.shape
    cout, cg, kh, kw = weight.shape
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = _sampled_columns(x, offset, mask, kh, kw, stride, padding, dilation, deformable_groups)
    cols = cols.reshape(b, groups, cg * kh * kw, oh * ow)
    out = torch.matmul(weight.reshape(groups, cout // groups, cg * kh * kw), cols)  # [B, g, Cout/g, P]
    out = out.reshape(b, cout, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, cout, 1, 1)
    return out


def backward(ctx, grad):
    grad_x, grad_offset, grad_weight, grad_mask, grad_bias = torch.ops.opforge.modulated_deform_conv2d_backward(
        ctx.x,
        ctx.offset,
        ctx.weight,
        grad,
        ctx.mask,
        ctx.stride,
        ctx.padding,
        ctx.dilation,
        ctx.groups,
        ctx.deformable_groups,
    )
    return (
        grad_x,
        grad_offset,
        grad_weight,
        grad_mask if ctx.mask is not None else None,
        grad_bias if ctx.bias is not None else None,
    )


@register_op(
    "opforge::modulated_deform_conv2d",
    inputs=[
        Input("x", dtypes=FLOATING, rank=4),
        # torchvision's argument order: offset before weight, whose dims its shape uses.
        Input("offset", dtypes="like(x)", shape=f"[x.shape[0], 2 * deformable_groups * {_TAPS}, {_OH}, {_OW}]"),
        Input("weight", dtypes="like(x)", rank=4),
        Input(
            "mask", dtypes="like(x)", optional=True, shape=f"[x.shape[0], deformable_groups * {_TAPS}, {_OH}, {_OW}]"
        ),
        Input("bias", dtypes="like(x)", optional=True, shape="[weight.shape[0]]"),
    ],
    outputs=[Output("y", shape=f"[x.shape[0], weight.shape[0], {_OH}, {_OW}]", dtype="like(x)")],
    attrs=ATTRS,
    # CUDA: the weight rearranged as [groups][kh*kw][Cin/groups][Cout/groups] for coalesced tile loads, then
    # (16-byte aligned) x copied channels-last, so a bilinear corner's channels are one contiguous run.
    workspace="4 * (weight.shape[0] * weight.shape[1] * weight.shape[2] * weight.shape[3] + "
    "x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3]) + 16",
    backward=backward,
    samples=samples,
    # float32: sums of up to Cin/groups*kh*kw = 72 products, accumulated in another order than torch's matmul.
    tolerances={"float32": (2e-5, 2e-6)},
)
def modulated_deform_conv2d(
    x,
    offset,
    weight,
    mask=None,
    bias=None,
    stride=(1, 1),
    padding=(0, 0),
    dilation=(1, 1),
    groups=1,
    deformable_groups=1,
):
    """DCNv2 in float32 for every input dtype: bilinear sampling by gather, then one matmul per group."""
    out = _forward_float(
        x.float(),
        offset.float(),
        weight.float(),
        None if mask is None else mask.float(),
        None if bias is None else bias.float(),
        stride,
        padding,
        dilation,
        groups,
        deformable_groups,
    )
    return out.to(x.dtype)


_GRAD_OH = "offset.shape[2]"
_GRAD_OW = "offset.shape[3]"


@register_op(
    "opforge::modulated_deform_conv2d_backward",
    inputs=[
        # The forward's inputs first, so x's dim 0 is the batch that offset, grad_out and mask are tied to.
        Input("x", dtypes=FLOATING, rank=4),
        Input("offset", dtypes="like(x)", shape=f"[x.shape[0], 2 * deformable_groups * {_TAPS}, {_OH}, {_OW}]"),
        Input("weight", dtypes="like(x)", rank=4),
        Input("grad_out", dtypes="like(x)", shape=f"[x.shape[0], weight.shape[0], {_OH}, {_OW}]"),
        Input(
            "mask",
            dtypes="like(x)",
            optional=True,
            shape=f"[x.shape[0], deformable_groups * {_TAPS}, {_GRAD_OH}, {_GRAD_OW}]",
        ),
    ],
    outputs=[
        Output("grad_x", shape="like(x)", dtype="like(grad_out)"),
        Output("grad_offset", shape="like(offset)", dtype="like(grad_out)"),
        Output("grad_weight", shape="like(weight)", dtype="like(grad_out)"),
        # Always produced: with no mask it is the gradient at mask = 1 (the forward's backward drops it).
        Output(
            "grad_mask",
            shape=f"[x.shape[0], deformable_groups * {_TAPS}, {_GRAD_OH}, {_GRAD_OW}]",
            dtype="like(grad_out)",
        ),
        Output("grad_bias", shape="[weight.shape[0]]", dtype="like(grad_out)"),
    ],
    attrs=ATTRS,
    # Scratch for the CUDA kernels (see modulated_deform_conv2d_backward_cuda.cu), each region 16-byte aligned:
    # float32 grad_x and grad_weight (accumulated with atomics), float32 grad_offset and grad_mask (the tiled
    # path's atomics: 4 + 2 bytes per offset element), and x's dtype (<= 4 bytes) copies of x channels-last
    # and of the weight arranged per tap. About 8*numel(x) + 8*numel(weight) + 6*numel(offset) bytes.
    workspace="4 * (2 * x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3] + 2 * weight.shape[0] * weight.shape[1] * "
    "weight.shape[2] * weight.shape[3]) + 6 * offset.shape[0] * offset.shape[1] * offset.shape[2] * "
    "offset.shape[3] + 96",
    samples=backward_samples,
    onnx=False,
    # grad_weight sums over B*oH*oW products (up to 84 here), grad_x scatters up to 4*Cout*K terms.
    tolerances={"float32": (2e-5, 2e-6)},
)
def modulated_deform_conv2d_backward(
    x,
    offset,
    weight,
    grad_out,
    mask=None,
    stride=(1, 1),
    padding=(0, 0),
    dilation=(1, 1),
    groups=1,
    deformable_groups=1,
):
    """(grad_x, grad_offset, grad_weight, grad_mask, grad_bias): torch.autograd through the forward's
    reference, in float32."""
    b = x.shape[0]
    kh, kw = weight.shape[2], weight.shape[3]
    m = (
        mask
        if mask is not None
        else torch.ones(
            b, deformable_groups * kh * kw, offset.shape[2], offset.shape[3], dtype=x.dtype, device=x.device
        )
    )
    with torch.enable_grad():
        xs = [t.detach().float().requires_grad_() for t in (x, offset, weight, m)]
        bias = torch.zeros(weight.shape[0], device=x.device, requires_grad=True)
        out = _forward_float(*xs, bias, stride, padding, dilation, groups, deformable_groups)
        grads = torch.autograd.grad(out, [*xs, bias], grad_out.float(), allow_unused=True)
    return tuple((torch.zeros_like(t) if g is None else g).to(grad_out.dtype) for g, t in zip(grads, [*xs, bias]))
