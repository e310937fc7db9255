"""Bad runtime inputs give clear errors naming op, argument, expected, got and the fix; never a crash."""

import pytest
import torch

import ops
from ops.torch.extension import status

needs_C = pytest.mark.skipif(not status()["loaded"], reason=f"ops._C not loaded: {status()['error']}")
rms_norm = ops.get_op("opforge::rms_norm")
scaled_gelu = ops.get_op("opforge::scaled_gelu")


@needs_C
@pytest.mark.parametrize(
    "call, error, fragments",
    [
        (
            lambda: rms_norm(torch.randn(4, 8).int(), torch.randn(8).int()),
            TypeError,
            ["opforge::rms_norm", "input 'x'", "float32, float16, bfloat16", "got int32", "Fix:"],
        ),
        (
            lambda: rms_norm(torch.randn(4, 8), torch.randn(8).half()),
            TypeError,
            ["input 'weight'", "dtype of 'x' (float32)", "got float16", "Fix:"],
        ),
        (
            lambda: rms_norm(torch.randn(4, 8), torch.randn(7)),
            ValueError,
            ["input 'weight'", "[x.shape[-1]] = [8]", "got [7]"],
        ),
        (
            lambda: rms_norm(torch.randn(4, 8), torch.randn(2, 8)),
            ValueError,
            ["input 'weight'", "rank 1", "got rank 2"],
        ),
        (lambda: rms_norm(torch.tensor(1.0), torch.randn(1)), ValueError, ["input 'x'", "rank >= 1", "got rank 0"]),
        (lambda: rms_norm(torch.randn(1, 1, 1, 1, 1, 1, 1, 1, 1, 2), torch.randn(2)), ValueError, ["at most 8 dims"]),
        (
            lambda: scaled_gelu(torch.randn(3), 1.0, "erf"),
            ValueError,
            ["attribute 'approximate'", "'none' 'tanh'", "got 'erf'"],
        ),
        (lambda: scaled_gelu(torch.randn(3, dtype=torch.float64)), TypeError, ["got float64"]),
        (lambda: scaled_gelu(torch.randn(3, dtype=torch.complex64)), TypeError, ["input 'x'"]),
    ],
)
def test_clear_error(call, error, fragments):
    with pytest.raises(error) as e:
        call()
    for f in fragments:
        assert f in str(e.value), str(e.value)


@needs_C
def test_wrong_argument_types_are_rejected_by_the_schema():
    with pytest.raises((TypeError, RuntimeError), match="rms_norm"):
        rms_norm(torch.randn(2, 3), torch.randn(3), "eps")
    with pytest.raises((TypeError, RuntimeError), match="rms_norm"):
        rms_norm([1.0, 2.0], torch.randn(2))


@needs_C
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_mixed_devices():
    with pytest.raises(RuntimeError, match="Fix: move all inputs to one device"):
        rms_norm(torch.randn(4, 8, device="cuda"), torch.randn(8))


@needs_C
def test_fake_tensors_report_the_same_errors():
    """torch.export sees the declaration's checks too (Python side), with the same wording."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        with pytest.raises(ValueError, match=r"input 'weight' must have shape \[x.shape\[-1\]\]"):
            rms_norm(torch.empty(4, 8), torch.empty(7))


# ---- generated from the declarations: every op of the per-op suite (`--op` applies) -------------------

from op_cases import full_inputs, generated_ops, has_float_output, is_empty, op_param  # noqa: E402

from ops.check.oracle import samples  # noqa: E402
from ops.core.errors import BackwardNotDeclared  # noqa: E402

PER_OP = [op_param(op) for op in generated_ops()]


def _first(op):
    return next(s for s in samples(op, "cpu", op.decl.dtypes[0]) if not is_empty(s))


@pytest.mark.parametrize("op", PER_OP)
def test_undeclared_dtype_is_rejected(op):
    s = _first(op)
    first = op.decl.inputs[0]
    bad = next(
        d for d in (torch.int32, torch.float64, torch.complex64) if str(d).removeprefix("torch.") not in first.dtypes
    )
    inputs = [s.inputs[0].to(bad)] + list(s.inputs[1:])
    with pytest.raises(TypeError) as e:
        op(*inputs, **s.attrs)
    for fragment in (op.id, f"input '{first.name}'", "Fix:"):
        assert fragment in str(e.value), str(e.value)


@pytest.mark.parametrize("op", PER_OP)
def test_missing_required_input_is_rejected(op):
    required = [k for k, i in enumerate(op.decl.inputs) if not i.optional]
    s = _first(op)
    for k in required:
        inputs = full_inputs(op, s)
        inputs[k] = None
        with pytest.raises((ValueError, TypeError, RuntimeError)) as e:
            op(*inputs, **s.attrs)
        assert op.decl.name in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "op", [op_param(op) for op in generated_ops() if op.decl.backward is None and has_float_output(op.decl)]
)
def test_backward_through_an_op_without_backward_names_it(op):
    s = _first(op)
    x = s.inputs[0].detach().clone().requires_grad_()
    out = op(x, *s.inputs[1:], **s.attrs)
    out = next(o for o in (out if isinstance(out, tuple) else (out,)) if o.is_floating_point())
    with pytest.raises(RuntimeError, match=f"{op.id} declares no backward.*Fix:") as e:
        torch.autograd.grad(out.sum(), x)
    assert isinstance(e.value, BackwardNotDeclared)
