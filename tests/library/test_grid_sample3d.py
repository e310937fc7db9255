"""opforge::grid_sample3d and its backward op against aten's grid_sampler_3d run in float64 (the oracle;
the declared reference is F.grid_sample in float32), forward and gradients for input and grid, over every
mode x padding_mode x align_corners combination, with grid points inside, outside, on voxel centres, on
half-way points (nearest rounds half to even) and on the borders, non-finite grid values, and inputs
placed between NaN-filled memory to show that nothing outside the volume is read."""

import itertools

import pytest
import torch

import ops

FWD = "opforge::grid_sample3d"
BWD = "opforge::grid_sample3d_backward"
MODES = {"bilinear": 0, "nearest": 1}
PADDINGS = {"zeros": 0, "border": 1}
COMBOS = list(itertools.product(MODES, PADDINGS, (False, True)))


def ids(combo):
    return "-".join(str(c) for c in combo)


def aten(x, grid, mode, padding_mode, align_corners):
    return torch.ops.aten.grid_sampler_3d(x, grid, MODES[mode], PADDINGS[padding_mode], align_corners)


def aten_grads(x, grid, grad_out, mode, padding_mode, align_corners):
    """(grad_input, grad_grid) of aten's grid_sampler_3d in float64, through autograd."""
    xs = x.detach().double().requires_grad_()
    gs = grid.detach().double().requires_grad_()
    out = aten(xs, gs, mode, padding_mode, align_corners)
    gx, gg = torch.autograd.grad(out, (xs, gs), grad_out.double(), allow_unused=True)
    return (torch.zeros_like(xs) if gx is None else gx), (torch.zeros_like(gs) if gg is None else gg)


def make_grid(n, do, ho, wo, gen):
    """Half the points uniform in [-1.3, 1.3] (some outside), half on a lattice of multiples of 1/8 in
    [-1.5, 1.5]: voxel centres, half-way points and the borders, for the sizes used here."""
    uniform = torch.rand(n, do, ho, wo, 3, generator=gen) * 2.6 - 1.3
    lattice = torch.randint(-12, 13, (n, do, ho, wo, 3), generator=gen).float() / 8
    pick = torch.rand(n, do, ho, wo, 1, generator=gen) < 0.5
    return torch.where(pick, uniform, lattice)


def inputs(seed=0, n=2, c=3, d=4, h=5, w=8, do=3, ho=4, wo=5):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, d, h, w, generator=gen)
    grid = make_grid(n, do, ho, wo, gen)
    grad_out = torch.randn(n, c, do, ho, wo, generator=gen)
    return x, grid, grad_out


@pytest.mark.parametrize("combo", COMBOS, ids=ids)
def test_forward_matches_aten_float64(combo):
    attrs = dict(zip(("mode", "padding_mode", "align_corners"), combo))
    x, grid, _ = inputs()
    want = aten(x.double(), grid.double(), *combo)
    op = ops.get_op(FWD)
    for impl in (op.reference, op):
        got = impl(x, grid, **attrs)
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    if combo[0] == "nearest":  # a copy of one voxel: exact
        assert torch.equal(op(x, grid, **attrs).double(), want)


