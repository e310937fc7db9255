"""The plan of a new op: what `python -m ops.new` renders the files from, taken from the flags, a torch operator's
schema (--like) or a Python function's signature (--from), with names the declaration accepts."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.declaration import DEVICES, Attr, Input, Output, attr_type_name
from ..core.dtypes import FLOATING
from ..core.errors import DeclarationError, OpforgeError
from ..core.validate import Validator
from .syntax import SpecError


@dataclass
class Plan:
    """Everything the files are rendered from."""

    id: str
    namespace: str
    name: str
    inputs: list[Input]
    outputs: list[Output]
    attrs: list[Attr]
    source: str  # "flags" | "like" | "from"
    target: str = ""  # the torch operator or module:function
    call_positional: list[str] = field(default_factory=list)  # declared names passed positionally
    call_keyword: list[tuple[str, str]] = field(default_factory=list)  # (callee's keyword, declared name)
    cases: list[tuple[dict, dict]] = field(default_factory=list)  # (input name -> shape | None, attr values)
    devices: tuple[str, ...] = DEVICES
    notes: list[str] = field(default_factory=list)
    package: str | None = None  # the op package the files go to (None: opforge's ops.library or a --dir)
    onnx_fallback_problem: str | None = None  # why the reference does not export to standard ONNX, if it does not
    imports: list[str] = field(default_factory=list)  # modules that register the --like operator (--import)


def check_id(op_id: str) -> tuple[str, str]:
    """Validate an op id with the declaration's own rules (namespace::name, reserved namespaces, C++ keywords)."""
    return Validator(op_id if isinstance(op_id, str) else repr(op_id)).op_id(op_id)


def _usable(name: str) -> bool:
    """Whether the declaration takes `name` as it is (the declaration's own rules, attributes' included)."""
    try:
        Validator("new::op").identifier("name", name, attribute=True)
    except DeclarationError:
        return False
    return True


def _fresh(candidates, taken: set) -> str:
    """The first of `candidates` (then numbered variants of the first) the declaration takes and `taken` lacks."""
    candidates = list(candidates)
    for c in candidates + [f"{candidates[0]}{k}" for k in range(1, 1000)]:
        if c not in taken and _usable(c):
            return c
    raise OpforgeError(f"no free name like {candidates[0]!r}")  # unreachable in practice


def declared_names(names: list[str]) -> dict[str, str]:
    """A schema's / function's parameter names -> the names the declaration uses: each kept where the declaration
    takes it, else renamed ('self' -> 'x' when free; otherwise a trailing '_'), never two alike."""
    keep = {n for n in names if _usable(n) and n != "self"}
    out, taken = {}, set(keep)
    for n in names:
        if n in keep:
            out[n] = n
            continue
        base = re.sub(r"_{2,}", "_", re.sub(r"^_*opforge_", "", n, flags=re.IGNORECASE)).strip("_") or "x"
        out[n] = _fresh(["x", "self", "self_"] if n == "self" else [base + "_", base + "_arg"], taken)
        taken.add(out[n])
    return out


def output_names(count: int, taken) -> list[str]:
    """Names for `count` outputs that no input or attribute has: y (or out, output, result), or y0, y1, ..."""
    taken = set(taken)
    if count == 1:
        return [_fresh(["y", "out", "output", "result"], taken)]
    for stem in ("y", "out", "output", "result"):
        names = [f"{stem}{k}" for k in range(count)]
        if not set(names) & taken:
            return names
    names = []
    for _ in range(count):
        names.append(_fresh(["y"], taken))
        taken.add(names[-1])
    return names


def override(items: list, flags: list, what: str, target: str) -> list:
    """--input/--attr/--output flags replace the schema-derived field of the same name; new names are an error
    (the callable would not accept them)."""
    by_name = {f.name: f for f in flags}
    unknown = set(by_name) - {i.name for i in items}
    if unknown:
        raise SpecError(f"--{what}", f"names of {target}'s {what}s {[i.name for i in items]}", sorted(unknown)[0])
    return [by_name.get(i.name, i) for i in items]


# -- --like: a torch operator's schema --


