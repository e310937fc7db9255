"""Triton as an op's CUDA kernel language: the launch description a declaration gives (`register_op(...,
triton=Triton(...))`), validated here like every other field.

The kernel itself is one or more `@triton.jit` functions in `<kernel dir>/<op>_triton.py`, beside the op's C++
files; only the build imports that file (ops/native/triton_aot.py), so declaring an op needs no Triton. What the
declaration says is how a call becomes a launch:

    triton=Triton(
        kernel="rms_norm_fwd",                       # the @triton.jit function in csrc/rms_norm/rms_norm_triton.py
        args={"x": "x", "w": "weight", "y": "y",     # kernel parameter -> input/output (a pointer), attribute,
              "rows": "numel(x) // x.shape[-1]",     #   or an integer launch expression
              "cols": "x.shape[-1]", "eps": "eps"},
        grid=["ceil_div(numel(x) // x.shape[-1], ROWS)"],   # up to 3 launch expressions; may name meta-parameters
        key="x.shape[-1]",                           # what a tuned table buckets on (powers of two)
        configs=[TritonConfig(BLOCK=1024, ROWS=1, num_warps=4, max_key=1024), ...],
    )

Launch expressions are the shape language (ops/core/shape_rule.py) plus `numel(t)` and `present(t)` (1 when an
optional input is given, else 0), integer attributes and the configuration's meta-parameters by name. Integer
kernel arguments are passed as int32 unless named in `int64=` (float attributes as float unless named in `fp64=`);
the launcher refuses a value that does not fit rather than truncating it.

Each config is compiled twice: generic, and aligned (every pointer 16-byte aligned, and the integer parameters
named in `aligned=` multiples of 16, which lets masked loads vectorise); the launcher takes the aligned one
exactly where that holds.

Configuration choice (the generated launcher, csrc/opforge/triton_launch.h): every configuration is compiled
ahead of time. A config with `max_key=N` may only run where key <= N (e.g. a one-pass kernel holding a whole row);
one without is valid everywhere. Without a tuned table the launcher takes, among the valid configs, the one with
the smallest max_key (the tightest fit), else the first config without one. `python -m ops.tune OP` writes
`<kernel dir>/<op>_triton_tuned.json` (key bucket -> config) on a GPU; the next build embeds it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import shape_rule as sr
from .errors import DeclarationError, ShapeRuleError

LAUNCH_CALLS = ("numel", "present")
# Triton's scalar and pointer element type names for the declaration dtypes.
TRITON_TYPES = {
    "float32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "float64": "fp64",
    "int8": "i8",
    "uint8": "u8",
    "int32": "i32",
    "int64": "i64",
    "bool": "i1",
}
LAUNCH_OPTIONS = ("num_warps", "num_stages", "max_key")
_IDENT = re.compile(r"^[A-Za-z_]\w*$")


class TritonConfig:
    """One candidate configuration: the constexpr meta-parameters (ints or bools) plus Triton's num_warps and
    num_stages, and optionally max_key (the config is valid only where the launch key is at most this)."""

    def __init__(self, num_warps: int = 4, num_stages: int = 3, max_key: int | None = None, **meta):
        self.meta = dict(meta)
        self.num_warps, self.num_stages, self.max_key = num_warps, num_stages, max_key

    def __repr__(self):
        parts = [f"{k}={v!r}" for k, v in self.meta.items()] + [f"num_warps={self.num_warps}"]
        parts += [f"num_stages={self.num_stages}"] + ([f"max_key={self.max_key}"] if self.max_key is not None else [])
        return f"TritonConfig({', '.join(parts)})"

    def __eq__(self, other):
        return isinstance(other, TritonConfig) and repr(self) == repr(other)

    def __hash__(self):
        return hash(repr(self))

    def label(self) -> str:
        """A short name for tables and messages: BLOCK=1024,ROWS=1,w4,s3."""
        return ",".join([f"{k}={int(v)}" for k, v in self.meta.items()] + [f"w{self.num_warps}", f"s{self.num_stages}"])


@dataclass(frozen=True)
class Scratch:
    """A kernel argument that is a scratch buffer: `size` elements (a launch expression) of `dtype`, allocated
    by the launcher for the launch (stream-ordered, csrc/opforge/triton_launch.h) and freed after it. Inductor's
    kernels use one where a half-precision op keeps float32 intermediates."""

    size: str
    dtype: str = "float32"


@dataclass(frozen=True)
class Triton:
    """The launch description of an op's Triton kernel (see the module docstring)."""

    kernel: str
    args: dict[str, str]
    grid: tuple[str, ...] | list[str]
    configs: tuple[TritonConfig, ...] | list[TritonConfig]
    key: str | None = None
    int64: tuple[str, ...] = ()
    # Float attribute parameters passed as double (fp64) rather than float (Inductor's kernels take them so).
    fp64: tuple[str, ...] = ()
    # Integer parameters the aligned compilation may take as multiples of 16 (as Triton's JIT specialises them),
    # so masked loads along them vectorise; the launcher takes it only where they are (and the pointers aligned).
    aligned: tuple[str, ...] = ()
    # Inputs ops.tune times the configs on: (device, dtype) -> list of ops.Sample at the sizes that matter
    # (default: the op's samples, which are usually too small to time).
    tune: Callable | None = None


