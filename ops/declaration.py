"""The declaration model: one `OpDecl` per op, validated once, read by every backend.

Nothing here knows about torch, ONNX or TensorRT; backends translate an `OpDecl`. Validation happens
in `OpDecl.build` (called by `register_op`), so a bad declaration fails when its module is imported,
with a `DeclarationError` naming the op, the field, what was expected, what was given and the fix.
"""

from __future__ import annotations

import difflib
import inspect
import keyword
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import shape_rule as sr
from .batch import DEFAULT_NAME, Batch, ResolvedBatch, inferred_dim, parse_dim, tied_dims
from .dtypes import DTYPES, FLOATING
from .errors import DeclarationError, ShapeRuleError

DEVICES = ("cpu", "cuda")
MAX_RANK = 8  # opforge::kMaxRank in csrc/opforge/kernel_api.h
_ID = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)::([A-Za-z_][A-Za-z0-9_]*)$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Namespaces that belong to torch, ONNX or TensorRT themselves; an op there would shadow theirs.
RESERVED_NAMESPACES = {"aten", "prim", "prims", "torch", "onnx", "ai", "trt", "tensorrt", "_opforge_internal"}
_REQUIRED = object()
# Field names (inputs, outputs, attributes) are the user's: nothing beyond what Python, C++, ONNX/TensorRT forbid
# is refused, and generated code prefixes its own identifiers with `opforge_` (any case, leading underscores
# allowed: `_opforge_x`, `OPFORGE_X` too), which is why that prefix is the one opforge keeps for itself. Names torch
# treats specially in a schema (`self`, `kernel`, `cls`) are spelled differently there (ops/torch/schema.py);
# the kernel's DeviceContext is `opforge_ctx`, aliased `ctx` unless a field is called that (ops/prototypes.py).
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
    batch where no shape rule says so (ops.batch)."""

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
    package: str | None = None  # the op package (ops.packages) of the declaring module
    onnx: bool = True  # False: the op has no ONNX export
    onnx_fallback: bool = True  # False: the reference cannot become an ONNX function (export_onnx(fallback=True))
    # What the backward reads: names of inputs and outputs, saved for it by the forward (in this order).
    # Everything by default; () without a backward.
    saves: tuple[str, ...] = ()
    # Devices whose compiled kernel is a skeleton not written yet (`python -m ops.new` starts an op so): the
    # kernel files exist and compile, but torch runs the reference there, the ONNX Runtime library / TensorRT
    # plugin leave the op out, and ops.check reports those stages as having run the reference.
    kernels_pending: tuple[str, ...] = ()
    # The dim that varies between calls and the input dims tied to it (ops.batch); no dims: the op has none.
    batch: ResolvedBatch = ResolvedBatch(DEFAULT_NAME, (), "none")

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
        the prototypes are generated, ops/prototypes.py; a header may still hold helpers or the prototypes)."""
        if self.kernel_dir is None:
            return {}
        files = {}
        if (self.kernel_dir / f"{self.name}.h").is_file():
            files["header"] = self.kernel_dir / f"{self.name}.h"
        if "cpu" in self.devices:
            files["cpu"] = self.kernel_dir / f"{self.name}_cpu.cpp"
        if "cuda" in self.devices:
            files["cuda"] = self.kernel_dir / f"{self.name}_cuda.cu"
        return files

    def shape_names(self, attrs: dict) -> dict[str, Any]:
        """The attribute values a shape rule can read (ints, fixed-length list[int]s), from `attrs`
        (name -> value; declared defaults fill what is absent)."""
        return {a.name: attrs.get(a.name, a.default) for a in self.attrs if a.in_shape_rules}

    def tolerance(self, dtype: str) -> tuple[float, float]:
        return self.tolerances.get(dtype, DEFAULT_TOLERANCES.get(dtype, (1e-5, 1e-6)))

    # -- construction + validation --
    @classmethod
    def build(
        cls,
        id: Any,
        reference: Any,
        *,
        inputs: Any,
        outputs: Any,
        attrs: Any = (),
        devices: Any = DEVICES,
        kernels: Any = "auto",
        workspace: Any = 0,
        backward: Any = None,
        saves: Any = None,
        samples: Any = None,
        tolerances: Any = None,
        version: Any = 1,
        onnx: Any = True,
        onnx_fallback: Any = True,
        kernels_pending: Any = (),
        batch: Any = "auto",
        source: str = "?",
        package: str | None = None,
        origin: Path | None = None,
        built: Callable[[], set] = set,
    ) -> OpDecl:
        """`origin`: the directory of the declaring module (kernel directories are found relative to it);
        `built`: the op ids in the package's compiled extension (kernel sources may then be absent, as in an
        installed package that does not ship them)."""
        op = id if isinstance(id, str) else repr(id)
        v = Validator(op)
        namespace, name = v.op_id(id)
        res_attrs = v.attrs(attrs)
        res_outputs_raw = v.list_of(outputs, Output, "outputs", "Output(name, shape=..., dtype=...)")
        size_names = {o.name for o in res_outputs_raw if o.is_size}
        res_inputs = v.inputs(inputs, res_attrs, size_names)
        res_outputs = v.outputs(res_outputs_raw, res_inputs, res_attrs)
        res_inputs = v.implied_ranks(res_inputs, res_outputs)
        v.unique_names(res_inputs, res_outputs, res_attrs)
        res_batch = v.batch(batch, res_inputs, res_outputs)
        devs = v.devices(devices)
        kernel_dir = v.kernels(kernels, name, devs, origin, lambda: f"{namespace}::{name}" in built())
        ws = v.expression("workspace", workspace, res_inputs, res_attrs, set(), "bytes, e.g. 'x.shape[0] * 4'")
        v.reference(reference, res_inputs, res_attrs)
        v.callable_or_none("backward", backward, "a function (ctx, *grad_outputs) -> grads per input")
        saved = v.saves(saves, backward, res_inputs, res_outputs)
        if kernel_dir is not None and samples is None:
            raise DeclarationError(
                op,
                "samples",
                "a function (device, dtype) -> list of opforge.Sample",
                None,
                "add samples=... so ops.check and the generated tests have inputs to run the kernels on",
            )
        v.callable_or_none("samples", samples, "a function (device, dtype) -> list of opforge.Sample")
        tol = v.tolerances(tolerances)
        if type(version) is not int or version < 1:
            raise DeclarationError(op, "version", "an int >= 1", version, "use version=1 for a new op")
        if not isinstance(onnx, bool):
            raise DeclarationError(op, "onnx", "a bool", onnx, "pass onnx=False for an op without ONNX export")
        if not isinstance(onnx_fallback, bool):
            raise DeclarationError(
                op,
                "onnx_fallback",
                "a bool",
                onnx_fallback,
                "pass onnx_fallback=False when the reference cannot be exported as standard ONNX ops",
            )
        pending = v.kernels_pending(kernels_pending, devs, kernel_dir)
        return cls(
            id=f"{namespace}::{name}",
            namespace=namespace,
            name=name,
            inputs=res_inputs,
            outputs=res_outputs,
            attrs=res_attrs,
            devices=devs,
            kernel_dir=kernel_dir,
            workspace=ws,
            reference=reference,
            backward=backward,
            samples=samples,
            tolerances=tol,
            version=version,
            doc=inspect.getdoc(reference) or "",
            source=source,
            package=package,
            onnx=onnx,
            onnx_fallback=onnx_fallback,
            saves=saved,
            kernels_pending=pending,
            batch=res_batch,
        )


