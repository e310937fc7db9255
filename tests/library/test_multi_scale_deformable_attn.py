"""opforge::multi_scale_deformable_attn and its backward against Deformable DETR's ms_deform_attn_core_pytorch,
re-implemented below with its semantics (F.grid_sample per level, bilinear, zero padding, align_corners=False,
grid = 2 * location - 1) and run in float64. The declared reference (a gather form with no host sync) is checked
against it too, so the oracle is not its own witness; gradients by autograd through the grid_sample core, and the
reference's by torch.autograd.gradcheck."""

import pytest
import torch
import torch.nn.functional as F

import ops
from ops.library import multi_scale_deformable_attn as decl

FWD = "opforge::multi_scale_deformable_attn"
BWD = "opforge::multi_scale_deformable_attn_backward"
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def grid_sample_core(value, spatial_shapes, sampling_locations, attention_weights):
    """ms_deform_attn_core_pytorch's computation, step by step (levels split from value, one grid_sample each)."""
    n, _, m, d = value.shape
    _, lq, _, nl, p, _ = sampling_locations.shape
    levels = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    per_level = value.split([h * w for h, w in levels], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for lid, (h, w) in enumerate(levels):
        v = per_level[lid].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        g = grids[:, :, :, lid].transpose(1, 2).flatten(0, 1)  # [N*M, Lq, P, 2]
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    a = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, nl * p)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * a).sum(-1).view(n, m * d, lq)
    return out.transpose(1, 2).contiguous()


def core_grads(value, spatial_shapes, loc, attn, grad_out):
    leaves = [t.detach().double().requires_grad_() for t in (value, loc, attn)]
    out = grid_sample_core(leaves[0], spatial_shapes, leaves[1], leaves[2])
    return out, torch.autograd.grad(out, leaves, grad_out.double())


# Configurations beyond the declaration's samples: (N, levels, M, D, Lq, P, location range).
EXTRA = [
    (2, [(16, 16), (8, 8), (4, 4), (2, 2)], 2, 32, 40, 4, (-0.05, 1.05)),  # Deformable DETR's shape, scaled down
    (1, [(7, 3), (1, 9)], 3, 6, 9, 3, (-1.0, 2.0)),  # thin levels, most points outside
    (3, [(1, 1)], 2, 2, 5, 5, (0.0, 1.0)),  # one pixel: every point samples it partly
]
CONFIGS = [c for c in decl.CONFIGS if c[0] * c[4] > 0] + EXTRA


