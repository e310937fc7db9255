"""opforge::roi_align and opforge::roi_align_backward against an independent, slow, loop-based float64
implementation written from torchvision's CPU kernel (roi_align_kernel.cpp: the per-roi geometry, the sampling
grid, bilinear_interpolate with its y < -1 / y > H rule and clamping, the average over max(grid_h * grid_w, 1);
the backward's scatter of grad * w / count) plus opforge's documented choices (invalid batch index: error;
non-finite roi: zeros). The declared reference (vectorised, float32) and the CPU kernels are both checked against
it, so the oracle is not its own witness. torchvision itself cannot run on this machine: the comparison with it
runs where it imports (the GPU machine) and is skipped here, saying so."""

import math

import pytest
import torch

import ops
from ops.library.roi_align import MAX_GRID, random_rois, roi_align_float

FWD = "opforge::roi_align"
BWD = "opforge::roi_align_backward"


def _bilinear(height, width, y, x):
    """torchvision's bilinear_interpolate on an [H, W] plane, in float64: the four corners and weights."""
    if not (-1.0 <= y <= height and -1.0 <= x <= width) or height == 0 or width == 0:
        return None  # not taken (NaN fails every comparison too)
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(y), int(x)
    if yl >= height - 1:
        yl = yh = height - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= width - 1:
        xl = xh = width - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    hy, hx = 1.0 - ly, 1.0 - lx
    return [((yl, xl), hy * hx), ((yl, xh), hy * lx), ((yh, xl), ly * hx), ((yh, xh), ly * lx)]


def _geometry(roi, ph_n, pw_n, scale, sr, aligned):
    """(x_start, y_start, bin_w, bin_h, grid_h, grid_w, count) of one roi, or None when it is not finite."""
    off = 0.5 if aligned else 0.0
    x0, y0, x1, y1 = (float(v) * scale - off for v in roi[1:])
    rw, rh = x1 - x0, y1 - y0
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    if not all(math.isfinite(v) for v in (x0, y0, rw, rh)):
        return None
    bh, bw = rh / ph_n, rw / pw_n
    gh = sr if sr > 0 else min(max(math.ceil(rh / ph_n), 0), MAX_GRID)
    gw = sr if sr > 0 else min(max(math.ceil(rw / pw_n), 0), MAX_GRID)
    return x0, y0, bw, bh, gh, gw, max(gh * gw, 1)


def _samples(roi, ph_n, pw_n, scale, sr, aligned, height, width):
    """Per bin (ph, pw): the taken samples' corners and weights, and the roi's count."""
    geo = _geometry(roi, ph_n, pw_n, scale, sr, aligned)
    if geo is None:
        return {}, 1
    x0, y0, bw, bh, gh, gw, count = geo
    out = {}
    for ph in range(ph_n):
        for pw in range(pw_n):
            taken = []
            for iy in range(gh):
                y = y0 + ph * bh + (iy + 0.5) * bh / gh
                for ix in range(gw):
                    x = x0 + pw * bw + (ix + 0.5) * bw / gw
                    corners = _bilinear(height, width, y, x)
                    if corners is not None:
                        taken.append(corners)
            out[ph, pw] = taken
    return out, count


def _check_batch(rois, n):
    for k in range(rois.shape[0]):
        b = float(rois[k, 0])
        if not (b >= 0 and b < n and b == math.floor(b)):
            raise ValueError(f"rois[{k}, 0] is {b}")


def loop_roi_align(features, rois, ph_n, pw_n, scale=1.0, sr=-1, aligned=False):
    n, c, h, w = features.shape
    f = features.double()
    _check_batch(rois, n)
    out = torch.zeros(rois.shape[0], c, ph_n, pw_n, dtype=torch.float64)
    for k in range(rois.shape[0]):
        b = int(rois[k, 0])
        bins, count = _samples(rois[k].double().tolist(), ph_n, pw_n, scale, sr, aligned, h, w)
        for (ph, pw), taken in bins.items():
            total = torch.zeros(c, dtype=torch.float64)
            for corners in taken:
                for (yy, xx), wt in corners:
                    total += wt * f[b, :, yy, xx]
            out[k, :, ph, pw] = total / count
    return out