def resolve_operator(spec: str):
    """'aten::grid_sampler_2d' / 'aten::add.Tensor' / 'torchvision::deform_conv2d' -> (schema, callable text, fn)."""
    m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)::([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?$", spec or "")
    if not m:
        raise SpecError(
            "--like", "a torch operator 'ns::op' or 'ns::op.overload'", spec, "--like aten::grid_sampler_2d"
        )
    ns, op, overload = m.groups()
    if ns == "torchvision":
        try:
            import torchvision  # noqa: F401  (registers torchvision::* operators)
        except ImportError:
            pass
    schemas = torch._C._jit_get_schemas_for_operator(f"{ns}::{op}")
    if not schemas:
        raise OpforgeError(
            f"--like {spec}: torch knows no operator {ns}::{op}"
            + (" (is torchvision installed?)" if ns == "torchvision" else "")
            + '. Fix: check the name (python -c "import torch; print(torch.ops.'
            + ns
            + "."
            + op
            + ')") or import the library that defines it first'
        )
    if overload is not None:
        chosen = [s for s in schemas if s.overload_name == overload]
        if not chosen:
            raise OpforgeError(
                f"--like {spec}: {ns}::{op} has no overload {overload!r}; it has "
                f"{[s.overload_name or '(default)' for s in schemas]}"
            )
        schema = chosen[0]
    else:
        plain = (
            [s for s in schemas if s.overload_name == ""]
            or [s for s in schemas if not any(a.alias_info is not None and a.alias_info.is_write for a in s.arguments)]
            or schemas
        )
        schema = plain[0]
    packet = getattr(getattr(torch.ops, ns), op)
    fn = getattr(packet, schema.overload_name or "default")
    return schema, f"torch.ops.{ns}.{op}.{schema.overload_name or 'default'}", fn


def _attr_from_type(tname: str, declared: str, type_text: str, default, has_default: bool, n) -> Attr | None:
    length = n if isinstance(n, int) and n > 0 else None
    if has_default and isinstance(default, (list, tuple)) and length is not None and len(default) != length:
        length = None  # e.g. int[2] stride=[] (empty: "same as kernel_size"): no fixed length to promise
    if has_default and tname in ("list[int]", "list[float]") and isinstance(default, (int, float)) and length:
        default = [default] * length  # int[2] padding=0 broadcasts
    return (
        Attr(declared, tname, list(default) if isinstance(default, tuple) else default, length=length)
        if has_default
        else Attr(declared, tname, length=length)
    )


SCHEMA_TYPES = {
    "int": "int",
    "SymInt": "int",
    "float": "float",
    "Scalar": "float",
    "bool": "bool",
    "str": "str",
    "List[int]": "list[int]",
    "List[SymInt]": "list[int]",
    "List[float]": "list[float]",
}


def plan_from_schema(op_id, spec, args) -> Plan:
    schema, call, _ = resolve_operator(spec)
    ns, name = check_id(op_id)
    inputs, attrs, positional, keyword_args, problems, notes = [], [], [], [], [], []
    flagged_attrs = {a.name for a in args.attr_specs}
    skipped = False  # an argument left out: later ones are passed by keyword
    renamed = declared_names([a.name for a in schema.arguments])
    for a in schema.arguments:
        t = str(a.type)
        if a.alias_info is not None and a.alias_info.is_write:
            if a.kwarg_only:
                continue  # out= arguments
            problems.append(f"'{a.name}' is mutated in place ({t}); opforge ops are functional")
            continue
        declared = renamed[a.name]
        if t in ("Tensor", "Optional[Tensor]"):
            inputs.append(
                Input(
                    declared,
                    dtypes=FLOATING if not inputs else f"like({inputs[0].name})",
                    optional=t.startswith("Optional"),
                )
            )
        else:
            base = t[len("Optional[") : -1] if t.startswith("Optional[") else t
            tname = SCHEMA_TYPES.get(base)
            default = a.default_value if a.has_default_value() else None
            if tname is None:
                if declared not in flagged_attrs:
                    problems.append(f"argument '{a.name}' has type {t}, which no opforge attribute or input can hold")
                continue
            if a.has_default_value() and default is None and declared not in flagged_attrs:
                # An opforge attribute cannot hold None: the reference leaves the argument out, so the operator
                # applies its own default, and the op does not expose it.
                notes.append(
                    f"argument '{a.name}' ({t}) defaults to None, which an opforge attribute cannot hold: "
                    f"left out, so {spec} uses its own default (declare it with "
                    f"--attr '{declared}:{tname}=VALUE')"
                )
                skipped = True
                continue
            attrs.append(_attr_from_type(tname, declared, t, default, a.has_default_value(), getattr(a, "N", None)))
        (keyword_args.append((a.name, declared)) if a.kwarg_only or skipped else positional.append(declared))
    if not schema.returns or any(str(r.type) != "Tensor" for r in schema.returns):
        problems.append(
            f"returns {[str(r.type) for r in schema.returns]}: ops.new handles operators returning Tensors only"
        )
    if problems:
        raise OpforgeError(f"--like {spec} ({schema}): " + "; ".join(problems))
    if any(i.optional for i in inputs):  # opforge wants optional inputs last: keep schema order, check it
        first_opt = next(k for k, i in enumerate(inputs) if i.optional)
        if any(not i.optional for i in inputs[first_opt:]):
            raise OpforgeError(
                f"--like {spec}: a required Tensor follows an optional one; opforge (like ONNX and "
                "TensorRT, which pass inputs by position) needs optional inputs last"
            )
    names = output_names(len(schema.returns), [i.name for i in inputs] + [a.name for a in attrs])
    outputs = [Output(n, shape=f"like({inputs[0].name})", dtype=f"like({inputs[0].name})") for n in names]
    return Plan(
        f"{ns}::{name}", ns, name, inputs, outputs, attrs, "like", str(spec), positional, keyword_args, notes=notes
    )


# -- --from: a Python function --


def _annotation_kind(annotation, default) -> tuple[str, Any]:
    """('input', optional) / ('attr', type name) / ('unknown', None) for a parameter."""
    if annotation is inspect.Parameter.empty:
        if default is inspect.Parameter.empty:
            return "input", False
        if default is None:
            return "unknown", None
        if isinstance(default, (list, tuple)) and default:
            return "attr", "list[float]" if any(isinstance(v, float) for v in default) else "list[int]"
        return (
            ("attr", {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default)))
            if type(default) in (bool, int, float, str)
            else ("unknown", None)
        )
    if annotation is torch.Tensor or annotation == "Tensor" or annotation == "torch.Tensor":
        return "input", False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] is torch.Tensor:
            return "input", True
        return "unknown", None
    if annotation in (int, float, bool, str):
        return "attr", annotation.__name__
    if origin in (list, tuple, typing.Sequence, __import__("collections.abc").abc.Sequence) and args:
        inner = args[0]
        if inner in (int, float) and all(a in (inner, Ellipsis) for a in args):
            return "attr", f"list[{inner.__name__}]"
    tname = attr_type_name(annotation)
    return ("attr", tname) if tname else ("unknown", None)