@pytest.mark.parametrize("combo", COMBOS, ids=ids)
def test_backward_matches_aten_float64(combo):
    attrs = dict(zip(("mode", "padding_mode", "align_corners"), combo))
    x, grid, grad_out = inputs(seed=1)
    want = aten_grads(x, grid, grad_out, *combo)
    bwd = ops.get_op(BWD)
    for impl in (bwd.reference, bwd):
        got = impl(x, grid, grad_out, **attrs)
        for name, g, w in zip(("grad_input", "grad_grid"), got, want):
            torch.testing.assert_close(g.double(), w, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")
    # Through autograd: the forward's backward calls the backward op.
    xs, gs = x.clone().requires_grad_(), grid.clone().requires_grad_()
    ops.get_op(FWD)(xs, gs, **attrs).backward(grad_out)
    torch.testing.assert_close(xs.grad.double(), want[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gs.grad.double(), want[1], rtol=1e-5, atol=1e-5)
    if combo[0] == "nearest":
        assert not gs.grad.any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "combo", [("bilinear", "zeros", False), ("bilinear", "border", True), ("nearest", "border", False)], ids=ids
)
def test_half_types_compute_in_float32(dtype, combo):
    """On the half-rounded inputs, the float64 oracle rounded once to the dtype."""
    attrs = dict(zip(("mode", "padding_mode", "align_corners"), combo))
    x, grid, grad_out = (t.to(dtype) for t in inputs(seed=2))
    tol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    got = ops.get_op(FWD)(x, grid, **attrs)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), aten(x.double(), grid.double(), *combo), rtol=tol, atol=tol)
    gx, gg = ops.get_op(BWD)(x, grid, grad_out, **attrs)
    wx, wg = aten_grads(x, grid, grad_out, *combo)
    torch.testing.assert_close(gx.double(), wx, rtol=tol, atol=tol)
    # grad_grid sums differences of corner values times grid scale (up to W/2 = 4): a few half ulps of that
    torch.testing.assert_close(gg.double(), wg, rtol=4 * tol, atol=4 * tol)


def test_nearest_rounds_half_to_even():
    """align_corners=False, W = 8: grid x = (2k + 1) / 8 - 1 + 1/8 is index k + 0.5 exactly; nearbyint takes the
    even neighbour (0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4, ...), also under border padding."""
    x = torch.arange(8.0).reshape(1, 1, 1, 1, 8)
    k = torch.arange(-1, 8, dtype=torch.float32)  # index k + 0.5: -0.5 ... 7.5
    gx = (2 * (k + 0.5) + 1) / 8 - 1
    grid = torch.stack([gx, torch.zeros_like(gx), torch.zeros_like(gx)], -1).reshape(1, 1, 1, -1, 3)
    for padding_mode in PADDINGS:
        got = ops.get_op(FWD)(x, grid, mode="nearest", padding_mode=padding_mode, align_corners=False)
        want = aten(x.double(), grid.double(), "nearest", padding_mode, False)
        assert torch.equal(got.double(), want)
    got = ops.get_op(FWD)(x, grid, mode="nearest", padding_mode="zeros", align_corners=False).flatten().tolist()
    # -0.5 -> -0 (inside: voxel 0), 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4, 4.5 -> 4, 5.5 -> 6, 6.5 -> 6, 7.5 -> 8 (outside)
    assert got == [0.0, 0.0, 2.0, 2.0, 4.0, 4.0, 6.0, 6.0, 0.0]


@pytest.mark.parametrize("align_corners", [False, True])
def test_border_clamps_to_the_edge_voxels(align_corners):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 3, 4, 5, generator=gen)
    far = torch.tensor([[-7.0, -3.0, -2.0], [9.0, 5.0, 1.5], [-1.0, 1.0, -1.0], [1.0, -1.0, 1.0], [1e30, -1e30, 0.0]])
    grid = far.reshape(1, 1, 1, -1, 3)
    for mode in MODES:
        got = ops.get_op(FWD)(x, grid, mode=mode, padding_mode="border", align_corners=align_corners)
        torch.testing.assert_close(
            got.double(), aten(x.double(), grid.double(), mode, "border", align_corners), rtol=1e-6, atol=1e-7
        )
        # the first two points are far outside: exactly the corner voxels (z, y, x) = (0, 0, 0) and (2, 3, 4)
        assert torch.equal(got[0, :, 0, 0, 0], x[0, :, 0, 0, 0]) and torch.equal(got[0, :, 0, 0, 1], x[0, :, 2, 3, 4])


NONFINITE = [float("nan"), float("inf"), float("-inf"), 1e30, -1e30, 3e9]


