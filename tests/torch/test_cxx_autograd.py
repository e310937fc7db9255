"""Ops with compiled kernels take their whole call path from the generated C++ glue: schema (where Python
has not defined it), device kernels and the Autograd kernel. Python is reached only by a backward (the
declared one, through the helper op `ns::<name>_opforge_backward`). These tests fail if a Python autograd
kernel comes back on the hot path, if saves= is ignored, or if None gradients stop round-tripping."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ops
from ops import DeclarationError, Input, Output, register_op

ROOT = Path(__file__).resolve().parents[2]
COMPILED = [pytest.param(ops.get_op(name), id=name) for name in ("opforge::rms_norm", "opforge::scaled_gelu")]


def _args(op, requires_grad):
    x = torch.randn(4, 64, requires_grad=requires_grad)
    return (x, torch.randn(64, requires_grad=requires_grad)) if op.decl.name == "rms_norm" else (x,)


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("op", COMPILED)
def test_a_call_runs_no_python_below_the_op_call(op, requires_grad):
    """Python frames entered during a forward call: only torch's OpOverload.__call__ itself. Before, every
    call ran torch.library's Python autograd kernel (torch/_library/autograd.py), with or without grad."""
    args = _args(op, requires_grad)
    torch_op = op.torch_op
    torch_op(*args)  # first-call lookups
    frames = []

    def profile(frame, event, arg):
        if event == "call":
            frames.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        out = torch_op(*args)
    finally:
        sys.setprofile(None)
    assert out.requires_grad == requires_grad
    assert all(f.endswith("_ops.py:__call__") for f in frames), frames


@pytest.mark.parametrize("op", COMPILED)
def test_forward_saves_only_what_the_backward_reads(op):
    packed = []
    args = _args(op, True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        op(*args)
    assert op.decl.saves and len(packed) == len(op.decl.saves), (op.decl.saves, len(packed))
    assert all(any(p is a for a in args) for p in packed), "rms_norm and scaled_gelu save inputs only"


def test_double_backward_runs_through_the_declared_backward():
    """create_graph=True: the helper op is CompositeImplicitAutograd, so autograd records the aten ops of
    the Python backward and a second derivative exists (compared with the reference's)."""
    op = ops.get_op("opforge::rms_norm")
    x, w = torch.randn(3, 16, requires_grad=True), torch.randn(16, requires_grad=True)
    g = torch.randn(3, 16)
    results = []
    for fn in (op, op.reference):
        a, b = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        ga, gb = torch.autograd.grad(fn(a, b), (a, b), g, create_graph=True)
        results.append(torch.autograd.grad((ga * ga).sum() + (gb * gb).sum(), (a, b)))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_none_gradients_round_trip_through_cpp():
    """A backward that returns None for an input that requires grad: that input's .grad stays None (an
    undefined tensor in C++), it does not become zeros."""
    op = ops.get_op("opforge::rms_norm")
    decl = op.decl
    declared = decl.backward
    object.__setattr__(decl, "backward", lambda ctx, grad: (declared(ctx, grad)[0], None))
    try:
        x, w = torch.randn(2, 8, requires_grad=True), torch.randn(8, requires_grad=True)
        op(x, w).sum().backward()
    finally:
        object.__setattr__(decl, "backward", declared)
    assert x.grad is not None and w.grad is None


def test_the_backward_helper_op_takes_and_returns_none():
    """Its schema is `(Tensor?[] saved, Tensor?[] grads, float eps) -> Tensor?[]` (ops/torch/schema.py): a None
    saved tensor (an absent optional input) and a None gradient (autograd has none for that output) reach the
    declared backward as None, and a None it returns (no gradient for that input) comes back as None, never
    as a zero tensor."""
    op = ops.get_op("opforge::rms_norm")
    decl = op.decl
    declared = decl.backward
    seen = {}

    def backward(ctx, grad):
        seen.update(x=ctx.x, weight=ctx.weight, grad=grad, eps=ctx.eps)
        return (None, None) if grad is None else (declared(ctx, grad)[0], None)

    x, w = torch.randn(2, 8), torch.randn(8)
    object.__setattr__(decl, "backward", backward)
    try:
        none_in = torch.ops.opforge.rms_norm_opforge_backward([x, None], [None], 1e-6)
        assert seen["x"] is not None and seen["weight"] is None and seen["grad"] is None and seen["eps"] == 1e-6
        mixed = torch.ops.opforge.rms_norm_opforge_backward([x, w], [torch.ones(2, 8)], 1e-6)
        assert seen["weight"] is not None and seen["grad"] is not None
    finally:
        object.__setattr__(decl, "backward", declared)
    assert none_in == [None, None]
    assert len(mixed) == 2 and isinstance(mixed[0], torch.Tensor) and mixed[1] is None
    torch.testing.assert_close(mixed[0], declared_grad_x(op, x, w, torch.ones(2, 8)))


def declared_grad_x(op, x, w, g):
    """grad x of rms_norm through the reference's autograd, to check the tensor the helper op returned."""
    xr = x.detach().clone().requires_grad_()
    (gx,) = torch.autograd.grad(op.reference(xr, w), (xr,), g)
    return gx


def test_reading_a_tensor_that_saves_leaves_out_names_the_fix(unique_id):
    def backward(ctx, grad):
        return grad * ctx.y  # y is not saved

    op = register_op(
        unique_id("square"), inputs=[Input("x")], outputs=[Output("y")], kernels=None, backward=backward, saves=("x",)
    )(lambda x: x * x)
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(AttributeError, match=r"reads ctx.y, but the declaration saves only \['x'\].*add 'y' to saves="):
        op(x).sum().backward()


@pytest.mark.parametrize(
    "saves, message",
    [
        (("x", "z"), "names of inputs or outputs"),
        ("x", "a tuple of input/output names"),
        (("x", "x"), "each name once"),
    ],
)
def test_saves_is_validated(unique_id, saves, message):
    with pytest.raises(DeclarationError, match=message):
        register_op(
            unique_id("bad_saves"),
            inputs=[Input("x")],
            outputs=[Output("y")],
            kernels=None,
            backward=lambda ctx, g: g,
            saves=saves,
        )(lambda x: x)
    with pytest.raises(DeclarationError, match="no saves without a backward"):
        register_op(unique_id("bad_saves"), inputs=[Input("x")], outputs=[Output("y")], kernels=None, saves=("x",))(
            lambda x: x
        )


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )


def test_import_is_warning_free():
    done = _python("import ops; ops.load_extension()")
    assert done.returncode == 0, done.stderr[-3000:]


def test_extension_loaded_before_the_declarations():
    """C++ first (torch.ops.load_library, as an AOTInductor runner would): the extension defines the schemas,
    the declarations then find them and skip theirs, and nothing is registered twice."""
    code = (
        "import glob, torch; torch.ops.load_library(glob.glob('ops/_C*.so')[0]); import ops; "
        "x = torch.randn(3, 8, requires_grad=True); w = torch.randn(8); "
        "ops.get_op('opforge::rms_norm')(x, w).sum().backward(); assert x.grad.shape == (3, 8); "
        "assert ops.torch.extension.status()['loaded']"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr[-3000:]
