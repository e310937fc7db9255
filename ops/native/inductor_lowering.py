"""Inductor's lowering of an op's reference, captured as one Triton kernel and its launch (the work behind
`triton=ops.Inductor()`; ops/native/inductor_capture.py caches it and hands the build the op with its launch).

The build lowers the op's plain-PyTorch reference with torch's Inductor, takes the Triton kernel Inductor writes
and the way its generated code launches it, and turns that into the same launch description a hand-written
Triton kernel declares (ops/core/triton_launch.py). No GPU is needed: Inductor lowers for its Triton CPU backend
(`cpu_backend="triton"`), whose kernels are the same device-neutral Triton code it writes for CUDA, and the
lowering stops before anything is compiled or run.

What is captured, per dtype variant and per input rank among the op's samples:
- the reference traced by Dynamo with every input dim symbolic (no duck sizing: two dims equal in a sample
  stay two symbols unless the reference ties them) and float attributes as run-time scalars;
- Inductor's generated wrapper, run with stand-ins: input tensors whose sizes are sympy symbols, the kernel
  objects recording each launch. Its arguments become launch expressions (`numel(x) // x.shape[-1]`), input
  and output pointers, or float attributes.

Refused at build time, each with the reason: a reference Inductor does not lower to Triton alone (the op it
falls back on is named: a matmul, a sort, ...); more than one kernel (the launcher runs one); an output that is a
view or an input; a dim Inductor specialized to a constant; kernels that differ between the samples' ranks in
what the launch description cannot express. A buffer only the kernel itself uses (Inductor keeps a half op's
float32 intermediates in one) becomes a Scratch argument, which the launcher allocates for the launch.

This module imports Dynamo and Inductor (about 1.8 s), so only a build that lowers a reference loads it.
"""

from __future__ import annotations

import ast
import inspect
import re
from contextlib import ExitStack
from dataclasses import dataclass
from unittest import mock

import sympy
import torch
import torch._dynamo
import torch._inductor.config as inductor_config
import torch.fx.experimental._config as fx_config
from torch._inductor import graph as inductor_graph
from torch._inductor import ir
from torch._inductor.compile_fx import compile_fx

from ..core.declaration import OpDecl, dtype_variants, variant_label
from ..core.dtypes import torch_dtype
from ..core.errors import OpforgeError
from ..core.triton_launch import Scratch, Triton, TritonConfig

# The candidates given Inductor's kernels when the declaration names none; `python -m ops.tune` picks among them
# per key bucket on a GPU. Pointwise: elements per program. Reduction: rows per program x row chunk per loop
# step; the configs for short rows carry max_key (the tightest valid one is the default without a table).
POINTWISE_CONFIGS = (
    TritonConfig(XBLOCK=1024, num_warps=4),
    TritonConfig(XBLOCK=2048, num_warps=8),
    TritonConfig(XBLOCK=512, num_warps=4),
)
REDUCTION_CONFIGS = (
    TritonConfig(XBLOCK=1, R0_BLOCK=2048, num_warps=8, num_stages=1),
    TritonConfig(XBLOCK=1, R0_BLOCK=1024, num_warps=4, num_stages=1, max_key=1024),
    TritonConfig(XBLOCK=4, R0_BLOCK=256, num_warps=4, num_stages=1, max_key=256),
    TritonConfig(XBLOCK=16, R0_BLOCK=64, num_warps=4, num_stages=1, max_key=64),
    TritonConfig(XBLOCK=1, R0_BLOCK=4096, num_warps=16, num_stages=1),
)
# Dynamo's name of a graph input: an argument (by position) or one of its sizes or strides.
_SOURCE = re.compile(r"^L\['args'\]\[(\d+)\](?:\.(size|stride)\(\)\[(\d+)\])?$")


class Refused(OpforgeError):
    """The reference cannot become one AOT Triton kernel; the message says why and what to do."""


@dataclass(frozen=True)
class Launch:
    """One capture: Inductor's kernel for one dtype variant and one set of input ranks."""

    kernel: str  # Inductor's function name
    source: str  # its module: imports + the @triton.jit function
    params: tuple[str, ...]  # runtime parameters, in order
    args: dict  # param -> input/output name, attribute name, launch expression text, or Scratch
    types: dict  # param -> Triton type from Inductor's signature
    constexprs: tuple[str, ...]  # XBLOCK, R0_BLOCK, ...
    grid_type: str
    ranks: dict  # input -> rank of this capture