@dataclass(frozen=True)
class TritonArg:
    param: str  # the kernel's parameter name
    # "tensor" (a pointer), "attr" (a scalar attribute), "expr" (an integer launch expression) or "scratch" (a
    # buffer the launcher allocates: `expr` elements of the pointer type)
    kind: str
    source: str  # the tensor or attribute name, or the expression's text
    type: str  # Triton type: "*" for a tensor (the element type is the variant's), *fp32 (scratch), fp32, i32, i64, i1
    expr: sr.Expr | None = None


@dataclass(frozen=True)
class ResolvedTriton:
    kernel: str
    args: tuple[TritonArg, ...]
    grid: tuple[sr.Expr, ...]
    key: sr.Expr | None
    configs: tuple[TritonConfig, ...]
    meta_names: tuple[str, ...]  # the constexpr parameters every config sets, in declaration order
    aligned: tuple[str, ...] = ()  # integer parameters hinted as multiples of 16 in the aligned compilation
    tune: Callable | None = field(default=None, compare=False, repr=False)
    spec: Triton | None = field(default=None, compare=False, repr=False)  # as declared (to declare it again)
    # Where the kernel file is when the build wrote it (Inductor's kernels: ops/native/inductor_capture.py);
    # None: the hand-written <kernel dir>/<op>_triton.py.
    source: Path | None = None
    # dtype variant label -> the kernel function compiled for it, where they differ (Inductor writes one kernel
    # per dtype variant); a variant not named here runs `kernel`.
    variant_kernels: tuple[tuple[str, str], ...] = ()

    def kernel_for(self, variant_label: str) -> str:
        return dict(self.variant_kernels).get(variant_label, self.kernel)

    @property
    def tensors(self) -> tuple[str, ...]:
        return tuple(a.source for a in self.args if a.kind == "tensor")

    def describe(self) -> str:
        return f"{self.kernel}: {len(self.configs)} configs ({', '.join(c.label() for c in self.configs)})"


@dataclass(frozen=True)
class Inductor:
    """`triton=Inductor()`: the op's CUDA kernel is what torch's Inductor writes for its reference. The build
    lowers the reference with Inductor, takes the Triton kernel it writes and how it launches it, and compiles
    that ahead of time like a hand-written Triton kernel (ops/native/inductor_capture.py). `configs` replaces
    the candidate configurations opforge gives Inductor's kernel (meta-parameters XBLOCK, and R0_BLOCK for a
    reduction); `tune` as in Triton."""

    configs: tuple[TritonConfig, ...] | list[TritonConfig] | None = None
    tune: Callable | None = None


@dataclass(frozen=True)
class ResolvedInductor:
    """A validated Inductor(): the launch is known only after the build has lowered the reference."""

    configs: tuple[TritonConfig, ...] | None
    tune: Callable | None = field(default=None, compare=False, repr=False)
    spec: Inductor | None = field(default=None, compare=False, repr=False)


