"""python -m ops.precision module:function [--data inputs.pt] [--dtype float16|bfloat16] [--json]
[--json-out out.json] [--plot out.png] [--budget 1e-3] [--export-mixed out.onnx]

function() returns (model, example_args) or (model, example_args, calibration): calibration is a list of
argument tuples, like --data (a torch.save'd list); the example args are always included. The plan must
meet --target-error * --margin on every calibration input, so that it holds on inputs it was not made on. Prints the ranked table (--json: the report as JSON).
Exit status 0 analysed, 2 a user error (one line saying what to fix)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import torch

from .. import cli
from ..core import lazy
from ..core.errors import OpforgeError
from .formats import half_format
from .planner import DEFAULT_BUDGET, DEFAULT_MARGIN, DEFAULT_TARGET, analyze, plan_mixed
from .report import plot


def load_target(spec: str):
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr or "::" in spec:
        raise OpforgeError(
            f"target must be 'package.module:function' returning (model, example_args), got {spec!r}. "
            "Fix: e.g. python -m ops.precision examples.fp16_overflow:make"
        )
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise OpforgeError(
            f"cannot load {spec!r}: {e}. Fix: check the module is importable (PYTHONPATH) and defines that function."
        ) from None
    made = fn()
    if not (isinstance(made, (tuple, list)) and len(made) in (2, 3)):
        raise OpforgeError(
            f"{spec}() must return (model, example_args) or (model, example_args, calibration), "
            f"got {type(made).__name__}. Fix: return a 2- or 3-tuple."
        )
    model, args = made[0], made[1]
    calibration = [tuple(c) if isinstance(c, (list, tuple)) else (c,) for c in (made[2] if len(made) == 3 else [])]
    return model, tuple(args) if isinstance(args, (list, tuple)) else (args,), calibration


def load_data(path: str | None) -> list:
    if path is None:
        return []
    if not Path(path).is_file():
        raise OpforgeError(f"--data {path}: no such file. Fix: torch.save([(x1,), (x2,), ...], '{path}') first.")
    data = torch.load(path, weights_only=True)
    if not isinstance(data, (list, tuple)) or not data:
        raise OpforgeError(
            f"--data {path} must hold a non-empty list of argument tuples, got {type(data).__name__}. "
            "Fix: torch.save([(x1,), (x2,)], path)."
        )
    return [tuple(d) if isinstance(d, (list, tuple)) else (d,) for d in data]


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.precision",
        __doc__.split("\n\n")[0],
        packages=cli.PACKAGE_HELP,
        json="print the full report as JSON on stdout instead of the table",
    )
    parser.add_argument("target", help="module:function returning (model, example_args)")
    parser.add_argument("--data", help="torch.save'd list of argument tuples used as calibration inputs")
    parser.add_argument("--dtype", default="float16", help="float16 (default) or bfloat16")
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        help=f"per-node rel_l2 error budget of running it alone in half (default {DEFAULT_BUDGET:g})",
    )
    parser.add_argument(
        "--target-error",
        type=float,
        default=DEFAULT_TARGET,
        help=f"end-to-end rel_l2 the mixed plan must meet (default {DEFAULT_TARGET:g})",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help=f"the plan must meet target-error * margin on the calibration inputs (default {DEFAULT_MARGIN:g})",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset of the analysed export (default 17)")
    parser.add_argument("--json-out", metavar="PATH", help="also write the full report as JSON to PATH")
    parser.add_argument("--plot", metavar="PNG", help="plot per-node max |activation| against the half limit")
    parser.add_argument("--export-mixed", metavar="ONNX", help="also write the mixed-precision ONNX graph")
    parser.add_argument("--rows", type=int, default=25, help="table rows per section (default 25)")
    return cli.main(parser, run, argv)


def run(args) -> cli.Report:
    cli.load_packages(args)
    half_format(args.dtype)
    model, example, own = load_target(args.target)
    analysis = analyze(
        model,
        example,
        calibration=own + load_data(args.data),
        dtype=args.dtype,
        budget=args.budget,
        opset=args.opset,
    )
    mixed = plan_mixed(analysis, target=args.target_error, margin=args.margin)
    if args.export_mixed:
        onnx = lazy.onnx()
        Path(args.export_mixed).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(mixed, args.export_mixed)
    report = analysis.report.to_json()
    if not args.json:
        print(analysis.report.table(args.rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1, default=str))
        cli.note(args, f"wrote {args.json_out}")
    if args.plot:
        plot(analysis.report, args.plot)
        cli.note(args, f"wrote {args.plot}")
    if args.export_mixed:
        cli.note(args, f"wrote {args.export_mixed}")
    return cli.Report(report)


if __name__ == "__main__":
    sys.exit(main())
