"""GPU check of ops.precision (issue 11, deliverable 4) on both models of examples/fp16_overflow.py.

    PYTHONPATH=. python benchmarks/gpu_check_precision.py --out $OUT/precision.json     # after python -m ops.build
    PYTHONPATH=. python benchmarks/gpu_check_precision.py --device cpu --out /tmp/p.json  # the same checks on CPU

Per model, on --device (default cuda): analysis with every node run alone in half on the device, the mixed
plan with the end-to-end loop run on the device, then the checks:
  half_on_device   every tensor the mixed graph types float16 is a float16 tensor on the device when the graph
                   runs node by node with torch kernels (opforge nodes: their CUDA kernels on half inputs)
  rel_l2           mixed output vs the float32 graph <= 1e-3 on the example args, no NaN/inf (planned on the
                   example + 2 calibration inputs)
  held_out_rel_l2  the same on the 3 held-out inputs of examples/fp16_overflow.py
  flop_fraction    >= 0.9 of FLOPs in float16
  no_misses        exhaustive: every node that gives inf/NaN run alone in half on the device is flagged
  opforge_kernels  each opforge node alone in half on the device vs its float32 output (rel_l2)
  plugin_harness   each float16 opforge node of the mixed graph through its TensorRT plugin (plugin host
                   harness, GPU enqueue) on the inputs it sees in the mixed run vs the torch kernel's output
                   (added after the 2026-11-26 H100 runs; not yet run on a GPU)
Every check is recorded PASS/FAIL with numbers; an exception in one check or model is recorded, never fatal;
the JSON is always written."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _reference_kind() -> str:
    """ORT with the native opforge library where it builds here, else the float32 torch runner on the CPU."""
    try:
        from ops.ort.build import build

        build("ops.library")
        return "ort"
    except Exception as e:
        print(f"native ORT op library unavailable ({str(e).splitlines()[0][:120]}): float32 reference = torch runner")
        return "torch"


def plugin_harness_check(mixed, values: dict, types: dict, record) -> None:
    """The opforge nodes the mixed graph types float16, run through their TensorRT plugin (the plugin host
    harness: createPlugin from the node's ONNX attributes, enqueue on the GPU) on the float16 inputs the node
    sees in the mixed run, against the torch CUDA kernel's output in that run. Needs CUDA and the plugin
    library (`python -m ops.build --trt`)."""
    import torch

    from ops.check.trt_stages import plugin_host, plugin_library
    from ops.core.declaration import Sample
    from ops.precision.formats import rel_l2
    from ops.precision.node_types import FLOAT16
    from ops.precision.torch_eval import attributes, custom_op
    from ops.trt.harness.enqueue import run_plugin

    if not torch.cuda.is_available():
        record("plugin_harness", False, skipped="no CUDA device: enqueue needs a GPU")
        return
    rows = {}
    for node in mixed.graph.node:
        op = custom_op(node) if node.domain not in ("", "ai.onnx") else None
        if op is None or types.get(node.output[0]) != FLOAT16:
            continue
        library, problem = plugin_library(op)
        if problem:
            record("plugin_harness", False, error=f"plugin library: {problem[1]}"[:400])
            return
        a = attributes(node)
        attrs = {at.name: a.get(at.name, at.default) for at in op.decl.attrs}
        inputs = [values[n].cuda() if n else None for n in node.input]
        got = run_plugin(plugin_host(library), op, Sample(*inputs, **attrs))
        want = values[node.output[0]]
        rows[node.name] = {
            "op": op.id,
            "dtype": str(got[0].dtype),
            "rel_l2_vs_torch_kernel": rel_l2(got[0].float(), want.float()),
        }
    record(
        "plugin_harness",
        all(r["dtype"] == "torch.float16" and r["rel_l2_vs_torch_kernel"] <= 1e-3 for r in rows.values()),
        nodes=rows or "no float16 opforge node in this model",
    )


def check_model(name: str, device: str, reference: str) -> dict:
    import torch

    import examples.fp16_overflow as ex
    import ops
    from ops.precision import analyze, plan_mixed
    from ops.precision.formats import half_format, rel_l2
    from ops.precision.node_types import FLOAT16, elem_types, half_slots
    from ops.precision.onnx_nodes import constant_values, float32_values, run_node_in_half
    from ops.precision.torch_eval import TorchGraphRunner

    out = {"model": name, "checks": {}}
    checks = out["checks"]

    def record(key, ok, **detail):
        checks[key] = {"result": "PASS" if ok else "FAIL", **detail}
        print(f"  {key:<16} {'PASS' if ok else 'FAIL'}  {json.dumps(detail, default=str)[:300]}")

    maker = getattr(ex, name)
    model, args = maker()
    t = time.time()
    m32 = ops.export_onnx(model, args, opset=17)
    # Planned as the tests and fp16_comparison.py plan: the example plus 2 calibration inputs; judged on
    # held-out inputs (examples.fp16_overflow.HELD_OUT_SEEDS) never used for planning.
    analysis = analyze(
        model, args, calibration=ex.calibration(maker, 2), opset=17, device=device, onnx_model=m32, reference=reference
    )
    mixed = plan_mixed(analysis, device=device)
    mx = analysis.report.mixed
    out["seconds"] = time.time() - t
    out["report"] = {k: v for k, v in mx.items()}
    out["flagged"] = {f.node: f.flags for f in analysis.report.flagged_nodes()}
    fmt = half_format("float16")

    try:  # half_on_device
        runner = TorchGraphRunner(mixed, device)
        feeds = {i.name: a for i, a in zip(mixed.graph.input, args)}
        values = runner.run(feeds, keep_all=True)
        types = elem_types(mixed)
        every_value = {**runner.weights, **{k: v.to(device) for k, v in feeds.items()}, **values}
        wrong = [
            n
            for n, v in values.items()
            if types.get(n) == FLOAT16 and (v.dtype != torch.float16 or v.device.type != torch.device(device).type)
        ]
        n_half = sum(1 for n in values if types.get(n) == FLOAT16)
        custom = [n.name for n in mixed.graph.node if n.domain == "opforge" and types.get(n.output[0]) == FLOAT16]
        record(
            "half_on_device",
            not wrong and n_half > 0,
            half_tensors=n_half,
            wrong=wrong[:10],
            opforge_nodes_in_half=custom,
        )
        y = values[mixed.graph.output[0].name].float().cpu()
        ref = analysis.runs[0][mixed.graph.output[0].name].float()
        err = rel_l2(y, ref)
        record(
            "rel_l2", err <= 1e-3 and bool(torch.isfinite(y).all()), rel_l2=err, finite=bool(torch.isfinite(y).all())
        )
    except Exception:
        record("half_on_device", False, error=traceback.format_exc()[-800:])

    try:  # plugin_harness: each opforge node of the mixed graph that runs in half, through its TensorRT plugin
        plugin_harness_check(mixed, every_value, types, record)
    except Exception:
        record("plugin_harness", False, error=traceback.format_exc()[-800:])

    try:  # held-out inputs: required <= 1e-3 too
        held = ex.held_out(maker)
        refs = float32_values(m32, held, reference)
        runner = TorchGraphRunner(mixed, device)
        errs = []
        for x, r in zip(held, refs):
            y = runner.run({mixed.graph.input[0].name: x[0]})[mixed.graph.output[0].name].float().cpu()
            errs.append(rel_l2(y, r[mixed.graph.output[0].name].float()))
        out["held_out_rel_l2"] = errs
        record("held_out_rel_l2", max(errs) <= 1e-3, rel_l2=errs)
    except Exception:
        record("held_out_rel_l2", False, error=traceback.format_exc()[-800:])

    record("flop_fraction", mx["half_flop_fraction"] >= 0.9, half_flop_fraction=mx["half_flop_fraction"])

    try:  # exhaustive: every node alone in half on the device
        types = elem_types(m32)
        env = {**constant_values(m32), **analysis.runs[0]}
        flagged = set(out["flagged"])
        overflowing, kernels = set(), {}
        for node in m32.graph.node:
            slots = half_slots(node, m32, types)
            if slots is None or node.op_type == "Constant":
                continue
            halves = run_node_in_half(node, m32, env, slots, fmt, device)
            for k, o in enumerate(node.output):
                if k < len(halves) and halves[k].is_floating_point() and o in env:
                    h = halves[k].float().cpu()
                    if not bool(torch.isfinite(h).all()) and bool(torch.isfinite(env[o]).all()):
                        overflowing.add(node.name)
                    if node.domain == "opforge":
                        kernels[node.name] = {
                            "op": node.op_type,
                            "dtype": str(halves[k].dtype),
                            "device": str(halves[k].device),
                            "rel_l2": rel_l2(h, env[o].float()),
                        }
        record(
            "no_misses", overflowing <= flagged, overflowing=sorted(overflowing), missed=sorted(overflowing - flagged)
        )
        record(
            "opforge_kernels",
            all(v["rel_l2"] <= 1e-2 or v["rel_l2"] == float("inf") and k in flagged for k, v in kernels.items()),
            nodes=kernels,
        )
    except Exception:
        record("no_misses", False, error=traceback.format_exc()[-800:])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="*", default=["make", "make_transformer"])
    args = parser.parse_args(argv)
    result = {"date": datetime.datetime.now().isoformat(), "python": platform.python_version(), "models": []}
    try:
        import torch

        import ops

        result["torch"] = torch.__version__
        result["device_name"] = (
            torch.cuda.get_device_name(0) if args.device == "cuda" and torch.cuda.is_available() else args.device
        )
        if args.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
        ops.load_extension()
        reference = _reference_kind()
        result["float32_reference"] = reference
        for name in args.models:
            print(f"== {name} on {args.device}")
            try:
                result["models"].append(check_model(name, args.device, reference))
            except Exception:
                result["models"].append({"model": name, "error": traceback.format_exc()[-1500:]})
                print(result["models"][-1]["error"])
    except Exception:
        result["error"] = traceback.format_exc()[-1500:]
        print(result["error"])
    finally:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {args.out}")
    ok = "error" not in result and all(
        "error" not in m and all(c["result"] == "PASS" for c in m["checks"].values()) for m in result["models"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
