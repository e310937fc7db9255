"""Does each operator export? Trial exports, decided per operator and never stopping at a failure.

A trial exports a small module that makes one recorded call (the operator, inputs made from the recorded
shapes and dtypes, the recorded constant arguments) with one exporter at one opset, registering opforge's
symbolics/translations as ops.export_onnx does. A trial passes when the exporter returns a model, writes
the opset asked for, and onnx.checker (full_check) accepts it; its nodes are the ONNX ops the operator
becomes.

TorchScript trials take milliseconds, so every distinct call signature gets one. A dynamo export takes about
a second whatever its size, so the dynamo exporter is tried on the whole traced program first; only when
that fails are the operators' calls exported together in one module (each in its own submodule, so each
ONNX node names the call it came from), and the call the exporter stops at is taken out, confirmed alone
and recorded, until the rest exports. Results are cached per (call signature, column) for the process."""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field

import torch
from torch.utils import _pytree as pytree

from ..core import lazy
from ..core.errors import OpforgeError
from ..core.registry import all_ops
from ..onnx.export import default_opset, export_dynamo, export_torchscript
from ..onnx.quiet import quiet_dynamo_registration_log
from ..onnx.schema import onnx_supported, register_schemas
from .columns import Column
from .trace import Operator, TensorSpec, Trace

# Nodes every exporter writes for literals; TensorRT takes numeric constants. Left out of "the ONNX ops an
# operator becomes" so the list shows what the operator computes with.
_LITERALS = {("", "Constant")}


@dataclass
class Outcome:
    ok: bool
    reason: str = ""
    onnx_ops: list = field(default_factory=list)  # [(domain, op_type)], first appearance order

    def add_ops(self, nodes) -> None:
        for key in nodes:
            if key not in _LITERALS and key not in self.onnx_ops:
                self.onnx_ops.append(key)


_CACHE: dict[tuple, Outcome] = {}


# ----------------------------------------------------------------------------------------------- modules


def make_input(spec: TensorSpec):
    """A tensor like the recorded one. Integer tensors are zeros (a valid index into anything non-empty),
    booleans are True, floating ones random."""
    dtype = getattr(torch, spec.dtype)
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(spec.shape, dtype=dtype)
    if dtype == torch.bool:
        return torch.ones(spec.shape, dtype=dtype)
    return torch.zeros(spec.shape, dtype=dtype)


def _one_call_module(overload, call):
    """(module, input tensors) making `call`: tensors become the forward's inputs, the rest is baked in."""
    flat, tree = pytree.tree_flatten((call.args, call.kwargs))
    slots = [i for i, v in enumerate(flat) if isinstance(v, TensorSpec)]
    inputs = tuple(make_input(flat[i]) for i in slots)

    class OneCall(torch.nn.Module):
        def forward(self, *tensors):
            values = list(flat)
            for i, t in zip(slots, tensors):
                values[i] = t
            args, kwargs = pytree.tree_unflatten(values, tree)
            out = overload(*args, **kwargs)
            # only tensors can be graph outputs (a scalar or None result is not one)
            return tuple(o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor))

    return OneCall().eval(), inputs


def _batch_module(members):
    """One module making every call in `members` [(operator, call)], call k inside submodule `call{k}`."""
    parts, inputs, counts = [], [], []
    for op, call in members:
        module, tensors = _one_call_module(op.overload, call)
        parts.append(module)
        inputs.extend(tensors)
        counts.append(len(tensors))

    class Batch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, part in enumerate(parts):
                setattr(self, f"call{k}", part)

        def forward(self, *tensors):
            outputs, start = [], 0
            for k, n in enumerate(counts):
                outputs.extend(getattr(self, f"call{k}")(*tensors[start : start + n]))
                start += n
            return tuple(outputs)

    return Batch().eval(), tuple(inputs)


# ----------------------------------------------------------------------------------------------- exports


class TrialFailed(Exception):
    pass