class Validator:
    """Each method checks one field and returns its resolved form, or raises DeclarationError."""

    def __init__(self, op: str):
        self.op = op

    def fail(self, field: str, expected: str, got: Any, fix: str):
        raise DeclarationError(self.op, field, expected, got, fix)

    def op_id(self, id: Any) -> tuple[str, str]:
        m = _ID.match(id) if isinstance(id, str) else None
        if not m:
            self.fail("id", "'namespace::name' made of identifiers", id, "name the op like 'myproject::my_op'")
        ns, name = m.groups()
        if ns in RESERVED_NAMESPACES:
            self.fail(
                "id", f"a namespace other than {sorted(RESERVED_NAMESPACES)}", ns, "use your project's own namespace"
            )
        for part in (ns, name):
            if part in CPP_KEYWORDS:
                self.fail(
                    "id",
                    "a namespace and name that are not C++ keywords (they become C++ namespaces)",
                    id,
                    f"rename {part!r}, e.g. {part}_",
                )
        return ns, name

    def identifier(self, field: str, name: Any, attribute: bool = False) -> str:
        """A field name: any Python identifier that C++ (the kernels' parameter names) and, for an attribute,
        TensorRT's ONNX parser can take as it is. Every refusal names the rule and a replacement."""
        if not isinstance(name, str) or not _NAME.match(name):
            self.fail(
                field,
                "a Python identifier (letters, digits, '_'; not starting with a digit)",
                name,
                "rename it, e.g. 'x' or 'kernel_size'",
            )
        if keyword.iskeyword(name):
            self.fail(
                field,
                "a name that is not a Python keyword (the reference and torch's schema take it as a parameter)",
                name,
                f"rename it, e.g. {name.strip('_') or 'x'}_",
            )
        if name in CPP_KEYWORDS:
            self.fail(
                field,
                "a name that is not a C++ keyword (it names a kernel parameter)",
                name,
                f"rename it, e.g. {name}_",
            )
        if "__" in name or re.match(r"^_[A-Z]", name):
            self.fail(
                field,
                "a name C++ does not reserve for its implementation (no '__' anywhere, no '_' followed "
                "by a capital letter at the start)",
                name,
                f"rename it, e.g. {_suggest(name)!r}",
            )
        if name in STD_MACROS:
            self.fail(
                field,
                "a name that is not a macro of the C/C++ standard headers (it would expand inside the "
                "kernel's parameter list)",
                name,
                f"rename it, e.g. {name.lower()}_value",
            )
        if RESERVED_PREFIX.match(name):
            self.fail(
                field,
                "a name without the prefix 'opforge_' (generated code names its own identifiers with "
                "it, so they never collide with yours)",
                name,
                f"rename it, e.g. {RESERVED_PREFIX.sub('', name) or 'x'!r}",
            )
        if attribute and name in TRT_PARSER_ATTRS:
            self.fail(
                field,
                f"an attribute name other than {sorted(TRT_PARSER_ATTRS)} (TensorRT's ONNX parser "
                "reads those node attributes itself and never passes them to the plugin)",
                name,
                f"rename it, e.g. {name.split('_')[1]}",
            )
        return name

    def list_of(self, items: Any, kind: type, field: str, example: str) -> list:
        if not isinstance(items, (list, tuple)):
            self.fail(field, f"a list of {kind.__name__}", items, f"write {field}=[{example}]")
        for i, item in enumerate(items):
            if not isinstance(item, kind):
                self.fail(f"{field}[{i}]", f"an opforge.{kind.__name__}", item, f"write {example}")
        return list(items)

    def attrs(self, attrs: Any) -> tuple[ResolvedAttr, ...]:
        out = []
        for i, a in enumerate(self.list_of(attrs, Attr, "attrs", "Attr('alpha', float, 1.0)")):
            where = f"attrs[{i}]"
            name = self.identifier(f"{where}.name", a.name, attribute=True)
            tname = attr_type_name(a.type)
            if tname is None:
                self.fail(
                    f"attrs.{name}.type",
                    "one of int, float, bool, str, list[int], list[float]",
                    a.type,
                    "use a supported attribute type",
                )
            choices = None
            if a.choices is not None:
                if (
                    tname != "str"
                    or not isinstance(a.choices, (list, tuple))
                    or not a.choices
                    or not all(isinstance(c, str) for c in a.choices)
                ):
                    self.fail(
                        f"attrs.{name}.choices",
                        "a non-empty list of strings, on a str attribute",
                        a.choices,
                        "drop choices or make the attribute a str",
                    )
                choices = tuple(a.choices)
            length = a.length
            if length is not None and (not tname.startswith("list[") or type(length) is not int or length < 1):
                self.fail(
                    f"attrs.{name}.length",
                    "an int >= 1, on a list attribute",
                    length,
                    "drop length or make the attribute a list[int]/list[float]",
                )
            default = a.default
            if a.has_default:
                default = self.attr_value(name, tname, default, choices)
                if length is not None and len(default) != length:
                    self.fail(
                        f"attrs.{name}.default",
                        f"a list of length {length}",
                        a.default,
                        f"give {length} elements or change length",
                    )
            out.append(ResolvedAttr(name, tname, default, a.has_default, choices, length))
        # Torch schemas (and Python) need defaulted arguments last.
        seen_default = False
        for a in out:
            if a.has_default:
                seen_default = True
            elif seen_default:
                self.fail(
                    f"attrs.{a.name}.default",
                    "a default, since an earlier attribute has one",
                    REQUIRED,
                    "give it a default or move it before the defaulted attributes",
                )
        return tuple(out)

    def attr_value(self, name: str, tname: str, value: Any, choices) -> Any:
        field = f"attrs.{name}.default"
        ok_types = ATTR_TYPES[tname]
        if not isinstance(value, ok_types) or (tname in ("int", "float") and isinstance(value, bool)):
            self.fail(field, f"a {tname}", value, f"give a {tname} default")
        if tname == "float":
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                self.fail(field, "a finite float", value, "use a finite default")
        if tname == "int" and not -(2**63) <= value < 2**63:
            self.fail(field, "an int that fits int64", value, "use a smaller default")
        if tname.startswith("list["):
            elem = int if tname == "list[int]" else float
            if not all(
                isinstance(e, (int, float) if elem is float else int) and not isinstance(e, bool) for e in value
            ):
                self.fail(field, f"a {tname}", value, f"make every element a {elem.__name__}")
            value = tuple(elem(e) for e in value)
        if tname == "str" and ("\0" in value):
            self.fail(field, "a string without NUL characters", value, "remove the NUL character")
        if choices is not None and value not in choices:
            self.fail(field, f"one of {list(choices)}", value, "make the default one of the choices")
        return value

    def inputs(self, inputs: Any, attrs, size_names) -> tuple[ResolvedInput, ...]:
        items = self.list_of(inputs, Input, "inputs", "Input('x')")
        if not items:
            self.fail("inputs", "at least one Input", [], "declare the op's tensor inputs")
        out: list[ResolvedInput] = []
        seen_optional = False
        for i in items:
            name = self.identifier("inputs.name", i.name)
            field = f"inputs.{name}"
            if any(o.name == name for o in out):
                self.fail(field, "a unique input name", name, "rename one of them")
            if not isinstance(i.optional, bool):
                self.fail(f"{field}.optional", "a bool", i.optional, "use optional=True or False")
            if i.optional:
                seen_optional = True
            elif seen_optional:
                self.fail(
                    f"{field}.optional",
                    "required inputs before optional ones",
                    "required after optional",
                    "move optional inputs last",
                )
            dtypes, like = self.input_dtypes(field, i.dtypes, out)
            rank = self.rank_value(f"{field}.rank", i.rank)
            min_rank = self.rank_value(f"{field}.min_rank", i.min_rank) or 0
            if rank is not None and min_rank > rank:
                self.fail(f"{field}.min_rank", f"at most rank={rank}", min_rank, "make min_rank <= rank")
            if i.shape is not None:  # parsed now for its rank, checked below once every input is known
                try:
                    parsed = sr.parse_shape(i.shape)
                except ShapeRuleError as e:
                    self.fail(f"{field}.shape", f"a shape rule ({sr.ALLOWED}, or like(input))", i.shape, str(e))
                if isinstance(parsed, sr.Dims):
                    if rank is not None and rank != len(parsed.dims):
                        self.fail(
                            f"{field}.rank", f"{len(parsed.dims)} (the length of its shape)", rank, "make them agree"
                        )
                    rank = len(parsed.dims)
            batch_dim = self.batch_dim(f"{field}.batch_dim", i.batch_dim, rank)
            out.append(ResolvedInput(name, dtypes, like, i.optional, rank, min_rank, None, batch_dim))
        # Shape rules may name any required input, later ones included (torchvision's deform_conv2d passes
        # offset before weight, and offset's shape depends on weight's), and the input's own dims
        # ('[boxes.shape[0], 4]': dim 1 is 4, dim 0 anything). Each is an equality the hosts check once all
        # inputs are in hand.
        resolved = []
        for i, r in zip(items, out):
            shape = None
            if i.shape is not None:
                field = f"inputs.{r.name}"
                shape = self.shape(f"{field}.shape", i.shape, out, attrs, set())
                if isinstance(shape, sr.Like) and shape.input == r.name:
                    self.fail(f"{field}.shape", "a shape in terms of other inputs", "like(itself)", "drop it")
            resolved.append(
                ResolvedInput(r.name, r.dtypes, r.dtype_like, r.optional, r.rank, r.min_rank, shape, r.batch_dim)
            )
        return tuple(resolved)

    def input_dtypes(self, field, dtypes, earlier) -> tuple[tuple[str, ...], str | None]:
        if isinstance(dtypes, str):
            like = self.like_name(f"{field}.dtypes", dtypes, earlier, "an earlier input")
            return earlier_input(earlier, like).dtypes, like
        if (
            not isinstance(dtypes, (list, tuple))
            or not dtypes
            or not all(d in DTYPES for d in dtypes)
            or len(set(dtypes)) != len(dtypes)
        ):
            self.fail(
                f"{field}.dtypes",
                f"a non-empty list of distinct names from {sorted(DTYPES)} or 'like(input)'",
                dtypes,
                "e.g. dtypes=('float32', 'float16')",
            )
        return tuple(dtypes), None

    def like_name(self, field, text, earlier, what) -> str:
        m = re.fullmatch(r"\s*like\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", text)
        if not m or not any(e.name == m.group(1) for e in earlier):
            self.fail(
                field, f"'like(<name>)' naming {what} ({[e.name for e in earlier]})", text, "name a declared input"
            )
        return m.group(1)

    def rank_value(self, field, value):
        if value is None:
            return None
        if type(value) is not int or not 0 <= value <= MAX_RANK:
            self.fail(field, f"an int in [0, {MAX_RANK}]", value, "kernels see at most 8 dims (opforge::kMaxRank)")
        return value

    def shape(self, field, spec, inputs, attrs, size_names) -> sr.ShapeRule:
        try:
            rule = sr.parse_shape(spec)
        except ShapeRuleError as e:
            self.fail(field, f"a shape rule ({sr.ALLOWED}, or like(input))", spec, str(e))
        self.check_refs(field, spec, rule, inputs, attrs, size_names)
        return self.absolute_items(rule, attrs)

    def expression(self, field, spec, inputs, attrs, size_names, example) -> sr.Expr:
        try:
            expr = sr.parse_expr(spec)
        except ShapeRuleError as e:
            self.fail(field, f"an integer expression ({example})", spec, str(e))
        self.check_refs(field, spec, expr, inputs, attrs, size_names)
        return self.absolute_items(expr, attrs)

    @staticmethod
    def absolute_items(node, attrs):
        """`padding[-1]` -> `padding[1]` for a length-2 list: every backend then indexes from the front."""
        length = {a.name: a.length for a in attrs}
        return sr.map_items(node, lambda it: sr.Item(it.name, it.index % length[it.name]))

    def check_refs(self, field, spec, node, inputs, attrs, size_names):
        used_inputs, names, dims = sr.references(node)
        known = {i.name: i for i in inputs}
        for name in sorted(used_inputs):
            if name not in known:
                self.fail(
                    field, f"references to declared inputs {sorted(known)}", spec, f"'{name}' is not a declared input"
                )
            if known[name].optional:
                self.fail(
                    field,
                    "references to required inputs only",
                    spec,
                    f"'{name}' is optional and may be absent; compute the shape from required inputs",
                )
        int_attrs = {a.name for a in attrs if a.type == "int"}
        for it in sr.items(node):
            a = next((a for a in attrs if a.name == it.name), None)
            if a is None or a.type != "list[int]":
                kind = f"a {a.type} attribute" if a else "not declared"
                self.fail(
                    field,
                    "elements of list[int] attributes",
                    spec,
                    f"'{it.name}' is {kind}; index only list[int] attributes, e.g. stride[0]",
                )
            if a.length is None:
                self.fail(
                    f"attrs.{a.name}.length",
                    "a declared length (the shape rule indexes it)",
                    None,
                    f"declare Attr('{a.name}', 'list[int]', ..., length=N)",
                )
            if not -a.length <= it.index < a.length:
                self.fail(field, f"an index valid for {a.name} of length {a.length}", spec, "fix the index")
        for name in sorted(names):
            if name not in int_attrs and name not in size_names:
                kind = next((a.type for a in attrs if a.name == name), None)
                detail = f"'{name}' is a {kind} attribute" if kind else f"'{name}' is not declared"
                self.fail(
                    field,
                    f"names of int attributes {sorted(int_attrs)} or size outputs {sorted(size_names)}",
                    spec,
                    f"{detail}; shapes are integer arithmetic over dims and int attributes",
                )
        for d in dims:
            rank = known[d.input].rank
            if rank is not None and not -rank <= d.index < rank:
                self.fail(field, f"an index valid for {d.input} of rank {rank}", spec, "fix the index")

    def outputs(self, outputs: list[Output], inputs, attrs) -> tuple[ResolvedOutput, ...]:
        if not outputs:
            self.fail("outputs", "at least one Output", [], "declare what the op returns")
        if all(o.is_size for o in outputs):
            self.fail("outputs", "at least one tensor output besides size outputs", outputs, "add the data output")
        size_names = {o.name for o in outputs if o.is_size}
        out = []
        for o in outputs:
            name = self.identifier("outputs.name", o.name)
            field = f"outputs.{name}"
            if o.is_size:
                upper = self.expression(f"{field}.upper", o.upper, inputs, attrs, set(), "e.g. 'x.shape[0]'")
                opt = self.expression(f"{field}.opt", o.opt, inputs, attrs, set(), "e.g. 'x.shape[0] // 2'")
                if o.dtype != "int64" or o.shape not in ([], (), "[]"):
                    self.fail(
                        field, "a 0-d int64 tensor", (o.shape, o.dtype), "make it with Output.size(name, upper=...)"
                    )
                out.append(ResolvedOutput(name, sr.Dims(()), "int64", None, upper, opt))
                continue
            if o.opt is not None:
                self.fail(
                    f"{field}.opt", "opt only on size outputs", o.opt, "use Output.size(...) for a data-dependent size"
                )
            shape = self.shape(f"{field}.shape", o.shape, inputs, attrs, size_names)
            if isinstance(shape, sr.Dims) and len(shape.dims) > MAX_RANK:
                self.fail(f"{field}.shape", f"at most {MAX_RANK} dims", o.shape, "reduce the rank")
            if not isinstance(o.dtype, str):
                self.fail(f"{field}.dtype", "'like(input)' or a dtype name", o.dtype, "e.g. dtype='like(x)'")
            if o.dtype in DTYPES:
                out.append(ResolvedOutput(name, shape, o.dtype, None))
            else:
                like = self.like_name(f"{field}.dtype", o.dtype, inputs, "an input, or a dtype name")
                out.append(ResolvedOutput(name, shape, None, like))
        return tuple(out)

    def implied_ranks(self, inputs, outputs) -> tuple[ResolvedInput, ...]:
        """An input indexed as x.shape[3] or x.shape[-4] anywhere must have rank >= 4: check it at run time."""
        need: dict[str, int] = {}
        rules = [o.shape for o in outputs] + [o.upper for o in outputs if o.upper is not None]
        rules += [i.shape for i in inputs if i.shape is not None]
        for rule in rules:
            for d in sr.references(rule)[2]:
                need[d.input] = max(need.get(d.input, 0), d.index + 1 if d.index >= 0 else -d.index)
        out = []
        for i in inputs:
            min_rank = max(i.min_rank, need.get(i.name, 0))
            if i.rank is not None and min_rank > i.rank:
                self.fail(
                    f"inputs.{i.name}.rank",
                    f"at least {min_rank} (a shape rule indexes that far)",
                    i.rank,
                    "fix the rank or the shape rule",
                )
            out.append(
                ResolvedInput(i.name, i.dtypes, i.dtype_like, i.optional, i.rank, min_rank, i.shape, i.batch_dim)
            )
        return tuple(out)

    def unique_names(self, inputs, outputs, attrs):
        seen: dict[str, str] = {}
        for kind, items in (("input", inputs), ("output", outputs), ("attribute", attrs)):
            for item in items:
                if item.name in seen:
                    self.fail(
                        f"{kind}s.{item.name}",
                        "names unique across inputs, outputs and attributes",
                        item.name,
                        f"it is already used by an {seen[item.name]}; rename one",
                    )
                seen[item.name] = kind

    def batch_dim(self, field, value, rank):
        if value is None:
            return None
        if type(value) is not int or not (-rank <= value < rank if rank is not None else -MAX_RANK <= value < MAX_RANK):
            self.fail(
                field,
                f"a dim index of the input (rank {rank if rank is not None else 'any'})",
                value,
                "give the index of the dim that is the op's batch, e.g. batch_dim=0",
            )
        return value % rank if rank is not None else value

    def batch(self, spec, inputs, outputs) -> ResolvedBatch:
        """The op's varying dim (ops.batch): inferred ('auto'), declared (a dim reference or ops.Batch), or
        None (the op has none)."""
        if spec is None:
            return ResolvedBatch(DEFAULT_NAME, (), "declared batch=None: no dim varies between calls")
        declared = spec != "auto"
        if declared:
            batch = spec if isinstance(spec, Batch) else Batch(spec) if isinstance(spec, str) else None
            dim = parse_dim(batch.dim) if batch is not None and isinstance(batch.dim, str) else None
            required = {i.name: i for i in inputs if not i.optional}
            if dim is None or dim.input not in required:
                self.fail(
                    "batch",
                    f"'auto', None, or a dim of a required input such as '{inputs[0].name}.shape[0]' "
                    f"(inputs {sorted(required)}), or ops.Batch(dim, name=...)",
                    spec,
                    "name the input dim that varies between calls (the rois of RoIAlign, the indices of a "
                    "gather), or batch=None when none does",
                )
            rank = required[dim.input].rank
            if rank is not None and not -rank <= dim.index < rank:
                self.fail("batch", f"a dim of {dim.input} (rank {rank})", batch.dim, "fix the dim index")
            if not isinstance(batch.name, str) or not _NAME.match(batch.name):
                self.fail(
                    "batch.name",
                    "an identifier (the symbolic dim of exported graphs)",
                    batch.name,
                    "e.g. Batch('rois.shape[0]', name='num_rois')",
                )
            name, how = batch.name, "declared"
        else:
            dim, how = inferred_dim(inputs, outputs)
            name = DEFAULT_NAME
            rank = self.input_rank(inputs, dim.input)
            if rank == 0:
                return ResolvedBatch(name, (), f"{how}, which is a rank-0 input: no dim varies")
        ties = {i.name: i.batch_dim for i in inputs if i.batch_dim is not None}
        tied, compound = tied_dims(dim, inputs, ties)
        if compound:
            why = (
                f"input(s) {compound} use the batch dim {dim.input}.shape[{dim.index}] inside arithmetic in their "
                "shape rule, so resizing the batch cannot keep the rule"
            )
            if declared:
                self.fail(
                    "batch",
                    "a dim that input shape rules use only as a whole dim",
                    spec,
                    f"{why}; declare another batch dim, or batch=None",
                )
            return ResolvedBatch(name, (), f"{how}; {why}: no dim varies")
        ranks = {i.name: i.rank for i in inputs}
        dims = tuple(dict.fromkeys((n, k % ranks[n] if ranks[n] else k) for n, k in tied))
        return ResolvedBatch(name, dims, how)

    @staticmethod
    def input_rank(inputs, name):
        return next(i.rank for i in inputs if i.name == name)

    def devices(self, devices) -> tuple[str, ...]:
        if (
            isinstance(devices, str)
            or not isinstance(devices, (list, tuple))
            or not devices
            or not all(d in DEVICES for d in devices)
            or len(set(devices)) != len(devices)
        ):
            self.fail(
                "devices", f"a non-empty list drawn from {list(DEVICES)}", devices, "e.g. devices=('cpu', 'cuda')"
            )
        return tuple(d for d in DEVICES if d in devices)

    def kernels(self, kernels, name, devices, origin: Path | None, built: Callable[[], bool]) -> Path | None:
        """The op's kernel directory. 'auto' looks for csrc/<name>/ beside the declaring module, then in each
        enclosing package directory, then at the project root; a relative path is relative to the declaring
        module's directory."""
        if kernels is None:
            return None
        if not isinstance(kernels, (str, Path)):
            self.fail(
                "kernels",
                "a directory (relative to the declaring module), 'auto' or None",
                kernels,
                f"put the kernels in csrc/{name}/ beside the declaring module",
            )
        expected = {"cpu": f"{name}_cpu.cpp", "cuda": f"{name}_cuda.cu"}
        if kernels == "auto":
            candidates = [d / "csrc" / name for d in kernel_search_dirs(origin)]
        else:
            directory = Path(kernels)
            candidates = [directory if directory.is_absolute() or origin is None else origin / directory]
        for directory in candidates:
            if all((directory / expected[w]).is_file() for w in devices):
                return directory.resolve()
        if candidates and built():  # an installed package whose wheel carries the compiled kernels only
            return candidates[0]
        where = candidates[0] if len(candidates) == 1 else None
        if where is not None:
            for what in devices:
                path = where / expected[what]
                if not path.is_file():
                    self.fail(
                        "kernels",
                        f"a {what} kernel file at {path}",
                        "missing",
                        f"create {path} or drop {what!r} from devices (`python -m ops.new` writes a skeleton; "
                        "or pass kernels=None to run the reference as the implementation)",
                    )
        looked = ", ".join(str(c) for c in candidates) or "nowhere (the declaring module has no file)"
        self.fail(
            "kernels",
            f"a directory csrc/{name}/ with {', '.join(expected[w] for w in devices)}",
            f"none found (looked in {looked})",
            f"create csrc/{name}/ beside the declaring module or its package, pass kernels='<dir>', "
            "or kernels=None to run the reference as the implementation",
        )

    def kernels_pending(self, pending, devices, kernel_dir) -> tuple[str, ...]:
        if pending in ((), None):
            return ()
        if (
            isinstance(pending, str)
            or not isinstance(pending, (list, tuple))
            or not all(d in devices for d in pending)
            or len(set(pending)) != len(pending)
        ):
            self.fail(
                "kernels_pending",
                f"a tuple drawn from the declared devices {list(devices)}",
                pending,
                "e.g. kernels_pending=('cpu', 'cuda') while the kernel bodies are skeletons; remove a device "
                "once its kernel is written",
            )
        if kernel_dir is None:
            self.fail(
                "kernels_pending",
                "no kernels_pending with kernels=None (there are no kernel files)",
                pending,
                "drop kernels_pending, or give the op kernel files (python -m ops.new writes skeletons)",
            )
        return tuple(d for d in devices if d in pending)

    def reference(self, fn, inputs, attrs):
        if not callable(fn):
            self.fail("reference", "a function (the decorated plain-PyTorch reference)", fn, "decorate a function")
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            self.fail("reference", "a function with an inspectable signature", fn, "decorate a plain def")
        names = [p.name for p in params]
        expected = [i.name for i in inputs] + [a.name for a in attrs]
        if names != expected:
            self.fail(
                "reference",
                f"parameters {expected} (inputs, then attributes, in declaration order)",
                names,
                "make the reference's signature match the declaration",
            )
        for p, a in zip(params[len(inputs) :], attrs):
            if (
                p.default is not inspect.Parameter.empty
                and a.has_default
                and p.default != a.default
                and not (isinstance(a.default, tuple) and list(a.default) == p.default)
            ):
                self.fail(
                    f"attrs.{a.name}.default",
                    f"the reference's default {p.default!r}",
                    a.default,
                    "make both defaults equal (or drop the reference's default)",
                )

    def saves(self, saves, backward, inputs, outputs) -> tuple[str, ...]:
        """The tensors the forward keeps for the backward: every input and output unless the declaration
        narrows it (a backward that reads only x need not keep the output alive)."""
        names = [i.name for i in inputs] + [o.name for o in outputs]
        if saves is None:
            return tuple(names) if backward is not None else ()
        if backward is None:
            self.fail(
                "saves",
                "no saves without a backward (nothing would read them)",
                saves,
                "declare backward=... or drop saves",
            )
        if isinstance(saves, str) or not isinstance(saves, (list, tuple)):
            self.fail(
                "saves",
                "a tuple of input/output names, e.g. saves=('x', 'weight')",
                saves,
                "write saves=('x',) for one name",
            )
        for name in saves:
            if name not in names:
                close = difflib.get_close_matches(str(name), names, n=1)
                self.fail(
                    "saves",
                    f"names of inputs or outputs {names}",
                    name,
                    f"did you mean {close[0]!r}?" if close else "name a declared input or output",
                )
        if len(set(saves)) != len(saves):
            self.fail("saves", "each name once", saves, "remove the repeated name")
        return tuple(saves)

    def callable_or_none(self, field, value, expected):
        if value is not None and not callable(value):
            self.fail(field, expected, value, f"pass a function or leave {field} out")

    def tolerances(self, tolerances) -> dict[str, tuple[float, float]]:
        if tolerances is None:
            return {}
        if not isinstance(tolerances, dict):
            self.fail("tolerances", "a dict dtype -> (rtol, atol)", tolerances, "e.g. {'float16': (1e-3, 1e-3)}")
        out = {}
        for k, val in tolerances.items():
            if (
                k not in DTYPES
                or not isinstance(val, (tuple, list))
                or len(val) != 2
                or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < 1 for t in val)
            ):
                self.fail(
                    f"tolerances.{k}",
                    "a dtype name -> (rtol, atol), each in [0, 1)",
                    val,
                    "e.g. {'float16': (1e-3, 1e-3)}",
                )
            out[k] = (float(val[0]), float(val[1]))
        return out


def _suggest(name: str) -> str:
    """`name` with C++-reserved spellings removed ('__' collapsed, no leading '_' before a capital)."""
    out = re.sub(r"_{2,}", "_", name).lstrip("_") or "x"
    return out if _NAME.match(out) else "x_" + out


def kernel_search_dirs(origin: Path | None) -> list[Path]:
    """Where 'auto' looks for csrc/: the declaring module's directory, each enclosing package directory, and
    the project root of a source checkout (never site-packages itself)."""
    if origin is None:
        return []
    from . import paths

    origin = Path(origin).resolve()
    dirs = [origin]
    d = origin
    while (d / "__init__.py").is_file() and (d.parent / "__init__.py").is_file():
        d = d.parent
        dirs.append(d)
    root = paths.project_root(origin)
    if root is not None and root not in dirs:
        dirs.append(root)
    return dirs


def earlier_input(earlier, name):
    return next(e for e in earlier if e.name == name)
