"""FP16 conversion side by side, on examples/fp16_overflow.py's two models:

    naive float16            onnxconverter-common convert_float_to_float16 (defaults)
    ... keep_io_types        the same, float32 graph inputs/outputs
    ... + our block list     the same, with ops.precision's flagged nodes as node_block_list
    ModelOpt AutoCast        convert_to_mixed_precision (data_max=512 default), where it imports
    opforge mixed-float16    ops.export_onnx(..., precision="mixed-float16")

For each: float32 nodes (compute nodes with a float32 output, Casts excluded), rel_l2 against the float32
graph on held-out inputs in ONNX Runtime CPU and with torch half kernels (ops.precision's runner: ORT's CPU
provider computes many float16 nodes in float32), NaN/inf or not.

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
    return sum(1 for n in m.graph.node if n.op_type not in ("Cast", "Constant")
               and any(types.get(o) == FLOAT for o in n.output if o))


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
    except Exception as e:  # noqa: BLE001
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
        except Exception as e:  # noqa: BLE001 - e.g. it cannot run custom-op nodes in its reference ORT
            return None, f"failed: {str(e).splitlines()[0][:120]}"


def compare(maker_name: str) -> dict:
    import torch
    from onnxconverter_common import float16

    import examples.fp16_overflow as ex
    import ops
    from ops.onnx import ort_session
    from ops.onnx.models import run_session
    from ops.precision import analyze, plan_mixed

    maker = getattr(ex, maker_name)
    model, args = maker()
    held_out = ex.calibration(maker, 3)[1:]  # not the example args the plan was made on
    m32 = ops.export_onnx(model, args, opset=17)
    session = ort_session(m32)
    refs = [run_session(session, x)[0].float() for x in held_out]
    t = time.time()
    analysis = analyze(model, args, opset=17, modules=False, onnx_model=m32)
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
            rows[name] = {"float32_nodes": _float32_compute_nodes(m), "rel_l2_ort": ort_err,
                          "rel_l2_torch_half": torch_err, "nan_or_inf": bad, "note": note}
        except Exception as e:  # noqa: BLE001
            rows[name] = {"note": f"does not run: {str(e).splitlines()[0][:120]}"}

    add("float32 (reference export)", m32)
    add("onnxconverter-common float16", float16.convert_float_to_float16(m32))
    add("onnxconverter-common float16, keep_io_types", float16.convert_float_to_float16(m32, keep_io_types=True))
    add("onnxconverter-common float16, keep_io_types + opforge-flagged node_block_list",
        float16.convert_float_to_float16(m32, keep_io_types=True, node_block_list=flagged))
    auto, why = _autocast(m32, held_out)
    add("ModelOpt AutoCast (data_max=512)", auto, why)
    add("opforge mixed-float16", mixed, f"plan in {seconds:.1f} s")
    return {"model": maker_name, "flagged_nodes": flagged, "half_flop_fraction": analysis.report.mixed["half_flop_fraction"],
            "rows": rows}


def render(results: list) -> str:
    lines = []
    for r in results:
        lines += [f"**{r['model']}** (opforge: {r['half_flop_fraction']:.1%} of FLOPs in float16)", "",
                  "| conversion | float32 nodes | rel_l2 ORT CPU | rel_l2 torch half | NaN/inf | note |",
                  "|---|---|---|---|---|---|"]
        for name, row in r["rows"].items():
            if "float32_nodes" not in row:
                lines.append(f"| {name} | - | - | - | - | {row['note']} |")
                continue
            fmt = lambda v: "inf" if math.isinf(v) else f"{v:.2e}"  # noqa: E731
            lines.append(f"| {name} | {row['float32_nodes']} | {fmt(row['rel_l2_ort'])} | "
                         f"{fmt(row['rel_l2_torch_half'])} | {'yes' if row['nan_or_inf'] else 'no'} | {row['note']} |")
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