def _fail(decl: OpDecl, why: str, fix: str) -> Refused:
    return Refused(f"{decl.id}: triton=Inductor(): {why}. Fix: {fix}")


# ---- lowering ------------------------------------------------------------------------------------------------


class _Stop(Exception):
    """Raised where Inductor would compile its wrapper: the lowering is all a capture needs."""


def _lower(decl: OpDecl, inputs: list, attrs: list) -> tuple[str, list[str], list[str]]:
    """Inductor's wrapper code for reference(*inputs, *attrs), the Dynamo sources of its inputs in order, and
    the ops it would run outside Triton."""
    got: dict = {}

    def codegen_only(self):
        code = self.codegen()
        code = code[0] if isinstance(code, tuple) else code
        got["code"] = getattr(code, "value", code)
        got["extern"] = [
            str(getattr(op, "op_overload", None) or getattr(op, "python_kernel_name", None) or type(op).__name__)
            for op in self.operations
            if isinstance(op, ir.ExternKernel) and not isinstance(op, ir.MultiOutput)
        ]
        raise _Stop

    def backend(gm, example_inputs):
        got["sources"] = [
            n.meta["grapharg"].source.name if "grapharg" in n.meta else n.name
            for n in gm.graph.nodes
            if n.op == "placeholder"
        ]
        return compile_fx(gm, example_inputs)

    def fn(*args):
        return decl.reference(*args)

    torch._dynamo.reset()
    with ExitStack() as stack:
        stack.enter_context(inductor_config.patch(cpu_backend="triton", compile_threads=1))
        stack.enter_context(torch._dynamo.config.patch(specialize_float=False, assume_static_by_default=False))
        stack.enter_context(fx_config.patch(use_duck_shape=False))
        # Inductor hashes the active Triton backend into its kernels' metadata; there is none without a GPU.
        stack.enter_context(mock.patch("torch.utils._triton.triton_hash_with_backend", lambda: "opforge-capture"))
        stack.enter_context(mock.patch.object(inductor_graph.GraphLowering, "_compile_to_module", codegen_only))
        try:
            torch.compile(fn, backend=backend, fullgraph=True)(*inputs, *attrs)
        except Exception as e:
            if "code" not in got:
                raise _fail(
                    decl,
                    f"Dynamo/Inductor could not lower the reference: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}",
                    "keep the reference to torch ops on its tensor inputs (no Python on tensor values, no "
                    "data-dependent control flow), or write the kernel with Triton(...)",
                ) from None
        finally:
            torch._dynamo.reset()
    if "code" not in got:  # Inductor had nothing to generate: the outputs alias the inputs
        raise _fail(
            decl,
            "Inductor wrote no kernel for the reference (its outputs are inputs or views of them)",
            "return a new tensor (e.g. .clone()), or write the kernel with Triton(...)",
        )
    return got["code"], got["sources"], got["extern"]


# ---- running the wrapper with stand-ins ----------------------------------------------------------------------


class _Tensor:
    def __init__(self, name: str, shape: tuple, dtype=None, role: str = "input"):
        self.name, self.shape, self.dtype, self.role = name, tuple(shape), dtype, role

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def item(self):
        return _Attr(self.name)


@dataclass(frozen=True)
class _Attr:
    name: str


class _Kernel:
    def __init__(self, name: str, source: str, launches: list):
        self.name, self.source, self.launches = name, source, launches

    def run(self, *args, **kwargs):
        self.launches.append((self, args))


class _Outside:
    """What the wrapper would call outside Triton (aten, extern_kernels, views): refused when called."""

    def __init__(self, decl, what):
        self.decl, self.what = decl, what

    def __getattr__(self, name):
        return _Outside(self.decl, f"{self.what}.{name}")

    def __call__(self, *args, **kwargs):
        raise _fail(self.decl, f"Inductor's code calls {self.what}, which is not a Triton kernel", _NOT_TRITON_FIX)


_NOT_TRITON_FIX = (
    "keep the reference to pointwise and reduction ops Inductor writes in Triton (no matmul, sort, or other "
    "library calls), or write the kernel with Triton(...) or in CUDA C++"
)


