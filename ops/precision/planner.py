"""Analysis and the mixed-precision decision, from a torch model and calibration inputs.

analyze():      float32 export -> per-node and per-module findings (PrecisionReport)
plan_mixed():   flagged nodes stay float32; the rest run in half. The mixed graph is then run as a whole in
                half with torch kernels and compared with float32; while the end-to-end error is above the
                target, the half node that adds the most error in context (its output error minus its inputs')
                moves to float32 too. Overflow never depends on this loop: it is flagged from the ranges."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OpforgeError
from .formats import half_format, rel_l2

DEFAULT_BUDGET = 1e-3  # per-node rel_l2 of running that node alone in half
DEFAULT_TARGET = 1e-3  # end-to-end rel_l2 of the mixed graph against float32
DEFAULT_UNDERFLOW = 0.01  # fraction of nonzero values that flush to zero


@dataclass
class Analysis:
    report: object  # PrecisionReport
    onnx_model: object  # the float32 ModelProto analysed
    samples: list  # calibration inputs (tuples of tensors)
    runs: list  # float32 values per sample (ORT)


def _samples(args, calibration) -> list:
    import torch

    def as_tuple(a):
        return tuple(a) if isinstance(a, (list, tuple)) else (a,)

    out = [as_tuple(args)] + [as_tuple(c) for c in (calibration or [])]
    for s in out:
        for t in s:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float32:
                raise OpforgeError(f"calibration inputs must be float32 (the reference precision), got {t.dtype}. "
                                   "Fix: pass float32 tensors; ops.precision makes the half copies itself.")
    return out


def analyze(model, args, *, calibration=None, dtype: str = "float16", budget: float = DEFAULT_BUDGET,
            underflow: float = DEFAULT_UNDERFLOW, opset: int = 17, modules: bool = True, device: str = "cpu",
            onnx_model=None, reference: str = "ort") -> Analysis:
    """Record, per exported ONNX node and per torch module, the float32 activation range and the error of
    running that part alone in half; flag overflow, underflow and budget breaches."""
    import torch

    from ..onnx import export_onnx
    from .onnx_nodes import analyze_nodes, float32_values
    from .report import PrecisionReport
    from .torch_modules import analyze_modules

    fmt = half_format(dtype)
    if not budget > 0:
        raise OpforgeError(f"the error budget must be a positive rel_l2, got {budget!r}. Fix: e.g. --budget 1e-3")
    samples = _samples(args, calibration)
    if isinstance(model, torch.nn.Module):
        model = model.eval()
    m = onnx_model if onnx_model is not None else export_onnx(model, samples[0], opset=opset)
    runs = float32_values(m, samples, reference)
    nodes = analyze_nodes(m, runs, fmt, budget, underflow, device)
    mods = analyze_modules(model, samples, fmt, budget, underflow, device) \
        if modules and isinstance(model, torch.nn.Module) else []
    from .node_types import opset_of

    report = PrecisionReport(fmt.name, fmt.max, budget, underflow, nodes, mods, opset_of(m))
    return Analysis(report, m, samples, runs)


def _mixed_run(mixed, analysis, device):
    """(worst end-to-end rel_l2 over the samples, every value of the mixed run per sample)."""
    from .torch_eval import TorchGraphRunner

    runner = TorchGraphRunner(mixed, device)
    worst, values = 0.0, []
    for sample, ref in zip(analysis.samples, analysis.runs):
        feeds = {i.name: t for i, t in zip(mixed.graph.input, [t for t in sample if t is not None])}
        got = {k: v.cpu() for k, v in runner.run(feeds, keep_all=True).items()}
        values.append(got)
        for o in mixed.graph.output:
            worst = max(worst, rel_l2(got[o.name].float(), ref[o.name].float()))
    return worst, values


def _worst_contributors(model, analysis, values, keep) -> list:
    """The nodes to move to float32 next. Each node's error added in context (its output's rel_l2 minus its
    inputs', in the mixed run) is computed; if the worst is a half node, it moves. If it is already float32,
    its inputs arrived rounded to half and that is what hurts (attention logits: q and k rounded by 5e-4 move
    a softmax over logits of 1e7): its nearest half compute producers move instead."""
    from .mixed import is_layout
    from .node_types import FLOAT, elem_types

    types = elem_types(analysis.onnx_model)
    producer = {o: n for n in model.graph.node for o in n.output if o}
    worst, worst_added = None, 0.0
    for node in model.graph.node:
        if is_layout(node):
            continue
        outs = [n for n in node.output if n and types.get(n) == FLOAT]
        if not outs:
            continue
        added = 0.0
        for got, ref in zip(values, analysis.runs):
            def err(name):
                return rel_l2(got[name].float(), ref[name].float()) if name in got and name in ref else 0.0
            e_out = max(err(n) for n in outs)
            e_in = max((err(n) for n in node.input if n and types.get(n) == FLOAT and n in got), default=0.0)
            added = max(added, float("inf") if e_out == float("inf") and e_in != float("inf") else e_out - e_in)
        if added > worst_added:
            worst, worst_added = node, added
    if worst is None:
        return []
    if worst.name not in keep:
        return [worst.name]
    found, stack, seen = [], [n for n in worst.input if n], set()
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if is_layout(node) or node.name in keep:
            if is_layout(node) or not found:
                stack.extend(n for n in node.input if n and types.get(n) == FLOAT)
            continue
        if any(types.get(o) == FLOAT for o in node.output if o):
            found.append(node.name)
    return found


def plan_mixed(analysis: Analysis, *, target: float = DEFAULT_TARGET, max_rounds: int = 40, device: str = "cpu"):
    """The mixed-precision ModelProto and the decision (also stored in analysis.report.mixed)."""
    from .flops import node_flops
    from .mixed import convert_to_mixed
    from .validate import check_strongly_typed

    report = analysis.report
    fmt = half_format(report.dtype)
    flagged = {f.node: ",".join(f.flags) for f in report.nodes if f.flags}
    keep = dict(flagged)
    added = []
    rounds = 0
    while True:
        mixed = convert_to_mixed(analysis.onnx_model, set(keep), fmt)
        error, values = _mixed_run(mixed, analysis, device)
        if error <= target or rounds >= max_rounds:
            break
        worst = _worst_contributors(analysis.onnx_model, analysis, values, keep)
        if not worst:
            break
        for name in worst:
            keep[name] = "end-to-end target"
            added.append(name)
        rounds += 1
    check_strongly_typed(mixed)
    half_nodes = _half_nodes(mixed, fmt)
    flops = {f.node: f.flops for f in report.nodes}
    total = sum(flops.values()) or 1.0
    in_half = sum(v for k, v in flops.items() if k in half_nodes)
    no_half = [f.node for f in report.nodes if not f.half_capable and f.max_abs > 0 and f.op_type != "Constant"]
    report.mixed = {
        "target": target, "rel_l2": error, "finite": error != float("inf"),
        "float32_nodes": len(_float32_nodes(mixed)),
        "flagged": len(flagged), "added_for_budget": len(added), "added": added, "no_half_kernel": len(no_half),
        "kept_float32": keep, "half_flop_fraction": in_half / total, "flops_total": total,
        "casts_inserted": sum(1 for n in mixed.graph.node if n.name.endswith("__cast")),
        "met_target": error <= target,
    }
    del node_flops
    return mixed


def _half_nodes(mixed, fmt) -> set:
    """Names of nodes of the mixed graph that compute in half (a half float output, Casts excluded)."""
    from .node_types import elem_types

    types = elem_types(mixed)
    return {n.name for n in mixed.graph.node
            if not n.name.endswith("__cast") and any(types.get(o) == fmt.onnx_type for o in n.output if o)}


def _float32_nodes(mixed) -> set:
    """Names of nodes of the mixed graph that compute in float32 (a float32 output, Casts excluded)."""
    from .node_types import FLOAT, elem_types

    types = elem_types(mixed)
    return {n.name for n in mixed.graph.node
            if not n.name.endswith("__cast") and n.op_type != "Constant"
            and any(types.get(o) == FLOAT for o in n.output if o)}