def loop_roi_align_backward(grad, rois, shape, ph_n, pw_n, scale=1.0, sr=-1, aligned=False):
    n, c, h, w = shape
    _check_batch(rois, n)
    g = grad.double()
    out = torch.zeros(shape, dtype=torch.float64)
    for k in range(rois.shape[0]):
        b = int(rois[k, 0])
        bins, count = _samples(rois[k].double().tolist(), ph_n, pw_n, scale, sr, aligned, h, w)
        for (ph, pw), taken in bins.items():
            for corners in taken:
                for (yy, xx), wt in corners:
                    out[b, :, yy, xx] += wt * g[k, :, ph, pw] / count
    return out


# (N, C, H, W, K), pooled (h, w), spatial_scale, sampling_ratio, aligned, overhang, degenerate boxes
CASES = [
    ((1, 2, 6, 7, 4), (2, 2), 1.0, 2, True, 0.0, 0),
    ((2, 3, 7, 5, 6), (3, 2), 0.5, -1, False, 0.3, 2),  # partly outside, x2 < x1, zero size, N > 1
    ((3, 2, 5, 8, 7), (2, 3), 0.25, 0, True, 0.5, 2),  # sampling_ratio 0 is adaptive too
    ((2, 2, 4, 4, 5), (1, 3), 1.0, 3, False, 0.6, 1),
    ((1, 3, 9, 6, 3), (4, 4), 2.0, -1, True, 0.1, 0),  # spatial_scale > 1: big adaptive grids
    ((2, 2, 1, 6, 4), (2, 2), 1.0, -1, False, 0.2, 0),  # H = 1: every row clamps
]
IDS = [f"n{c[0][0]}k{c[0][4]}-p{c[1][0]}x{c[1][1]}-sr{c[3]}-{'al' if c[4] else 'legacy'}" for c in CASES]


def _inputs(case, dtype=torch.float32, seed=0):
    (n, c, h, w, k), _, scale, _, _, outside, degenerate = case
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, c, h, w, generator=g)
    rois = random_rois(k, n, h, w, spatial_scale=scale, outside=outside, degenerate=degenerate, generator=g)
    return feats.to(dtype), rois.to(dtype)


def _attrs(case):
    _, (ph, pw), scale, sr, aligned, _, _ = case
    return dict(pooled_height=ph, pooled_width=pw, spatial_scale=scale, sampling_ratio=sr, aligned=aligned)


