"""opforge::modulated_deform_conv2d and its backward against an independent, slow, loop-based
implementation written from torchvision's CPU kernel (deform_conv2d_kernel.cpp: bilinear_interpolate,
deformable_im2col, get_coordinate_weight), in float64 on tiny inputs. The declared reference (gather +
matmul, autograd for the backward) is checked against it too, so the oracle is not its own witness."""

import math

import pytest
import torch

import ops

FWD = "opforge::modulated_deform_conv2d"
BWD = "opforge::modulated_deform_conv2d_backward"


def _bilinear(img, h, w, y, x):
    """torchvision's bilinear_interpolate: 0 outside (-1, H) x (-1, W), corners outside count as 0."""
    height, width = img.shape
    if y <= -1 or height <= y or x <= -1 or width <= x:
        return 0.0
    yl, xl = math.floor(y), math.floor(x)
    ly, lx = y - yl, x - xl
    hy, hx = 1 - ly, 1 - lx

    def at(r, c):
        return float(img[r, c]) if 0 <= r < height and 0 <= c < width else 0.0

    return hy * hx * at(yl, xl) + hy * lx * at(yl, xl + 1) + ly * hx * at(yl + 1, xl) + ly * lx * at(yl + 1, xl + 1)


def _coordinate_weight(img, y, x, y_direction):
    """torchvision's get_coordinate_weight: d(bilinear)/dy or d/dx (zero corners outside the image)."""
    height, width = img.shape
    yl, xl = math.floor(y), math.floor(x)

    def at(r, c):
        return float(img[r, c]) if 0 <= r < height and 0 <= c < width else 0.0

    if y_direction:
        dx = x - xl
        return dx * (at(yl + 1, xl + 1) - at(yl, xl + 1)) + (1 - dx) * (at(yl + 1, xl) - at(yl, xl))
    dy = y - yl
    return dy * (at(yl + 1, xl + 1) - at(yl + 1, xl)) + (1 - dy) * (at(yl, xl + 1) - at(yl, xl))