def short_reason(e: BaseException) -> str:
    """One line saying why an export failed: opforge's own message if it raised one, else the innermost
    exception of the chain that says something (the exporters wrap the real cause two or three times)."""
    chain, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    ours = next((c for c in chain if isinstance(c, OpforgeError)), None)
    pick = ours or next((c for c in reversed(chain) if str(c).strip()), chain[0])
    text = next((line.strip() for line in str(pick).splitlines() if line.strip()), type(pick).__name__)
    if len(text) > 120 and ". " in text:  # the exporters' first sentence says what; the rest is generic advice
        text = text[: text.index(". ") + 1]
    return text if len(text) <= 240 else text[:237] + "..."


def _opforge_ops_in(trace_ops):
    """The declared ops among the traced operators (what the exporters need registered)."""
    wanted = {op.overload for op in trace_ops}
    return [op for op in all_ops() if op.torch_op in wanted]


def export(column: Column, model, args, declared) -> object:
    """Export with the column's exporter at its opset; returns the onnx.ModelProto or raises TrialFailed."""
    onnx = lazy.onnx()

    register_schemas([op for op in declared if onnx_supported(op.decl)])  # onnx.checker knows the custom nodes
    try:
        with (
            warnings.catch_warnings(),
            quiet_dynamo_registration_log(),
            _quiet_onnxscript(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            if column.exporter == "torchscript":
                m = export_torchscript(model, args, column.opset, {}, declared)
            else:
                m = export_dynamo(model, args, column.opset, {}, declared)
    except Exception as e:
        raise TrialFailed(short_reason(e)) from e
    written = default_opset(m)
    if written != column.opset:
        raise TrialFailed(
            f"the {column.exporter} exporter wrote opset {written}, not {column.opset} (its version conversion failed)"
        )
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:
        raise TrialFailed(f"exported, but onnx.checker rejects it: {short_reason(e)}") from e
    return m


@contextlib.contextmanager
def _quiet_onnxscript():
    """onnxscript's optimiser logs notes about the graphs it rewrites (e.g. initializers it keeps); a scan
    exports dozens of small graphs and those notes are not about the user's model."""
    import logging

    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _node_keys(m):
    return [(n.domain if n.domain != "ai.onnx" else "", n.op_type) for n in m.graph.node]


def _metadata(node) -> dict:
    return {p.key: p.value for p in node.metadata_props}


def try_call(column: Column, op: Operator, call, declared) -> Outcome:
    """One call alone (cached)."""
    key = (op.qualified, call.signature(), column.exporter, column.opset)
    if key not in _CACHE:
        module, inputs = _one_call_module(op.overload, call)
        # only this call's own op: the TorchScript exporter warns about every declared domain a model leaves unused
        declared = [d for d in declared if d.torch_op == op.overload]
        try:
            m = export(column, module, inputs, declared)
        except TrialFailed as e:
            _CACHE[key] = Outcome(False, str(e))
        else:
            outcome = Outcome(True)
            outcome.add_ops(_node_keys(m))
            _CACHE[key] = outcome
    return _CACHE[key]


def _mentioned_first(text: str, members):
    """The member whose operator the error text names first (the exporter stops at the first failing node)."""
    best = None
    for k, (op, _) in enumerate(members):
        spellings = (op.qualified, f"torch.ops.{op.qualified}", op.name.split(".")[0])
        positions = [text.find(s) for s in spellings if s and text.find(s) >= 0]
        if positions and (best is None or min(positions) < best[0]):
            best = (min(positions), k)
    return None if best is None else best[1]


def try_together(column: Column, members, declared) -> list[Outcome]:
    """Outcomes for every (operator, call) in `members` with as few dynamo exports as possible."""
    results: dict[int, Outcome] = {}
    pending = []
    for k, (op, call) in enumerate(members):
        key = (op.qualified, call.signature(), column.exporter, column.opset)
        if key in _CACHE:
            results[k] = _CACHE[key]
        else:
            pending.append(k)
    while pending:
        chunk = [members[k] for k in pending]
        module, inputs = _batch_module(chunk)
        try:
            m = export(column, module, inputs, declared)
        except TrialFailed as e:
            chain, seen, text = e, set(), ""
            while chain is not None and id(chain) not in seen:
                seen.add(id(chain))
                text += f"\n{chain}"
                chain = chain.__cause__ or chain.__context__
            suspect = _mentioned_first(text, chunk)
            if suspect is not None:
                k = pending[suspect]
                outcome = try_call(column, *members[k], declared)
                if not outcome.ok:  # confirmed alone: record it and export the rest together again
                    results[k] = outcome
                    pending.remove(k)
                    continue
            for k in pending:  # the failure could not be pinned on one call: try each alone
                results[k] = try_call(column, *members[k], declared)
            break
        per_call: dict[int, Outcome] = {k: Outcome(True) for k in pending}
        for node, key in zip(m.graph.node, _node_keys(m)):
            scopes = _metadata(node).get("pkg.torch.onnx.name_scopes", "")
            index = next((int(s[4:]) for s in _scope_names(scopes) if s.startswith("call") and s[4:].isdigit()), None)
            if index is not None and index < len(pending):
                per_call[pending[index]].add_ops([key])
        for k, outcome in per_call.items():
            op, call = members[k]
            if not outcome.onnx_ops and _metadata_missing(m):  # metadata lost (version conversion): alone
                outcome = try_call(column, op, call, declared)
            _CACHE[(op.qualified, call.signature(), column.exporter, column.opset)] = outcome
            results[k] = outcome
        break
    return [results[k] for k in range(len(members))]


def _scope_names(text: str) -> list[str]:
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def _metadata_missing(m) -> bool:
    return not any(n.metadata_props for n in m.graph.node)


# ----------------------------------------------------------------------------------------------- columns


@dataclass
class ColumnResult:
    column: Column
    model: Outcome  # the whole model through this exporter at this opset
    operators: dict  # Operator.name -> Outcome (failed if any of its calls failed; ONNX ops of all its calls)
    failing_calls: dict  # Operator.name -> [(Call, reason)]


def _merge(op: Operator, outcomes) -> tuple[Outcome, list]:
    merged = Outcome(all(o.ok for _, o in outcomes))
    failures = []
    for call, o in outcomes:
        merged.add_ops(o.onnx_ops)
        if not o.ok:
            failures.append((call, o.reason))
    if failures:
        merged.reason = failures[0][1]
    return merged, failures


def scan_column(trace: Trace, column: Column, model, args) -> ColumnResult:
    declared = _opforge_ops_in(trace.operators)
    operators, failing = {}, {}
    if column.exporter == "torchscript":
        try:
            export(column, model, args, declared)
            whole = Outcome(True)
        except TrialFailed as e:
            whole = Outcome(False, str(e))
        for op in trace.operators:
            outcomes = [(call, try_call(column, op, call, declared)) for call in op.signatures()]
            operators[op.name], failing[op.name] = _merge(op, outcomes)
        return ColumnResult(column, whole, operators, failing)

    try:
        m = export(column, trace.exported, (), declared)
    except TrialFailed as e:
        whole = Outcome(False, str(e))
        members = [(op, call) for op in trace.operators for call in op.signatures()]
        outcomes = try_together(column, members, declared)
        by_op: dict[str, list] = {}
        for (op, call), outcome in zip(members, outcomes):
            by_op.setdefault(op.name, []).append((call, outcome))
        for op in trace.operators:
            operators[op.name], failing[op.name] = _merge(op, by_op[op.name])
        return ColumnResult(column, whole, operators, failing)

    # The whole program exported: every operator passes. Its nodes name the fx node they came from; an
    # operator the exporter decomposed first (e.g. aten::rms_norm below opset 23) has no node of its own
    # name, so its calls are exported together to see what it becomes.
    whole = Outcome(True)
    node_owner = {call.node: op.name for op in trace.operators for call in op.calls}
    for op in trace.operators:
        operators[op.name], failing[op.name] = Outcome(True), []
    for node, key in zip(m.graph.node, _node_keys(m)):
        fx = _metadata(node).get("pkg.torch.onnx.fx_node", "")
        name = fx[1:].split(" ", 1)[0] if fx.startswith("%") else ""
        if name in node_owner:
            operators[node_owner[name]].add_ops([key])
    unseen = [op for op in trace.operators if not operators[op.name].onnx_ops]
    if unseen:
        members = [(op, op.signatures()[0]) for op in unseen]
        for (op, _), outcome in zip(members, try_together(column, members, declared)):
            operators[op.name].add_ops(outcome.onnx_ops)
    return ColumnResult(column, whole, operators, failing)
