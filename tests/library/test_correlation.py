"""opforge::correlation and opforge::correlation_backward against an independent, loop-based implementation
of spatial_correlation_sampler's CPU kernel (written from its definition, element by element, in float64),
on tiny inputs: the vectorised reference and the compiled CPU kernels must both agree with it."""

import itertools

import pytest
import torch

import ops
from ops.library.correlation import correlation_float

# (B, C, H, W), kernel_size, patch_size, stride, padding, dilation, dilation_patch
CASES = [
    ((1, 2, 4, 5), (1, 1), (3, 3), (1, 1), (0, 0), (1, 1), (1, 1)),
    ((2, 3, 5, 4), (1, 1), (5, 3), (1, 1), (1, 2), (1, 1), (2, 1)),
    ((1, 2, 6, 7), (3, 2), (3, 3), (2, 1), (1, 1), (1, 2), (1, 1)),
    ((1, 3, 7, 6), (2, 2), (4, 2), (2, 3), (0, 1), (2, 1), (1, 2)),  # even patches: asymmetric displacements
    ((1, 1, 3, 3), (1, 1), (9, 9), (1, 1), (0, 0), (1, 1), (1, 1)),  # displacements past the image
    ((2, 4, 5, 5), (1, 1), (1, 1), (1, 1), (0, 0), (1, 1), (1, 1)),  # defaults
]


