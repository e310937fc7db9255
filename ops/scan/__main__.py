"""python -m ops.scan module:function [--opset N ...] [--exporter both|torchscript|dynamo] [--trt-version V] [--json]

Lists every operator a model calls and whether each exports to ONNX, with each exporter at each opset, and
what TensorRT's ONNX parser documents about the ONNX ops it becomes; for each blocker, the ops.new command
that declares it as an opforge op. One run lists every blocker: nothing stops at the first failure.

module:function names a function returning (model, example_args), as for python -m ops.export (the
current directory is importable; 'path/to/file.py:function' works too). The model is traced once with
torch.export; each operator is then exported alone, from its recorded calls' shapes and dtypes.

Columns of the table:
  operator     each distinct operator overload in the traced graph ('ns::name[.overload]')
  calls        how many times the model calls it; module(s): the module paths that call it
  ts-N, dyn-N  does it export with the TorchScript / dynamo exporter at opset N: ok or FAIL (reasons below
               the table). A pass means the exporter wrote opset N and onnx.checker (full_check) accepts the
               result. '*' marks the column that decides opset N: the exporter ops.export_onnx uses there
               (TorchScript for 11-17, dynamo for 18-23), unless --exporter excluded it
  ONNX ops     the ONNX ops it becomes (Constant left out); 'ns::name' is a custom-domain node
  TensorRT V   onnx-tensorrt's documented support for those ONNX ops in the deciding columns: supported,
               restricted (the table's note is printed), unsupported (marked N or not listed), or plugin
               (an opforge op: its IPluginV3 plugin, found when the op package's plugin library is built
               and loaded: python -m ops.build --trt)
  blocker      a deciding column fails, or TensorRT's table marks one of its ONNX ops unsupported

--exporter both (the default) tries each exporter at the opsets it writes natively: TorchScript up to 20,
dynamo from 18. Naming one exporter tries it at every requested opset (dynamo below 18 goes through ONNX's
version converter). The default opsets, 17 and 20, are what the examples ship: 17 through TorchScript, 20
through dynamo.

Exit status: 0 no blocker, 1 blockers found, 2 a usage error (one line saying what to fix)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

from .. import cli
from ..core.errors import OpforgeError
from . import scan
from .columns import DEFAULT_OPSETS, plan_columns
from .report import render, suggested_namespace
from .tensorrt import table_for


def _opsets(values) -> list[int]:
    out = []
    for group in values or []:
        for text in group:
            for part in text.replace(",", " ").split():
                try:
                    out.append(int(part))
                except ValueError:
                    raise OpforgeError(
                        f"--opset takes integers (11-23), got {part!r}. Fix: e.g. --opset 17 20"
                    ) from None
    return out


def _import(module: str):
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise OpforgeError(f"{module} does not exist. Fix: give the path of a Python file, or a module name")
        for loaded in list(sys.modules.values()):  # imported already (re-running it would redefine its ops)
            if getattr(loaded, "__file__", None) and Path(loaded.__file__).resolve() == path.resolve():
                return loaded
        spec = importlib.util.spec_from_file_location(path.stem, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, loaded)
        spec.loader.exec_module(loaded)
        return loaded
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise OpforgeError(
            f"cannot import module {module!r} ({e}). Fix: run from the directory that holds it, or "
            "give a path: path/to/file.py:function"
        ) from None


def _destination(packages) -> str | None:
    """The op package the ops.new suggestions write into: the one --package given (several: none, the
    user picks)."""
    if isinstance(packages, str):
        return packages
    return packages[0] if packages and len(packages) == 1 else None


def load_target(spec: str):
    """(model, args, module name) from 'module:function'."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr or "::" in spec:
        raise OpforgeError(
            f"expected module:function (a function returning (model, example_args)), got {spec!r}. "
            "Fix: e.g. python -m ops.scan examples.segmentation:example"
        )
    module = _import(module_name)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise OpforgeError(
            f"{module_name} has no function {attr!r}. Fix: name a function of {module_name} that "
            "returns (model, example_args)"
        )
    made = fn()
    if not (isinstance(made, (tuple, list)) and len(made) == 2 and callable(made[0])):
        raise OpforgeError(
            f"{spec}() returned {type(made).__name__}, not (model, example_args). Fix: return the "
            "model and a tuple of its example inputs"
        )
    model, args = made
    args = tuple(args) if isinstance(args, (list, tuple)) else (args,)
    return model, args, module.__name__


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.scan",
        __doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        raw=True,
        packages=cli.PACKAGE_HELP,
        json="print the facts as JSON instead of the table (stdout holds it alone)",
    )
    parser.add_argument("target", help="module:function returning (model, example_args)")
    parser.add_argument(
        "--opset",
        action="append",
        nargs="+",
        metavar="N",
        help="ONNX opset(s) to try, 11-23; repeatable, or a list (--opset 17 20). Default: 17 20",
    )
    parser.add_argument(
        "--exporter",
        choices=("both", "torchscript", "dynamo"),
        default="both",
        help="which exporter(s) to try (default both; see below)",
    )
    parser.add_argument(
        "--trt-version",
        default=None,
        metavar="V",
        help="TensorRT version whose recorded ONNX operator table to use (default: the newest "
        "recorded; a newer version uses the newest recorded table below it, and says so)",
    )
    parser.add_argument(
        "--namespace", default=None, help="namespace of the ops.new suggestions (default: the model module's name)"
    )
    return cli.main(parser, run, argv)


def run(args) -> cli.Report:
    opsets = _opsets(args.opset) or list(DEFAULT_OPSETS)
    plan_columns(opsets, args.exporter)  # usage errors before the (slow) trace
    table_for(args.trt_version)
    cli.load_packages(args)
    model, inputs, module = load_target(args.target)
    namespace = args.namespace or suggested_namespace(module)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", namespace):
        raise OpforgeError(
            f"--namespace must be a lower-case identifier (an op id is ns::name), got "
            f"{namespace!r}. Fix: e.g. --namespace mymodels"
        )
    report = scan(
        model,
        inputs,
        opsets=opsets,
        exporter=args.exporter,
        trt_version=args.trt_version,
        namespace=namespace,
        target=args.target,
        package=_destination(args.package),
    )
    if not args.json:
        print(render(report))
    return cli.Report(report, cli.PROBLEMS if report["blockers"] else cli.OK)


if __name__ == "__main__":
    sys.exit(main())
