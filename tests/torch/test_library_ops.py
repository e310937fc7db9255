"""The generated per-op suite: every registered op with samples (compiled ops and reference-only ops,
tests/fixture_ops.py included) × device × dtype, following what the declaration says: numerics against
the reference, optional inputs given and omitted, non-contiguous inputs, empty inputs (where the op has
empty samples), opcheck, backward (where declared; a clear error where not), torch.export with dynamic
dims and torch.compile (inductor, dynamic) on two batch sizes. `pytest --op ID` runs it for one op.

Failures print the sample seed (OPFORGE_SEED) so they can be reproduced."""

import warnings

import pytest
import torch
from op_cases import (
    batch_sample,
    batch_size,
    full_inputs,
    generated_ops,
    has_float_output,
    is_empty,
    message,
    op_param,
    optional_names,
    rebatch,
    variants,
    with_dtypes,
)

import ops
from ops.check.compare import compare
from ops.check.oracle import as_tuple, reference_outputs, samples
from ops.core.dtypes import torch_dtype
from ops.core.errors import BackwardNotDeclared

OPS = generated_ops()
PER_OP = [op_param(op) for op in OPS]


def per_op(applies) -> list:
    """The ops a test applies to, by their declaration (an op without optional inputs is not a skip of the
    optional-input test: it is not in it)."""
    return [op_param(op) for op in OPS if applies(op)]


ALL = with_dtypes(OPS)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
    ),
]


def expected_dtypes(op, sample):
    named = dict(zip([i.name for i in op.decl.inputs], full_inputs(op, sample)))
    return [
        torch.int64 if o.is_size else torch_dtype(o.dtype) if o.dtype else named[o.dtype_like].dtype
        for o in op.decl.outputs
    ]


def assert_matches_reference(op, sample, dtype_name, label="", make_input=lambda t: t):
    inputs = tuple(make_input(t) for t in sample.inputs)
    actual = as_tuple(op(*inputs, **sample.attrs))
    expected = reference_outputs(op, sample)
    rtol, atol = op.decl.tolerance(dtype_name)
    assert len(actual) == len(expected) == len(op.decl.outputs), message(op, dtype_name, label, inputs[0].shape)
    for a, e, want in zip(actual, expected, expected_dtypes(op, sample)):
        assert a.dtype == want, message(op, dtype_name, label, inputs[0].shape, f"dtype {a.dtype}, expected {want}")
        m = compare(a, e, rtol, atol)
        assert m["ok"], message(op, dtype_name, label, inputs[0].shape, m)


def each_variant(op, device, dtype):
    for sample in samples(op, device, dtype):
        yield from variants(op, sample)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, dtype", ALL)
def test_matches_reference(op, dtype, device):
    for label, sample in each_variant(op, device, dtype):
        assert_matches_reference(op, sample, dtype, label)


@pytest.mark.parametrize("op", per_op(lambda op: optional_names(op)))
def test_optional_inputs_given_and_omitted(op):
    """Every optional input is given by some sample (so 'omitted' variants exist too, see variants())
    and omitting it is accepted by the op and by the reference."""
    all_samples = samples(op, "cpu", op.decl.dtypes[0])
    for k, decl_input in enumerate(op.decl.inputs):
        if not decl_input.optional:
            continue
        given = [s for s in all_samples if full_inputs(op, s)[k] is not None]
        assert given, f"{op.id} declares optional input '{decl_input.name}' but no sample gives it"
        labels = [label for s in given for label, _ in variants(op, s)]
        assert f"'{decl_input.name}' omitted" in labels
        s = given[0]
        omitted = full_inputs(op, s)
        omitted[k] = None
        for inputs in (full_inputs(op, s), omitted):
            assert_matches_reference(
                op,
                ops.Sample(*inputs, **s.attrs),
                op.decl.dtypes[0],
                f"'{decl_input.name}' {'omitted' if inputs is omitted else 'given'}",
            )