def plan_from_function(op_id, spec, args) -> tuple[Plan, Callable]:
    m = re.match(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$", spec or "")
    if not m:
        raise SpecError("--from", "module:function", spec, "--from mypkg.layers:soft_clip")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(m.group(1))
    except ImportError as e:
        raise OpforgeError(
            f"--from {spec}: cannot import module {m.group(1)!r} ({e}). Fix: run from the directory "
            "that holds it or put it on PYTHONPATH"
        ) from e
    fn = getattr(module, m.group(2), None)
    if not callable(fn):
        raise OpforgeError(f"--from {spec}: module {m.group(1)} has no function {m.group(2)!r}")
    ns, name = check_id(op_id)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    inputs, attrs, positional, keyword_args, problems = [], [], [], [], []
    flagged = {a.name for a in args.attr_specs}
    parameters = list(inspect.signature(fn).parameters.values())
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            star = "*" if p.kind == p.VAR_POSITIONAL else "**"
            listed = ", ".join(q.name for q in parameters if q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD))
            raise OpforgeError(
                f"--from {spec}: function {m.group(2)} takes {star}{p.name}, and a declaration lists each input and "
                f"attribute by name, so ops.new cannot tell what {star}{p.name} stands for. Fix: point --from at a "
                f"wrapper that names them, e.g. def {m.group(2)}_op({listed + ', ' if listed else ''}x: torch.Tensor, "
                f"alpha: float = 1.0): return {m.group(2)}(...)"
            )
    renamed = declared_names([p.name for p in parameters])
    for p in parameters:
        declared = renamed[p.name]
        kind, info = _annotation_kind(hints.get(p.name, p.annotation), p.default)
        if kind == "input":
            inputs.append(
                Input(
                    declared,
                    dtypes=FLOATING if not inputs else f"like({inputs[0].name})",
                    optional=bool(info) or p.default is None,
                )
            )
        elif kind == "attr" or declared in flagged:
            default = p.default
            if isinstance(default, tuple):
                default = list(default)
            attrs.append(
                Attr(declared, info or "float", default)
                if default is not inspect.Parameter.empty
                else Attr(declared, info or "float")
            )
        else:
            problems.append(
                f"parameter '{p.name}' has no Tensor/int/float/bool/str/list annotation or typed default: "
                f"annotate it, or pass --attr '{declared}:TYPE=DEFAULT'"
            )
            continue
        (keyword_args.append((p.name, declared)) if p.kind == p.KEYWORD_ONLY else positional.append(declared))
    if problems:
        raise OpforgeError(f"--from {spec}: " + "; ".join(problems))
    if not inputs:
        raise OpforgeError(f"--from {spec}: the function takes no Tensor parameter (annotate them: x: torch.Tensor)")
    name_out = output_names(1, [i.name for i in inputs] + [a.name for a in attrs])[0]
    outputs = [Output(name_out, shape=f"like({inputs[0].name})", dtype=f"like({inputs[0].name})")]
    plan = Plan(f"{ns}::{name}", ns, name, inputs, outputs, attrs, "from", spec, positional, keyword_args)
    return plan, fn
