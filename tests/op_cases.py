"""Which ops the generated per-op tests run over, and the argument variants they try.

Every registered op that has samples is tested: the compiled built-in ops and reference-only ops
(`kernels=None`, e.g. tests/fixture_ops.py). `pytest --op ID` (repeatable) restricts the generated tests
to those ops (tests/conftest.py sets SELECTED)."""

from __future__ import annotations

import pytest

import ops
from ops.check.oracle import seed_note

SELECTED: list[str] | None = None  # --op values; None: every op
TEST_NAMESPACES = ("opforge_test",)  # ops that tests declare on the fly (conftest's unique_id)


def candidate_ops() -> list:
    return [op for op in ops.all_ops() if op.decl.samples is not None and op.decl.namespace not in TEST_NAMESPACES]


def generated_ops() -> list:
    """The ops the generated tests are parametrized over (collection time)."""
    return [op for op in candidate_ops() if SELECTED is None or op.id in SELECTED]


def op_param(op, *rest, id_suffix=""):
    """A pytest.param for `op` (plus extra values), skipped when the op's compiled kernels cannot load."""
    return pytest.param(op, *rest, id=op.id + id_suffix, marks=_extension_marks(op))


def _extension_marks(op):
    if op.decl.kernel_dir is None:
        return ()
    from ops.torch.extension import status

    s = status()
    return () if s["loaded"] else (pytest.mark.skip(reason=f"ops._C not loaded: {s['error']}"),)


def with_dtypes(op_list):
    return [op_param(op, dt, id_suffix=f"-{dt}") for op in op_list for dt in op.decl.dtypes]


def full_inputs(op, sample) -> list:
    """The sample's inputs, one per declared input (omitted trailing optional inputs as None)."""
    inputs = list(sample.inputs)
    return inputs + [None] * (len(op.decl.inputs) - len(inputs))


def optional_names(op) -> list[str]:
    return [i.name for i in op.decl.inputs if i.optional]


def variants(op, sample) -> list[tuple[str, ops.Sample]]:
    """The sample as declared, plus, for every optional input it gives, the same sample with that input
    omitted (None): optional inputs are exercised both given and omitted. Labels name the variant."""
    inputs = full_inputs(op, sample)
    out = [("as declared", ops.Sample(*inputs, **sample.attrs))]
    for k, decl_input in enumerate(op.decl.inputs):
        if decl_input.optional and inputs[k] is not None:
            omitted = list(inputs)
            omitted[k] = None
            out.append((f"'{decl_input.name}' omitted", ops.Sample(*omitted, **sample.attrs)))
    return out


def is_empty(sample) -> bool:
    return any(t is not None and t.numel() == 0 for t in sample.inputs)


def batch_sample(op, all_samples):
    """A non-empty sample whose declared batch (ops.core.batch) is present with a size >= 2, for the dynamic-shape
    tests, or None (also for an op without a batch)."""
    for s in all_samples:
        size = batch_size(op, s)
        if not is_empty(s) and size is not None and size >= 2:
            return s
    return None


def batch_size(op, sample) -> int | None:
    """The sample's size along the op's batch dim, or None when it has none to vary."""
    from ops.check.batching import batched_inputs

    inputs = full_inputs(op, sample)
    dims = batched_inputs(op.decl, ops.Sample(*inputs, **sample.attrs))
    if dims is None:
        return None
    k = next(k for k, i in enumerate(op.decl.inputs) if i.name == op.decl.batch.input)
    return inputs[k].shape[dims[k]]


def rebatch(op, sample, batch: int):
    """The sample resized to `batch` along the op's declared batch dim (entries repeated cyclically) in every
    input tied to it (ops.core.batch: like(x), a shape rule that names the dim, Input(batch_dim=...))."""
    from ops.check.batching import batched_inputs, resized

    inputs = full_inputs(op, sample)
    dims = batched_inputs(op.decl, ops.Sample(*inputs, **sample.attrs))
    assert dims is not None, f"{op.id}: the sample has no batch to resize"
    return ops.Sample(*resized(inputs, dims, batch), **sample.attrs)


def message(op, dtype, label, shape, metrics=None) -> str:
    """Assertion message of the generated tests: what failed, and the seed to reproduce it."""
    return f"{op.id} [{dtype}] {label} x{list(shape)}: {metrics if metrics is not None else ''}; {seed_note()}"


def has_float_output(decl) -> bool:
    """Whether some output is floating (only those can carry a gradient)."""
    floating = {"float32", "float16", "bfloat16", "float64"}
    return any(
        (o.dtype in floating) or (o.dtype_like and set(decl.input(o.dtype_like).dtypes) & floating)
        for o in decl.outputs
    )
