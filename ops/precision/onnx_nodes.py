"""Per-node precision findings for an exported float32 ONNX graph.

1. The float32 graph runs in ONNX Runtime (opforge nodes through their native library) with every
   intermediate tensor exposed as a graph output: the activation range of every node, as deployed.
2. Each node then runs alone in half (torch kernels, ops/precision/torch_eval.py) on its float32 inputs
   rounded to half, and its outputs are compared with the float32 ones: the error that running that part in
   half adds by itself, overflow to inf included. opforge nodes run their own compiled kernels on half.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ..onnx import ort_session
from ..onnx.models import run_session
from .flops import node_flops
from .formats import HalfFormat, rel_l2, risk_flags
from .node_types import FLOAT, elem_types, half_slots
from .torch_eval import TorchGraphRunner, run_node, tensor_from_proto


@dataclass
class NodeFinding:
    node: str
    op_type: str
    module: str  # the torch module path the node came from ('' = the top-level model)
    max_abs: float = 0.0  # over the node's float32 inputs and outputs
    out_max_abs: float = 0.0
    underflow: float = 0.0  # fraction of nonzero float32 output values that round to 0 in half
    error: float | None = None  # rel_l2 of the node's outputs run alone in half (None: not run in half)
    half_capable: bool = True  # its ONNX schema / opforge declaration allows half
    flops: float = 0.0
    flags: list = field(default_factory=list)  # overflow | non-finite | budget | underflow | no-half
    no_half: str = ""  # why running it alone in half failed ('' = it ran, or was not tried)
    note: str = ""


def module_of(node) -> str:
    """The torch module path of an exported node: the dynamo exporter's name scopes, else the TorchScript
    exporter's node name ('/encoder/layers.0/MatMul' -> 'encoder.layers.0')."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = re.findall(r"'([^']*)'", prop.value)
            scopes = [s for s in scopes if s]
            return ".".join(scopes)
    if node.name.startswith("/"):
        return ".".join(p for p in node.name.split("/")[1:-1] if p)
    return ""


def _expose_all(model):
    """A copy of `model` whose graph outputs are every typed intermediate tensor too."""
    import copy

    m = copy.deepcopy(model)
    have = {o.name for o in m.graph.output}
    for v in m.graph.value_info:
        if v.name not in have and v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
            m.graph.output.append(v)
            have.add(v.name)
    return m


def float32_values(model, samples, reference: str = "ort") -> list[dict]:
    """For each sample (a tuple of torch tensors): {value name: torch tensor} of every intermediate and output
    of the float32 graph, run in ONNX Runtime (reference="torch": ops.precision's torch runner, float32 on the
    CPU, for machines without the native ORT op library)."""
    if reference == "torch":
        runner = TorchGraphRunner(model)
        runs = []
        for sample in samples:
            present = [t for t in sample if t is not None]
            feeds = {i.name: t.cpu() for i, t in zip(model.graph.input, present)}
            runs.append({**{k: v.cpu() for k, v in runner.run(feeds, keep_all=True).items()}, **feeds})
        return runs

    exposed = _expose_all(model)
    session = ort_session(exposed)
    names = [o.name for o in session.get_outputs()]
    runs = []
    for sample in samples:
        outs = run_session(session, sample)
        values = dict(zip(names, outs))
        for i, t in zip(model.graph.input, [t for t in sample if t is not None]):
            values[i.name] = t.detach().cpu() if isinstance(t, torch.Tensor) else t
        runs.append(values)
    return runs


def _stats(t, fmt: HalfFormat):
    """(max |x| over finite values, fraction of nonzero values that flush to zero in half)."""
    if not t.is_floating_point() or t.numel() == 0:
        return 0.0, 0.0
    a = t.detach().float().abs()
    finite = a[torch.isfinite(a)]
    top = float(finite.max()) if finite.numel() else 0.0
    if (~torch.isfinite(a)).any():
        top = float("inf")
    nonzero = finite[finite > 0]
    flushed = float((nonzero < fmt.tiny / 2).sum()) / nonzero.numel() if nonzero.numel() else 0.0
    return top, flushed


def run_node_in_half(node, model, values: dict, slots, fmt: HalfFormat, device="cpu"):
    """The node's outputs when it runs alone in half on its float32 inputs rounded to half."""
    weights = {}
    ins = []
    for i, name in enumerate(node.input):
        if not name:
            ins.append(None)
            continue
        t = values.get(name)
        if t is None:
            t = weights.setdefault(name, _initializer(model, name))
        t = t.to(device)
        if i in slots.inputs:
            t = t.to(fmt.torch_dtype())
        ins.append(t)
    half_node = node
    if node.op_type == "Cast" and slots.outputs:
        import copy

        half_node = copy.deepcopy(node)
        for a in half_node.attribute:
            if a.name == "to":
                a.i = fmt.onnx_type
    return run_node(half_node, ins)


def _initializer(model, name):
    for t in model.graph.initializer:
        if t.name == name:
            return tensor_from_proto(t)
    raise KeyError(name)


def constant_values(model) -> dict:
    out = {t.name: tensor_from_proto(t) for t in model.graph.initializer}
    return out


def analyze_nodes(
    model, runs: list[dict], fmt: HalfFormat, budget: float, underflow_limit: float, device: str = "cpu"
) -> list[NodeFinding]:
    """One NodeFinding per node of the main graph, aggregated over the calibration runs (worst case)."""
    types = elem_types(model)
    weights = constant_values(model)
    findings = []
    for node in model.graph.node:
        f = NodeFinding(
            node.name,
            node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}",
            module_of(node),
        )
        slots = half_slots(node, model, types, fmt.onnx_type)
        has_float = any(types.get(n) == FLOAT for n in list(node.input) + list(node.output) if n)
        f.half_capable = slots is not None
        if not has_float:
            findings.append(f)
            continue
        for values in runs:
            env = {**weights, **values}
            f.flops = max(f.flops, node_flops(node, env))
            for name in node.input:
                if name and types.get(name) == FLOAT and name in env:
                    f.max_abs = max(f.max_abs, _stats(env[name], fmt)[0])
            for name in node.output:
                if name and types.get(name) == FLOAT and name in env:
                    top, flushed = _stats(env[name], fmt)
                    f.out_max_abs, f.underflow = max(f.out_max_abs, top), max(f.underflow, flushed)
                    f.max_abs = max(f.max_abs, top)
            if slots is None or node.op_type == "Constant":
                continue
            try:
                halves = run_node_in_half(node, model, env, slots, fmt, device)
            except Exception as e:
                f.no_half = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
                f.note = f"not run in half (a mixed export keeps it float32): {f.no_half}"
                continue  # the other calibration runs still give its float32 range
            for k, name in enumerate(node.output):
                if name and k in slots.outputs and name in env and k < len(halves):
                    err = rel_l2(halves[k], env[name])
                    f.error = err if f.error is None else max(f.error, err)
        f.flags += risk_flags(f, fmt, budget, underflow_limit)
        findings.append(f)
    return findings
