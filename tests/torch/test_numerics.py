"""Non-finite inputs and the edges of the float16 range, against the reference.

- NaN and ±Inf inputs (generated over every op the per-op suite runs, `--op` applies): they propagate
  exactly as in the reference (NaN where it has NaN, the same infinities, equal_nan semantics).
- Outputs near float16's largest value (65504): rms_norm with large inputs and weights, scaled_gelu up to
  ±65504: inf exactly where the reference overflows, finite (and close) where it does not."""

import pytest
import torch
from op_cases import generated_ops, has_float_output, is_empty, message, op_param

import ops
from ops.check.oracle import as_tuple, reference_outputs, samples

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
    ),
]
# Ops with a floating output: NaN/inf must show there. (batched_nms returns indices; which boxes a NaN
# coordinate suppresses is its tests' business, tests/library/test_batched_nms.py.)
NONFINITE = [
    pytest.param(op_param(op).values[0], dt, id=f"{op.id}-{dt}", marks=op_param(op).marks)
    for op in generated_ops()
    if has_float_output(op.decl)
    for dt in op.decl.dtypes
]
FP16_MAX = 65504.0


def _poison(t, k):
    """A copy of t with NaN, +Inf and -Inf written at three places (spread over rows)."""
    t = t.clone()
    flat = t.view(-1)
    n = flat.numel()
    for where, value in zip((k % n, n // 2, n - 1 - (k % n)), (float("nan"), float("inf"), float("-inf"))):
        flat[where] = value
    return t


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, dtype", NONFINITE)
def test_nan_and_inf_propagate_like_the_reference(op, dtype, device):
    rtol, atol = op.decl.tolerance(dtype)
    sample = next(s for s in samples(op, device, dtype) if not is_empty(s))
    floating = [k for k, t in enumerate(sample.inputs) if t is not None and t.is_floating_point() and t.numel() >= 3]
    assert floating, f"{op.id}: no floating input with 3+ elements in its first non-empty sample"
    nonfinite_outputs = 0  # poisonings that reach an output (some inputs may define non-finite values away:
    for k in floating:  # roi_align gives zeros for a roi with a non-finite coordinate)
        for shift in (0, 1):
            inputs = list(sample.inputs)
            inputs[k] = _poison(inputs[k], shift)
            poisoned = ops.Sample(*inputs, **sample.attrs)
            try:
                expected = reference_outputs(op, poisoned)
            except ValueError:  # the poison made the input invalid (roi_align: a NaN batch index)
                if device == "cuda":
                    # A CUDA kernel cannot fail from the device without a host sync; the declaration says what it
                    # writes instead (roi_align: zeros for that roi, no gradient from it). It runs, and nothing of
                    # the invalid value reaches an output.
                    rejected = as_tuple(op(*poisoned.inputs, **poisoned.attrs))
                    assert all(bool(torch.isfinite(t).all()) for t in rejected), f"{op.id}: non-finite output"
                else:  # the CPU kernel rejects it as the reference does
                    with pytest.raises(RuntimeError):
                        op(*poisoned.inputs, **poisoned.attrs)
                continue
            actual = as_tuple(op(*poisoned.inputs, **poisoned.attrs))
            nonfinite_outputs += any(not torch.isfinite(e).all() for e in expected)
            for a, e in zip(actual, expected):
                torch.testing.assert_close(
                    a.float(),
                    e.float(),
                    rtol=rtol,
                    atol=atol,
                    equal_nan=True,
                    msg=lambda m: message(op, dtype, f"non-finite in input {k}", a.shape, m),
                )
    assert nonfinite_outputs, f"{op.id}: no poisoned input reaches an output: the test is trivially finite"


def _assert_same_overflow(op, inputs, attrs, device, label):
    """Against the reference on the same float16 inputs (its float32 result cast to float16): the same
    elements are ±inf, the rest finite and within float16 tolerance. Elements whose float32 value is within
    rounding of the overflow threshold (65520) are left out: there one ulp of float32 decides."""
    inputs = [t.to(device) for t in inputs]
    got = op(*inputs, **attrs).cpu()
    want = op.reference(*inputs, **attrs).cpu()
    exact = op.reference(*[t.float() for t in inputs], **attrs).cpu()
    assert want.dtype == got.dtype == torch.float16
    keep = ((exact.abs() - 65520.0).abs() > 65520.0 * 1e-4) | ~torch.isfinite(exact)
    g, w = got[keep], want[keep]
    assert torch.equal(torch.isposinf(g), torch.isposinf(w)) and torch.equal(torch.isneginf(g), torch.isneginf(w)), (
        op.id,
        label,
        "inf where the reference is finite or the reverse",
        got[keep][torch.isinf(g) != torch.isinf(w)][:8],
        want[keep][torch.isinf(g) != torch.isinf(w)][:8],
    )
    rtol, atol = op.decl.tolerance("float16")
    torch.testing.assert_close(
        g[torch.isfinite(w)].float(),
        w[torch.isfinite(w)].float(),
        rtol=rtol,
        atol=atol,
        msg=lambda m: f"{op.id} {label}: {m}",
    )
    return want


def _library_op_or_skip(op_id):
    if op_id not in {op.id for op in generated_ops()}:
        pytest.skip(f"{op_id} is not among the selected ops (--op)")
    return ops.get_op(op_id)


@pytest.mark.parametrize("device", DEVICES)
def test_rms_norm_near_the_float16_range(device):
    op = _library_op_or_skip("opforge::rms_norm")
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(16, 256, generator=g) * 20000).clamp(-FP16_MAX, FP16_MAX).half()
    x[0, :] = FP16_MAX  # a constant row at the top of the range: x^2 overflows float16, not float32
    x[1, :8] = -FP16_MAX
    ones = torch.ones(256).half()
    y = _assert_same_overflow(op, [x, ones], {}, device, "large inputs, unit weight")
    assert torch.isfinite(y).all()  # normalised: nothing overflows
    w = (torch.rand(256, generator=g) * 40000 + 20000).half()  # xhat * w crosses 65504 for |xhat| > ~1.6
    y = _assert_same_overflow(op, [x, w], {}, device, "large inputs, large weight")
    assert torch.isinf(y).any() and torch.isfinite(y).any()  # both sides of the overflow are exercised


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_scaled_gelu_near_the_float16_range(device, approximate):
    op = _library_op_or_skip("opforge::scaled_gelu")
    x = torch.cat(
        [
            torch.linspace(-FP16_MAX, FP16_MAX, 2001),
            torch.tensor([FP16_MAX, -FP16_MAX, 65000.0, 60000.0, 43000.0, 44000.0, 1e-3, -30.0]),
        ]
    ).half()
    y = _assert_same_overflow(op, [x], {"alpha": 1.0, "approximate": approximate}, device, "alpha 1")
    assert torch.isfinite(y).all() and y.max() == FP16_MAX  # gelu(65504) = 65504, no spurious overflow
    y = _assert_same_overflow(op, [x], {"alpha": 1.5, "approximate": approximate}, device, "alpha 1.5")
    assert torch.isposinf(y).any() and torch.isfinite(y).any()
    y = _assert_same_overflow(op, [x], {"alpha": -1.25, "approximate": approximate}, device, "alpha -1.25")
    assert torch.isneginf(y).any() and torch.isfinite(y).any()