def _loop_args(case):
    a = _attrs(case)
    return a["pooled_height"], a["pooled_width"], a["spatial_scale"], a["sampling_ratio"], a["aligned"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reference_matches_loop(case):
    feats, rois = _inputs(case)
    expected = loop_roi_align(feats, rois, *_loop_args(case))
    got = roi_align_float(feats, rois, *_loop_args(case))
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cpu_kernel_matches_loop(case, dtype):
    ops.load_extension()
    feats, rois = _inputs(case, dtype)
    out = torch.ops.opforge.roi_align(feats, rois, **_attrs(case))
    assert out.dtype == dtype and out.shape == (rois.shape[0], feats.shape[1], *case[1])
    expected = loop_roi_align(feats, rois, *_loop_args(case))  # on the same (rounded) half inputs
    tol = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]  # the output's rounding
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
    if dtype == torch.float32:  # same arithmetic in the same order as the reference: the same bits
        assert torch.equal(out, roi_align_float(feats, rois, *_loop_args(case)))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_matches_loop(case):
    ops.load_extension()
    feats, rois = _inputs(case, seed=1)
    feats.requires_grad_()
    out = torch.ops.opforge.roi_align(feats, rois, **_attrs(case))
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad(out, (feats,), g)
    expected = loop_roi_align_backward(g, rois, feats.shape, *_loop_args(case))
    torch.testing.assert_close(grad.double(), expected, rtol=1e-5, atol=1e-6)
    ref = ops.get_op(BWD).decl.reference(g, rois, feats.detach(), **_attrs(case))
    torch.testing.assert_close(ref.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_backward_half_matches_loop(dtype):
    ops.load_extension()
    case = CASES[1]
    feats, rois = _inputs(case, dtype, seed=3)
    g = torch.randn(rois.shape[0], feats.shape[1], *case[1], generator=torch.Generator().manual_seed(4)).to(dtype)
    grad = torch.ops.opforge.roi_align_backward(g, rois, feats, **_attrs(case))
    assert grad.dtype == dtype and grad.shape == feats.shape
    expected = loop_roi_align_backward(g, rois, feats.shape, *_loop_args(case))
    tol = {torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    torch.testing.assert_close(grad.double(), expected, rtol=tol, atol=tol)


def test_loop_backward_is_the_adjoint_of_the_loop_forward():
    """The loop backward is right on its own: the forward is linear in the features, so
    <g, F(f)> = <F^T(g), f> for any f and g."""
    for case in CASES[:3]:
        feats, rois = _inputs(case, torch.float64, seed=5)
        out = loop_roi_align(feats, rois, *_loop_args(case))
        g = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
        back = loop_roi_align_backward(g, rois, feats.shape, *_loop_args(case))
        assert abs(float((g * out).sum()) - float((back * feats).sum())) < 1e-9


def test_sampling_ratio_zero_and_negative_are_adaptive():
    ops.load_extension()
    feats, rois = _inputs(CASES[2])
    a = dict(_attrs(CASES[2]))
    outs = [torch.ops.opforge.roi_align(feats, rois, **{**a, "sampling_ratio": sr}) for sr in (0, -1, -7)]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_legacy_roi_size_clamp():
    """Not aligned, a box smaller than a pixel is sampled as a 1x1 box; aligned, a reversed box has no
    adaptive sample (zeros)."""
    ops.load_extension()
    feats = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(7))
    rois = torch.tensor([[0, 2.0, 2.0, 2.2, 2.1], [0, 3.0, 3.0, 1.0, 1.0]])
    legacy = torch.ops.opforge.roi_align(feats, rois, 2, 2, aligned=False)
    torch.testing.assert_close(legacy.double(), loop_roi_align(feats, rois, 2, 2), rtol=1e-6, atol=1e-7)
    aligned = torch.ops.opforge.roi_align(feats, rois, 2, 2, aligned=True)
    assert torch.equal(aligned[1], torch.zeros_like(aligned[1]))


@pytest.mark.parametrize("bad", [2.5, -1.0, 3.0, float("nan"), float("inf")])
def test_invalid_batch_index_is_an_error(bad):
    ops.load_extension()
    feats, rois = _inputs(CASES[1])  # N = 2 ... rois from 0..1
    rois = rois.clone()
    rois[:, 0] = rois[:, 0].clamp(0, 1)
    rois[4, 0] = bad if bad != 3.0 else 2.0  # 2.0 == N: out of range
    shown = "nan" if math.isnan(bad) else ("inf" if math.isinf(bad) else ("2" if bad == 3.0 else f"{bad:g}"))
    with pytest.raises(RuntimeError, match=rf"opforge::roi_align: rois\[4, 0\] \(the batch index\) is {shown};"):
        torch.ops.opforge.roi_align(feats, rois, **_attrs(CASES[1]))
    with pytest.raises(ValueError, match=r"rois\[4, 0\]"):
        ops.get_op(FWD).reference(feats, rois, **_attrs(CASES[1]))
    g = torch.zeros(rois.shape[0], feats.shape[1], *CASES[1][1])
    with pytest.raises(RuntimeError, match=r"opforge::roi_align_backward: rois\[4, 0\]"):
        torch.ops.opforge.roi_align_backward(g, rois, feats, **_attrs(CASES[1]))


def test_nonfinite_roi_coordinates_give_zeros_and_no_gradient():
    ops.load_extension()
    feats, rois = _inputs(CASES[1])
    rois = rois.clone()
    rois[0, 1] = float("nan")
    rois[1, 4] = float("inf")
    rois[2, 2] = -float("inf")
    rois[3, 1], rois[3, 3] = -3e38, 3e38  # finite coordinates, overflowing size
    for aligned in (False, True):
        a = {**_attrs(CASES[1]), "aligned": aligned}
        f = feats.clone().requires_grad_()
        out = torch.ops.opforge.roi_align(f, rois, **a)
        assert torch.equal(out[:4], torch.zeros_like(out[:4])) and torch.isfinite(out).all()
        torch.testing.assert_close(out, ops.get_op(FWD).reference(feats, rois, **a), rtol=0, atol=0)
        keep = torch.zeros_like(out)
        keep[:4] = 1.0
        (grad,) = torch.autograd.grad(out, (f,), keep)
        assert torch.equal(grad, torch.zeros_like(grad))


def test_inf_feature_reaches_only_bins_that_sample_it():
    """A zero weight times inf is NaN, as in torchvision (all four corner terms are summed); a sample
    outside the image adds nothing, whatever the features hold."""
    ops.load_extension()
    feats = torch.zeros(1, 1, 4, 4)
    feats[0, 0, 0, 0] = float("inf")
    rois = torch.tensor([[0, -10.0, -10.0, -8.0, -8.0], [0, 2.0, 2.0, 3.0, 3.0], [0, 0.0, 0.0, 1.0, 1.0]])
    out = torch.ops.opforge.roi_align(feats, rois, 1, 1, sampling_ratio=1, aligned=True)
    ref = ops.get_op(FWD).reference(feats, rois, 1, 1, sampling_ratio=1, aligned=True)
    torch.testing.assert_close(out, ref, equal_nan=True)
    assert out[0].item() == 0.0 and out[1].item() == 0.0 and not math.isfinite(out[2].item())


def test_empty_rois_forward_and_backward():
    ops.load_extension()
    feats = torch.randn(2, 3, 5, 5, requires_grad=True)
    rois = torch.zeros(0, 5)
    out = torch.ops.opforge.roi_align(feats, rois, 2, 3)
    assert out.shape == (0, 3, 2, 3)
    (grad,) = torch.autograd.grad(out.sum(), (feats,))
    assert torch.equal(grad, torch.zeros_like(grad))
    g = torch.ops.opforge.roi_align_backward(torch.zeros(0, 3, 2, 3), rois, feats.detach(), 2, 3)
    assert g.shape == feats.shape and torch.equal(g, torch.zeros_like(g))


def test_empty_feature_map_gives_zeros():
    ops.load_extension()
    feats = torch.zeros(1, 2, 0, 4)
    rois = torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]])
    out = torch.ops.opforge.roi_align(feats, rois, 2, 2)
    assert torch.equal(out, torch.zeros(1, 2, 2, 2))
    assert torch.equal(ops.get_op(FWD).reference(feats, rois, 2, 2), out)