def _run_wrapper(decl: OpDecl, code: str, values: list) -> tuple[list, tuple]:
    """Run the wrapper's call() on stand-ins: the kernel launches [(kernel, args)] and what it returns."""
    launches: list = []
    buffers = iter(range(1 << 30))

    class Async:
        def __init__(self, *args, **kwargs):
            pass

        def triton(self, name, source, *args, **kwargs):
            return _Kernel(name, source, launches)

        def wait(self, scope):
            pass

        def __getattr__(self, name):  # a C++ or other non-Triton kernel
            raise _fail(decl, f"Inductor wrote a {name} kernel, not a Triton one", _NOT_TRITON_FIX)

    def alloc(size, stride, dtype, *args, **kwargs):
        return _Tensor(f"buf{next(buffers)}", size, dtype, role="buffer")

    def check_input(t, size, stride, *args):
        if isinstance(t, _Tensor) and t.role == "input":
            # A size in other dims' symbols is a tie the reference makes (gate like x); a number is a dim Inductor
            # took as fixed from the sample.
            for d, theirs in enumerate(size):
                if sympy.sympify(theirs).is_number:
                    raise _fail(
                        decl,
                        f"Inductor specialized {t.name}.shape[{d}] to {theirs} (from the sample it lowered)",
                        "give the op samples whose dims are all at least 2",
                    )

    scope: dict = {}
    with mock.patch("torch._inductor.async_compile.AsyncCompile", Async):
        exec(compile(code, "<inductor wrapper>", "exec"), scope)
    scope.update(
        assert_size_stride=check_input,
        assert_alignment=lambda *a, **k: None,
        empty_strided_cpu=alloc,
        empty_strided=alloc,
        get_raw_stream=lambda *a: 0,
        extern_kernels=_Outside(decl, "extern_kernels"),
        aten=_Outside(decl, "aten"),
        reinterpret_tensor=_Outside(decl, "reinterpret_tensor (a view of a buffer)"),
        alloc_from_pool=_Outside(decl, "alloc_from_pool (a shared buffer)"),
    )
    returned = scope["call"](list(values))
    return launches, tuple(returned) if isinstance(returned, (tuple, list)) else (returned,)


# ---- from sympy to the shape language ------------------------------------------------------------------------


def _dim_symbol(tensor: str, dim: int) -> sympy.Symbol:
    return sympy.Symbol(f"{tensor}__{dim}", integer=True, positive=True)


def _launch_text(decl: OpDecl, expr, ranks: dict) -> str:
    """A sympy expression over input dims as a launch expression, written rank-generically: dims counted from
    the end, and a product of all (or all leading) dims of a tensor as numel(t) (// the trailing ones)."""
    expr = sympy.expand(sympy.sympify(expr))

    def dim_of(symbol):
        tensor, _, d = symbol.name.rpartition("__")
        return tensor, int(d)

    def product(factors) -> str:
        by_tensor: dict = {}
        for f in factors:
            if not (isinstance(f, sympy.Symbol) and "__" in f.name):
                raise _fail(decl, f"a launch argument of Inductor's kernel is {expr}", "write the kernel with Triton")
            t, d = dim_of(f)
            by_tensor.setdefault(t, []).append(d)
        parts = []
        for t, dims in by_tensor.items():
            rank = ranks[t]
            if len(set(dims)) != len(dims):
                raise _fail(decl, f"a launch argument of Inductor's kernel is {expr}", "write the kernel with Triton")
            dims = sorted(dims)
            leading = dims == list(range(len(dims)))
            if leading and len(dims) == rank:
                parts.append(f"numel({t})")
            elif leading and rank - len(dims) <= 2:
                trailing = " * ".join(f"{t}.shape[{d - rank}]" for d in range(len(dims), rank))
                parts.append(
                    f"(numel({t}) // {trailing})" if rank - len(dims) == 1 else f"(numel({t}) // ({trailing}))"
                )
            else:
                parts.extend(f"{t}.shape[{d - rank}]" for d in dims)
        return " * ".join(parts)

    terms = []
    for term in sympy.Add.make_args(expr):
        coeff, factors = term.as_coeff_mul()
        if not coeff.is_Integer:
            raise _fail(decl, f"a launch argument of Inductor's kernel is {expr}", "write the kernel with Triton")
        flat = []
        for f in factors:
            base, exp = f.as_base_exp()
            if not (exp.is_Integer and exp > 0):
                raise _fail(decl, f"a launch argument of Inductor's kernel is {expr}", "write the kernel with Triton")
            flat += [base] * int(exp)
        text = product(flat) if flat else str(abs(int(coeff)))
        if flat and abs(int(coeff)) != 1:
            text = f"{abs(int(coeff))} * {text}"
        terms.append(("- " if coeff < 0 else "+ ", text))
    if not terms:
        return "0"
    out = ("-" if terms[0][0] == "- " else "") + terms[0][1]
    for sign, text in terms[1:]:
        out += f" {sign}{text}"
    return out


