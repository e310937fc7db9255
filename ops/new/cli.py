"""`python -m ops.new`: putting it together. The command line, where the files go, the plan from the flags or the
callable, the declaration's own validation, and writing the files (never overwriting)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import cli
from ..core.declaration import DEVICES, Input, OpDecl
from ..core.discovery import load_installed
from ..core.errors import OpforgeError
from ..core.registry import all_ops
from ..core.validate import build_decl
from .fit import (
    cases_from_flags,
    cases_from_runs,
    collect_runs,
    derive_outputs,
    empty_case,
    guessed_shapes,
    onnx_problem,
    perturbed,
    sample_value,
    verify_outputs,
)
from .plan import Plan, check_id, override, plan_from_function, plan_from_schema, resolve_operator
from .render import render_cpu, render_cuda, render_declaration
from .syntax import HELP, SpecError, parse_attr, parse_input, parse_output, parse_shapes


def destination(args) -> tuple[Path, str | None]:
    """(directory of the declaration module, op package name for the build/check commands or None=opforge)."""
    if args.dir and args.package:
        raise SpecError("--dir", "either --dir or --package, not both", f"--dir {args.dir} --package {args.package}")
    if args.dir:
        d = Path(args.dir)
        if not d.is_dir():
            raise OpforgeError(
                f"--dir {args.dir}: no such directory. Fix: create it (an op package: a directory "
                "whose __init__.py calls ops.op_package(__name__))"
            )
        return d.resolve(), None
    if args.package:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(args.package)
        except ImportError as e:
            raise OpforgeError(
                f"--package {args.package}: cannot import it ({e}). Fix: run from the directory that "
                "holds it, or create it (README, 'Ops in your own package')"
            ) from e
        locations = list(getattr(module, "__path__", []))
        if not locations:
            raise OpforgeError(f"--package {args.package} is a module, not a package directory")
        return Path(locations[0]).resolve(), args.package
    here = Path.cwd()
    if (here / "ops" / "library" / "__init__.py").is_file() and (here / "ops" / "registry.py").is_file():
        return (here / "ops" / "library").resolve(), None
    raise OpforgeError(
        "where should the op go? Outside the opforge repository, pass --package PKG (your op package, "
        "see README 'Ops in your own package') or --dir DIR (the directory of its declaration modules)"
    )


def make_plan(args) -> tuple[Plan, Callable | None]:
    op_id = args.id
    ns, name = check_id(op_id)
    if args.like and args.from_:
        raise SpecError("--like", "either --like or --from, not both", f"--like {args.like} --from {args.from_}")
    fn = None
    if args.like:
        plan = plan_from_schema(op_id, args.like, args)
        _, _, fn = resolve_operator(args.like)
    elif args.from_:
        plan, fn = plan_from_function(op_id, args.from_, args)
    else:
        if not args.input:
            raise SpecError("--input", "at least one --input (or --like ns::op / --from module:function)", None)
        plan = Plan(f"{ns}::{name}", ns, name, [], [], [], "flags")
    if plan.source != "flags":
        plan.inputs = override(plan.inputs, args.input_specs_for(plan), "input", plan.target)
        plan.attrs = override(plan.attrs, args.attr_specs, "attr", plan.target)
    else:
        first = None
        for spec in args.input:
            plan.inputs.append(parse_input(spec, first))
            first = first or plan.inputs[0].name
        plan.attrs = list(args.attr_specs)
        if not args.output:
            raise SpecError(
                "--output",
                "at least one --output when the op is given by flags (its shape rule is yours to declare)",
                None,
            )
    if args.devices:
        devices = tuple(d.strip() for d in args.devices.split(","))
        if not devices or any(d not in DEVICES for d in devices):
            raise SpecError("--devices", f"a comma-separated list from {list(DEVICES)}", args.devices, "--devices cpu")
        plan.devices = tuple(d for d in DEVICES if d in devices)
    first = plan.inputs[0].name if plan.inputs else None
    if args.output:
        plan.outputs = [parse_output(s, first) for s in args.output]
    return plan, fn


def validate(plan: Plan, kernels: Any = None) -> OpDecl:
    """The declaration's own validation (ids, names, dtypes, shape rules, defaults) on what would be written."""
    params = [inspect.Parameter(i.name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for i in plan.inputs]
    params += [inspect.Parameter(a.name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in plan.attrs]

    def reference(*args):
        raise NotImplementedError

    reference.__signature__ = inspect.Signature(params)
    return build_decl(
        plan.id,
        reference,
        inputs=plan.inputs,
        outputs=plan.outputs,
        attrs=plan.attrs,
        devices=plan.devices,
        kernels=None,
        samples=lambda device, dtype: [],
    )


def import_modules(names: list[str]) -> list[str]:
    """Import each --import module (a dotted name, importable from the current directory)."""
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    for name in names:
        if not re.match(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$", name):
            raise SpecError("--import", "a dotted module name", name, "--import mypkg.layers")
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise OpforgeError(
                f"--import {name}: cannot import it ({e}). Fix: run from the directory that holds "
                "it, or put it on PYTHONPATH"
            ) from None
    return list(names)


def scaffold(args) -> tuple[Plan, dict[Path, str]]:
    imported = import_modules(getattr(args, "imports", []))
    plan, fn = make_plan(args)
    plan.imports = imported if plan.source == "like" else []
    if plan.source != "flags":
        for a in plan.attrs:
            if not a.has_default:
                plan.notes.append(
                    f"attribute '{a.name}' has no default: the runs and samples use {sample_value(a)!r} "
                    f"(choose with --attr '{a.name}:{a.type}=VALUE')"
                )
        guessed = not args.shapes
        shape_sets = [parse_shapes(s) for s in args.shapes] if args.shapes else guessed_shapes(plan)
        runs = collect_runs(plan, fn, shape_sets, guessed)
        checks = []
        if args.output:
            verify_outputs(plan, runs)
        else:
            checks = perturbed(plan, fn, runs)
            plan.outputs = derive_outputs(plan, runs, checks)
        plan.onnx_fallback_problem = onnx_problem(plan, fn, runs[0])
        decl = validate(plan)
        # one sample with other attribute values (from the perturbed runs), so the samples cover them too
        varied = [r for r in checks if r.attrs != runs[0].attrs and r.shapes == runs[0].shapes][:1]
        cases = cases_from_runs(plan, runs + varied)
        empty = empty_case(plan, fn, cases[0])
        if empty is not None:
            cases.append(empty)
    else:
        decl = validate(plan)
        cases = cases_from_flags(plan, decl)
        shapes, attrs = cases[1]
        empty = {
            k: ([0, *v[1:]] if v and v[0] == shapes[decl.inputs[0].name][0] else v) if v is not None else None
            for k, v in shapes.items()
        }
        cases.append((empty, attrs))
    directory, package = destination(args)
    files = {
        directory / f"{plan.name}.py": render_declaration(plan, decl, cases),
    }
    kdir = directory / "csrc" / plan.name if (args.dir or args.package) else Path.cwd() / "csrc" / plan.name
    if "cpu" in plan.devices:
        files[kdir / f"{plan.name}_cpu.cpp"] = render_cpu(plan, decl)
    if "cuda" in plan.devices:
        files[kdir / f"{plan.name}_cuda.cu"] = render_cuda(plan, decl)
    plan.package = package
    return plan, files


def existing_op(plan: Plan, package: str | None) -> str | None:
    try:
        load_installed()
    except OpforgeError:
        pass
    if package:
        try:
            importlib.import_module(package)
        except Exception:
            pass
    for op in all_ops():
        if op.id == plan.id:
            return op.decl.source
    return None


def write(files: dict[Path, str]) -> None:
    existing = [p for p in files if p.exists()]
    if existing:
        raise OpforgeError(
            "refusing to overwrite "
            + ", ".join(str(p) for p in existing)
            + ". Fix: pick another op name, or move the existing file away first"
        )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x") as f:  # 'x': never overwrite, even if the file appeared meanwhile
            f.write(text)


class Args(argparse.Namespace):
    attr_specs: list

    def input_specs_for(self, plan: Plan) -> list[Input]:
        """--input flags in --like/--from mode: the first input defaults to floating dtypes, later ones to like(it)."""
        first = plan.inputs[0].name if plan.inputs else None
        return [parse_input(s, None if s.split(":")[0].strip() == first else first) for s in self.input]


def parser() -> cli.Parser:
    p = cli.parser(
        "python -m ops.new",
        "Scaffold a new op: its declaration (reference + samples) and CPU/CUDA kernel skeletons, which "
        "build and pass ops.check at once (the skeleton kernels are marked kernels_pending: the reference "
        "runs on those devices, and ops.check says so, until you write the bodies). Exit status: 0 written, "
        "2 a user error (one line saying what to fix).",
        epilog=HELP,
        raw=True,
    )
    p.add_argument("id", help="the new op's id, NS::NAME")
    src = p.add_argument_group("where the signature comes from (default: the flags below)")
    src.add_argument("--like", metavar="NS::OP", help="a torch operator, e.g. aten::grid_sampler_2d")
    src.add_argument("--from", dest="from_", metavar="MODULE:FUNCTION", help="a Python function")
    src.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (repeatable): the module that registers a --like operator defined in "
        "your code (torch.library); the declaration imports it too",
    )
    p.add_argument("--input", action="append", default=[], metavar="SPEC", help="NAME[:FIELD]... (repeatable)")
    p.add_argument("--output", action="append", default=[], metavar="SPEC", help="NAME:SHAPE[:DTYPE] (repeatable)")
    p.add_argument("--attr", action="append", default=[], metavar="SPEC", help="NAME:TYPE[=DEFAULT] (repeatable)")
    p.add_argument(
        "--shapes",
        action="append",
        default=[],
        metavar="SPEC",
        help="'NAME=2x3x8 NAME=...': input shapes to run --like/--from on (repeatable)",
    )
    p.add_argument("--devices", metavar="LIST", help="cpu,cuda (default) or cpu")
    where = p.add_argument_group("where the files go (default: ops/library/ and csrc/ inside the opforge repo)")
    where.add_argument("--package", metavar="PKG", help="your op package: PKG/<name>.py and PKG/csrc/<name>/")
    where.add_argument("--dir", metavar="DIR", help="DIR/<name>.py and DIR/csrc/<name>/")
    p.add_argument("--dry-run", action="store_true", help="print the files instead of writing them")
    return p


def main(argv=None) -> int:
    return cli.main(parser(), run, argv, namespace=Args())


def run(args: Args) -> int:
    args.attr_specs = [parse_attr(s) for s in args.attr]
    plan, files = scaffold(args)
    where = existing_op(plan, plan.package)
    if where is not None:
        raise OpforgeError(f"{plan.id} already exists (declared at {where}). Fix: pick another name")
    if args.dry_run:
        for path, text in files.items():
            print(f"==> {path}\n{text}")
        return 0
    write(files)
    cwd = Path.cwd()
    package = plan.package
    pkg = f" --package {package}" if package else ""
    print(f"{plan.id}: wrote")
    for path in files:
        print(f"  {path.relative_to(cwd) if path.is_relative_to(cwd) else path}")
    decl_line = ", ".join(f"{o.name}: {o.shape}" for o in plan.outputs)
    print(f"outputs: {decl_line}")
    for note in plan.notes:
        print(f"note: {note}")
    if args.quiet:  # the files written and the notes about them; not the advice below
        return 0
    print(
        "The kernels are skeletons (kernels_pending=" + repr(tuple(plan.devices)) + "): the op runs its reference "
        "on those devices until you write the bodies and remove the flag."
        + (
            " The reference is a PLACEHOLDER returning zeros: write the op's math there first."
            if plan.source == "flags"
            else ""
        )
    )
    print("Next:")
    print(f"  python -m ops.build{pkg}")
    print(f"  python -m ops.check {plan.id}{pkg}")
    return 0