def loop_forward(x, offset, weight, mask, bias, stride, padding, dilation, groups, dg):
    B, C, H, W = x.shape
    cout, cg, kh, kw = weight.shape
    oh, ow = offset.shape[2], offset.shape[3]
    K = kh * kw
    cols = torch.zeros(B, C, K, oh, ow, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            d = c // (C // dg)
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    for oy in range(oh):
                        for ox in range(ow):
                            y = (
                                oy * stride[0]
                                - padding[0]
                                + i * dilation[0]
                                + float(offset[b, d * 2 * K + 2 * k, oy, ox])
                            )
                            xx = (
                                ox * stride[1]
                                - padding[1]
                                + j * dilation[1]
                                + float(offset[b, d * 2 * K + 2 * k + 1, oy, ox])
                            )
                            m = 1.0 if mask is None else float(mask[b, d * K + k, oy, ox])
                            cols[b, c, k, oy, ox] = m * _bilinear(x[b, c], H, W, y, xx)
    out = torch.zeros(B, cout, oh, ow, dtype=torch.float64)
    per_g = cout // groups
    for co in range(cout):
        g = co // per_g
        for cl in range(cg):
            for k in range(K):
                out[:, co] += float(weight[co, cl, k // kw, k % kw]) * cols[:, g * cg + cl, k]
        if bias is not None:
            out[:, co] += float(bias[co])
    return out


def loop_backward(grad_out, x, offset, weight, mask, stride, padding, dilation, groups, dg):
    """torchvision's backward (columns = W^T grad_out, col2im, col2im_coord, grad_weight = grad_out cols^T)."""
    B, C, H, W = x.shape
    cout, cg, kh, kw = weight.shape
    oh, ow = offset.shape[2], offset.shape[3]
    K = kh * kw
    per_g = cout // groups
    gcol = torch.zeros(B, C, K, oh, ow, dtype=torch.float64)
    for c in range(C):
        g, cl = c // cg, c % cg
        for k in range(K):
            w = weight[g * per_g : (g + 1) * per_g, cl, k // kw, k % kw].double()
            gcol[:, c, k] = torch.einsum("o,bohw->bhw", w, grad_out[:, g * per_g : (g + 1) * per_g].double())
    grad_x = torch.zeros(B, C, H, W, dtype=torch.float64)
    grad_offset = torch.zeros(offset.shape, dtype=torch.float64)
    grad_mask = torch.zeros(B, dg * K, oh, ow, dtype=torch.float64)
    cols = torch.zeros(B, C, K, oh, ow, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            d = c // (C // dg)
            for k in range(K):
                i, j = k // kw, k % kw
                for oy in range(oh):
                    for ox in range(ow):
                        y = oy * stride[0] - padding[0] + i * dilation[0] + float(offset[b, d * 2 * K + 2 * k, oy, ox])
                        xx = (
                            ox * stride[1]
                            - padding[1]
                            + j * dilation[1]
                            + float(offset[b, d * 2 * K + 2 * k + 1, oy, ox])
                        )
                        m = 1.0 if mask is None else float(mask[b, d * K + k, oy, ox])
                        gc = float(gcol[b, c, k, oy, ox])
                        val = _bilinear(x[b, c], H, W, y, xx)
                        cols[b, c, k, oy, ox] = m * val
                        grad_mask[b, d * K + k, oy, ox] += gc * val
                        if not (math.isfinite(y) and math.isfinite(xx)):
                            continue
                        # Like torchvision: coordinate weights from the corners alone (no border test).
                        grad_offset[b, d * 2 * K + 2 * k, oy, ox] += m * gc * _coordinate_weight(x[b, c], y, xx, True)
                        grad_offset[b, d * 2 * K + 2 * k + 1, oy, ox] += (
                            m * gc * _coordinate_weight(x[b, c], y, xx, False)
                        )
                        for yp in (int(y) - 1, int(y), int(y) + 1):  # torchvision's col2im
                            for xp in (int(xx) - 1, int(xx), int(xx) + 1):
                                if 0 <= yp < H and 0 <= xp < W and abs(y - yp) < 1 and abs(xx - xp) < 1:
                                    grad_x[b, c, yp, xp] += m * (1 - abs(y - yp)) * (1 - abs(xx - xp)) * gc
    grad_weight = torch.zeros(weight.shape, dtype=torch.float64)
    for co in range(cout):
        g = co // per_g
        for cl in range(cg):
            for k in range(K):
                grad_weight[co, cl, k // kw, k % kw] = (grad_out[:, co].double() * cols[:, g * cg + cl, k]).sum()
    grad_bias = grad_out.double().sum((0, 2, 3))
    return grad_x, grad_offset, grad_weight, grad_mask, grad_bias


CASES = [
    # (B, Cin, H, W, Cout, kh, kw, stride, padding, dilation, groups, dg, mask, bias)
    (1, 2, 5, 4, 3, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, True, True),
    (2, 4, 6, 5, 4, 3, 2, (2, 1), (1, 0), (1, 2), 2, 2, True, False),
    (1, 3, 4, 6, 2, 2, 2, (1, 2), (0, 1), (2, 1), 1, 3, False, True),
    (1, 4, 5, 5, 6, 1, 3, (1, 1), (0, 1), (1, 1), 2, 1, False, False),
]


def _inputs(case, dtype=torch.float32, seed=0):
    B, C, H, W, cout, kh, kw, stride, padding, dilation, groups, dg, has_mask, has_bias = case
    gen = torch.Generator().manual_seed(seed)
    oh = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    x = torch.randn(B, C, H, W, generator=gen)
    offset = torch.randn(B, 2 * dg * kh * kw, oh, ow, generator=gen) * 1.7
    weight = torch.randn(cout, C // groups, kh, kw, generator=gen)
    mask = torch.rand(B, dg * kh * kw, oh, ow, generator=gen) if has_mask else None
    bias = torch.randn(cout, generator=gen) if has_bias else None
    attrs = dict(
        stride=list(stride), padding=list(padding), dilation=list(dilation), groups=groups, deformable_groups=dg
    )
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    return [cast(t) for t in (x, offset, weight, mask, bias)], attrs


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_loops(case):
    (x, offset, weight, mask, bias), attrs = _inputs(case)
    want = loop_forward(
        x,
        offset,
        weight,
        mask,
        bias,
        attrs["stride"],
        attrs["padding"],
        attrs["dilation"],
        attrs["groups"],
        attrs["deformable_groups"],
    )
    op = ops.get_op(FWD)
    ref = op.reference(x, offset, weight, mask, bias, **attrs)
    torch.testing.assert_close(ref.double(), want, rtol=1e-5, atol=1e-5)
    got = op(x, offset, weight, mask, bias, **attrs)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_forward_half_matches_loops(dtype):
    (x, offset, weight, mask, bias), attrs = _inputs(CASES[1], dtype)
    want = loop_forward(
        x.double(),
        offset.double(),
        weight.double(),
        mask.double(),
        None,
        attrs["stride"],
        attrs["padding"],
        attrs["dilation"],
        attrs["groups"],
        attrs["deformable_groups"],
    )
    got = ops.get_op(FWD)(x, offset, weight, mask, bias, **attrs)
    assert got.dtype == dtype
    tol = 2e-2 if dtype == torch.bfloat16 else 3e-3
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_loops(case):
    (x, offset, weight, mask, bias), attrs = _inputs(case, seed=1)
    op = ops.get_op(FWD)
    grad_out = torch.randn(op(x, offset, weight, mask, bias, **attrs).shape)
    want = loop_backward(
        grad_out,
        x,
        offset,
        weight,
        mask,
        attrs["stride"],
        attrs["padding"],
        attrs["dilation"],
        attrs["groups"],
        attrs["deformable_groups"],
    )
    bwd = ops.get_op(BWD)
    for impl in (bwd.reference, bwd):
        got = impl(x, offset, weight, grad_out, mask, **attrs)
        for name, g, w in zip(("grad_x", "grad_offset", "grad_weight", "grad_mask", "grad_bias"), got, want):
            torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name}: {m}")
    # Through autograd: gradients only for the inputs given.
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (x, offset, weight, mask, bias)]
    out = op(*leaves, **attrs)
    out.backward(grad_out)
    expected = dict(zip(("x", "offset", "weight", "mask", "bias"), (want[0], want[1], want[2], want[3], want[4])))
    for name, leaf in zip(expected, leaves):
        if leaf is not None:
            torch.testing.assert_close(leaf.grad.double(), expected[name], rtol=1e-4, atol=1e-4)


def test_integer_offsets_and_borders():
    """Offsets landing exactly on pixels, on the -1 / H borders and beyond, and +-inf: the borders of
    torchvision's sampling rule (h <= -1 or h >= H samples 0)."""
    x = torch.randn(1, 2, 3, 4)
    weight = torch.randn(3, 2, 1, 1)
    offset = torch.tensor([0.0, -1.0, -0.5, 3.0, 4.0, 3.999, 1.0, 0.5, float("inf"), float("-inf"), 2.0, 1.0])
    offset = torch.stack([offset, offset.flip(0)]).reshape(1, 2, 3, 4)  # (dy, dx) per pixel of a 3x4 output
    attrs = dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1, deformable_groups=1)
    want = loop_forward(x, offset, weight, None, None, [1, 1], [0, 0], [1, 1], 1, 1)
    got = ops.get_op(FWD)(x, offset, weight, **attrs)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_border_gradients_match_torchvision_rule():
    """Positions exactly on the lines -1, 0, H-1 and H (integer offsets): forward 0 / exact pixels, and the
    offset gradient that torchvision's coordinate weights give there (nonzero on the -1 line)."""
    x = torch.randn(1, 2, 3, 4)
    weight = torch.randn(3, 2, 1, 1)
    dy = torch.tensor([-1.0, -2.0, 3.0, 2.0, 0.0, -1.0, 1.0, -0.5, 0.0, 1.0, 2.0, -3.0]).reshape(3, 4)
    dx = torch.tensor([0.0, -1.0, 4.0, -4.0, 3.0, -1.0, 1.0, 0.5, -2.0, 2.0, -1.0, 1.0]).reshape(3, 4)
    offset = torch.stack([dy, dx]).reshape(1, 2, 3, 4)
    attrs = dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1, deformable_groups=1)
    grad_out = torch.randn(1, 3, 3, 4)
    want = loop_backward(grad_out, x, offset, weight, None, [1, 1], [0, 0], [1, 1], 1, 1)
    got = ops.get_op(BWD)(x, offset, weight, grad_out, **attrs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, rtol=1e-5, atol=1e-5)
    assert want[1].abs().sum() > 0


def test_bad_offset_shape_is_an_error():
    (x, offset, weight, mask, bias), attrs = _inputs(CASES[0])
    with pytest.raises(ValueError, match="input .offset. must have shape"):
        ops.get_op(FWD)(x, offset[:, :-2], weight, mask, bias, **attrs)
    with pytest.raises(RuntimeError, match="groups"):
        ops.get_op(FWD)(x, offset, weight, mask, bias, **{**attrs, "groups": 3})


def test_empty_batch_backward_gives_zero_parameter_gradients():
    (x, offset, weight, mask, bias), attrs = _inputs(CASES[0])
    x, offset, mask = x[:0], offset[:0], mask[:0]
    grad_out = torch.zeros(0, weight.shape[0], offset.shape[2], offset.shape[3])
    got = ops.get_op(BWD)(x, offset, weight, grad_out, mask, **attrs)
    assert [tuple(g.shape) for g in got] == [
        tuple(x.shape),
        tuple(offset.shape),
        tuple(weight.shape),
        tuple(mask.shape),
        (weight.shape[0],),
    ]
    assert all(bool((g == 0).all()) for g in got)
