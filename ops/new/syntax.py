"""The spec mini-syntax of `python -m ops.new`: --input, --output, --attr and --shapes flags -> Input, Output,
Attr and shape dicts, and the SpecError that names the flag, what was expected and an example."""

from __future__ import annotations

import re
from typing import Any

from ..core.declaration import ATTR_TYPES, Attr, Input, Output
from ..core.dtypes import DTYPES, FLOATING
from ..core.errors import OpforgeError

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


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LIKE = re.compile(r"^like\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$")
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
        elif m := LIKE.match(f):
            dtypes = f"like({m.group(1)})"
        elif m := re.match(r"^(rank|min_rank)\s*=\s*(\d+)$", f):
            kw[m.group(1)] = int(m.group(2))
        elif f.startswith("shape="):
            kw["shape"] = f[len("shape=") :].strip()
        elif f and all(d.strip() in DTYPES for d in f.split(",")):
            dtypes = tuple(d.strip() for d in f.split(","))
        else:
            raise SpecError(
                "--input",
                f"a field that is 'optional', 'floating', like(OTHER), rank=N, min_rank=N, "
                f"shape=[...] or dtypes from {sorted(DTYPES)} (in {spec!r})",
                f,
            )
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
    if not (LIKE.match(shape) or (shape.startswith("[") and shape.endswith("]"))):
        raise SpecError("--output", "a SHAPE that is like(INPUT) or [expr, ...]", shape)
    if len(parts) == 3:
        dtype = parts[2]
        if not (LIKE.match(dtype) or dtype in DTYPES):
            raise SpecError("--output", f"a DTYPE that is like(INPUT) or one of {sorted(DTYPES)}", dtype)
        dtype = f"like({LIKE.match(dtype).group(1)})" if LIKE.match(dtype) else dtype
    else:
        m = LIKE.match(shape)
        if m is None and first is None:
            raise SpecError("--output", "a DTYPE (there is no input to take it from)", spec)
        dtype = f"like({m.group(1) if m else first})"
    if m := LIKE.match(shape):
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
        raise SpecError(
            "--attr",
            f"a TYPE among int, float, bool, str, list[int], list[float], list[int,N], list[float,N] (in {spec!r})",
            tname,
        )
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