def _non_contiguous(t):
    """Same values, every stride doubled: a strided view into a buffer twice the size."""
    if t is None or t.dim() == 0 or t.numel() == 0:
        return t
    big = torch.zeros(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype, device=t.device)
    view = big[..., ::2]
    view.copy_(t)
    assert not view.is_contiguous() or t.shape[-1] == 1  # size-1 dims make any stride contiguous
    return view


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, dtype", ALL)
def test_non_contiguous_inputs(op, dtype, device):
    for label, sample in each_variant(op, device, dtype):
        assert_matches_reference(op, sample, dtype, f"{label}, non-contiguous", make_input=_non_contiguous)
    x = samples(op, device, dtype)[0]
    if x.inputs[0].dim() >= 2:  # a transposed input, too
        t = x.inputs[0].transpose(0, 1).contiguous().transpose(0, 1)
        assert not t.is_contiguous() or t.shape[0] == 1
        assert_matches_reference(op, ops.Sample(t, *x.inputs[1:], **x.attrs), dtype, "transposed")


@pytest.mark.parametrize("op", per_op(lambda op: any(is_empty(s) for s in samples(op, "cpu", "float32"))))
def test_empty_inputs_give_empty_outputs(op):
    """Only ops that declare an empty sample: an op need not accept empty inputs."""
    empties = [s for s in samples(op, "cpu", "float32") if is_empty(s)]
    for s in empties:
        out = as_tuple(op(*s.inputs, **s.attrs))
        ref = reference_outputs(op, s)
        assert [o.shape for o in out] == [r.shape for r in ref], message(op, "float32", "empty", s.inputs[0].shape)
        # every output is empty, except size outputs: a 0-d count (of nothing: 0)
        sizes = [o.is_size for o in op.decl.outputs]
        assert all(o.numel() == 0 for o, size in zip(out, sizes) if not size)
        assert all(int(o) == 0 for o, size in zip(out, sizes) if size)


def _grad_ready(op, t):
    if t is None or not t.is_floating_point() or op.decl.backward is None:
        return t
    return t.detach().clone().requires_grad_()


@pytest.mark.parametrize("op", PER_OP)
def test_opcheck(op):
    """torch.library.opcheck on every sample and variant; inputs require grad only where the op declares a
    backward (without one, differentiating raises: see test_backward_without_declaration_raises)."""
    for dtype in op.decl.dtypes:
        for label, sample in each_variant(op, "cpu", dtype):
            args = tuple(_grad_ready(op, t) for t in sample.inputs)
            try:
                torch.library.opcheck(op.torch_op, args, op.schema_kwargs(sample.attrs))
            except Exception as e:
                raise AssertionError(message(op, dtype, label, sample.inputs[0].shape, e)) from e


def _first_nonempty(op, dtype="float32", device="cpu"):
    return next(s for s in samples(op, device, dtype) if not is_empty(s))


@pytest.mark.parametrize("op", per_op(lambda op: op.decl.backward is not None))
def test_backward_matches_autograd_through_the_reference(op):
    for label, sample in variants(op, _first_nonempty(op)):
        floating = [t is not None and t.is_floating_point() for t in sample.inputs]
        a = [t.detach().clone().double().requires_grad_() if f else t for t, f in zip(sample.inputs, floating)]
        b = [t.detach().clone().requires_grad_() if f else t for t, f in zip(sample.inputs, floating)]
        ref = op.reference(*a, **sample.attrs)
        out = op(*b, **sample.attrs)
        g = torch.randn_like(out)
        grads_ref = torch.autograd.grad(ref, [t for t, f in zip(a, floating) if f], g.double())
        grads = torch.autograd.grad(out, [t for t, f in zip(b, floating) if f], g)
        for x, y in zip(grads, grads_ref):
            torch.testing.assert_close(
                x.double(),
                y,
                rtol=1e-4,
                atol=1e-5,
                msg=lambda m: message(op, "float32", f"backward, {label}", sample.inputs[0].shape, m),
            )


