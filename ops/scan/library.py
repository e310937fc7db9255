"""Declared opforge ops that already stand in for a blocking operator.

An op stands in for an operator when its reference (the plain-torch oracle) calls that operator with inputs
of the same ranks as the model's call: opforge::grid_sample3d's reference is F.grid_sample on 5-D input, so
it is suggested for a model's aten::grid_sampler on 5-D input, not for the 4-D one. Found by tracing each
registered op's reference once (torch.export, as the model is traced) on its first non-empty float32 sample:
no table maps operators to ops, so a newly declared op is found without editing anything here."""

from __future__ import annotations

import torch

from ..core.registry import all_ops
from .trace import TensorSpec, trace_model

_CALLS: dict[str, set] = {}  # op id -> {(operator name, input ranks)} its reference calls; per process


def _ranks(call) -> tuple:
    return tuple(len(a.shape) for a in call.args if isinstance(a, TensorSpec))


def _reference_calls(op) -> set:
    if op.id in _CALLS:
        return _CALLS[op.id]
    calls: set = set()
    try:
        sample = next(
            s for s in op.decl.samples("cpu", torch.float32) if all(t is None or t.numel() > 0 for t in s.inputs)
        )
        decl = op.decl

        class Reference(torch.nn.Module):
            def forward(self, *inputs):
                return decl.reference(*inputs, **sample.attrs)

        for operator in trace_model(Reference(), sample.inputs).operators:
            calls.update((operator.name, _ranks(c)) for c in operator.calls)
    except Exception:  # a reference torch.export cannot trace stands in for nothing here
        calls = set()
    _CALLS[op.id] = calls
    return calls


def standing_in(operator) -> list:
    """The registered opforge ops with an ONNX export whose reference calls `operator` (a trace Operator) with
    inputs of the ranks of one of its recorded calls."""
    wanted = {(operator.name, _ranks(c)) for c in operator.calls}
    found = []
    for op in all_ops():
        if op.decl.samples is None or not op.decl.onnx:  # e.g. a backward op: nothing to deploy
            continue
        if wanted & _reference_calls(op):
            found.append(op)
    return found