def loop_correlation(f1, f2, k, p, s, pad, d, dp):
    """out[b, ph, pw, oy, ox]: the sum over channels and the kernel window of f1 * displaced f2, counting a
    term only where both positions are inside the image; the window starts at (oy * s - pad)."""
    b_, c_, h, w = f1.shape
    oh = (h + 2 * pad[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w + 2 * pad[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    out = torch.zeros(b_, p[0], p[1], oh, ow, dtype=torch.float64)
    a, c = f1.detach().double(), f2.detach().double()
    for b, ph, pw, oy, ox in itertools.product(range(b_), range(p[0]), range(p[1]), range(oh), range(ow)):
        sy = (ph - (p[0] - 1) // 2) * dp[0]
        sx = (pw - (p[1] - 1) // 2) * dp[1]
        total = 0.0
        for i, j in itertools.product(range(k[0]), range(k[1])):
            y, x = oy * s[0] - pad[0] + i * d[0], ox * s[1] - pad[1] + j * d[1]
            if 0 <= y < h and 0 <= x < w and 0 <= y + sy < h and 0 <= x + sx < w:
                total += float((a[b, :, y, x] * c[b, :, y + sy, x + sx]).sum())
        out[b, ph, pw, oy, ox] = total
    return out


def loop_correlation_backward(g, f1, f2, k, p, s, pad, d, dp):
    """d(sum(g * out))/d(f1, f2) by scattering each output's gradient onto the terms it summed."""
    b_, _, h, w = f1.shape
    g1, g2 = torch.zeros(f1.shape, dtype=torch.float64), torch.zeros(f2.shape, dtype=torch.float64)
    a, c, gg = f1.double(), f2.double(), g.double()
    for b, ph, pw, oy, ox in itertools.product(
        range(b_), range(p[0]), range(p[1]), range(g.shape[3]), range(g.shape[4])
    ):
        sy = (ph - (p[0] - 1) // 2) * dp[0]
        sx = (pw - (p[1] - 1) // 2) * dp[1]
        for i, j in itertools.product(range(k[0]), range(k[1])):
            y, x = oy * s[0] - pad[0] + i * d[0], ox * s[1] - pad[1] + j * d[1]
            if 0 <= y < h and 0 <= x < w and 0 <= y + sy < h and 0 <= x + sx < w:
                g1[b, :, y, x] += gg[b, ph, pw, oy, ox] * c[b, :, y + sy, x + sx]
                g2[b, :, y + sy, x + sx] += gg[b, ph, pw, oy, ox] * a[b, :, y, x]
    return g1, g2


def _inputs(shape, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen).to(dtype), torch.randn(*shape, generator=gen).to(dtype))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-k{c[1]}p{c[2]}s{c[3]}")
def test_reference_matches_loop(case):
    shape, *attrs = case
    f1, f2 = _inputs(shape)
    expected = loop_correlation(f1, f2, *attrs)
    torch.testing.assert_close(correlation_float(f1, f2, *attrs).double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-k{c[1]}p{c[2]}s{c[3]}")
def test_cpu_kernel_matches_loop(case, dtype):
    ops.load_extension()
    shape, *attrs = case
    f1, f2 = _inputs(shape, dtype)
    out = torch.ops.opforge.correlation(f1, f2, *[list(a) for a in attrs])
    assert out.dtype == dtype
    expected = loop_correlation(f1, f2, *attrs)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    # the half types: the loop sums exactly the (upcast) inputs; only the final rounding to dtype differs
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-k{c[1]}p{c[2]}s{c[3]}")
def test_backward_matches_loop(case):
    ops.load_extension()
    shape, *attrs = case
    f1, f2 = _inputs(shape, seed=1)
    f1.requires_grad_()
    f2.requires_grad_()
    out = torch.ops.opforge.correlation(f1, f2, *[list(a) for a in attrs])
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    grad_f1, grad_f2 = torch.autograd.grad(out, (f1, f2), g)
    exp1, exp2 = loop_correlation_backward(g, f1.detach(), f2.detach(), *attrs)
    torch.testing.assert_close(grad_f1.double(), exp1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_f2.double(), exp2, rtol=1e-5, atol=1e-5)
    # the backward op's own reference (autograd through the vectorised forward reference) agrees too
    ref1, ref2 = ops.get_op("opforge::correlation_backward").decl.reference(f1.detach(), f2.detach(), g, *attrs)
    torch.testing.assert_close(ref1.double(), exp1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref2.double(), exp2, rtol=1e-5, atol=1e-5)


def test_gradcheck_float64_reference():
    """The loop backward above is itself right: central differences of the float64 loop forward."""
    shape, *attrs = CASES[3]
    f1, f2 = (t.double().requires_grad_() for t in _inputs(shape, seed=3))
    out = loop_correlation(f1, f2, *attrs)  # not differentiable (float() per term): compare by finite differences
    g = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    exp1, exp2 = loop_correlation_backward(g, f1.detach(), f2.detach(), *attrs)
    eps = 1e-6
    for tensor, expected in ((f1, exp1), (f2, exp2)):
        flat = tensor.detach().view(-1)
        for idx in range(0, flat.numel(), 7):
            old = flat[idx].item()
            flat[idx] = old + eps
            up = (loop_correlation(f1.detach(), f2.detach(), *attrs) * g).sum()
            flat[idx] = old - eps
            down = (loop_correlation(f1.detach(), f2.detach(), *attrs) * g).sum()
            flat[idx] = old
            assert abs((up - down).item() / (2 * eps) - expected.view(-1)[idx].item()) < 1e-5


def test_bad_attributes_are_rejected():
    ops.load_extension()
    f1, f2 = _inputs((1, 2, 4, 4))
    with pytest.raises(Exception, match="dilation_patch"):
        torch.ops.opforge.correlation(f1, f2, [1, 1], [3, 3], [1, 1], [0, 0], [1, 1], [0, 1])
    with pytest.raises(Exception, match="padding"):
        torch.ops.opforge.correlation(f1, f2, [1, 1], [3, 3], [1, 1], [-1, 0], [1, 1], [1, 1])
    # caught by the shape rule before the kernel, naming the op, the output and its rule
    with pytest.raises(
        ValueError,
        match=r"opforge::correlation: the shape rule of output 'corr' = .*// stride\[0\].* divides by zero.*got 3 // 0",
    ):
        torch.ops.opforge.correlation(f1, f2, [1, 1], [3, 3], [0, 1], [0, 0], [1, 1], [1, 1])


def test_backward_rejects_wrong_grad_shape():
    ops.load_extension()
    f1, f2 = _inputs((1, 2, 4, 4))
    with pytest.raises(Exception, match="grad_out"):
        torch.ops.opforge.correlation_backward(
            f1, f2, torch.zeros(1, 3, 3, 4, 5), [1, 1], [3, 3], [1, 1], [0, 0], [1, 1], [1, 1]
        )


@pytest.mark.parametrize("op_name", ["opforge::correlation", "opforge::correlation_backward"])
def test_nonfinite_only_where_a_term_counts(op_name):
    """An inf at the image border must not leak NaN through the padding (inf * 0): terms with a position
    outside the image are excluded, as in spatial_correlation_sampler. Kernel and reference agree."""
    ops.load_extension()
    f1, f2 = _inputs((1, 2, 5, 6))
    f1[0, 1, 0, 0] = float("inf")
    f2[0, 0, 4, 5] = float("nan")
    attrs = [[1, 1], [3, 3], [1, 1], [1, 1], [1, 1], [1, 1]]
    op = ops.get_op(op_name)
    args = (f1, f2) if op_name == "opforge::correlation" else (f1, f2, torch.randn(1, 3, 3, 7, 8))
    got = op.torch_op(*args, *attrs)
    want = op.decl.reference(*args, *attrs)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        torch.testing.assert_close(g, w, equal_nan=True)
    if op_name == "opforge::correlation":
        # the padded border next to the inf counts nothing: zero, not NaN
        assert got[0, 1, 1, 0, 0] == 0 or torch.isinf(got[0, 1, 1, 0, 0])
        assert not torch.isnan(got[0, 0, 0, 0, 0])