# ---- one capture ---------------------------------------------------------------------------------------------


def _kernel_module(decl: OpDecl, source: str, name: str, new_name: str) -> str:
    """Inductor's kernel module without its autotuning decorator and driver selection, the function renamed."""
    lines = source.strip("\n").splitlines()
    out, skipping = [], False
    for line in lines:
        if line.startswith("@triton_heuristics."):
            skipping = True
        if skipping and line.startswith("@triton.jit"):
            skipping = False
        if skipping or line.strip().startswith("triton_helpers.set_driver_to_"):
            continue
        out.append(line)
    text = "\n".join(out) + "\n"
    if f"def {name}(" not in text:
        raise _fail(decl, f"Inductor's kernel module has no function {name}", "report this with the torch version")
    return text.replace(f"def {name}(", f"def {new_name}(")


def _meta(source: str) -> tuple[dict, str]:
    sig = re.search(r"'signature': (\{.*?\})", source)
    grid = re.search(r"'grid_type': '(\w+)'", source)
    return (ast.literal_eval(sig.group(1)) if sig else {}), (grid.group(1) if grid else "Grid1D")


def capture_one(decl: OpDecl, variant: dict, sample) -> Launch:
    """Lower the reference on one sample (its dtypes: `variant`) and describe the one kernel launch."""
    inputs = list(sample.inputs)
    attr_values = [float(sample.attrs.get(a.name, a.default)) for a in decl.attrs]
    code, sources, extern = _lower(decl, inputs, attr_values)
    if extern:
        raise _fail(decl, f"Inductor runs {', '.join(extern)} outside Triton for the reference", _NOT_TRITON_FIX)
    names = [i.name for i in decl.inputs]
    ranks = {n: t.dim() for n, t in zip(names, inputs)}
    by_position = names + [a.name for a in decl.attrs]
    tensors = {n: _Tensor(n, [_dim_symbol(n, d) for d in range(ranks[n])]) for n in names}
    values = []
    for src in sources:
        m = _SOURCE.match(src)
        arg = by_position[int(m.group(1))] if m and int(m.group(1)) < len(by_position) else None
        if arg in tensors and m.group(2) is None:
            values.append(tensors[arg])
        elif arg in tensors and m.group(2) == "size":
            values.append(_dim_symbol(arg, int(m.group(3))))
        elif arg in tensors and m.group(2) == "stride":
            d = int(m.group(3))
            values.append(sympy.Mul(*[_dim_symbol(arg, k) for k in range(d + 1, ranks[arg])]))
        elif arg in {a.name for a in decl.attrs} and m.group(2) is None:
            values.append(_Tensor(arg, (), role="attr"))
        else:
            raise _fail(decl, f"Dynamo made a graph input of {src}", "report this with the torch version")
    launches, returned = _run_wrapper(decl, code, values)
    if len(launches) != 1:
        kernels = [k.name for k, _ in launches]
        raise _fail(
            decl,
            f"Inductor launches {len(launches)} kernels for the reference ({', '.join(kernels) or 'none'}); "
            "opforge's launcher runs one",
            "simplify the reference so Inductor fuses it into one kernel, or write the kernel with Triton(...)",
        )
    outputs = [o.name for o in decl.outputs]
    if len(returned) != len(outputs):
        raise _fail(decl, f"the reference returns {len(returned)} tensors, the op declares {len(outputs)}", "match")
    for o, t in zip(decl.outputs, returned):
        if not isinstance(t, _Tensor) or t.role != "buffer":
            raise _fail(
                decl,
                f"output {o.name!r} is an input or a view in Inductor's code, not a tensor its kernel writes",
                "return a new tensor (e.g. .clone()) or write the kernel with Triton(...)",
            )
        if t.dtype != torch_dtype(variant[o.name]):
            raise _fail(decl, f"output {o.name!r} comes out {t.dtype}, declared {variant[o.name]}", "cast it")
        t.name = o.name
    kernel, args = launches[0]
    signature, grid_type = _meta(kernel.source)
    m = re.search(rf"def {re.escape(kernel.name)}\((.*?)\):", kernel.source, re.S)
    params = [p.split(":")[0].strip() for p in m.group(1).split(",") if p.strip()]
    constexprs = tuple(p.split(":")[0].strip() for p in m.group(1).split(",") if "constexpr" in p)
    runtime = tuple(p for p in params if p not in constexprs)
    if len(args) != len(runtime):
        raise _fail(decl, f"{kernel.name} takes {len(runtime)} arguments, launched with {len(args)}", "report this")
    described, types = {}, {}
    for param, value in zip(runtime, args):
        types[param] = signature.get(param, "")
        if isinstance(value, _Tensor) and value.role == "buffer" and value.name not in outputs:
            # An intermediate only this kernel uses (a half op's float32 values): the launcher allocates it.
            size = _launch_text(decl, sympy.Mul(*value.shape), ranks) if value.shape else "1"
            described[param] = Scratch(size, str(value.dtype).removeprefix("torch."))
        elif isinstance(value, _Tensor):
            described[param] = value.name
        elif isinstance(value, _Attr):
            described[param] = value.name
        elif isinstance(value, (int, sympy.Basic)):
            described[param] = _launch_text(decl, value, ranks)
        else:
            raise _fail(decl, f"{kernel.name}'s argument {param} is {value!r}", "report this with the torch version")
    return Launch(
        kernel=kernel.name,
        source=kernel.source,
        params=runtime,
        args=described,
        types=types,
        constexprs=constexprs,
        grid_type=grid_type,
        ranks=ranks,
    )


