"""FP16 conversion side by side, on examples/fp16_overflow.py's two models:

    naive float16            onnxconverter-common convert_float_to_float16 (defaults)
    ... keep_io_types        the same, float32 graph inputs/outputs
    ... + our block list     the same, with ops.precision's flagged nodes as node_block_list
    ModelOpt AutoCast        convert_to_mixed_precision (data_max=512 default), where it imports
    opforge mixed-float16    ops.export_onnx(..., precision="mixed-float16")

For each: float32 nodes (compute nodes with a float32 output, Casts excluded), the worst rel_l2 against the
float32 graph over 3 held-out inputs (examples.fp16_overflow.held_out: seeds 2001-2003, used neither for the
plan nor while developing the planner) in ONNX Runtime CPU and with torch half kernels (ops.precision's
runner: ORT's CPU provider computes many float16 nodes in float32), NaN/inf or not. opforge plans on the
example input plus 2 calibration inputs (seed 123); ModelOpt AutoCast calibrates on the example input.
Also: the exhaustive no-miss check (every node run alone in half on the float32 values of the planning and
held-out inputs; each one whose output turns non-finite must be flagged).

    PYTHONPATH=. python benchmarks/fp16_comparison.py --out benchmarks/results/fp16_comparison.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _float32_compute_nodes(m) -> int:
    from ops.precision.node_types import FLOAT, elem_types

    types = elem_types(m)
    return sum(
        1
        for n in m.graph.node
        if n.op_type not in ("Cast", "Constant") and any(types.get(o) == FLOAT for o in n.output if o)
    )


def _errors(m, inputs, refs):
    """(rel_l2 in ORT CPU, rel_l2 with torch half kernels, any NaN/inf) worst over the inputs."""
    import torch

    from ops.onnx import ort_session
    from ops.onnx.models import run_session
    from ops.precision.formats import rel_l2
    from ops.precision.torch_eval import TorchGraphRunner

    session = ort_session(m)
    runner = TorchGraphRunner(m)
    ort_err, torch_err, bad = 0.0, 0.0, False
    for x, ref in zip(inputs, refs):
        got = run_session(session, x)[0].float()
        bad = bad or not bool(torch.isfinite(got).all())
        ort_err = max(ort_err, rel_l2(got, ref))
        t = runner.run({m.graph.input[0].name: x[0]})[m.graph.output[0].name].float()
        bad = bad or not bool(torch.isfinite(t).all())
        torch_err = max(torch_err, rel_l2(t, ref))
    return ort_err, torch_err, bad


def _autocast(m32, inputs):
    """ModelOpt AutoCast on the float32 file, or the reason it could not run."""
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except Exception as e:
        return None, f"not installed ({str(e).splitlines()[0][:80]})"
    import numpy as np
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m32.onnx"
        onnx.save(m32, str(path))
        data = Path(tmp) / "calib.npz"
        np.savez(data, **{m32.graph.input[0].name: inputs[0][0].numpy()})
        try:
            return convert_to_mixed_precision(str(path), "fp16", keep_io_types=True, calibration_data=str(data)), ""
        except Exception as e:
            return None, f"failed: {str(e).splitlines()[0][:120]}"


def _overflow_misses(m32, analysis, inputs) -> tuple:
    """(nodes that overflow alone in half on some planning or held-out input, those of them not flagged)."""
    import torch

    from ops.precision.formats import half_format
    from ops.precision.node_types import elem_types, half_slots
    from ops.precision.onnx_nodes import _constant_values, float32_values, run_node_in_half

    fmt, types = half_format("float16"), elem_types(m32)
    flagged = {f.node for f in analysis.report.flagged_nodes()}
    overflowing = set()
    for values in analysis.runs + float32_values(m32, inputs):
        env = {**_constant_values(m32), **values}
        for node in m32.graph.node:
            slots = half_slots(node, m32, types)
            if slots is None or node.op_type == "Constant" or any(n and n not in env for n in node.input):
                continue
            outs = run_node_in_half(node, m32, env, slots, fmt)
            for k, name in enumerate(node.output):
                if k < len(outs) and outs[k].is_floating_point() and name in env:
                    if not bool(torch.isfinite(outs[k]).all()) and bool(torch.isfinite(env[name]).all()):
                        overflowing.add(node.name)
    return sorted(overflowing), sorted(overflowing - flagged)


def compare(maker_name: str) -> dict:
    from onnxconverter_common import float16

    import examples.fp16_overflow as ex
    import ops
    from ops.onnx import ort_session
    from ops.onnx.models import run_session
    from ops.precision import analyze, plan_mixed

    maker = getattr(ex, maker_name)
    model, args = maker()
    cal = ex.calibration(maker, 2)  # planning inputs: the example + these
    held_out = ex.held_out(maker)  # seeds 2001-2003: not used for the plan
    m32 = ops.export_onnx(model, args, opset=17)
    session = ort_session(m32)
    refs = [run_session(session, x)[0].float() for x in held_out]
    t = time.time()
    analysis = analyze(model, args, calibration=cal, opset=17, modules=False, onnx_model=m32)
    mixed = plan_mixed(analysis)
    seconds = time.time() - t
    flagged = [f.node for f in analysis.report.nodes if f.flags]
    rows = {}

    def add(name, m, note=""):
        if m is None:
            rows[name] = {"note": note}
            return
        try:
            ort_err, torch_err, bad = _errors(m, held_out, refs)
            rows[name] = {
                "float32_nodes": _float32_compute_nodes(m),
                "rel_l2_ort": ort_err,
                "rel_l2_torch_half": torch_err,
                "nan_or_inf": bad,
                "note": note,
            }
        except Exception as e:
            rows[name] = {"note": f"does not run: {str(e).splitlines()[0][:120]}"}

    add("float32 (reference export)", m32)
    add("onnxconverter-common float16", float16.convert_float_to_float16(m32))
    add("onnxconverter-common float16, keep_io_types", float16.convert_float_to_float16(m32, keep_io_types=True))
    add(
        "onnxconverter-common float16, keep_io_types + opforge-flagged node_block_list",
        float16.convert_float_to_float16(m32, keep_io_types=True, node_block_list=flagged),
    )
    auto, why = _autocast(m32, [args])
    add("ModelOpt AutoCast (data_max=512)", auto, why)
    mx = analysis.report.mixed
    add(
        "opforge mixed-float16",
        mixed,
        f"analysis + plan {seconds:.1f} s; {mx['half_flop_fraction']:.1%} of FLOPs "
        f"in half; rel_l2 on the 3 planning inputs {mx['rel_l2']:.2e}",
    )
    per_input = []
    for x, ref in zip(held_out, refs):
        o, t, _ = _errors(mixed, [x], [ref])
        per_input.append({"rel_l2_ort": o, "rel_l2_torch_half": t})
    overflowing, missed = _overflow_misses(m32, analysis, held_out)
    return {
        "model": maker_name,
        "flagged_nodes": flagged,
        "half_flop_fraction": mx["half_flop_fraction"],
        "planning_inputs": len(analysis.samples),
        "held_out_seeds": list(ex.HELD_OUT_SEEDS),
        "planning_rel_l2": mx["rel_l2"],
        "calibration_target": mx["calibration_target"],
        "kept_float32": mx["kept_float32"],
        "opforge_held_out_per_input": per_input,
        "overflowing_alone_in_half": overflowing,
        "overflowing_not_flagged": missed,
        "rows": rows,
    }


def render(results: list) -> str:
    lines = []
    for r in results:
        per = ", ".join(
            f"{p['rel_l2_ort']:.2e} / {p['rel_l2_torch_half']:.2e}" for p in r["opforge_held_out_per_input"]
        )
        lines += [
            f"**{r['model']}** (opforge: {r['half_flop_fraction']:.1%} of FLOPs in float16; held-out "
            f"rel_l2 ORT / torch half per input: {per}; nodes overflowing alone in half: "
            f"{len(r['overflowing_alone_in_half'])}, not flagged: {len(r['overflowing_not_flagged'])})",
            "",
            "| conversion | float32 nodes | rel_l2 ORT CPU | rel_l2 torch half | NaN/inf | note |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in r["rows"].items():
            if "float32_nodes" not in row:
                lines.append(f"| {name} | - | - | - | - | {row['note']} |")
                continue
            fmt = lambda v: "inf" if math.isinf(v) else f"{v:.2e}"  # noqa: E731
            lines.append(
                f"| {name} | {row['float32_nodes']} | {fmt(row['rel_l2_ort'])} | "
                f"{fmt(row['rel_l2_torch_half'])} | {'yes' if row['nan_or_inf'] else 'no'} | {row['note']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--models", nargs="*", default=["make", "make_transformer"])
    args = parser.parse_args(argv)
    results = [compare(name) for name in args.models]
    print(render(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