@pytest.mark.parametrize("op", per_op(lambda op: op.decl.backward is None and has_float_output(op.decl)))
def test_backward_without_declaration_raises(op):
    """An op without a declared backward still runs forward on inputs that require grad, and
    differentiating through it raises an error naming the op, never torch's 'autograd kernel was not
    registered' warning with silently wrong gradients."""
    sample = _first_nonempty(op)
    inputs = [
        t.detach().clone().requires_grad_() if t is not None and t.is_floating_point() else t for t in sample.inputs
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's fallback warns instead of raising
        out = next(o for o in as_tuple(op(*inputs, **sample.attrs)) if o.is_floating_point())
        assert out.requires_grad, "the output must record the op so that backward reaches it and fails"
        with pytest.raises(BackwardNotDeclared) as e:
            out.sum().backward()
    assert isinstance(e.value, RuntimeError)
    assert op.id in str(e.value) and "declares no backward" in str(e.value), str(e.value)
    with torch.no_grad():  # without grad, the op runs as usual
        again = next(o for o in as_tuple(op(*inputs, **sample.attrs)) if o.is_floating_point())
        torch.testing.assert_close(again, out.detach())


def _present(sample):
    """(positions of the given inputs, the given inputs): exporters take tensors, not None."""
    where = [k for k, t in enumerate(sample.inputs) if t is not None]
    return where, [sample.inputs[k] for k in where]


def _module(op, sample):
    where, _ = _present(sample)
    n = len(sample.inputs)

    position = {k: j for j, k in enumerate(where)}

    class M(torch.nn.Module):
        def forward(self, *given):  # no list mutation: dynamo in torch 2.11 cannot trace list.__setitem__
            return op(*[given[position[k]] if k in position else None for k in range(n)], **sample.attrs)

    return M()


def _assert_close_to_reference(op, got, sample, label):
    rtol, atol = op.decl.tolerance("float32")
    for a, e in zip(as_tuple(got), reference_outputs(op, sample)):
        m = compare(a, e, rtol, atol)
        assert m["ok"], message(op, "float32", label, sample.inputs[0].shape, m)


def _batch_sample(op):
    return batch_sample(op, samples(op, "cpu", "float32"))


WITH_BATCH = per_op(lambda op: _batch_sample(op) is not None)  # a non-empty sample whose batch is >= 2


@pytest.mark.parametrize("op", WITH_BATCH)
def test_torch_export_keeps_dynamic_dims(op):
    for label, sample in variants(op, _batch_sample(op)):
        _, given = _present(sample)
        shapes = tuple({d: torch.export.Dim.AUTO for d in range(t.dim())} for t in given)
        ep = torch.export.export(_module(op, sample), tuple(given), dynamic_shapes=(shapes,))  # one varargs entry
        node = next(nd for nd in ep.graph.nodes if nd.op == "call_function" and op.decl.name in str(nd.target))
        out_shape = as_tuple(node.meta["val"])[0].shape
        assert isinstance(out_shape[0], torch.SymInt), (op.id, label, out_shape)
        n = batch_size(op, sample)
        for batch in (n * 3, n + 1):
            bigger = rebatch(op, sample, batch)
            _assert_close_to_reference(op, ep.module()(*_present(bigger)[1]), bigger, f"export, {label}, batch {batch}")


@pytest.mark.parametrize("op", WITH_BATCH)
def test_torch_compile(op):
    """inductor with dynamic=True on two batch sizes, compared with the reference (not the same kernel)."""

    torch._dynamo.reset()
    for label, sample in variants(op, _batch_sample(op)):
        _compile_without_duck_sizing(op, label, sample)


def _compile_without_duck_sizing(op, label, sample):
    """Duck sizing gives dims with equal example values one symbol, so a batch of 2 and a patch size of 2 would
    be specialised together; each dim gets its own symbol here, as in a real model."""
    from torch._dynamo.testing import CompileCounterWithBackend
    from torch.fx.experimental import _config as fx_config

    with fx_config.patch(use_duck_shape=False):
        counter = CompileCounterWithBackend("inductor")
        compiled = torch.compile(_module(op, sample), backend=counter, dynamic=True, fullgraph=True)
        n = batch_size(op, sample)
        frames = []
        for batch in (n, n * 2 + 1):
            s = rebatch(op, sample, batch)
            _assert_close_to_reference(op, compiled(*_present(s)[1]), s, f"compile, {label}, batch {batch}")
            frames.append(counter.frame_count)
        # A data-dependent output may take inductor two graphs on the first call; a new batch size takes none.
        assert frames[1] == frames[0], f"{op.id} ({label}): recompiled for a new batch size despite dynamic=True"
        assert any(
            op.decl.name in str(n.target) for g in counter.graphs for n in g.graph.nodes if n.op == "call_function"
        ), f"{op.id} ({label}): the compiled graph does not call the op"
