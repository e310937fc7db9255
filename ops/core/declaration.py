"""The declaration model: one `OpDecl` per op, validated once, read by every backend.

Nothing here knows about torch, ONNX or TensorRT; backends translate an `OpDecl`. Validation happens
in `ops.core.validate.build_decl` (called by `register_op`), so a bad declaration fails when its module is imported,
with a `DeclarationError` naming the op, the field, what was expected, what was given and the fix.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import shape_rule as sr
from .batch import DEFAULT_NAME, ResolvedBatch
from .dtypes import FLOATING
from .triton_launch import ResolvedInductor, ResolvedTriton

DEVICES = ("cpu", "cuda")
KERNEL_SUFFIXES = {".h", ".hpp", ".cuh", ".c", ".cc", ".cpp", ".cu"}
MAX_RANK = 8  # opforge::kMaxRank in csrc/opforge/kernel_api.h
OP_ID_PATTERN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)::([A-Za-z_][A-Za-z0-9_]*)$")
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Namespaces that belong to torch, ONNX or TensorRT themselves; an op there would shadow theirs.
RESERVED_NAMESPACES = {"aten", "prim", "prims", "torch", "onnx", "ai", "trt", "tensorrt", "_opforge_internal"}
_REQUIRED = object()
# Field names (inputs, outputs, attributes) are the user's: nothing beyond what Python, C++, ONNX/TensorRT forbid
# is refused, and generated code prefixes its own identifiers with `opforge_` (any case, leading underscores
# allowed: `_opforge_x`, `OPFORGE_X` too), which is why that prefix is the one opforge keeps for itself. Names torch
# treats specially in a schema (`self`, `kernel`, `cls`) are spelled differently there (ops/torch/schema.py);
# the kernel's DeviceContext is `opforge_ctx`, aliased `ctx` unless a field is called that (ops/native/prototypes.py).
RESERVED_PREFIX = re.compile(r"^_*opforge_", re.IGNORECASE)
# Object-like macros of the C/C++ standard headers a kernel sees (kernel_api.h includes <cstdio>, <cstdlib>, ...):
# a parameter of that name would be macro-expanded in the generated prototypes.
STD_MACROS = frozenset(
    """
    errno stdin stdout stderr math_errhandling NULL EOF BUFSIZ EXIT_SUCCESS EXIT_FAILURE RAND_MAX MB_CUR_MAX
    NAN INFINITY HUGE_VAL HUGE_VALF HUGE_VALL CHAR_BIT INT_MAX INT_MIN UINT_MAX LONG_MAX LONG_MIN SIZE_MAX
    FLT_MAX FLT_MIN FLT_EPSILON DBL_MAX DBL_MIN DBL_EPSILON INT64_MAX INT64_MIN INT32_MAX INT32_MIN""".split()
)
# TensorRT's ONNX parser reads these node attributes itself (plugin version / namespace) and never passes them on.
TRT_PARSER_ATTRS = frozenset({"plugin_version", "plugin_namespace"})
# Names become C++ identifiers (kernel parameters, namespaces): a C++ keyword would not compile.
CPP_KEYWORDS = frozenset(
    """
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class
    compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype
    default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline
    int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public
    register reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch
    template this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
    wchar_t while xor xor_eq""".split()
)


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED: Any = _Required()

# Declared attribute type -> python types accepted for its values. `bool` is not an `int` here.
ATTR_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "str": (str,),
    "list[int]": (list, tuple),
    "list[float]": (list, tuple),
}
_TYPE_SPELLINGS = {int: "int", float: "float", bool: "bool", str: "str"}


def attr_type_name(t: Any) -> str | None:
    if isinstance(t, str):
        return t if t in ATTR_TYPES else None
    if t in _TYPE_SPELLINGS:
        return _TYPE_SPELLINGS[t]
    text = str(t).replace("typing.", "").replace("List", "list")
    return text if text in ("list[int]", "list[float]") else None


# ---- user-facing field types -----------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """A tensor input. `dtypes` lists the allowed dtypes, or is 'like(other)' to require the dtype of
    an earlier input. `rank`/`min_rank` constrain the rank; `shape` is an exact expected shape written in
    the shape language (e.g. '[x.shape[-1]]'). `batch_dim` declares that this dim of the input is the op's
    batch where no shape rule says so (ops.core.batch)."""

    name: str
    dtypes: Sequence[str] | str = FLOATING
    optional: bool = False
    rank: int | None = None
    min_rank: int | None = None
    shape: str | Sequence[str | int] | None = None
    batch_dim: int | None = None


@dataclass(frozen=True)
class Output:
    """A tensor output: its shape rule and dtype rule ('like(input)' or a dtype name).

    A *size output* (made with `Output.size`) is a 0-d int64 tensor holding a data-dependent size; other
    outputs may use its name in their shape rules. `upper` bounds it (TensorRT allocates for it) and
    `opt` is the expected value (TensorRT's optimiser uses it)."""

    name: str
    shape: str | Sequence[str | int] = "like(x)"
    dtype: str = "like(x)"
    upper: str | int | None = None
    opt: str | int | None = None

    @classmethod
    def size(cls, name: str, upper: str | int, opt: str | int | None = None) -> Output:
        return cls(name=name, shape=[], dtype="int64", upper=upper, opt=opt if opt is not None else upper)

    @property
    def is_size(self) -> bool:
        return self.upper is not None


@dataclass(frozen=True)
class Attr:
    """A typed attribute: int, float, bool, str, list[int] or list[float], with an optional default, for
    str the allowed `choices`, and for lists a fixed `length` (required to index it in a shape rule, as
    in `stride[0]`; every backend then checks the length of the value it is given)."""

    name: str
    type: Any
    default: Any = REQUIRED
    choices: Sequence[str] | None = None
    length: int | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not REQUIRED


@dataclass(frozen=True)
class Sample:
    """One set of arguments for an op: positional tensor inputs and attribute values."""

    inputs: tuple
    attrs: dict

    def __init__(self, /, *inputs, **attrs):  # positional-only self: an attribute may be called `self`
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "attrs", dict(attrs))