@pytest.mark.parametrize("combo", COMBOS, ids=ids)
def test_nonfinite_and_huge_grid_values(combo):
    """NaN, +-inf and values beyond the int range in each axis: aten's rules (see the module doc of
    ops/library/grid_sample3d.py): under 'zeros' the point is outside (0, no gradient); under 'border' the
    forward clamps (a NaN to size - 1), the backward passes no gradient to a clamped coordinate."""
    attrs = dict(zip(("mode", "padding_mode", "align_corners"), combo))
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, 3, 4, 5, generator=gen)
    points = []
    for axis in range(3):
        for v in NONFINITE:
            p = [0.3, -0.2, 0.6]
            p[axis] = v
            points.append(p)
    points.append([float("nan")] * 3)
    grid = torch.tensor(points).reshape(1, 1, 1, -1, 3)
    grad_out = torch.randn(1, 3, 1, 1, grid.shape[3], generator=gen)
    got = ops.get_op(FWD)(x, grid, **attrs)
    want = aten(x.double(), grid.double(), *combo)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(got).all()
    if combo[1] == "zeros":
        assert not got.any()
    gx, gg = ops.get_op(BWD)(x, grid, grad_out, **attrs)
    wx, wg = aten_grads(x, grid, grad_out, *combo)
    torch.testing.assert_close(gx.double(), wx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gg.double(), wg, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("combo", COMBOS, ids=ids)
def test_nothing_outside_the_volume_is_read_or_written(combo):
    """The input is the middle of a buffer whose neighbours are NaN (a contiguous view: the kernel gets its
    pointer as is); a read past any edge of the volume would bring NaN into the output or grad_grid. Likewise
    grad_input is checked in a buffer whose surroundings must stay untouched."""
    attrs = dict(zip(("mode", "padding_mode", "align_corners"), combo))
    x, grid, grad_out = inputs(seed=5, n=1, c=1)
    buf = torch.full((3,) + tuple(x.shape[1:]), float("nan"))
    buf[1] = x[0]
    view = buf[1:2]
    assert view.is_contiguous() and view.data_ptr() != buf.data_ptr()
    got = ops.get_op(FWD)(view, grid, **attrs)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), aten(x.double(), grid.double(), *combo), rtol=1e-5, atol=1e-6)
    gx, gg = ops.get_op(BWD)(view, grid, grad_out, **attrs)
    assert torch.isfinite(gx).all() and torch.isfinite(gg).all()


def test_empty_shapes():
    x, grid, grad_out = inputs(seed=6)
    op, bwd = ops.get_op(FWD), ops.get_op(BWD)
    # empty batch
    assert op(x[:0], grid[:0]).shape == (0, 3, 3, 4, 5)
    gx, gg = bwd(x[:0], grid[:0], grad_out[:0])
    assert gx.shape == (0, 3, 4, 5, 8) and gg.shape == (0, 3, 4, 5, 3)
    # no output voxel: empty output; grad_input is zeros of input's shape
    assert op(x, grid[:, :0]).shape == (2, 3, 0, 4, 5)
    gx, gg = bwd(x, grid[:, :0], grad_out[:, :, :0])
    assert gx.shape == x.shape and not gx.any() and gg.shape == (2, 0, 4, 5, 3)
    # no channel: empty output; grad_grid is zeros (a sum over no channel)
    assert op(x[:, :0], grid).shape == (2, 0, 3, 4, 5)
    gx, gg = bwd(x[:, :0], grid, grad_out[:, :0])
    assert gx.shape == (2, 0, 4, 5, 8) and gg.shape == grid.shape and not gg.any()


def test_bad_inputs_are_errors():
    x, grid, _ = inputs(seed=7)
    op = ops.get_op(FWD)
    with pytest.raises(ValueError, match="grid"):
        op(x, grid[..., :2])  # a 2-D grid's last dim
    with pytest.raises(ValueError, match="grid"):
        op(x, grid[:1])  # batch mismatch
    with pytest.raises(ValueError, match="rank|5"):
        op(x[0], grid)
    for attrs in (dict(mode="bicubic"), dict(padding_mode="reflection")):
        with pytest.raises((ValueError, RuntimeError), match="bicubic|reflection|mode"):
            op(x, grid, **attrs)