def resolve(op: str, spec: Any, inputs, outputs, attrs, kernel_dir=None, devices=("cuda",)) -> ResolvedTriton | None:
    """Validate `triton=` against the op's inputs, outputs, attributes, kernel directory and devices; None when
    not given."""
    if spec is None:
        return None

    def fail(expected, got, fix):
        raise DeclarationError(op, "triton", expected, got, fix)

    if isinstance(spec, Inductor):
        return _resolve_inductor(spec, inputs, attrs, kernel_dir, devices, fail)

    if kernel_dir is None or "cuda" not in devices:
        name = op.rpartition("::")[2]
        fail(
            "an op with a kernel directory and 'cuda' in devices (the Triton kernel is its CUDA kernel)",
            f"kernel directory {kernel_dir}, devices {list(devices)}",
            f"put {name}_triton.py in csrc/{name}/ and keep 'cuda' in devices",
        )

    if not isinstance(spec, Triton):
        fail("ops.Triton(kernel=..., args=..., grid=..., configs=...)", spec, "describe the launch with ops.Triton")
    if not isinstance(spec.kernel, str) or not _IDENT.match(spec.kernel):
        fail("kernel: the name of a @triton.jit function in <op>_triton.py", spec.kernel, "give the function's name")
    configs = tuple(spec.configs) if isinstance(spec.configs, (list, tuple)) else None
    if not configs or not all(isinstance(c, TritonConfig) for c in configs):
        fail("configs: a non-empty list of ops.TritonConfig", spec.configs, "list at least one TritonConfig(...)")
    meta_names = tuple(configs[0].meta)
    for c in configs:
        if tuple(c.meta) != meta_names:
            fail(f"every config to set the same meta-parameters {list(meta_names)}", c, "set the same names in each")
        for k, v in c.meta.items():
            if type(v) not in (int, bool):
                fail(f"meta-parameter {k} an int or a bool", v, "constexpr values are ints or bools")
        if c.num_warps not in (1, 2, 4, 8, 16, 32):
            fail("num_warps a power of two from 1 to 32", c.num_warps, "use 4 or 8")
        if type(c.num_stages) is not int or c.num_stages < 1:
            fail("num_stages an int >= 1", c.num_stages, "use 1-4")
        if c.max_key is not None and (type(c.max_key) is not int or c.max_key < 1):
            fail("max_key None or an int >= 1", c.max_key, "give the largest key this config handles")
    if len(set(configs)) != len(configs):
        fail("distinct configs", [c.label() for c in configs], "remove the duplicate")
    if not any(c.max_key is None for c in configs):
        fail(
            "at least one config without max_key (valid for every key)",
            [c.label() for c in configs],
            "drop max_key from the most general config, so no shape is left without a kernel",
        )

    tensors = {i.name: i for i in inputs} | {o.name: o for o in outputs}
    scalar_attrs = {a.name: a for a in attrs}
    int_names = {a.name for a in attrs if a.type == "int"} | set(meta_names)
    optional = {i.name for i in inputs if i.optional}

    def expression(what: str, text: Any) -> sr.Expr:
        try:
            e = sr.parse_expr(text, calls=LAUNCH_CALLS)
        except ShapeRuleError as err:
            fail(f"{what}: a launch expression", text, str(err))
        used_inputs, names, _ = sr.references(e)
        for t in used_inputs:
            if t not in tensors:
                fail(f"{what}: inputs and outputs by name", text, f"{t!r} is not one; use one of {sorted(tensors)}")
        for n in names - int_names:
            fail(f"{what}: names of int attributes or meta-parameters", text, f"{n!r} is neither")
        for c in _calls(e):
            if c.fn == "present" and c.input not in optional:
                fail(f"{what}: present() of an optional input", text, f"{c.input!r} is not optional")
        for it in sr.items(e):
            a = scalar_attrs.get(it.name)
            if a is None or a.type != "list[int]" or a.length is None or not -a.length <= it.index < a.length:
                fail(f"{what}: elements of fixed-length list[int] attributes", text, f"check {it.name}[{it.index}]")
        return sr.map_items(e, lambda it: sr.Item(it.name, it.index % scalar_attrs[it.name].length))

    if not isinstance(spec.args, dict) or not spec.args:
        fail("args: a dict kernel parameter -> tensor, attribute or expression", spec.args, "map every parameter")
    int64, fp64 = tuple(spec.int64), tuple(spec.fp64)
    args = []
    for param, source in spec.args.items():
        if not isinstance(param, str) or not _IDENT.match(param):
            fail("args keys: the kernel's parameter names", param, "use the @triton.jit function's names")
        if param in meta_names:
            fail(f"args without the meta-parameters {list(meta_names)}", param, "configs set constexpr parameters")
        if isinstance(source, Scratch):
            if source.dtype not in TRITON_TYPES:
                fail(f"args[{param!r}]: Scratch of a dtype in {sorted(TRITON_TYPES)}", source.dtype, "e.g. 'float32'")
            e = expression(f"args[{param!r}] (the scratch size)", source.size)
            args.append(TritonArg(param, "scratch", sr.to_text(e), "*" + TRITON_TYPES[source.dtype], e))
        elif isinstance(source, str) and source in tensors:
            args.append(TritonArg(param, "tensor", source, "*"))
        elif isinstance(source, str) and source in scalar_attrs and scalar_attrs[source].type in ("float", "bool"):
            is_float = scalar_attrs[source].type == "float"
            args.append(TritonArg(param, "attr", source, ("fp64" if param in fp64 else "fp32") if is_float else "i1"))
        elif isinstance(source, str) and source in scalar_attrs and scalar_attrs[source].type not in ("int",):
            fail(
                f"args[{param!r}]: a tensor, a float/bool/int attribute or an integer expression",
                source,
                f"attribute {source!r} is a {scalar_attrs[source].type}; pass elements as expressions, e.g. "
                f"'{source}[0]'",
            )
        else:
            e = expression(f"args[{param!r}]", source)
            args.append(TritonArg(param, "expr", sr.to_text(e), "i64" if param in int64 else "i32", e))
    for what, names in (("int64", int64), ("aligned", tuple(spec.aligned))):
        for name in names:
            if not any(a.param == name and a.kind == "expr" for a in args):
                fail(
                    f"{what}: names of integer kernel parameters", name, "list parameters given by integer expressions"
                )
    for name in fp64:
        if not any(a.param == name and a.type == "fp64" for a in args):
            fail("fp64: names of kernel parameters given by float attributes", name, "list float attribute parameters")
    grid = tuple(spec.grid) if isinstance(spec.grid, (list, tuple)) else None
    if not grid or len(grid) > 3:
        fail("grid: 1 to 3 launch expressions", spec.grid, "e.g. grid=['ceil_div(numel(y), BLOCK)']")
    if spec.tune is not None and not callable(spec.tune):
        fail("tune: a function (device, dtype) -> list of ops.Sample", spec.tune, "pass a function or None")
    return ResolvedTriton(
        spec=spec,
        tune=spec.tune,
        kernel=spec.kernel,
        args=tuple(args),
        grid=tuple(expression(f"grid[{i}]", g) for i, g in enumerate(grid)),
        key=None if spec.key is None else expression("key", spec.key),
        configs=configs,
        meta_names=meta_names,
        aligned=tuple(spec.aligned),
    )