# Per-dtype comparison tolerances (rtol, atol) against the reference run in float32.
DEFAULT_TOLERANCES = {
    "float32": (1e-5, 1e-6),
    "float16": (1e-3, 1e-3),
    "bfloat16": (8e-3, 8e-3),
    "float64": (1e-10, 1e-12),
}


# ---- the validated declaration ---------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedInput:
    name: str
    dtypes: tuple[str, ...]  # resolved allowed dtypes
    dtype_like: str | None  # must equal this input's dtype
    optional: bool
    rank: int | None
    min_rank: int  # includes the rank implied by shape rules that index this input
    shape: sr.ShapeRule | None
    batch_dim: int | None = None  # declared tie to the op's batch (Input.batch_dim)


@dataclass(frozen=True)
class ResolvedOutput:
    name: str
    shape: sr.ShapeRule
    dtype: str | None  # fixed dtype name, or None when like another input
    dtype_like: str | None
    upper: sr.Expr | None = None
    opt: sr.Expr | None = None

    @property
    def is_size(self) -> bool:
        return self.upper is not None


@dataclass(frozen=True)
class ResolvedAttr:
    name: str
    type: str
    default: Any
    has_default: bool
    choices: tuple[str, ...] | None
    length: int | None = None  # lists only: the exact number of elements, when declared

    @property
    def in_shape_rules(self) -> bool:
        """Whether shape rules may name it: ints by name, fixed-length list[int] by element."""
        return self.type == "int" or (self.type == "list[int]" and self.length is not None)