def sample(config, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return decl.make_sample(device, dtype, *config, grad=True, generator=g).inputs


def rel(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() if b.numel() else 0.0


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_reference_matches_grid_sample_core_float64(config):
    value, shapes, start, loc, attn, grad = sample(config)
    want, want_grads = core_grads(value, shapes, loc, attn, grad)
    got = decl.msda_core(value, shapes, start, loc, attn)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    leaves = [t.clone().requires_grad_() for t in (value, loc, attn)]
    grads = torch.autograd.grad(decl.msda_core(leaves[0], shapes, start, leaves[1], leaves[2]), leaves, grad)
    for name, a, b in zip(("value", "sampling_locations", "attention_weights"), grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11, msg=lambda m: f"grad {name}: {m}")


def test_gradcheck_reference_float64():
    value, shapes, start, loc, attn, _ = sample((2, [(3, 4), (2, 3)], 2, 3, 3, 2, (-0.2, 1.2)))
    leaves = tuple(t.clone().requires_grad_() for t in (value, loc, attn))
    assert torch.autograd.gradcheck(lambda v, lc, a: decl.msda_core(v, shapes, start, lc, a), leaves)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_cpu_kernels_match_core(config):
    value, shapes, start, loc, attn, grad = sample(config)
    want, want_grads = core_grads(value, shapes, loc, attn, grad)
    f32 = [t.float() if t.is_floating_point() else t for t in (value, shapes, start, loc, attn, grad)]
    out = ops.get_op(FWD)(*f32[:5])
    assert out.dtype == torch.float32 and out.shape == want.shape
    assert rel(out, want) < 2e-6
    grads = ops.get_op(BWD)(*f32)
    for name, a, b in zip(("value", "sampling_locations", "attention_weights"), grads, want_grads):
        # locations: grad * value differences * W (up to 16 here), summed over D channels in float32
        assert rel(a, b) < 2e-5, (name, rel(a, b))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_kernels_half_types(dtype):
    config = EXTRA[0]
    value, shapes, start, loc, attn, grad = sample(config, dtype=dtype)
    rounded = [t.double() if t.is_floating_point() else t for t in (value, shapes, start, loc, attn, grad)]
    want, want_grads = core_grads(rounded[0], shapes, rounded[3], rounded[4], rounded[5])
    out = ops.get_op(FWD)(value, shapes, start, loc, attn)
    assert out.dtype == dtype
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert rel(out, want) < tol
    grads = ops.get_op(BWD)(value, shapes, start, loc, attn, grad)
    for name, a, b in zip(("value", "sampling_locations", "attention_weights"), grads, want_grads):
        assert a.dtype == dtype
        assert rel(a, b) < 4 * tol, (name, rel(a, b))


def test_autograd_through_the_op_uses_the_backward_op():
    value, shapes, start, loc, attn, grad = sample(EXTRA[1], dtype=torch.float32)
    leaves = [t.clone().requires_grad_() for t in (value, loc, attn)]
    out = ops.get_op(FWD)(leaves[0], shapes, start, leaves[1], leaves[2])
    grads = torch.autograd.grad(out, leaves, grad)
    _, want = core_grads(value, shapes, loc, attn, grad)
    for a, b in zip(grads, want):
        assert rel(a, b) < 2e-5


def test_points_on_borders_and_far_outside():
    """Locations on pixel centres, on the image edges (x = -0.5, W - 0.5), on the last lines that still reach a
    pixel (x = -1, W) and beyond, and infinite: the kernel follows grid_sample."""
    shapes = torch.tensor([[3, 4], [2, 2]])
    start = torch.tensor([0, 12])
    w = 4.0  # the level is 3 x 4
    xs = [0.0, 1.0, 0.5 / w, -0.5 / w, (w + 0.5) / w, -0.6 / w, 1.2, -1e30, float("inf"), float("-inf"), 0.37]
    nq = len(xs)
    loc = torch.zeros(1, nq, 1, 2, 1, 2, dtype=torch.float64)
    loc[0, :, 0, :, 0, 0] = torch.tensor(xs, dtype=torch.float64).unsqueeze(1)
    loc[0, :, 0, :, 0, 1] = 0.5
    value = torch.randn(1, 16, 1, 3, dtype=torch.float64)
    attn = torch.rand(1, nq, 1, 2, 1, dtype=torch.float64)
    finite = torch.isfinite(loc).all()
    assert not finite  # grid_sample's own handling of inf differs by backend; compare the finite points to it
    want = grid_sample_core(value, shapes, loc.nan_to_num(posinf=10.0, neginf=-10.0), attn)
    got = ops.get_op(FWD)(value.float(), shapes, start, loc.float(), attn.float())
    assert rel(got, want) < 2e-6
    ref = decl.multi_scale_deformable_attn(value.float(), shapes, start, loc.float(), attn.float())
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7)


def test_nan_location_samples_nan_and_passes_no_gradient():
    value, shapes, start, loc, attn, grad = sample(decl.CONFIGS[0], dtype=torch.float32)
    loc = loc.clone()
    loc[0, 1, 0, 0, 0, 0] = float("nan")  # one point of (n=0, q=1, m=0)
    out = ops.get_op(FWD)(value, shapes, start, loc, attn)
    d = value.shape[3]
    assert torch.isnan(out[0, 1, :d]).all() and torch.isfinite(out[0, 1, d:]).all()
    assert torch.isfinite(out[1]).all() and torch.isfinite(out[0, 0]).all()
    gv, gl, ga = ops.get_op(BWD)(value, shapes, start, loc, attn, grad)
    assert torch.isnan(ga[0, 1, 0, 0, 0]) and (~torch.isfinite(ga)).sum() == 1
    assert (gl[0, 1, 0, 0, 0] == 0).all() and torch.isfinite(gl).all() and torch.isfinite(gv).all()


def test_no_queries_gives_zero_value_gradient():
    value, shapes, start, loc, attn, grad = sample((2, [(3, 4), (2, 3)], 2, 4, 0, 3, (0.0, 1.0)), torch.float32)
    out = ops.get_op(FWD)(value, shapes, start, loc, attn)
    assert out.shape == (2, 0, 8)
    gv, gl, ga = ops.get_op(BWD)(value, shapes, start, loc, attn, grad)
    assert gv.shape == value.shape and (gv == 0).all() and gl.shape == loc.shape and ga.shape == attn.shape


def test_empty_batch():
    value, shapes, start, loc, attn, grad = sample((0, [(3, 4), (2, 3)], 2, 4, 5, 2, (0.0, 1.0)), torch.float32)
    assert ops.get_op(FWD)(value, shapes, start, loc, attn).shape == (0, 5, 8)
    assert [g.shape for g in ops.get_op(BWD)(value, shapes, start, loc, attn, grad)] == [
        value.shape,
        loc.shape,
        attn.shape,
    ]


@pytest.mark.parametrize("op_id", [FWD, BWD])
def test_inconsistent_level_tensors_are_errors_on_cpu(op_id):
    value, shapes, start, loc, attn, grad = sample(decl.CONFIGS[0], dtype=torch.float32)
    args = lambda sh, st: [value, sh, st, loc, attn] + ([grad] if op_id == BWD else [])  # noqa: E731
    op = ops.get_op(op_id)
    with pytest.raises(
        RuntimeError,
        match=r"multi_scale_deformable_attn.*spatial_shapes has 20 pixels .*2 levels.*"
        r"value.shape\[1\] \(S\) is 18",
    ):
        op(*args(torch.tensor([[3, 4], [2, 4]]), start))
    with pytest.raises(RuntimeError, match=r"spatial_shapes has at least 30 pixels"):
        op(*args(torch.tensor([[3, 10], [2, 3]]), start))
    with pytest.raises(RuntimeError, match=r"level_start_index\[1\] = 11, expected 12"):
        op(*args(shapes, torch.tensor([0, 11])))
    with pytest.raises(RuntimeError, match=r"spatial_shapes\[0\] = \(-3, 4\)"):
        op(*args(torch.tensor([[-3, 4], [2, 3]]), start))


def test_shape_mismatch_is_an_error():
    value, shapes, start, loc, attn, _ = sample(decl.CONFIGS[0], dtype=torch.float32)
    with pytest.raises(ValueError, match="sampling_locations"):
        ops.get_op(FWD)(value, shapes, start, loc[:, :, :, :1], attn)


@CUDA
@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_kernels_match_core(config, dtype):
    value, shapes, start, loc, attn, grad = [t.cuda() for t in sample(config, dtype=dtype)]
    rounded = [t.double() if t.is_floating_point() else t for t in (value, shapes, start, loc, attn, grad)]
    want, want_grads = core_grads(rounded[0], shapes, rounded[3], rounded[4], rounded[5])
    tol = {torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert rel(ops.get_op(FWD)(value, shapes, start, loc, attn), want) < tol
    for name, a, b in zip(
        ("value", "sampling_locations", "attention_weights"),
        ops.get_op(BWD)(value, shapes, start, loc, attn, grad),
        want_grads,
    ):
        assert rel(a, b) < 10 * tol, (name, rel(a, b))


@CUDA
def test_cuda_inconsistent_level_tensors_stay_in_bounds():
    """No error without a host sync, but no read or write outside value / grad_value either (compute-sanitizer
    checks this run on the GPU machine); with the tensors consistent again the results are right."""
    value, shapes, start, loc, attn, grad = [t.cuda() for t in sample(decl.CONFIGS[0], dtype=torch.float32)]
    for sh, st in (
        (torch.tensor([[30, 40], [2, 3]]), start.cpu()),
        (shapes.cpu(), torch.tensor([-5, 17])),
        (torch.tensor([[1 << 40, 1 << 40], [-1, 3]]), torch.tensor([1 << 62, 12])),
    ):
        out = ops.get_op(FWD)(value, sh.cuda(), st.cuda(), loc, attn)
        grads = ops.get_op(BWD)(value, sh.cuda(), st.cuda(), loc, attn, grad)
        torch.cuda.synchronize()
        assert out.shape == (2, 6, 8) and grads[0].shape == value.shape
    want = decl.multi_scale_deformable_attn(value, shapes, start, loc, attn)
    assert rel(ops.get_op(FWD)(value, shapes, start, loc, attn), want) < 2e-6
