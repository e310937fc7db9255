"""python -m ops.export TARGET -o OUT.onnx [--opset N] [--dynamic] [--fallback] [--check-ort]

TARGET is an op id ('ns::name' or a unique name: exports that op alone on its first float32 sample), or
'package.module:function' where function() returns (model, args). Opset 11-17 uses the TorchScript
exporter, 18-23 the dynamo exporter; the written opset is verified. Exit status 0 written, 2 a user error
(one line saying what to fix)."""

from __future__ import annotations

import importlib
import json
import sys

import ops

from . import cli, export_onnx
from .check.oracle import samples
from .onnx import DEFAULT_OPSET, ort_session
from .onnx.models import run_session, single_op_module


def _target(spec: str):
    if ":" in spec and "::" not in spec:
        module, _, attr = spec.partition(":")
        made = getattr(importlib.import_module(module), attr)()
        model, args = made
        return model, tuple(args) if isinstance(args, (list, tuple)) else (args,)
    op = ops.get_op(spec)
    sample = samples(op, "cpu", "float32")[0]
    return single_op_module(op, sample.attrs), sample.inputs


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.export",
        __doc__.split("\n\n")[0],
        packages=cli.PACKAGE_HELP,
        json="print what was written as JSON on stdout (path, opset, nodes, custom ops)",
    )
    parser.add_argument("target", help="op id, or module:function returning (model, args)")
    parser.add_argument("-o", "--output", required=True, help="path of the .onnx file to write")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset, 11-23 (default 20)")
    parser.add_argument("--dynamic", action="store_true", help="make dim 0 of every input a symbolic 'batch'")
    parser.add_argument(
        "--fallback",
        action="store_true",
        help="attach each op's reference as an ONNX function (plain ORT can run the graph)",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "mixed-float16", "mixed-bfloat16"),
        help="mixed-float16: parts that overflow or lose accuracy in half stay float32 behind Casts, "
        "the rest (weights included) is float16, decided on the example args (ops.precision)",
    )
    parser.add_argument("--check-ort", action="store_true", help="run the file once in ONNX Runtime afterwards")
    return cli.main(parser, run, argv)


def run(args) -> cli.Report:
    cli.load_packages(args)
    model, inputs = _target(args.target)
    opset = args.opset or DEFAULT_OPSET
    m = export_onnx(
        model,
        inputs,
        args.output,
        opset=opset,
        dynamic=args.dynamic,
        fallback=args.fallback,
        precision=args.precision,
    )
    custom = sorted({f"{n.domain}::{n.op_type}" for n in m.graph.node if n.domain not in ("", "ai.onnx")})
    report = {
        "output": str(args.output),
        "opset": opset,
        "nodes": len(m.graph.node),
        "custom_ops": custom,
        "fallback_functions": [f.name for f in m.functions] if args.fallback else [],
    }
    print(
        f"wrote {args.output}: opset {opset}, {len(m.graph.node)} nodes, custom ops {custom or 'none'}"
        + (f", fallback functions {[f.name for f in m.functions]}" if args.fallback else "")
    )
    if args.precision != "float32":
        meta = json.loads(next(p.value for p in m.metadata_props if p.key == "opforge.precision"))
        report["precision"] = meta
        print(
            f"{args.precision}: {meta['float32_nodes']} nodes kept float32 ({meta['flagged']} flagged), "
            f"{meta['half_flop_fraction']:.1%} of FLOPs in half, end-to-end rel_l2 {meta['rel_l2']:.2e} "
            f"(torch kernels, worst over {meta['calibration_samples']} calibration input(s))"
        )
    if args.check_ort:
        outs = run_session(ort_session(args.output), inputs)
        report["ort_output_shapes"] = [list(o.shape) for o in outs]
        print(f"ONNX Runtime ran it: output shapes {[list(o.shape) for o in outs]}")
    return cli.Report(report)


if __name__ == "__main__":
    sys.exit(main())