# ---- the op's launch description -----------------------------------------------------------------------------


def _samples(decl: OpDecl, variant: dict) -> list:
    """One sample per set of input ranks, each dim at least 2 (Dynamo specializes sizes 0 and 1)."""
    if decl.samples is None:
        raise _fail(decl, "the op has no samples to lower the reference on", "declare samples=")
    first = decl.inputs[0].name
    chosen: dict = {}
    for s in decl.samples("cpu", torch_dtype(variant[first])):
        tensors = list(s.inputs)
        if len(tensors) != len(decl.inputs) or not all(isinstance(t, torch.Tensor) for t in tensors):
            continue
        if any(d < 2 for t in tensors for d in t.shape):
            continue
        key = tuple(t.dim() for t in tensors)
        if key not in chosen:
            chosen[key] = s
    if not chosen:
        raise _fail(
            decl,
            "no sample has every input dim at least 2 (Dynamo specializes sizes 0 and 1)",
            "add such a sample to the op's samples",
        )
    return [chosen[k] for k in sorted(chosen)]


def _body(decl: OpDecl, launch: Launch) -> str:
    """The kernel as compiled, under one name (the decorator left out holds the sample's size hints)."""
    return _kernel_module(decl, launch.source, launch.kernel, "kernel")


def _variant_launches(decl: OpDecl) -> dict[str, Launch]:
    """variant label -> Inductor's launch for it, the same on every input rank among the samples."""
    out = {}
    for variant in dtype_variants(decl):
        try:
            launches = [capture_one(decl, variant, s) for s in _samples(decl, variant)]
        except Refused as e:  # say which dtypes: Inductor's lowering of half types differs (float32 scratch)
            marker = "triton=Inductor(): "
            raise Refused(str(e).replace(marker, f"{marker}for {variant_label(decl, variant)}, ", 1)) from None
        base = launches[0]
        for other in launches[1:]:
            if other.args != base.args or _body(decl, other) != _body(decl, base):
                raise _fail(
                    decl,
                    f"Inductor's kernel or its launch differs between input ranks {base.ranks} and {other.ranks} "
                    f"({base.args} vs {other.args})",
                    "declare the inputs' ranks so one rank is lowered, or write the kernel with Triton(...)",
                )
        out[variant_label(decl, variant)] = base
    return out