@dataclass(frozen=True)
class OpDecl:
    id: str
    namespace: str
    name: str
    inputs: tuple[ResolvedInput, ...]
    outputs: tuple[ResolvedOutput, ...]
    attrs: tuple[ResolvedAttr, ...]
    devices: tuple[str, ...]
    kernel_dir: Path | None  # None: the reference is the implementation (no compiled kernels)
    workspace: sr.Expr
    reference: Callable
    backward: Callable | None
    samples: Callable | None
    tolerances: dict[str, tuple[float, float]]
    version: int
    doc: str
    source: str  # "file:line" of the declaration, for messages
    package: str | None = None  # the op package (ops.core.packages) of the declaring module
    onnx: bool = True  # False: the op has no ONNX export
    onnx_fallback: bool = True  # False: the reference cannot become an ONNX function (export_onnx(fallback=True))
    # What the backward reads: names of inputs and outputs, saved for it by the forward (in this order).
    # Everything by default; () without a backward.
    saves: tuple[str, ...] = ()
    # Devices whose compiled kernel is a skeleton not written yet (`python -m ops.new` starts an op so): the
    # kernel files exist and compile, but torch runs the reference there, the ONNX Runtime library / TensorRT
    # plugin leave the op out, and ops.check reports those stages as having run the reference.
    kernels_pending: tuple[str, ...] = ()
    # The dim that varies between calls and the input dims tied to it (ops.core.batch); no dims: the op has none.
    batch: ResolvedBatch = ResolvedBatch(DEFAULT_NAME, (), "none")
    # The launch of a Triton kernel (<kernel dir>/<name>_triton.py) for CUDA (ops.core.triton_launch); None: the
    # CUDA kernel, if any, is C++ only. With both, the build's choice decides (ops.native.kernel_sources).
    # ResolvedInductor: the Triton kernel is what Inductor writes for the reference, known once a build has
    # lowered it (ops.native.inductor_capture.concrete gives the op with its ResolvedTriton).
    triton: ResolvedTriton | ResolvedInductor | None = None

    @property
    def from_inductor(self) -> bool:
        return isinstance(self.triton, ResolvedInductor)

    def runs_kernel(self, device: str) -> bool:
        """Whether a call on `device` runs a compiled kernel (not the reference)."""
        return self.kernel_dir is not None and device in self.devices and device not in self.kernels_pending

    # -- convenience --
    @property
    def dtypes(self) -> tuple[str, ...]:
        """Dtypes the op supports: those of its first input."""
        return self.inputs[0].dtypes

    def input(self, name: str) -> ResolvedInput:
        return next(i for i in self.inputs if i.name == name)

    def attr(self, name: str) -> ResolvedAttr:
        return next(a for a in self.attrs if a.name == name)

    def kernel_files(self) -> dict[str, Path]:
        """device -> kernel source file, plus 'header' where the op has a hand-written <name>.h (optional:
        the prototypes are generated, ops/native/prototypes.py; a header may still hold helpers or the prototypes)."""
        if self.kernel_dir is None:
            return {}
        files = {}
        if (self.kernel_dir / f"{self.name}.h").is_file():
            files["header"] = self.kernel_dir / f"{self.name}.h"
        if "cpu" in self.devices:
            files["cpu"] = self.kernel_dir / f"{self.name}_cpu.cpp"
        if "cuda" in self.devices and (self.triton is None or (self.kernel_dir / f"{self.name}_cuda.cu").is_file()):
            files["cuda"] = self.kernel_dir / f"{self.name}_cuda.cu"
        if isinstance(self.triton, ResolvedTriton):
            files["triton"] = self.triton.source or self.kernel_dir / f"{self.name}_triton.py"
        return files

    def kernel_sources(self) -> list[Path]:
        """Every C/C++/CUDA file under the kernel directory (what a build compiles or includes; hidden
        directories skipped): what the build fingerprint and the signature check read."""
        d = self.kernel_dir
        if d is None or not d.is_dir():
            return []
        return sorted(
            p
            for p in d.rglob("*")
            if p.suffix in KERNEL_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(d).parts)
        )

    def shape_names(self, attrs: dict) -> dict[str, Any]:
        """The attribute values a shape rule can read (ints, fixed-length list[int]s), from `attrs`
        (name -> value; declared defaults fill what is absent)."""
        return {a.name: attrs.get(a.name, a.default) for a in self.attrs if a.in_shape_rules}

    def tolerance(self, dtype: str) -> tuple[float, float]:
        return self.tolerances.get(dtype, DEFAULT_TOLERANCES.get(dtype, (1e-5, 1e-6)))


# Argument names torch gives a meaning of its own (ops/torch/schema.py's docstring says where and why): the torch
# schema spells them with a trailing `_`. The core's Op maps its keywords with this; the torch backend writes it.
TORCH_SPECIAL_NAMES = frozenset({"self", "kernel", "cls"})


def variant_label(decl: OpDecl, variant: dict) -> str:
    """'x=float16' (the free inputs' dtypes): how tuned tables and Triton kernels name a dtype variant."""
    return ",".join(f"{i.name}={variant[i.name]}" for i in decl.inputs if i.dtype_like is None)


def dtype_variants(decl: OpDecl) -> list[dict[str, str]]:
    """Every combination of input dtypes the op accepts: input name -> dtype (inputs declared 'like(other)'
    follow the other), plus each output's dtype. What a native host compiles one kernel variant for."""
    free = [i for i in decl.inputs if i.dtype_like is None]
    out = []
    for combo in itertools.product(*(i.dtypes for i in free)):
        chosen = dict(zip((i.name for i in free), combo))
        for i in decl.inputs:
            if i.dtype_like:
                chosen[i.name] = chosen[i.dtype_like]
        for o in decl.outputs:
            chosen[o.name] = o.dtype or chosen[o.dtype_like]
        out.append(chosen)
    return out


def schema_names(decl: OpDecl) -> dict[str, str]:
    """Declared input/attribute name -> its name in the torch schema (the same but for TORCH_SPECIAL_NAMES)."""
    declared = [i.name for i in decl.inputs] + [a.name for a in decl.attrs]
    taken = set(declared) | {o.name for o in decl.outputs}
    out = {}
    for name in declared:
        spelled = name
        while spelled in TORCH_SPECIAL_NAMES or (spelled != name and spelled in taken):
            spelled += "_"
        taken.add(spelled)
        out[name] = spelled
    return out
