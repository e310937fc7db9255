"""`python -m ops.new NS::NAME`: scaffold a new op (declaration, reference, samples, CPU and CUDA kernel skeletons).

Three sources for the op's signature:

- flags only: `--input`, `--output`, `--attr` (the mini-syntax below, one flag per field, mapped 1:1 onto
  `Input`/`Output`/`Attr`); the reference is a clearly marked placeholder that returns zeros;
- `--like ns::op[.overload]`: a torch operator's schema (Tensor -> input, Tensor? -> optional input,
  int/float/bool/str/int[]/float[] -> attribute, returns -> outputs); the reference calls the operator;
- `--from module:function`: a Python function's signature (Tensor parameters -> inputs, typed parameters with
  defaults -> attributes); the reference calls the function.

For --like/--from the output shape rules are derived by running the callable on sample inputs (`--shapes`, or
a few guesses) and fitting each output dim to the shape language: an input dim, an int attribute, a list
element, a simple combination of those, or a constant. A rule is only written when it reproduces every run,
including runs with one input dim or attribute changed at a time; otherwise ops.new stops and says which
`--output` to pass. `--output` always wins (and is then checked against the runs).

The kernel files it writes are skeletons (the math is the user's): the declaration marks them with
`kernels_pending=("cpu", "cuda")`, so the op builds, runs its reference on those devices, and `ops.check`
passes while reporting each such stage as REF (ran the reference), never as a kernel pass.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import sys
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from . import shape_rule as sr
from .declaration import ATTR_TYPES, DEVICES, REQUIRED, Attr, Input, OpDecl, Output, _attr_type_name
from .dtypes import DTYPES, FLOATING
from .errors import DeclarationError, OpforgeError
from .prototypes import context_name

EXAMPLES = {
    "--input": "--input x  |  --input 'x:float32,float16'  |  --input 'mask:optional'  |  --input 'w:like(x):rank=1'",
    "--output": "--output 'y:like(x)'  |  --output 'y:[x.shape[0], 4]:float32'",
    "--attr": "--attr 'eps:float=1e-6'  |  --attr 'stride:list[int,2]=1,1'  |  --attr 'mode:str=bilinear|nearest'",
    "--shapes": "--shapes 'input=2x3x8x8 grid=2x5x6x2'",
}

HELP = """\
spec mini-syntax (one flag per field; quote it in the shell):

  --input NAME[:FIELD]...        one Input, in order. FIELDs:
        float32,float16,...      allowed dtypes (default: float32,float16,bfloat16 for the first input,
                                 like(<first input>) for the others); 'floating' = float32,float16,bfloat16
        like(OTHER)              the dtype of an earlier input
        optional                 Tensor?  (None when absent; optional inputs come last)
        rank=N | min_rank=N      rank constraints
        shape=[...]              exact shape in the shape language, e.g. shape=[x.shape[-1]]
      e.g. --input x   --input 'w:like(x):shape=[x.shape[-1]]'   --input 'mask:optional'

  --output NAME:SHAPE[:DTYPE]    one Output. SHAPE: like(INPUT) or [expr, ...] in the shape language
        (x.shape[i], int attrs, list[int] elements stride[0], + - * //, ceil_div, max, min);
        DTYPE: like(INPUT) or a dtype name (default: like the SHAPE's input, else like the first input)
      e.g. --output 'y:like(x)'   --output 'y:[x.shape[0], 4]:float32'

  --attr NAME:TYPE[=DEFAULT]     one Attr. TYPE: int float bool str list[int] list[float], or list[int,N] /
        list[float,N] for a fixed length N (needed to use stride[0] in a shape rule). DEFAULT: 1 / 1e-6 /
        true|false / a list as 1,1 / for str, a|b|c = choices, the first the default. No '=': required.
      e.g. --attr 'eps:float=1e-6'   --attr 'stride:list[int,2]=1,1'   --attr 'mode:str=bilinear|nearest'

  --shapes 'NAME=2x3x8x8 NAME=...'   (repeatable; --like/--from) input shapes to run the operator/function on
        for deriving the output shape rules and for the samples; an optional input left out is absent.

--like / --from take the inputs, attributes and outputs from the operator's schema / the function's
signature; --input/--attr/--output flags naming one of them replace it (e.g. to give an attribute a
default, or restrict dtypes). Nothing is overwritten: existing files are an error.
"""


class SpecError(OpforgeError):
    """A bad command line for ops.new: names the flag, what was expected, what was given, and an example."""

    def __init__(self, flag: str, expected: str, given: Any, example: str | None = None):
        example = example or EXAMPLES.get(flag)
        super().__init__(f"{flag}: expected {expected}, got {given!r}" + (f". Example: {example}" if example else ""))


# ---- the mini-syntax -------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LIKE = re.compile(r"^like\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$")
_LIST_TYPE = re.compile(r"^list\[\s*(int|float)\s*(?:,\s*(\d+)\s*)?\]$")


def _name(flag: str, text: str, spec: str) -> str:
    if not _IDENT.match(text):
        raise SpecError(flag, "NAME first, a Python identifier", spec)
    return text


def parse_input(spec: str, first: str | None = None) -> Input:
    """'x', 'x:float32,float16', 'mask:optional', 'w:like(x):rank=1:shape=[x.shape[-1]]' -> Input."""
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError("--input", "NAME[:FIELD]...", spec)
    name, *fields = [p.strip() for p in spec.split(":")]
    _name("--input", name, spec)
    dtypes: Any = None
    kw: dict[str, Any] = {}
    for f in fields:
        if f == "optional":
            kw["optional"] = True
        elif f == "floating":
            dtypes = FLOATING
        elif m := _LIKE.match(f):
            dtypes = f"like({m.group(1)})"
        elif m := re.match(r"^(rank|min_rank)\s*=\s*(\d+)$", f):
            kw[m.group(1)] = int(m.group(2))
        elif f.startswith("shape="):
            kw["shape"] = f[len("shape="):].strip()
        elif f and all(d.strip() in DTYPES for d in f.split(",")):
            dtypes = tuple(d.strip() for d in f.split(","))
        else:
            raise SpecError("--input", f"a field that is 'optional', 'floating', like(OTHER), rank=N, min_rank=N, "
                            f"shape=[...] or dtypes from {sorted(DTYPES)} (in {spec!r})", f)
    if dtypes is None:
        dtypes = FLOATING if first is None else f"like({first})"
    return Input(name, dtypes=dtypes, **kw)


def _split_output(spec: str) -> list[str]:
    """NAME:SHAPE[:DTYPE], where SHAPE may hold brackets (no ':' inside the shape language)."""
    return [p.strip() for p in spec.split(":")]


def parse_output(spec: str, first: str | None) -> Output:
    """'y:like(x)', 'y:[x.shape[0], 4]:float32', 'n:[x.shape[0]]:like(x)' -> Output."""
    if not isinstance(spec, str) or ":" not in spec:
        raise SpecError("--output", "NAME:SHAPE[:DTYPE]", spec)
    parts = _split_output(spec)
    name = _name("--output", parts[0], spec)
    if len(parts) > 3:
        raise SpecError("--output", "NAME:SHAPE[:DTYPE] (three ':'-separated parts at most)", spec)
    shape = parts[1]
    if not (_LIKE.match(shape) or (shape.startswith("[") and shape.endswith("]"))):
        raise SpecError("--output", "a SHAPE that is like(INPUT) or [expr, ...]", shape)
    if len(parts) == 3:
        dtype = parts[2]
        if not (_LIKE.match(dtype) or dtype in DTYPES):
            raise SpecError("--output", f"a DTYPE that is like(INPUT) or one of {sorted(DTYPES)}", dtype)
        dtype = f"like({_LIKE.match(dtype).group(1)})" if _LIKE.match(dtype) else dtype
    else:
        m = _LIKE.match(shape)
        if m is None and first is None:
            raise SpecError("--output", "a DTYPE (there is no input to take it from)", spec)
        dtype = f"like({m.group(1) if m else first})"
    if m := _LIKE.match(shape):
        shape = f"like({m.group(1)})"
    return Output(name, shape=shape, dtype=dtype)


def parse_attr(spec: str) -> Attr:
    """'eps:float=1e-6', 'k:int', 'stride:list[int,2]=1,1', 'mode:str=a|b', 'flag:bool=false' -> Attr."""
    if not isinstance(spec, str) or ":" not in spec:
        raise SpecError("--attr", "NAME:TYPE[=DEFAULT]", spec)
    name, rest = spec.split(":", 1)
    name = _name("--attr", name.strip(), spec)
    if "=" in rest:
        tname, text = rest.split("=", 1)
        has_default = True
    else:
        tname, text, has_default = rest, None, False
    tname = tname.strip()
    length = None
    if m := _LIST_TYPE.match(tname):
        tname, length = f"list[{m.group(1)}]", int(m.group(2)) if m.group(2) else None
    if tname not in ATTR_TYPES:
        raise SpecError("--attr", "a TYPE among int, float, bool, str, list[int], list[float], list[int,N], "
                        f"list[float,N] (in {spec!r})", tname)
    if not has_default:
        return Attr(name, tname, length=length)
    text = text.strip()

    def bad(expected):
        raise SpecError("--attr", f"a DEFAULT for {name!r} that is {expected} (in {spec!r})", text)

    try:
        if tname == "int":
            return Attr(name, "int", int(text, 0))
        if tname == "float":
            return Attr(name, "float", float(text))
    except ValueError:
        bad("an int" if tname == "int" else "a float")
    if tname == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
            bad("true or false")
        return Attr(name, "bool", text.lower() in ("true", "1"))
    if tname == "str":
        choices = [c.strip() for c in text.split("|")]
        if len(choices) > 1:
            if not all(choices):
                bad("choices a|b|c, none empty")
            return Attr(name, "str", choices[0], choices=tuple(choices))
        return Attr(name, "str", text)
    items = [t.strip() for t in text.strip("[]()").split(",") if t.strip()]
    try:
        value = [int(t, 0) for t in items] if tname == "list[int]" else [float(t) for t in items]
    except ValueError:
        bad(f"comma-separated {'ints' if tname == 'list[int]' else 'floats'}, e.g. 1,1")
    if length is not None and len(value) != length:
        bad(f"{length} values (the type says list[...,{length}])")
    return Attr(name, tname, value, length=length)


def parse_shapes(spec: str) -> dict[str, list[int]]:
    """'input=2x3x8x8 grid=2x5x6x2' (or ';'-separated) -> {'input': [2, 3, 8, 8], 'grid': [2, 5, 6, 2]}."""
    out = {}
    for item in re.split(r"[\s;]+", spec.strip()):
        if not item:
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+(?:x\d+)*|scalar)$", item)
        if not m:
            raise SpecError("--shapes", "NAME=DxDx... items separated by spaces (NAME=scalar for 0-d)", item)
        out[m.group(1)] = [] if m.group(2) == "scalar" else [int(d) for d in m.group(2).split("x")]
    if not out:
        raise SpecError("--shapes", "at least one NAME=DxD...", spec)
    return out


# ---- the plan --------------------------------------------------------------------------------


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
    from .declaration import _Validator

    return _Validator(op_id if isinstance(op_id, str) else repr(op_id)).op_id(op_id)


def _usable(name: str) -> bool:
    """Whether the declaration takes `name` as it is (the declaration's own rules, attributes' included)."""
    from .declaration import _Validator

    try:
        _Validator("new::op").identifier("name", name, attribute=True)
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


def _override(items: list, flags: list, what: str, target: str) -> list:
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
    import torch

    m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)::([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?$", spec or "")
    if not m:
        raise SpecError("--like", "a torch operator 'ns::op' or 'ns::op.overload'", spec, "--like aten::grid_sampler_2d")
    ns, op, overload = m.groups()
    if ns == "torchvision":
        try:
            import torchvision  # noqa: F401  (registers torchvision::* operators)
        except ImportError:
            pass
    schemas = torch._C._jit_get_schemas_for_operator(f"{ns}::{op}")
    if not schemas:
        raise OpforgeError(f"--like {spec}: torch knows no operator {ns}::{op}"
                           + (" (is torchvision installed?)" if ns == "torchvision" else "")
                           + ". Fix: check the name (python -c \"import torch; print(torch.ops." + ns + "." + op
                           + ")\") or import the library that defines it first")
    if overload is not None:
        chosen = [s for s in schemas if s.overload_name == overload]
        if not chosen:
            raise OpforgeError(f"--like {spec}: {ns}::{op} has no overload {overload!r}; it has "
                               f"{[s.overload_name or '(default)' for s in schemas]}")
        schema = chosen[0]
    else:
        plain = [s for s in schemas if s.overload_name == ""] or [s for s in schemas if not any(
            a.alias_info is not None and a.alias_info.is_write for a in s.arguments)] or schemas
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
    return Attr(declared, tname, list(default) if isinstance(default, tuple) else default,
                length=length) if has_default else Attr(declared, tname, length=length)


SCHEMA_TYPES = {"int": "int", "SymInt": "int", "float": "float", "Scalar": "float", "bool": "bool", "str": "str",
                 "List[int]": "list[int]", "List[SymInt]": "list[int]", "List[float]": "list[float]"}


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
            inputs.append(Input(declared, dtypes=FLOATING if not inputs else f"like({inputs[0].name})",
                                optional=t.startswith("Optional")))
        else:
            base = t[len("Optional["):-1] if t.startswith("Optional[") else t
            tname = SCHEMA_TYPES.get(base)
            default = a.default_value if a.has_default_value() else None
            if tname is None:
                if declared not in flagged_attrs:
                    problems.append(f"argument '{a.name}' has type {t}, which no opforge attribute or input can hold")
                continue
            if a.has_default_value() and default is None and declared not in flagged_attrs:
                # An opforge attribute cannot hold None: the reference leaves the argument out, so the operator
                # applies its own default, and the op does not expose it.
                notes.append(f"argument '{a.name}' ({t}) defaults to None, which an opforge attribute cannot hold: "
                             f"left out, so {spec} uses its own default (declare it with "
                             f"--attr '{declared}:{tname}=VALUE')")
                skipped = True
                continue
            attrs.append(_attr_from_type(tname, declared, t, default, a.has_default_value(), getattr(a, "N", None)))
        (keyword_args.append((a.name, declared)) if a.kwarg_only or skipped else positional.append(declared))
    if not schema.returns or any(str(r.type) != "Tensor" for r in schema.returns):
        problems.append(f"returns {[str(r.type) for r in schema.returns]}: ops.new handles operators returning "
                        "Tensors only")
    if problems:
        raise OpforgeError(f"--like {spec} ({schema}): " + "; ".join(problems))
    if any(i.optional for i in inputs):  # opforge wants optional inputs last: keep schema order, check it
        first_opt = next(k for k, i in enumerate(inputs) if i.optional)
        if any(not i.optional for i in inputs[first_opt:]):
            raise OpforgeError(f"--like {spec}: a required Tensor follows an optional one; opforge (like ONNX and "
                               "TensorRT, which pass inputs by position) needs optional inputs last")
    names = output_names(len(schema.returns), [i.name for i in inputs] + [a.name for a in attrs])
    outputs = [Output(n, shape=f"like({inputs[0].name})", dtype=f"like({inputs[0].name})") for n in names]
    return Plan(f"{ns}::{name}", ns, name, inputs, outputs, attrs, "like", str(spec), positional, keyword_args,
                notes=notes)


# -- --from: a Python function --


def _annotation_kind(annotation, default) -> tuple[str, Any]:
    """('input', optional) / ('attr', type name) / ('unknown', None) for a parameter."""
    import torch

    if annotation is inspect.Parameter.empty:
        if default is inspect.Parameter.empty:
            return "input", False
        if default is None:
            return "unknown", None
        if isinstance(default, (list, tuple)) and default:
            return "attr", "list[float]" if any(isinstance(v, float) for v in default) else "list[int]"
        return ("attr", {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default))) \
            if type(default) in (bool, int, float, str) else ("unknown", None)
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
    tname = _attr_type_name(annotation)
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
        raise OpforgeError(f"--from {spec}: cannot import module {m.group(1)!r} ({e}). Fix: run from the directory "
                           "that holds it or put it on PYTHONPATH") from e
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
                f"alpha: float = 1.0): return {m.group(2)}(...)")
    renamed = declared_names([p.name for p in parameters])
    for p in parameters:
        declared = renamed[p.name]
        kind, info = _annotation_kind(hints.get(p.name, p.annotation), p.default)
        if kind == "input":
            inputs.append(Input(declared, dtypes=FLOATING if not inputs else f"like({inputs[0].name})",
                                optional=bool(info) or p.default is None))
        elif kind == "attr" or declared in flagged:
            default = p.default
            if isinstance(default, tuple):
                default = list(default)
            attrs.append(Attr(declared, info or "float", default) if default is not inspect.Parameter.empty
                         else Attr(declared, info or "float"))
        else:
            problems.append(f"parameter '{p.name}' has no Tensor/int/float/bool/str/list annotation or typed default: "
                            f"annotate it, or pass --attr '{declared}:TYPE=DEFAULT'")
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


# ---- deriving output shape rules by running the callable -------------------------------------


def _sample_value(a: Attr) -> Any:
    """A value for an attribute without a default, for the runs and the samples."""
    if a.has_default:
        return list(a.default) if isinstance(a.default, tuple) else a.default
    return {"int": 1, "float": 0.5, "bool": False,
            "str": (a.choices or ("",))[0]}.get(a.type) if a.type in ("int", "float", "bool", "str") else \
        [1 if a.type == "list[int]" else 1.0] * (a.length or 2)


def _tensor(shape, dtype_name: str):
    import torch

    dt = getattr(torch, dtype_name)
    if dt.is_floating_point:
        return torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(dt)
    if dt == torch.bool:
        return torch.rand(*shape, generator=torch.Generator().manual_seed(0)) > 0.5
    return torch.randint(0, 3, tuple(shape), generator=torch.Generator().manual_seed(0), dtype=dt)


def _input_dtype(plan: Plan, name: str) -> str:
    inp = next(i for i in plan.inputs if i.name == name)
    if isinstance(inp.dtypes, str):
        return _input_dtype(plan, _LIKE.match(inp.dtypes).group(1))
    return "float32" if "float32" in inp.dtypes else inp.dtypes[0]


def _call(plan: Plan, fn: Callable, shapes: dict, attrs: dict):
    values = {i.name: (_tensor(shapes[i.name], _input_dtype(plan, i.name)) if shapes.get(i.name) is not None else None)
              for i in plan.inputs}
    values.update(attrs)
    out = fn(*[values[n] for n in plan.call_positional], **{k: values[n] for k, n in plan.call_keyword})
    return out if isinstance(out, (tuple, list)) else (out,)


@dataclass
class Run:
    shapes: dict  # input -> shape (absent optional: missing)
    attrs: dict
    outputs: list  # per output: (shape, dtype name)


def _try(plan, fn, shapes, attrs) -> Run | None:
    import torch

    try:
        with torch.no_grad():
            outs = _call(plan, fn, shapes, attrs)
    except Exception:
        return None
    from .dtypes import dtype_name

    try:
        return Run(dict(shapes), dict(attrs), [(list(o.shape), dtype_name(o.dtype)) for o in outs])
    except (KeyError, AttributeError):
        return None


def _guessed_shapes(plan: Plan) -> list[dict]:
    """Shape sets to try when --shapes is not given: every required input the same shape, ranks 4..1."""
    sets = []
    for rank in (4, 3, 2, 1):
        for base in ([2, 3, 5, 7], [3, 4, 6, 5], [1, 2, 3, 4]):
            sets.append({i.name: base[:rank] for i in plan.inputs if not i.optional})
    return sets


def collect_runs(plan: Plan, fn: Callable, shape_sets: list[dict], guessed: bool) -> list[Run]:
    base_attrs = {a.name: _sample_value(a) for a in plan.attrs}
    runs = []
    for shapes in shape_sets:
        unknown = set(shapes) - {i.name for i in plan.inputs}
        if unknown:
            raise SpecError("--shapes", f"names of the inputs {[i.name for i in plan.inputs]}", sorted(unknown)[0],
                            EXAMPLES["--shapes"])
        missing = [i.name for i in plan.inputs if not i.optional and i.name not in shapes]
        if missing:
            raise SpecError("--shapes", f"a shape for every required input (missing {missing})", shapes)
        run = _try(plan, fn, shapes, base_attrs)
        if run is None:
            if guessed:
                continue
            try:
                _call(plan, fn, shapes, base_attrs)
            except Exception as e:
                raise OpforgeError(f"{plan.target} fails on --shapes {shapes} with attributes {base_attrs}: "
                                   f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Fix: give "
                                   "shapes (and attribute defaults with --attr) it accepts") from e
        runs.append(run)
        if guessed and len(runs) == 3:
            break
    if guessed:
        ranks = {len(next(iter(r.shapes.values()))) for r in runs}
        runs = [r for r in runs if len(next(iter(r.shapes.values()))) == max(ranks)] if ranks else []
    if not runs:
        raise OpforgeError(f"{plan.target} accepted none of the guessed input shapes (every input the same shape, "
                           "ranks 1-4). Fix: pass --shapes with shapes it accepts, e.g. "
                           + EXAMPLES["--shapes"] + " (twice, with different sizes, to derive the output shapes)")
    # Optional inputs present: the same shape as the first input, if the callable takes that.
    for i in plan.inputs:
        if i.optional and not any(i.name in r.shapes for r in runs):
            first = runs[0].shapes[plan.inputs[0].name]
            for candidate in (first, first[-1:], first[1:2]):
                extra = _try(plan, fn, {**runs[0].shapes, i.name: list(candidate)}, runs[0].attrs)
                if extra is not None:
                    runs.append(extra)
                    break
            else:
                plan.notes.append(f"no sample has optional input '{i.name}' present (ops.new found no shape the "
                                  "callable accepts for it): add samples with it, or pass --shapes naming it")
    return runs


def _perturbed(plan: Plan, fn: Callable, runs: list[Run]) -> list[Run]:
    """Runs with one input dim (+1) or one int / list[int] attribute (+1) changed at a time: they separate
    candidates that agree on the base runs only by coincidence (two dims of the same size)."""
    extra = []
    for run in runs[:2]:
        for name, shape in run.shapes.items():
            for d in range(len(shape)):
                changed = {**run.shapes, name: [s + (1 if k == d else 0) for k, s in enumerate(shape)]}
                if (r := _try(plan, fn, changed, run.attrs)) is not None:
                    extra.append(r)
        for a in plan.attrs:
            value = run.attrs[a.name]
            if a.type == "int" and not a.choices:
                variants = [value + 1]
            elif a.type == "list[int]" and isinstance(value, list):
                variants = [[v + (1 if k == j else 0) for k, v in enumerate(value)] for j in range(len(value))]
            else:
                continue
            for v in variants:
                if (r := _try(plan, fn, run.shapes, {**run.attrs, a.name: v})) is not None:
                    extra.append(r)
    return extra


def _value(expr, run: Run):
    try:
        names = {k: v for k, v in run.attrs.items()}
        return sr.evaluate(expr, sr.IntAlgebra({k: v for k, v in run.shapes.items()}, names))
    except Exception:
        return None


def _candidates(plan: Plan, runs: list[Run]) -> list:
    """Shape-language expressions an output dim may be, most natural first."""
    dims = []
    for i in plan.inputs:
        ranks = {len(r.shapes[i.name]) for r in runs if i.name in r.shapes}
        if not ranks:
            continue
        fixed = len(ranks) == 1
        rank = min(ranks)
        dims += [sr.Dim(i.name, k if fixed else k - rank) for k in range(rank)]
    names = [sr.Name(a.name) for a in plan.attrs if a.type == "int"]
    # Elements of list[int] attributes: of a fixed length, or of the length their value has in every run (a rule
    # that uses one then fixes the length: derive_outputs declares it)
    for a in plan.attrs:
        lengths = {len(r.attrs[a.name]) for r in runs if isinstance(r.attrs.get(a.name), list)}
        if a.type == "list[int]" and (a.length or len(lengths) == 1):
            names += [sr.Item(a.name, k) for k in range(a.length or lengths.pop())]
    combos = [sr.BinOp(op, d, n) for d in dims for n in names for op in ("mul", "floordiv", "ceil_div")]
    return dims + names + combos


def derive_outputs(plan: Plan, runs: list[Run], checks: list[Run]) -> list[Output]:
    """Fit each output's shape rule (and dtype) to the runs; stop with a clear error where none fits."""
    n_out = len(runs[0].outputs)
    if any(len(r.outputs) != n_out for r in runs):
        raise OpforgeError(f"{plan.target} returns a varying number of outputs across runs")
    if len(plan.outputs) != n_out:
        names = output_names(n_out, [i.name for i in plan.inputs] + [a.name for a in plan.attrs])
        plan.outputs = [Output(n, shape=f"like({plan.inputs[0].name})") for n in names]
    everything = runs + checks
    result = []
    for k, out in enumerate(plan.outputs):
        where = f"output {k} ('{out.name}') of {plan.target}"
        # dtype: like the first input whose dtype it has, else the fixed dtype it has
        dtypes = {r.outputs[k][1] for r in everything}
        if len(dtypes) != 1:
            raise OpforgeError(f"{where} changes dtype across runs ({sorted(dtypes)}): pass --output NAME:SHAPE:DTYPE")
        dt = dtypes.pop()
        like = [i.name for i in plan.inputs if not i.optional and _input_dtype(plan, i.name) == dt]
        dtype = f"like({like[0]})" if like else dt
        shapes = [r.outputs[k][0] for r in everything]
        # like(input): the output has that input's shape in every run (and the input is required)
        likes = [i.name for i in plan.inputs if not i.optional and all(
            r.shapes.get(i.name) == s for r, s in zip(everything, shapes))]
        if likes:
            result.append(Output(out.name, shape=f"like({likes[0]})", dtype=dtype))
            if len(likes) > 1:
                plan.notes.append(f"'{out.name}': like({likes[0]}) (also equal to {likes[1:]} on every run ops.new tried)")
            continue
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise OpforgeError(f"{where} has no like(input) shape and its rank varies across runs ({sorted(ranks)}), "
                               "which a [...] rule cannot express: pass --output NAME:SHAPE explicitly, "
                               "e.g. --output 'y:like(x)'")
        dims = []
        for d in range(ranks.pop()):
            observed = [s[d] for s in shapes]
            fits = [c for c in _candidates(plan, everything) if all(_value(c, r) == v for r, v in zip(everything, observed))]
            const = observed[0] if len(set(observed)) == 1 else None
            if const is not None and not fits:
                fits = [sr.Const(const)]
            if not fits:
                raise OpforgeError(
                    f"{where}: ops.new cannot express dim {d} (sizes {observed} on {len(everything)} runs) in the shape "
                    "language from the input dims and int attributes it tried. Fix: pass the rule, e.g. "
                    f"--output '{out.name}:[...]' (see --help for the shape language)")
            dims.append(sr.to_text(fits[0]))
            if len(fits) > 1:
                plan.notes.append(f"'{out.name}' dim {d}: {sr.to_text(fits[0])} (equal to "
                                  f"{[sr.to_text(f) for f in fits[1:4]]} on every run, perturbed ones included)")
        result.append(Output(out.name, shape="[" + ", ".join(dims) + "]", dtype=dtype))
    # list[int] attributes a rule indexes need a fixed length (the declaration checks it everywhere)
    used = {it.name for o in result for it in sr.items(sr.parse_shape(o.shape))}
    for k, a in enumerate(plan.attrs):
        if a.name in used and a.length is None:
            n = len(runs[0].attrs[a.name])
            plan.attrs[k] = replace(a, length=n)
            plan.notes.append(f"attribute '{a.name}' gets length={n}: the output shape rule indexes it")
    return result


def verify_outputs(plan: Plan, runs: list[Run]) -> None:
    """Given --output rules: they must reproduce every run (never write a rule the callable contradicts)."""
    if len(plan.outputs) != len(runs[0].outputs):
        raise SpecError("--output", f"{len(runs[0].outputs)} outputs (what {plan.target} returns)",
                        [o.name for o in plan.outputs])
    for k, out in enumerate(plan.outputs):
        rule = sr.parse_shape(out.shape)
        for r in runs:
            try:
                want = sr.evaluate_shape(rule, sr.IntAlgebra(r.shapes, r.attrs), lambda n: len(r.shapes[n]))
            except Exception as e:
                raise SpecError("--output", f"a rule {plan.target}'s runs can evaluate", out.shape) from e
            if list(want) != r.outputs[k][0]:
                raise SpecError("--output", f"a rule that reproduces {plan.target}: with inputs {r.shapes} and attributes "
                                f"{r.attrs} it returns {out.name} of shape {r.outputs[k][0]}, the rule gives "
                                f"{list(want)}", out.shape)


def _onnx_problem(plan: Plan, fn: Callable, run: Run) -> str | None:
    """Whether the callable exports to standard ONNX ops (what export_onnx(fallback=True) and ops.check's
    ort.fallback need, through the same TorchScript exporter at opset 17). None if it does, else the reason."""
    import io
    import warnings

    import torch

    from .onnx.quiet import quiet_torchscript_log

    names = [i.name for i in plan.inputs if run.shapes.get(i.name) is not None]

    class Reference(torch.nn.Module):
        def forward(self, *tensors):
            values = dict(zip(names, tensors))
            values.update({i.name: None for i in plan.inputs if i.name not in values})
            values.update(run.attrs)
            return fn(*[values[n] for n in plan.call_positional], **{k: values[n] for k, n in plan.call_keyword})

    tensors = tuple(_tensor(run.shapes[n], _input_dtype(plan, n)) for n in names)
    try:
        with warnings.catch_warnings(), quiet_torchscript_log():  # no TorchScript graph dump on a failure
            warnings.simplefilter("ignore")
            torch.onnx.export(Reference(), tensors, io.BytesIO(), dynamo=False, opset_version=17)
    except Exception as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    return None


def cases_from_runs(plan: Plan, runs: list[Run]) -> list[tuple[dict, dict]]:
    cases, seen = [], set()
    for r in runs:
        key = repr((sorted((k, tuple(v)) for k, v in r.shapes.items()), sorted((k, repr(v)) for k, v in r.attrs.items())))
        if key not in seen:
            seen.add(key)
            cases.append(({i.name: r.shapes.get(i.name) for i in plan.inputs}, dict(r.attrs)))
    return cases


def _empty_case(plan: Plan, fn: Callable | None, case) -> tuple[dict, dict] | None:
    """The case with dim 0 of the first input (and of every input with the same dim 0) set to 0."""
    shapes, attrs = case
    first = shapes[plan.inputs[0].name]
    if not first:
        return None
    n = first[0]
    empty = {k: ([0, *v[1:]] if v and v[0] == n else v) if v is not None else None for k, v in shapes.items()}
    if fn is not None and _try(plan, fn, {k: v for k, v in empty.items() if v is not None}, attrs) is None:
        return None
    return empty, attrs


# -- flags only: samples from the declared rules --


def cases_from_flags(plan: Plan, decl: OpDecl) -> list[tuple[dict, dict]]:
    """Concrete input shapes satisfying the declaration: the first input gets a few shapes of its rank, inputs with
    a shape= rule get it evaluated, the others the first input's shape; optional inputs absent and present."""
    first = decl.inputs[0]
    rank = first.rank if first.rank is not None else max(first.min_rank, 2)
    bases = [[4, 33, 3, 5, 2, 2, 2, 2], [2, 3, 8, 6, 3, 2, 2, 2], [1, 7, 5, 3, 2, 2, 2, 2]]
    attrs = {a.name: _sample_value(Attr(a.name, a.type, a.default if a.has_default else REQUIRED, a.choices, a.length))
             for a in decl.attrs}
    cases = []
    for k, base in enumerate(bases):
        shapes: dict[str, Any] = {}
        for i in decl.inputs:
            if i.optional and k == 0:
                shapes[i.name] = None
                continue
            if i.shape is not None:
                algebra = sr.IntAlgebra({n: s for n, s in shapes.items() if s is not None}, decl.shape_names(attrs))
                shapes[i.name] = [int(v) for v in sr.evaluate_shape(i.shape, algebra, lambda n: len(shapes[n]))]
            elif i.name == first.name:
                shapes[i.name] = base[:rank]
            else:
                r = i.rank if i.rank is not None else max(i.min_rank, rank)
                shapes[i.name] = (base[:rank] if r == rank else (base * 2)[:r])
        cases.append((shapes, dict(attrs)))
    # every optional input absent in case 0, present in the others; an empty case from case 1
    return cases


# ---- rendering -------------------------------------------------------------------------------


def _lit(value) -> str:
    """A Python literal in the project's style (double-quoted strings)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_lit(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_lit(v) for v in value) + "]"
    return repr(value)


def _py(value) -> str:
    return _lit(list(value)) if isinstance(value, tuple) else _lit(value)


def _render_input(i: Input) -> str:
    parts = [_lit(i.name)]
    if tuple(i.dtypes) != FLOATING or isinstance(i.dtypes, str):
        parts.append(f"dtypes={_lit(i.dtypes) if isinstance(i.dtypes, str) else _lit(tuple(i.dtypes))}")
    if i.optional:
        parts.append("optional=True")
    for k in ("rank", "min_rank", "shape"):
        if getattr(i, k) is not None:
            parts.append(f"{k}={_lit(getattr(i, k))}")
    return f"Input({', '.join(parts)})"


def _render_attr(a: Attr) -> str:
    t = a.type if isinstance(a.type, str) else _attr_type_name(a.type)
    parts = [_lit(a.name), t if t in ("int", "float", "bool", "str") else _lit(t)]
    if a.has_default:
        parts.append(_py(a.default))
    if a.choices:
        parts.append(f"choices={_lit(tuple(a.choices))}")
    if a.length is not None:
        parts.append(f"length={a.length}")
    return f"Attr({', '.join(parts)})"


def _py_expr(node) -> str:
    """A shape-language expression as Python over the reference's arguments."""
    if isinstance(node, sr.Const):
        return str(node.value)
    if isinstance(node, sr.Dim):
        return f"{node.input}.shape[{node.index}]"
    if isinstance(node, sr.Name):
        return node.name
    if isinstance(node, sr.Item):
        return f"{node.name}[{node.index}]"
    a, b = _py_expr(node.lhs), _py_expr(node.rhs)
    return {"add": f"({a} + {b})", "sub": f"({a} - {b})", "mul": f"({a} * {b})", "floordiv": f"({a} // {b})",
            "ceil_div": f"(-(-{a} // {b}))", "max": f"max({a}, {b})", "min": f"min({a}, {b})"}[node.op]


def _sample_tensor(plan: Plan, decl: OpDecl, name: str, shape) -> str:
    i = decl.input(name)
    dims = ", ".join(str(d) for d in shape)
    if i.dtype_like is not None or tuple(i.dtypes) == tuple(decl.inputs[0].dtypes):
        return f"rand({dims})" if shape else "rand()"
    fixed = i.dtypes[0]
    if fixed in FLOATING or fixed == "float64":
        return f"rand({dims}).to(torch.{fixed})"
    if fixed == "bool":
        return f"(torch.rand({dims}, device=device) > 0.5)"
    return f"torch.randint(0, 3, ({dims}{',' if len(shape) == 1 else ''}), device=device, dtype=torch.{fixed})"


def render_declaration(plan: Plan, decl: OpDecl, cases) -> str:
    lines = []
    what = {"flags": "scaffolded from flags", "like": f"scaffolded from {plan.target}",
            "from": f"scaffolded from {plan.target}"}[plan.source]
    lines.append(f'"""{plan.id}: {what} by `python -m ops.new`. Describe what it computes here."""')
    lines.append("")
    if plan.source == "from":
        module, function = plan.target.split(":")
        lines += ["import torch", "", f"from {module} import {function} as _opforge_function", ""]
    else:
        lines += ["import torch", ""]
    if plan.imports:  # the modules whose import registers the --like operator the reference calls
        lines += [f"import {m}  # noqa: F401  (registers {plan.target})" for m in plan.imports] + [""]
    lines.append("from ops import Attr, Input, Output, Sample, register_op")
    lines += ["", ""]
    lines.append("def samples(device, dtype):")
    lines.append("    def rand(*shape):")
    lines.append("        return torch.randn(*shape).to(device=device, dtype=dtype)")
    lines.append("")
    lines.append("    return [")
    for shapes, attrs in cases:
        args = []
        names = [i.name for i in decl.inputs]
        present = [n for n in names if shapes.get(n) is not None]
        last = max((names.index(n) for n in present), default=-1)
        for n in names[:last + 1]:
            args.append(_sample_tensor(plan, decl, n, shapes[n]) if shapes.get(n) is not None else "None")
        for a in decl.attrs:
            if a.name in attrs and (not a.has_default or attrs[a.name] != (list(a.default) if isinstance(
                    a.default, tuple) else a.default)):
                args.append(f"{a.name}={_py(attrs[a.name])}")
        empty = any(shapes.get(n) is not None and 0 in shapes[n] for n in names)
        absent = [n for n in names if decl.input(n).optional and shapes.get(n) is None]
        comment = "  # empty" if empty else (f"  # {', '.join(absent)} absent" if absent else "")
        lines.append(f"        Sample({', '.join(args)}),{comment}")
    lines.append("    ]")
    lines += ["", ""]
    lines.append("@register_op(")
    lines.append(f"    {_lit(plan.id)},")
    def field(name, items):  # one line if it fits in 120 columns, else one item per line
        one = f"    {name}=[{', '.join(items)}],"
        if len(one) <= 120:
            return [one]
        return [f"    {name}=["] + [f"        {item}," for item in items] + ["    ],"]

    lines += field("inputs", [_render_input(i) for i in plan.inputs])
    lines += field("outputs", [f"Output({_lit(o.name)}, shape={_lit(o.shape)}, dtype={_lit(o.dtype)})"
                               for o in plan.outputs])
    if plan.attrs:
        lines += field("attrs", [_render_attr(a) for a in plan.attrs])
    if tuple(plan.devices) != DEVICES:
        lines.append(f"    devices={_lit(tuple(plan.devices))},")
    lines.append("    samples=samples,")
    if plan.source == "flags" and plan.attrs:
        plan.onnx_fallback_problem = ("the PLACEHOLDER reference reads no attribute, so its ONNX body could not carry "
                                      "them")
    if plan.onnx_fallback_problem:
        lines.append("    # ops.new could not make the reference a standard-ONNX body (opset 17):")
        lines.append(f"    # {plan.onnx_fallback_problem}")
        lines.append("    # so export_onnx(fallback=True) refuses the op and ops.check skips ort.fallback. Remove this line")
        lines.append("    # if you rewrite the reference with exportable ops.")
        lines.append("    onnx_fallback=False,")
    lines.append(f"    # The kernels in csrc/{plan.name}/ are ops.new skeletons: until their bodies are written, the op runs")
    lines.append("    # this reference on these devices and ops.check reports those stages as REF (reference), not as a")
    lines.append("    # kernel pass. Remove a device from here once its kernel computes the op.")
    lines.append(f"    kernels_pending={_lit(tuple(plan.devices))},")
    lines.append(")")
    params = [i.name + ("=None" if i.optional else "") for i in decl.inputs]
    params += [f"{a.name}={_py(a.default)}" if a.has_default else a.name for a in decl.attrs]
    # Python forbids a required parameter after a defaulted one: attrs without default keep order only if first
    defaults = [i.optional for i in decl.inputs] + [a.has_default for a in decl.attrs]
    if any(not d and any(defaults[:k]) for k, d in enumerate(defaults)):
        params = [i.name for i in decl.inputs] + [a.name for a in decl.attrs]  # a default may not precede a required
    lines.append(f"def {plan.name}({', '.join(params)}):")
    if plan.source == "flags":
        lines.append('    """PLACEHOLDER reference written by `python -m ops.new`: it returns zeros of the declared output')
        lines.append("    shapes and dtypes and computes nothing. Replace this body with the op's math in plain PyTorch:")
        lines.append("    it is the oracle ops.check compares every kernel with, and what runs while kernels are pending.")
        lines.append('    """')
        outs = []
        for o in decl.outputs:
            dtype = f"{o.dtype_like}.dtype" if o.dtype_like else f"torch.{o.dtype}"
            if isinstance(o.shape, sr.Like):
                outs.append(f"torch.zeros_like({o.shape.input}, dtype={dtype})")
            else:
                dims = ", ".join(_py_expr(d) for d in o.shape.dims)
                outs.append(f"{decl.inputs[0].name}.new_zeros([{dims}], dtype={dtype})")
        lines.append(f"    return {outs[0]}" if len(outs) == 1 else f"    return ({', '.join(outs)})")
    else:
        callee = plan.target if plan.source == "like" else plan.target.split(":")[1]
        lines.append(f'    """Calls {callee} (the op this one was scaffolded from): the oracle ops.check compares the')
        lines.append("    kernels with, and what runs while kernels are pending. Edit it if the op should differ.\"\"\"")
        fn = ("torch.ops." + _like_call(plan)) if plan.source == "like" else "_opforge_function"
        args = plan.call_positional + [f"{k}={n}" for k, n in plan.call_keyword]
        lines.append(f"    return {fn}({', '.join(args)})")
    return "\n".join(lines) + "\n"


def _like_call(plan: Plan) -> str:
    _, call, _ = resolve_operator(plan.target)
    return call[len("torch.ops."):]


def _cpp_storage(dtype: str, cuda: bool) -> str:
    # qualified: the entry body, where these are written, has the declared names in scope (an input may be `int8_t`)
    return {"float32": "float", "float16": "__half" if cuda else "::opforge::Half",
            "bfloat16": "__nv_bfloat16" if cuda else "::opforge::BFloat16", "float64": "double",
            "int8": "::std::int8_t", "uint8": "::std::uint8_t", "int32": "::std::int32_t", "int64": "::std::int64_t",
            "bool": "bool"}[dtype]


_DTYPE_ENUM = {"float32": "kFloat32", "float16": "kFloat16", "bfloat16": "kBFloat16", "float64": "kFloat64",
               "int8": "kInt8", "uint8": "kUInt8", "int32": "kInt32", "int64": "kInt64", "bool": "kBool"}


def _out_dtypes(decl: OpDecl, o) -> tuple[str, ...]:
    return (o.dtype,) if o.dtype else decl.input(o.dtype_like).dtypes


def _signature_comment(decl: OpDecl) -> list[str]:
    from .prototypes import context_names, parameters

    names = context_names(decl)
    also = f" (also `{names[1]}` in the body)" if len(names) > 1 else ""
    return [f"//   {p.c_type} {p.name}" for p in parameters(decl)][:-1] + [
        f"//   {parameters(decl)[-1].c_type} {names[0]}{also}"]


def _dispatch_cases(decl: OpDecl, o, cuda: bool, call: str) -> list[str]:
    lines = []
    for dt in _out_dtypes(decl, o):
        lines.append(f"    case ::opforge::DType::{_DTYPE_ENUM[dt]}: {call.format(T=_cpp_storage(dt, cuda))}")
    return lines


def _entry_body(plan: Plan, decl: OpDecl, o, device: str, call: str) -> list[str]:
    """The entry point's body after its OPFORGE_*_KERNEL line: dispatch on the first output's dtype to the
    skeleton's loop, then the NotImplemented-style return that keeps the op pending. (Parameters the body
    does not read yet are fine: the generated macro marks them [[maybe_unused]].) The declared names are in
    scope here, so every name the skeleton adds is `opforge_`-prefixed, which no declared name can be."""
    view = o.name
    lines = ["  const ::opforge::Status opforge_status = [&]() -> ::opforge::Status {", f"    switch ({view}.dtype) {{"]
    lines += ["  " + line for line in _dispatch_cases(decl, o, device == "cuda", call)]
    lines += ["      default:",
              '        return ::opforge::Status::error(::opforge::Status::kUnsupportedDType, '
              f'"{plan.id}: dtype not supported by this kernel");',
              "    }", "  }();", "  if (!opforge_status.is_ok()) return opforge_status;",
              f"  // NotImplemented: delete this line once the {'loop' if device == 'cpu' else 'kernel'} above "
              f"computes the op, and drop '{device}' from",
              "  // kernels_pending in the declaration.",
              f'  return ::opforge::Status::error(::opforge::Status::kInternal, "{plan.id}: the {device} kernel is an '
              'ops.new skeleton (kernel pending)");',
              "}"]
    return lines


def render_cpu(plan: Plan, decl: OpDecl) -> str:
    o = decl.outputs[0]
    out_view = o.name
    lines = [
        f"// {plan.id}: CPU kernel. SKELETON written by `python -m ops.new`: the loop is real, the math is not.",
        "// Until you write it, the declaration lists 'cpu' in kernels_pending, so the op runs its reference on CPU",
        "// (and ops.check reports REF); this body returns an error if it is called anyway.",
        "//",
        "// Parameters (generated from the declaration into opforge_kernels/<ns>/<name>.h):",
        *_signature_comment(decl),
        "// Views are contiguous (sizes[d], strides[d] in elements). load()/store() convert Half/BFloat16 via float.",
        f'#include "opforge_kernels/{plan.namespace}/{plan.name}.h"',
        "",
        "namespace {",
        "",
        "// Elements per parallel chunk at least (~10 us of work): small tensors stay on the calling thread.",
        "constexpr int64_t kGrain = 32768;",
        "",
        "template <typename T>",
        "::opforge::Status opforge_run(const ::opforge::TensorView& out, const ::opforge::DeviceContext& ctx) {",
        "  T* y = out.ptr<T>();",
        "  const int64_t n = out.numel();",
        "  ctx.parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {",
        "    for (int64_t i = begin; i < end; ++i) {",
        "      // The output element's coordinates, innermost dim fastest.",
        "      int64_t coord[::opforge::kMaxRank];",
        "      int64_t rest = i;",
        "      for (int32_t d = out.rank - 1; d >= 0; --d) {",
        "        coord[d] = rest % out.sizes[d];",
        "        rest /= out.sizes[d];",
        "      }",
        "      (void)coord;",
        "      // TODO(ops.new): compute the element from the inputs at coord (e.g. ::opforge::load(x.ptr<const T>(), j))",
        "      y[i] = T{};",
        "    }",
        "  });",
        "  return ::opforge::Status::ok();",
        "}",
        "",
        "}  // namespace",
        "",
        f"OPFORGE_CPU_KERNEL({plan.namespace}, {plan.name}) {{",
    ]
    lines += _entry_body(plan, decl, o, "cpu", "return opforge_run<{T}>(" + out_view + f", {context_name(decl)});")
    return "\n".join(lines) + "\n"


def render_cuda(plan: Plan, decl: OpDecl) -> str:
    o = decl.outputs[0]
    lines = [
        f"// {plan.id}: CUDA kernel. SKELETON written by `python -m ops.new`: the launch is real, the math is not.",
        "// Until you write it, the declaration lists 'cuda' in kernels_pending, so the op runs its reference on",
        "// CUDA (and ops.check reports REF); this entry point returns an error if it is called anyway.",
        "//",
        "// Parameters (generated from the declaration into opforge_kernels/<ns>/<name>.h):",
        *_signature_comment(decl),
        f'#include "opforge_kernels/{plan.namespace}/{plan.name}.h"',
        "",
        '#include "opforge/kernel_cuda.cuh"',
        "",
        "namespace {",
        "",
        "constexpr int kThreads = 256;",
        "constexpr int64_t kMaxBlocks = 4096;  // a grid-stride loop needs only enough blocks to fill the GPU",
        "",
        "struct Shape {",
        "  int32_t rank;",
        "  int64_t sizes[::opforge::kMaxRank];",
        "};",
        "",
        "template <typename T>",
        "__global__ void kernel(T* y, int64_t n, Shape shape) {",
        "  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;",
        "  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {",
        "    int64_t coord[::opforge::kMaxRank];  // the output element's coordinates, innermost dim fastest",
        "    int64_t rest = i;",
        "    for (int32_t d = shape.rank - 1; d >= 0; --d) {",
        "      coord[d] = rest % shape.sizes[d];",
        "      rest /= shape.sizes[d];",
        "    }",
        "    (void)coord;",
        "    // TODO(ops.new): compute the element (::opforge::cuda::to_float / from_float<T> convert half types)",
        "    y[i] = T{};",
        "  }",
        "}",
        "",
        "template <typename T>",
        "::opforge::Status opforge_launch(const ::opforge::TensorView& out, const ::opforge::DeviceContext& ctx) {",
        "  const int64_t n = out.numel();",
        "  if (n == 0) return ::opforge::Status::ok();",
        "  Shape shape{out.rank, {}};",
        "  for (int32_t d = 0; d < out.rank; ++d) shape.sizes[d] = out.sizes[d];",
        "  const int64_t wanted = (n + kThreads - 1) / kThreads;",
        "  const unsigned blocks = static_cast<unsigned>(wanted < kMaxBlocks ? wanted : kMaxBlocks);",
        "  kernel<T><<<blocks, kThreads, 0, ::opforge::cuda::stream(ctx)>>>(out.ptr<T>(), n, shape);",
        f'  return ::opforge::cuda::launch_status("{plan.id}: CUDA launch failed");',
        "}",
        "",
        "}  // namespace",
        "",
        f"OPFORGE_CUDA_KERNEL({plan.namespace}, {plan.name}) {{",
    ]
    lines += _entry_body(plan, decl, o, "cuda", "return opforge_launch<{T}>(" + o.name + f", {context_name(decl)});")
    return "\n".join(lines) + "\n"


# ---- putting it together ---------------------------------------------------------------------


def destination(args) -> tuple[Path, str | None]:
    """(directory of the declaration module, op package name for the build/check commands or None=opforge)."""
    if args.dir and args.package:
        raise SpecError("--dir", "either --dir or --package, not both", f"--dir {args.dir} --package {args.package}")
    if args.dir:
        d = Path(args.dir)
        if not d.is_dir():
            raise OpforgeError(f"--dir {args.dir}: no such directory. Fix: create it (an op package: a directory "
                               "whose __init__.py calls ops.op_package(__name__))")
        return d.resolve(), None
    if args.package:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(args.package)
        except ImportError as e:
            raise OpforgeError(f"--package {args.package}: cannot import it ({e}). Fix: run from the directory that "
                               "holds it, or create it (README, 'Ops in your own package')") from e
        locations = list(getattr(module, "__path__", []))
        if not locations:
            raise OpforgeError(f"--package {args.package} is a module, not a package directory")
        return Path(locations[0]).resolve(), args.package
    here = Path.cwd()
    if (here / "ops" / "library" / "__init__.py").is_file() and (here / "ops" / "registry.py").is_file():
        return (here / "ops" / "library").resolve(), None
    raise OpforgeError("where should the op go? Outside the opforge repository, pass --package PKG (your op package, "
                       "see README 'Ops in your own package') or --dir DIR (the directory of its declaration modules)")


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
        plan.inputs = _override(plan.inputs, args.input_specs_for(plan), "input", plan.target)
        plan.attrs = _override(plan.attrs, args.attr_specs, "attr", plan.target)
    else:
        first = None
        for spec in args.input:
            plan.inputs.append(parse_input(spec, first))
            first = first or plan.inputs[0].name
        plan.attrs = list(args.attr_specs)
        if not args.output:
            raise SpecError("--output", "at least one --output when the op is given by flags (its shape rule is "
                            "yours to declare)", None)
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
    return OpDecl.build(plan.id, reference, inputs=plan.inputs, outputs=plan.outputs, attrs=plan.attrs,
                        devices=plan.devices, kernels=None, samples=lambda device, dtype: [])


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
            raise OpforgeError(f"--import {name}: cannot import it ({e}). Fix: run from the directory that holds "
                               "it, or put it on PYTHONPATH") from None
    return list(names)


def scaffold(args) -> tuple[Plan, dict[Path, str]]:
    imported = import_modules(getattr(args, "imports", []))
    plan, fn = make_plan(args)
    plan.imports = imported if plan.source == "like" else []
    if plan.source != "flags":
        for a in plan.attrs:
            if not a.has_default:
                plan.notes.append(f"attribute '{a.name}' has no default: the runs and samples use {_sample_value(a)!r} "
                                  f"(choose with --attr '{a.name}:{a.type}=VALUE')")
        guessed = not args.shapes
        shape_sets = [parse_shapes(s) for s in args.shapes] if args.shapes else _guessed_shapes(plan)
        runs = collect_runs(plan, fn, shape_sets, guessed)
        if args.output:
            verify_outputs(plan, runs)
        else:
            plan._checks = _perturbed(plan, fn, runs)
            plan.outputs = derive_outputs(plan, runs, plan._checks)
        plan.onnx_fallback_problem = _onnx_problem(plan, fn, runs[0])
        decl = validate(plan)
        checks = getattr(plan, "_checks", [])
        # one sample with other attribute values (from the perturbed runs), so the samples cover them too
        varied = [r for r in checks if r.attrs != runs[0].attrs and r.shapes == runs[0].shapes][:1]
        cases = cases_from_runs(plan, runs + varied)
        empty = _empty_case(plan, fn, cases[0])
        if empty is not None:
            cases.append(empty)
    else:
        decl = validate(plan)
        cases = cases_from_flags(plan, decl)
        shapes, attrs = cases[1]
        empty = {k: ([0, *v[1:]] if v and v[0] == shapes[decl.inputs[0].name][0] else v) if v is not None else None
                 for k, v in shapes.items()}
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
    import ops
    from .discovery import load_installed

    try:
        load_installed()
    except OpforgeError:
        pass
    if package:
        try:
            importlib.import_module(package)
        except Exception:
            pass
    for op in ops.all_ops():
        if op.id == plan.id:
            return op.decl.source
    return None


def write(files: dict[Path, str]) -> None:
    existing = [p for p in files if p.exists()]
    if existing:
        raise OpforgeError("refusing to overwrite " + ", ".join(str(p) for p in existing)
                           + ". Fix: pick another op name, or move the existing file away first")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x") as f:  # 'x': never overwrite, even if the file appeared meanwhile
            f.write(text)


class _Args(argparse.Namespace):
    attr_specs: list

    def input_specs_for(self, plan: Plan) -> list[Input]:
        """--input flags in --like/--from mode: the first input defaults to floating dtypes, later ones to like(it)."""
        first = plan.inputs[0].name if plan.inputs else None
        return [parse_input(s, None if s.split(":")[0].strip() == first else first) for s in self.input]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ops.new", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Scaffold a new op: its declaration (reference + samples) and CPU/CUDA kernel skeletons, which "
                    "build and pass ops.check at once (the skeleton kernels are marked kernels_pending: the reference "
                    "runs on those devices, and ops.check says so, until you write the bodies).",
        epilog=HELP)
    p.add_argument("id", help="the new op's id, NS::NAME")
    src = p.add_argument_group("where the signature comes from (default: the flags below)")
    src.add_argument("--like", metavar="NS::OP", help="a torch operator, e.g. aten::grid_sampler_2d")
    src.add_argument("--from", dest="from_", metavar="MODULE:FUNCTION", help="a Python function")
    src.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                     help="import MODULE first (repeatable): the module that registers a --like operator defined in "
                          "your code (torch.library); the declaration imports it too")
    p.add_argument("--input", action="append", default=[], metavar="SPEC", help="NAME[:FIELD]... (repeatable)")
    p.add_argument("--output", action="append", default=[], metavar="SPEC", help="NAME:SHAPE[:DTYPE] (repeatable)")
    p.add_argument("--attr", action="append", default=[], metavar="SPEC", help="NAME:TYPE[=DEFAULT] (repeatable)")
    p.add_argument("--shapes", action="append", default=[], metavar="SPEC",
                   help="'NAME=2x3x8 NAME=...': input shapes to run --like/--from on (repeatable)")
    p.add_argument("--devices", metavar="LIST", help="cpu,cuda (default) or cpu")
    where = p.add_argument_group("where the files go (default: ops/library/ and csrc/ inside the opforge repo)")
    where.add_argument("--package", metavar="PKG", help="your op package: PKG/<name>.py and PKG/csrc/<name>/")
    where.add_argument("--dir", metavar="DIR", help="DIR/<name>.py and DIR/csrc/<name>/")
    p.add_argument("--dry-run", action="store_true", help="print the files instead of writing them")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv, namespace=_Args())
    try:
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
    except (OpforgeError, DeclarationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
    print("The kernels are skeletons (kernels_pending=" + repr(tuple(plan.devices)) + "): the op runs its reference "
          "on those devices until you write the bodies and remove the flag." + (
              " The reference is a PLACEHOLDER returning zeros: write the op's math there first." if plan.source ==
              "flags" else ""))
    print("Next:")
    print(f"  python -m ops.build{pkg}")
    print(f"  python -m ops.check {plan.id}{pkg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
