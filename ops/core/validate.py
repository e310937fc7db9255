"""Validating a declaration: `build_decl` checks every field `register_op` was given and resolves it into an
`OpDecl`, so a bad declaration fails when its module is imported, with a `DeclarationError` naming the op, the
field, what was expected, what was given and the fix. The shape rules and the batch are checked by
ops.core.validate_shapes (a mixin of Validator)."""

from __future__ import annotations

import difflib
import inspect
import keyword
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import paths, triton_launch
from . import shape_rule as sr
from .declaration import (
    ATTR_TYPES,
    CPP_KEYWORDS,
    DEVICES,
    NAME_PATTERN,
    OP_ID_PATTERN,
    REQUIRED,
    RESERVED_NAMESPACES,
    RESERVED_PREFIX,
    STD_MACROS,
    TRT_PARSER_ATTRS,
    Attr,
    Input,
    OpDecl,
    Output,
    ResolvedAttr,
    ResolvedInput,
    attr_type_name,
)
from .dtypes import DTYPES
from .errors import DeclarationError, ShapeRuleError
from .validate_shapes import ShapeValidation, earlier_input


def build_decl(
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
    triton: Any = None,
    source: str = "?",
    package: str | None = None,
    origin: Path | None = None,
    built: Callable[[], set] = set,
) -> OpDecl:
    """Validate a declaration (what `register_op` was given) and resolve it into an OpDecl.

    `origin`: the directory of the declaring module (kernel directories are found relative to it);
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
    kernel_dir = v.kernels(kernels, name, devs, origin, lambda: f"{namespace}::{name}" in built(), triton)
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
        fix = "pass onnx_fallback=False when the reference cannot be exported as standard ONNX ops"
        raise DeclarationError(op, "onnx_fallback", "a bool", onnx_fallback, fix)
    pending = v.kernels_pending(kernels_pending, devs, kernel_dir)
    resolved_triton = triton_launch.resolve(op, triton, res_inputs, res_outputs, res_attrs, kernel_dir, devs)
    return OpDecl(
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
        triton=resolved_triton,
    )


class Validator(ShapeValidation):
    """Each method checks one field and returns its resolved form, or raises DeclarationError."""

    def __init__(self, op: str):
        self.op = op

    def fail(self, field: str, expected: str, got: Any, fix: str):
        raise DeclarationError(self.op, field, expected, got, fix)

    def op_id(self, id: Any) -> tuple[str, str]:
        m = OP_ID_PATTERN.match(id) if isinstance(id, str) else None
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
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
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

    def kernels(
        self, kernels, name, devices, origin: Path | None, built: Callable[[], bool], triton=None
    ) -> Path | None:
        """The op's kernel directory. 'auto' looks for csrc/<name>/ beside the declaring module, then in each
        enclosing package directory, then at the project root; a relative path is relative to the declaring
        module's directory. A Triton launch lets <name>_triton.py be the CUDA kernel; with Inductor() none is."""
        if kernels is None:
            return None
        if not isinstance(kernels, (str, Path)):
            self.fail(
                "kernels",
                "a directory (relative to the declaring module), 'auto' or None",
                kernels,
                f"put the kernels in csrc/{name}/ beside the declaring module",
            )
        from_inductor = isinstance(triton, triton_launch.Inductor)
        hand_triton = [f"{name}_triton.py"] * (triton is not None and not from_inductor)
        alternatives = {"cpu": [f"{name}_cpu.cpp"], "cuda": [f"{name}_cuda.cu"] + hand_triton}
        expected = {what: " or ".join(files) for what, files in alternatives.items()}
        if kernels == "auto":
            candidates = [d / "csrc" / name for d in paths.kernel_search_dirs(origin)]
        else:
            directory = Path(kernels)
            candidates = [directory if directory.is_absolute() or origin is None else origin / directory]

        def has(directory: Path, what: str) -> bool:
            inductors = what == "cuda" and from_inductor and directory.is_dir()
            return inductors or any((directory / f).is_file() for f in alternatives[what])

        for directory in candidates:
            if all(has(directory, w) for w in devices):
                return directory.resolve()
        if candidates and built():  # an installed package whose wheel carries the compiled kernels only
            return candidates[0]
        where = candidates[0] if len(candidates) == 1 else None
        if where is not None:
            for what in devices:
                path = where / expected[what]
                if not has(where, what):
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
    return out if NAME_PATTERN.match(out) else "x_" + out
