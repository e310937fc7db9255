"""opforge::layer_norm: the declared reference against torch.nn.functional.layer_norm in float64 (the oracle is
not its own witness), the CPU kernel against float64 with and without bias (rows whose fp16 sums overflow,
rows whose mean dwarfs their spread, lengths that leave every tail of the kernel's 32 partial sums and 512-element
blocks), its backward against autograd through torch.nn.functional.layer_norm, and the Triton variant of the CUDA
kernel: its launch description resolves, and Triton compiles it ahead of time for sm_87 and sm_90 (no GPU
needed; skipped only where triton does not import). The CUDA kernels themselves run on a GPU:
benchmarks/gpu_check_layer_norm.py."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F

import ops
from ops.core.triton_launch import default_config

OP_ID = "opforge::layer_norm"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Against float64 on the same (rounded) inputs: float32 math, then one rounding to the storage type.
TOL = {torch.float32: (2e-5, 2e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}


def op():
    return ops.get_op(OP_ID)


def exact(x, w, b, eps):
    """float64 layer norm of the (already rounded) inputs."""
    b64 = None if b is None else b.double()
    return F.layer_norm(x.double(), (x.shape[-1],), w.double(), b64, eps)


def inputs(shape, dtype, bias=True, scale=1.0, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = shape[-1]
    x = (torch.randn(*shape, generator=g) * scale + shift).to(dtype)
    w = (1 + 0.1 * torch.randn(n, generator=g)).to(dtype)
    b = (0.1 * torch.randn(n, generator=g)).to(dtype) if bias else None
    return x, w, b


def call(x, w, b, eps=1e-5):
    return op()(x, w, b, eps=eps) if b is not None else op()(x, w, eps=eps)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", [(4, 64), (2, 3, 1000), (129,), (5, 7), (6, 1)])
def test_reference_is_torch_layer_norm(shape, bias):
    x, w, b = inputs(shape, torch.float32, bias, scale=3.0, shift=-2.0)
    got = op().reference(x, w, b, 1e-5)  # float32 math
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, F.layer_norm(x, (x.shape[-1],), w, b, 1e-5), rtol=4e-6, atol=4e-6)
    torch.testing.assert_close(got.double(), exact(x, w, b, 1e-5), rtol=4e-6, atol=4e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize(
    "shape,scale,shift",
    [
        ((4, 64), 1.0, 0.0),
        ((2, 3, 1000), 1.0, 0.0),
        ((3, 4096), 300.0, 0.0),  # sums and squares far past float16's 65504
        ((2, 4096), 1.0, 1000.0),  # float32: E[x^2] - E[x]^2 would lose ~all digits
        ((5, 7), 1.0, 0.0),
        ((129,), 1.0, 0.0),
        ((2, 4099), 2.0, -3.0),
    ],
)
def test_cpu_kernel_against_float64(shape, scale, shift, bias, dtype):
    x, w, b = inputs(shape, dtype, bias, scale, shift)
    got = call(x, w, b)
    assert got.dtype == dtype and got.shape == x.shape and torch.isfinite(got).all()
    rtol, atol = TOL[dtype]
    # Plus the float32 rounding of the mean relative to the spread (x - mean is exact given the mean), which any
    # float32 kernel has: 3e-5 at shift 1000, scale 1. A one-pass E[x^2] - E[x]^2 is off by ~0.3 there.
    atol += 4 * abs(shift) * 2**-24 / scale
    torch.testing.assert_close(got.double(), exact(x, w, b, 1e-5), rtol=rtol, atol=atol)


def test_float16_sums_overflow_but_the_kernel_does_not():
    x, w, b = inputs((3, 4096), torch.float16, scale=300.0)
    assert torch.isinf(x.pow(2).sum(-1, dtype=torch.float16)).all()  # what a half accumulator would hold
    got = call(x, w, b)
    torch.testing.assert_close(got.double(), exact(x, w, b, 1e-5), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("cols", list(range(1, 40)) + [511, 512, 513, 1025])
def test_every_tail_length(cols):
    x, w, b = inputs((3, cols), torch.float16, seed=cols)
    torch.testing.assert_close(call(x, w, b).double(), exact(x, w, b, 1e-5), rtol=2e-3, atol=2e-3)
    x32, w32, _ = inputs((3, cols), torch.float32, seed=cols)
    torch.testing.assert_close(call(x32, w32, None).double(), exact(x32, w32, None, 1e-5), rtol=2e-5, atol=2e-5)


def test_constant_rows_give_the_bias():
    x = torch.full((4, 33), 7.25)
    w, b = torch.randn(33), torch.randn(33)
    torch.testing.assert_close(call(x, w, b, eps=1e-5), b.expand(4, 33))
    assert torch.equal(call(x, w, None), torch.zeros(4, 33))


def test_misaligned_views():
    """A view starting one element into its storage (no 16-byte alignment for a vector path)."""
    base, w, b = inputs((3 * 64 + 1,), torch.float16)
    x = base[1:].view(3, 64)
    wv, bv = torch.randn(65).half()[1:], torch.randn(65).half()[1:]
    torch.testing.assert_close(call(x, wv, bv).double(), exact(x, wv, bv, 1e-5), rtol=2e-3, atol=2e-3)


def test_empty():
    for shape in [(0, 32), (4, 0), (0,)]:
        x, w, b = inputs(shape, torch.float32)
        assert call(x, w, b).shape == x.shape


def test_bad_bias_is_rejected():
    x, w, _ = inputs((4, 8), torch.float32)
    with pytest.raises(Exception, match="bias"):
        call(x, w, torch.zeros(9))
    with pytest.raises(Exception, match="bias"):
        call(x, w, torch.zeros(8, dtype=torch.float16))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_backward_matches_torch(bias):
    x, w, b = inputs((3, 5, 37), torch.float32, bias, scale=2.0, shift=1.0)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    leaves = [t.clone().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
    got = torch.autograd.grad(call(leaves[0], leaves[1], leaves[2] if bias else None), leaves, grad)
    ref_leaves = [t.double().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
    ref_out = F.layer_norm(ref_leaves[0], (37,), ref_leaves[1], ref_leaves[2] if bias else None, 1e-5)
    want = torch.autograd.grad(ref_out, ref_leaves, grad.double())
    for g, r in zip(got, want):
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-4)


def test_backward_without_bias_returns_no_bias_gradient():
    x, w, _ = inputs((4, 16), torch.float32)
    xl, wl = x.requires_grad_(), w.requires_grad_()
    call(xl, wl, None).sum().backward()
    assert xl.grad is not None and wl.grad is not None


# ---- the Triton variant -------------------------------------------------------------------------


def test_triton_launch_resolves():
    t = op().decl.triton
    assert t.kernel == "layer_norm_fwd"
    by_param = {a.param: a for a in t.args}
    assert [by_param[p].kind for p in ("x", "w", "b", "y")] == ["tensor"] * 4
    assert by_param["b"].source == "bias" and by_param["eps"].kind == "attr" and by_param["eps"].type == "fp32"
    assert by_param["has_bias"].kind == "expr" and "present(bias)" in by_param["has_bias"].source
    assert t.meta_names == ("BLOCK", "ROWS", "ONE_PASS")
    configs = t.configs
    # The tightest one-pass config that holds the row, and the looping config past 16384.
    for key, block in [(1, 64), (64, 64), (65, 256), (1000, 1024), (4096, 4096), (16384, 16384)]:
        c = configs[default_config(configs, key)]
        assert c.meta["ONE_PASS"] and c.meta["BLOCK"] == block, (key, c)
    assert not configs[default_config(configs, 16385)].meta["ONE_PASS"]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_aot_compiles_for_sm87_and_sm90():
    from ops.native import triton_aot, triton_launcher

    decl = op().decl
    result = triton_aot.compile_op(decl)
    assert set(result.archs) >= {87, 90}
    assert len(result.kernels) == len(result.variants) * 2 * len(decl.triton.configs) == 3 * 2 * 13
    for k in result.kernels:
        assert k.function == "layer_norm_fwd"
        assert {im.arch for im in k.images} >= {87, 90}
        assert all(im.cubin and im.param_count >= len(decl.triton.args) for im in k.images)
    source = triton_launcher.generate(decl, result, "layer_norm_triton.bin")
    assert "bias != nullptr ? bias->data : nullptr" in source  # a null pointer when absent
    assert "int64_t(bias != nullptr ? 1 : 0)" in source  # has_bias
