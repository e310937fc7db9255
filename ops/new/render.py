"""Rendering a new op's files: the declaration module (reference, samples, register_op) and the CPU and CUDA
kernel skeletons (real loop/launch and dtype dispatch, the math left to the user, kernels_pending)."""

from __future__ import annotations

import json

from ..core import shape_rule as sr
from ..core.cpp import DTYPE_ENUMERATOR
from ..core.declaration import DEVICES, Attr, Input, OpDecl, attr_type_name
from ..core.dtypes import FLOATING
from ..native.prototypes import context_name, context_names, parameters
from .plan import Plan, resolve_operator


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
    t = a.type if isinstance(a.type, str) else attr_type_name(a.type)
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
    return {
        "add": f"({a} + {b})",
        "sub": f"({a} - {b})",
        "mul": f"({a} * {b})",
        "floordiv": f"({a} // {b})",
        "ceil_div": f"(-(-{a} // {b}))",
        "max": f"max({a}, {b})",
        "min": f"min({a}, {b})",
    }[node.op]


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
    what = {
        "flags": "scaffolded from flags",
        "like": f"scaffolded from {plan.target}",
        "from": f"scaffolded from {plan.target}",
    }[plan.source]
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
        for n in names[: last + 1]:
            args.append(_sample_tensor(plan, decl, n, shapes[n]) if shapes.get(n) is not None else "None")
        for a in decl.attrs:
            if a.name in attrs and (
                not a.has_default or attrs[a.name] != (list(a.default) if isinstance(a.default, tuple) else a.default)
            ):
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
    lines += field(
        "outputs", [f"Output({_lit(o.name)}, shape={_lit(o.shape)}, dtype={_lit(o.dtype)})" for o in plan.outputs]
    )
    if plan.attrs:
        lines += field("attrs", [_render_attr(a) for a in plan.attrs])
    if tuple(plan.devices) != DEVICES:
        lines.append(f"    devices={_lit(tuple(plan.devices))},")
    lines.append("    samples=samples,")
    if plan.source == "flags" and plan.attrs:
        plan.onnx_fallback_problem = (
            "the PLACEHOLDER reference reads no attribute, so its ONNX body could not carry them"
        )
    if plan.onnx_fallback_problem:
        lines.append("    # ops.new could not make the reference a standard-ONNX body (opset 17):")
        lines.append(f"    # {plan.onnx_fallback_problem}")
        lines.append(
            "    # so export_onnx(fallback=True) refuses the op and ops.check skips ort.fallback. Remove this line"
        )
        lines.append("    # if you rewrite the reference with exportable ops.")
        lines.append("    onnx_fallback=False,")
    lines.append(
        f"    # The kernels in csrc/{plan.name}/ are ops.new skeletons: until their bodies are written, the op runs"
    )
    lines.append(
        "    # this reference on these devices and ops.check reports those stages as REF (reference), not as a"
    )
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
        lines.append(
            '    """PLACEHOLDER reference written by `python -m ops.new`: it returns zeros of the declared output'
        )
        lines.append(
            "    shapes and dtypes and computes nothing. Replace this body with the op's math in plain PyTorch:"
        )
        lines.append(
            "    it is the oracle ops.check compares every kernel with, and what runs while kernels are pending."
        )
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
        lines.append('    kernels with, and what runs while kernels are pending. Edit it if the op should differ."""')
        fn = ("torch.ops." + _like_call(plan)) if plan.source == "like" else "_opforge_function"
        args = plan.call_positional + [f"{k}={n}" for k, n in plan.call_keyword]
        lines.append(f"    return {fn}({', '.join(args)})")
    return "\n".join(lines) + "\n"


def _like_call(plan: Plan) -> str:
    _, call, _ = resolve_operator(plan.target)
    return call[len("torch.ops.") :]


def _cpp_storage(dtype: str, cuda: bool) -> str:
    # qualified: the entry body, where these are written, has the declared names in scope (an input may be `int8_t`)
    return {
        "float32": "float",
        "float16": "__half" if cuda else "::opforge::Half",
        "bfloat16": "__nv_bfloat16" if cuda else "::opforge::BFloat16",
        "float64": "double",
        "int8": "::std::int8_t",
        "uint8": "::std::uint8_t",
        "int32": "::std::int32_t",
        "int64": "::std::int64_t",
        "bool": "bool",
    }[dtype]


def _out_dtypes(decl: OpDecl, o) -> tuple[str, ...]:
    return (o.dtype,) if o.dtype else decl.input(o.dtype_like).dtypes


def _signature_comment(decl: OpDecl) -> list[str]:
    names = context_names(decl)
    also = f" (also `{names[1]}` in the body)" if len(names) > 1 else ""
    return [f"//   {p.c_type} {p.name}" for p in parameters(decl)][:-1] + [
        f"//   {parameters(decl)[-1].c_type} {names[0]}{also}"
    ]


def _dispatch_cases(decl: OpDecl, o, cuda: bool, call: str) -> list[str]:
    lines = []
    for dt in _out_dtypes(decl, o):
        lines.append(f"    case ::opforge::DType::{DTYPE_ENUMERATOR[dt]}: {call.format(T=_cpp_storage(dt, cuda))}")
    return lines


def _entry_body(plan: Plan, decl: OpDecl, o, device: str, call: str) -> list[str]:
    """The entry point's body after its OPFORGE_*_KERNEL line: dispatch on the first output's dtype to the
    skeleton's loop, then the NotImplemented-style return that keeps the op pending. (Parameters the body
    does not read yet are fine: the generated macro marks them [[maybe_unused]].) The declared names are in
    scope here, so every name the skeleton adds is `opforge_`-prefixed, which no declared name can be."""
    view = o.name
    lines = ["  const ::opforge::Status opforge_status = [&]() -> ::opforge::Status {", f"    switch ({view}.dtype) {{"]
    lines += ["  " + line for line in _dispatch_cases(decl, o, device == "cuda", call)]
    lines += [
        "      default:",
        "        return ::opforge::Status::error(::opforge::Status::kUnsupportedDType, "
        f'"{plan.id}: dtype not supported by this kernel");',
        "    }",
        "  }();",
        "  if (!opforge_status.is_ok()) return opforge_status;",
        f"  // NotImplemented: delete this line once the {'loop' if device == 'cpu' else 'kernel'} above "
        f"computes the op, and drop '{device}' from",
        "  // kernels_pending in the declaration.",
        f'  return ::opforge::Status::error(::opforge::Status::kInternal, "{plan.id}: the {device} kernel is an '
        'ops.new skeleton (kernel pending)");',
        "}",
    ]
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