def _one_launch(decl: OpDecl, launches: dict[str, Launch]) -> dict[str, Launch]:
    """One launch for every variant. Where Inductor's differ (a half variant keeps float32 intermediates in a
    scratch buffer, float32 does not), the variants take the launch with scratch: that kernel loads, computes in
    float32 and stores through the pointers' own types, so it is float32's computation too, provided it casts to
    no half type itself (then it is refused)."""
    distinct = {repr(v.args): v for v in launches.values()}
    if len(distinct) == 1:
        return launches
    general = max(distinct.values(), key=lambda v: sum(isinstance(a, Scratch) for a in v.args.values()))
    body = _body(decl, general)
    if not any(isinstance(a, Scratch) for a in general.args.values()) or re.search(r"tl\.(float16|bfloat16)", body):
        first, other = list(distinct.values())[:2]
        raise _fail(
            decl,
            f"Inductor's launch differs between dtype variants ({first.args} vs {other.args})",
            "write the kernel with Triton(...)",
        )
    return {label: general for label in launches}


def _split_module(text: str) -> tuple[list[str], str]:
    """A kernel module's import lines, and its @triton.jit function."""
    head, jit, function = text.partition("@triton.jit")
    return [line for line in head.splitlines() if line.startswith(("import ", "from "))], (jit + function).strip()


def describe(decl: OpDecl) -> tuple[Triton, dict, str]:
    """Lower the reference for every dtype variant and input rank: the Triton launch description, the kernel
    function per variant label, and the kernel module text (one function per distinct kernel)."""
    functions: dict[str, str] = {}  # kernel body -> its function name
    imports: list[str] = []  # the kernel modules' imports, once
    texts: list[str] = []  # the functions
    per_variant: dict[str, str] = {}
    launches = _one_launch(decl, _variant_launches(decl))
    for label, launch in launches.items():
        body = _body(decl, launch)
        if body not in functions:
            functions[body] = f"{decl.name}_inductor_{len(functions)}"
            lines, function = _split_module(_kernel_module(decl, launch.source, launch.kernel, functions[body]))
            imports += [line for line in lines if line not in imports]
            texts.append(function)
        per_variant[label] = functions[body]
    first = next(iter(launches.values()))
    if first.grid_type != "Grid1D":
        raise _fail(decl, f"Inductor launches its kernel on a {first.grid_type} grid", "write the kernel with Triton")
    reduction = "R0_BLOCK" in first.constexprs
    unknown = [c for c in first.constexprs if c not in ("XBLOCK", "R0_BLOCK")]
    if unknown:
        raise _fail(decl, f"Inductor's kernel has meta-parameters {unknown}", "write the kernel with Triton(...)")
    xnumel = first.args.get("xnumel")
    if xnumel is None:
        raise _fail(decl, "Inductor's kernel has no xnumel", "write the kernel with Triton(...)")
    if "XBLOCK" not in first.constexprs:  # a persistent reduction without an x dim: not lowered here so far
        raise _fail(decl, "Inductor's kernel has no XBLOCK meta-parameter", "write the kernel with Triton(...)")
    configs = decl.triton.configs or (REDUCTION_CONFIGS if reduction else POINTWISE_CONFIGS)
    ints = [p for p in first.params if first.types.get(p) in ("i32", "i64")]
    spec = Triton(
        kernel=per_variant[next(iter(per_variant))],
        args=dict(first.args),
        grid=[f"ceil_div({xnumel}, XBLOCK)"],
        key=first.args["r0_numel"] if reduction else xnumel,
        configs=list(configs),
        int64=tuple(p for p in ints if first.types[p] == "i64"),
        fp64=tuple(p for p, t in first.types.items() if t == "fp64"),  # float attributes, as Inductor passes them
        # Every pointer 16-byte aligned and these integers multiples of 16 lets masked loads vectorise: the
        # row length and strides of a reduction, the element count of a pointwise kernel.
        aligned=tuple(p for p in ints if not (reduction and p == "xnumel")),
        tune=decl.triton.tune,
    )
    header = (
        f'"""{decl.id}: the Triton kernel(s) torch {torch.__version__}\'s Inductor wrote for the reference '
        f"({inspect.getsourcefile(decl.reference)}), captured by opforge (ops/native/inductor_lowering.py). "
        'Generated by the build: do not edit."""\n'
    )
    return spec, per_variant, header + "\n".join(imports) + "\n\n\n" + "\n\n\n".join(texts) + "\n"


__all__ = ["Refused", "Launch", "capture_one", "describe", "POINTWISE_CONFIGS", "REDUCTION_CONFIGS"]