def test_bad_attributes_are_rejected():
    ops.load_extension()
    feats, rois = _inputs(CASES[0])
    with pytest.raises(RuntimeError, match="pooled_height and pooled_width"):
        torch.ops.opforge.roi_align(feats, rois, 0, 2)
    with pytest.raises(Exception, match="sampling_ratio"):
        torch.ops.opforge.roi_align(feats, rois, 2, 2, sampling_ratio=MAX_GRID + 1)
    with pytest.raises(ValueError, match="input 'rois' must have shape"):
        torch.ops.opforge.roi_align(feats, rois[:, :4], 2, 2)


def test_rois_get_no_gradient():
    ops.load_extension()
    feats, rois = _inputs(CASES[0])
    rois.requires_grad_()
    f = feats.clone().requires_grad_()
    out = torch.ops.opforge.roi_align(f, rois, 2, 2, sampling_ratio=2, aligned=True)
    grads = torch.autograd.grad(out.sum(), (f, rois))
    assert torch.equal(grads[1], torch.zeros_like(rois))  # constants of the sampling, as in torchvision


def _torchvision():
    try:
        import torchvision  # noqa: F401
        from torchvision.ops import roi_align as tv_roi_align
    except Exception as e:
        pytest.skip(
            f"torchvision does not import here ({type(e).__name__}: {e}); this comparison runs on the GPU "
            "machine (benchmarks/gpu_check_roi_align.py covers CUDA there too)"
        )
    return tv_roi_align


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
        ),
    ],
)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_torchvision(case, device):
    tv_roi_align = _torchvision()
    ops.load_extension()
    feats, rois = _inputs(case, seed=8)
    feats, rois = feats.to(device).requires_grad_(), rois.to(device)
    a = _attrs(case)
    ours = torch.ops.opforge.roi_align(feats, rois, **a)
    theirs = tv_roi_align(
        feats, rois, (a["pooled_height"], a["pooled_width"]), a["spatial_scale"], a["sampling_ratio"], a["aligned"]
    )
    # CPU: the same float32 arithmetic in the same order; CUDA: torchvision's positions may be FMA-contracted
    tol = 0 if device == "cpu" else 1e-5
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
    g = torch.randn(ours.shape, device=device)
    (mine,) = torch.autograd.grad(ours, (feats,), g)
    (tv,) = torch.autograd.grad(theirs, (feats,), g)
    torch.testing.assert_close(mine, tv, rtol=1e-5, atol=1e-6)