def _check_configs(configs, fail) -> tuple[TritonConfig, ...]:
    configs = tuple(configs) if isinstance(configs, (list, tuple)) else None
    if not configs or not all(isinstance(c, TritonConfig) for c in configs):
        fail("configs: a non-empty list of ops.TritonConfig", configs, "list at least one TritonConfig(...)")
    return configs


def _resolve_inductor(spec: Inductor, inputs, attrs, kernel_dir, devices, fail) -> ResolvedInductor:
    if kernel_dir is None or "cuda" not in devices:
        fail(
            "an op with a kernel directory and 'cuda' in devices (Inductor's kernel is its CUDA kernel)",
            f"kernel directory {kernel_dir}, devices {list(devices)}",
            "give the op its csrc/<op>/ directory (the CPU kernel stays C++) and keep 'cuda' in devices",
        )
    for a in attrs:
        if a.type != "float":
            fail(
                "attributes that are floats (Inductor passes them to its kernel at run time)",
                f"attribute {a.name!r} of type {a.type}",
                "Inductor bakes other attributes' values into the kernel it writes; write the kernel with "
                "Triton(...) or in CUDA C++",
            )
    for i in inputs:
        if i.optional:
            fail(
                "inputs that are always given",
                f"optional input {i.name!r}",
                "Inductor writes one kernel per graph; write the kernel with Triton(...) (present() in its launch)",
            )
    configs = None if spec.configs is None else _check_configs(spec.configs, fail)
    if spec.tune is not None and not callable(spec.tune):
        fail("tune: a function (device, dtype) -> list of ops.Sample", spec.tune, "pass a function or None")
    return ResolvedInductor(configs=configs, tune=spec.tune, spec=spec)


def _calls(e: sr.Expr) -> list[sr.Call]:
    if isinstance(e, sr.Call):
        return [e]
    if isinstance(e, sr.BinOp):
        return _calls(e.lhs) + _calls(e.rhs)
    return []


def default_config(configs, key: int | None) -> int:
    """The documented choice without a tuned table: among the configs valid for `key` (max_key >= key), the
    tightest fit (smallest max_key); else the first without max_key. Mirrored in C++ by the launcher."""
    best = None
    for i, c in enumerate(configs):
        if c.max_key is not None and key is not None and key <= c.max_key:
            if best is None or c.max_key < configs[best].max_key:
                best = i
    if best is not None:
        return best
    return next(i for i, c in enumerate(configs) if c.max_key is None)


def bucket(key: int) -> int:
    """The tuned table's bucket of a key: the next power of two at or above it (1 for key <= 1)."""
    b = 1
    while b < key:
        b *= 2
    return b


__all__ = [
    "Triton",
    "TritonConfig",
    "Inductor",
    "ResolvedInductor",
    "ResolvedTriton",
    "TritonArg",
    "resolve",
    "default_config",
    "bucket",
]
