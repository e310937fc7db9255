"""Analysis and the mixed-precision decision, from a torch model and calibration inputs.

analyze():      float32 export -> per-node and per-module findings (PrecisionReport)
plan_mixed():   flagged nodes stay float32; the rest run in half, except the nodes whose measured end-to-end
                sensitivity (that node alone in half, on every calibration input) breaks the calibration
                target (target * margin), then the cheapest-per-error ones until the whole mixed graph meets
                it on every calibration input; matmul-class nodes are then tried back in half. Overflow never
                depends on this: it is flagged from the ranges."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core.errors import OpforgeError
from ..onnx import export_onnx
from .formats import half_format, rel_l2
from .mixed import convert_to_mixed, is_layout
from .node_types import FLOAT, elem_types, half_slots, opset_of
from .onnx_nodes import analyze_nodes, constant_values, float32_values, run_node_in_half
from .report import PrecisionReport
from .torch_eval import TorchGraphRunner, run_node
from .torch_modules import analyze_modules
from .validate import check_strongly_typed

DEFAULT_BUDGET = 1e-3  # per-node rel_l2 of running that node alone in half
DEFAULT_TARGET = 1e-3  # end-to-end rel_l2 of the mixed graph against float32
DEFAULT_MARGIN = 0.5  # the plan must meet target * margin on the calibration inputs
DEFAULT_UNDERFLOW = 0.01  # fraction of nonzero values that flush to zero


@dataclass
class Analysis:
    report: object  # PrecisionReport
    onnx_model: object  # the float32 ModelProto analysed
    samples: list  # calibration inputs (tuples of tensors)
    runs: list  # float32 values per sample (ORT)


def _samples(args, calibration) -> list:
    def as_tuple(a):
        return tuple(a) if isinstance(a, (list, tuple)) else (a,)

    out = [as_tuple(args)] + [as_tuple(c) for c in (calibration or [])]
    for s in out:
        for t in s:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float32:
                raise OpforgeError(
                    f"calibration inputs must be float32 (the reference precision), got {t.dtype}. "
                    "Fix: pass float32 tensors; ops.precision makes the half copies itself."
                )
    return out


def analyze(
    model,
    args,
    *,
    calibration=None,
    dtype: str = "float16",
    budget: float = DEFAULT_BUDGET,
    underflow: float = DEFAULT_UNDERFLOW,
    opset: int = 17,
    modules: bool = True,
    device: str = "cpu",
    onnx_model=None,
    reference: str = "ort",
) -> Analysis:
    """Record, per exported ONNX node and per torch module, the float32 activation range and the error of
    running that part alone in half; flag overflow, underflow and budget breaches."""
    fmt = half_format(dtype)
    if not budget > 0:
        raise OpforgeError(f"the error budget must be a positive rel_l2, got {budget!r}. Fix: e.g. --budget 1e-3")
    samples = _samples(args, calibration)
    if isinstance(model, torch.nn.Module):
        model = model.eval()
    m = onnx_model if onnx_model is not None else export_onnx(model, samples[0], opset=opset)
    runs = float32_values(m, samples, reference)
    nodes = analyze_nodes(m, runs, fmt, budget, underflow, device)
    mods = (
        analyze_modules(model, samples, fmt, budget, underflow, device)
        if modules and isinstance(model, torch.nn.Module)
        else []
    )
    report = PrecisionReport(fmt.name, fmt.max, budget, underflow, nodes, mods, opset_of(m))
    return Analysis(report, m, samples, runs)


def _mixed_run(mixed, analysis, device):
    """(worst end-to-end rel_l2 over the samples, every value of the mixed run per sample)."""
    runner = TorchGraphRunner(mixed, device)
    worst, values = 0.0, []
    for sample, ref in zip(analysis.samples, analysis.runs):
        feeds = {i.name: t for i, t in zip(mixed.graph.input, [t for t in sample if t is not None])}
        got = {k: v.cpu() for k, v in runner.run(feeds, keep_all=True).items()}
        values.append(got)
        for o in mixed.graph.output:
            worst = max(worst, rel_l2(got[o.name].float(), ref[o.name].float()))
    return worst, values


def _float32_env(model, analysis, k: int) -> dict:
    """Every float32 value of sample k (weights, graph inputs, the ORT run's intermediates)."""
    env = dict(constant_values(model))
    feeds = [t for t in analysis.samples[k] if t is not None]
    env.update({i.name: t for i, t in zip(model.graph.input, feeds)})
    env.update(analysis.runs[k])
    return env


def _sensitivities(model, analysis, candidates, fmt, device="cpu") -> dict:
    """{node: worst end-to-end rel_l2 over the calibration samples when that node alone runs in half (its
    float32 inputs rounded to half, its outputs rounded to half) and everything else in float32}. Only the
    node's downstream cone is recomputed, in float32, with torch kernels."""
    types = elem_types(model)
    nodes = list(model.graph.node)
    index = {n.name: i for i, n in enumerate(nodes)}
    outputs = [o.name for o in model.graph.output]
    out = {name: 0.0 for name in candidates}
    for k in range(len(analysis.samples)):
        env0 = _float32_env(model, analysis, k)
        for name in candidates:
            i = index[name]
            node = nodes[i]
            slots = half_slots(node, model, types, fmt.onnx_type)
            if slots is None:
                continue
            with torch.inference_mode():
                halves = run_node_in_half(node, model, env0, slots, fmt, device)
                env, dirty = dict(env0), set()
                for o, v in zip(node.output, halves):
                    if o:
                        env[o] = v.float().cpu() if v.is_floating_point() else v.cpu()
                        dirty.add(o)
                for later in nodes[i + 1 :]:
                    if any(n in dirty for n in later.input if n):
                        for o, v in zip(later.output, run_node(later, [env[n] if n else None for n in later.input])):
                            if o:
                                env[o] = v
                                dirty.add(o)
            err = max(rel_l2(env[o].float(), env0[o].float()) for o in outputs)
            out[name] = max(out[name], err if err == err else float("inf"))
    return out


def _large_producers(model, report, fmt) -> dict:
    """The producers of an overflowing node's inputs, walked upstream (through layout nodes) while their
    float32 outputs stay large (max |x| >= half max / 64, 1024 for float16). Rounding such a value to half
    moves it by >= 0.5 absolute, and the overflowing node turns that into an absolute error past what a
    Softmax or Exp after it tolerates (attention logits of 1e7 built from q, k rounded to half shift by 1e4
    and flip near-ties): this is structural, a handful of calibration inputs with no near-tie would not
    show it in a measured sensitivity."""
    by_name = {f.node: f for f in report.nodes}
    producer = {o: n for n in model.graph.node for o in n.output if o}
    limit = fmt.max / 64
    found, seen = {}, set()
    stack = [
        n
        for f in report.nodes
        if "overflow" in f.flags
        for node in model.graph.node
        if node.name == f.node
        for n in node.input
        if n
    ]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        f = by_name.get(node.name)
        if is_layout(node):
            stack.extend(n for n in node.input if n)
        elif f is not None and f.out_max_abs >= limit and not f.flags:
            found[node.name] = f"feeds an overflowing node with |x| up to {f.out_max_abs:.3g}"
            stack.extend(n for n in node.input if n)
    return found


def _candidates(model, analysis, keep, fmt) -> list:
    """Nodes that compute in half in the graph where only `keep` stays float32 (layout nodes excluded)."""
    half = _half_nodes(convert_to_mixed(model, set(keep), fmt), fmt)
    return [
        n.name
        for n in model.graph.node
        if n.name in half and not is_layout(n) and n.op_type != "Constant" and n.name not in keep
    ]


def plan_mixed(
    analysis: Analysis,
    *,
    target: float = DEFAULT_TARGET,
    margin: float = DEFAULT_MARGIN,
    max_rounds: int = 20,
    device: str = "cpu",
):
    """The mixed-precision ModelProto and the decision (also stored in analysis.report.mixed).

    1. Flagged nodes (overflow, non-finite, no-half, budget, underflow) stay float32, and so do the large-valued
       producers of an overflowing node's inputs (_large_producers).
    2. Sensitivity: each other half-capable node runs alone in half, everything else float32, on every
       calibration sample; the worst end-to-end rel_l2 is its sensitivity. A node whose sensitivity alone
       passes the calibration target (target * margin) moves to float32.
    3. While the whole mixed graph (in half with torch kernels) is above the calibration target, nodes move
       to float32 by sensitivity^2 per FLOP (errors add roughly in quadrature; the cheap non-matmul nodes go
       first), as many per round as the quadrature estimate says are needed.
    4. Pruning: each matmul-class node (>= 1% of the FLOPs) that moved in 2-3 goes back to half when the
       calibration error stays within the calibration target without it.
    The margin makes the plan hold on inputs it was not made on."""
    report = analysis.report
    fmt = half_format(report.dtype)
    if not 0 < margin <= 1:
        raise OpforgeError(f"the safety margin must be in (0, 1], got {margin!r}. Fix: e.g. margin=0.5")
    cal_target = target * margin
    m32 = analysis.onnx_model
    flagged = {f.node: ",".join(f.flags) for f in report.nodes if f.flags}
    keep = dict(flagged)
    keep.update(_large_producers(m32, report, fmt))
    flops = {f.node: f.flops for f in report.nodes}
    total = sum(flops.values()) or 1.0
    candidates = _candidates(m32, analysis, keep, fmt)
    sens = _sensitivities(m32, analysis, candidates, fmt, device)
    for name in candidates:
        if sens[name] > cal_target:
            keep[name] = f"alone in half: rel_l2 {sens[name]:.2e}"

    def evaluate(kept):
        mixed = convert_to_mixed(m32, set(kept), fmt)
        return mixed, _mixed_run(mixed, analysis, device)[0]

    mixed, error = evaluate(keep)
    rounds = 0
    floor = 1e-4 * total
    while error > cal_target and rounds < max_rounds:
        half = [n for n in candidates if n not in keep and sens.get(n, 0.0) > 0]
        if not half:
            break
        half.sort(key=lambda n: sens[n] ** 2 / max(flops.get(n, 0.0), floor), reverse=True)
        need = 1.0 - (cal_target / error) ** 2 if math.isfinite(error) else 1.0
        pool = sum(sens[n] ** 2 for n in half)
        got = 0.0
        for n in half:
            keep[n] = f"end-to-end target (rel_l2 alone {sens[n]:.2e})"
            got += sens[n] ** 2
            if got >= need * pool:
                break
        mixed, error = evaluate(keep)
        rounds += 1
    pruned = []
    if error <= cal_target:
        heavy = sorted(
            (n for n in keep if n not in flagged and flops.get(n, 0.0) >= 0.01 * total),
            key=lambda n: flops[n],
            reverse=True,
        )
        for n in heavy:
            trial = {k: v for k, v in keep.items() if k != n}
            m_try, e_try = evaluate(trial)
            if e_try <= cal_target:
                keep, mixed, error = trial, m_try, e_try
                pruned.append(n)
    check_strongly_typed(mixed)
    half_nodes = _half_nodes(mixed, fmt)
    in_half = sum(v for k, v in flops.items() if k in half_nodes)
    no_half = [f.node for f in report.nodes if not f.half_capable and f.max_abs > 0 and f.op_type != "Constant"]
    added = [n for n in keep if n not in flagged]
    report.mixed = {
        "target": target,
        "margin": margin,
        "calibration_target": cal_target,
        "calibration_samples": len(analysis.samples),
        "rel_l2": error,
        "finite": math.isfinite(error),
        "float32_nodes": len(_float32_nodes(mixed)),
        "flagged": len(flagged),
        "added_for_budget": len(added),
        "added": added,
        "pruned_back_to_half": pruned,
        "no_half_kernel": len(no_half),
        "sensitivity": {k: v for k, v in sorted(sens.items(), key=lambda kv: -kv[1])},
        "kept_float32": keep,
        "half_flop_fraction": in_half / total,
        "flops_total": total,
        "casts_inserted": sum(1 for n in mixed.graph.node if n.name.endswith("__cast")),
        "met_target": error <= cal_target,
    }
    return mixed


def _half_nodes(mixed, fmt) -> set:
    """Names of nodes of the mixed graph that compute in half (a half float output, Casts excluded)."""
    types = elem_types(mixed)
    return {
        n.name
        for n in mixed.graph.node
        if not n.name.endswith("__cast") and any(types.get(o) == fmt.onnx_type for o in n.output if o)
    }


def _float32_nodes(mixed) -> set:
    """Names of nodes of the mixed graph that compute in float32 (a float32 output, Casts excluded)."""
    types = elem_types(mixed)
    return {
        n.name
        for n in mixed.graph.node
        if not n.name.endswith("__cast")
        and n.op_type != "Constant"
        and any(types.get(o) == FLOAT for o in n.output if o)
    }
