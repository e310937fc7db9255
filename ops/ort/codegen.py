"""Generates the ONNX Runtime glue: one translation unit per op, calling its framework-free kernels.

Each op becomes a `Kernel` (attributes read once per node, exactly as the model holds them, with the
declared defaults when absent) whose `compute` validates the inputs against the declaration, allocates
the outputs from the shape rules (evaluated in C++ through shape_rule.CppAlgebra, like the torch glue and
the TensorRT plugin), and calls `opforge_kernels::<ns>::<name>::{cpu,cuda}`. Data-dependent outputs are
computed into buffers from ORT's allocator at their upper bound, then the real outputs are allocated at
the sizes the kernel reported and the leading box copied in (ORT cannot shrink an output it allocated).

The op is registered as one OrtCustomOp per execution provider and combination of input dtypes (a
*variant*): ORT merges them into one schema, picks the variant whose types match the node, and so knows
every output's dtype during type inference without a schema of ours. The runtime support is
csrc/opforge/ort/ (opforge/ort/glue.h includes its parts).
"""

from __future__ import annotations

from ..core import shape_rule as sr
from ..core.cpp import c_string, cpp_double, cpp_int, kernel_dtype, kernel_dtypes, onnx_element_type
from ..core.declaration import OpDecl, ResolvedOutput, dtype_variants
from ..core.errors import OpforgeError
from ..native.prototypes import include_path

GENERATOR_VERSION = 4  # bump when the generated code changes shape

MAX_VARIANTS = 256  # per op and device; past that, ORT's kernel lookup and our library would bloat
ATTR_MEMBER = {
    "int": "int64_t",
    "float": "double",
    "bool": "bool",
    "str": "std::string",
    "list[int]": "std::vector<int64_t>",
    "list[float]": "std::vector<double>",
}
KERNEL_ATTR_ARG = {
    "int": "{n}",
    "float": "{n}",
    "bool": "{n}",
    "str": "ort::string_view({n})",
    "list[int]": "ort::span({n})",
    "list[float]": "ort::span({n})",
}


def has_library_op(decl: OpDecl) -> bool:
    """Ops that go into a native ORT library: exported to ONNX, with a compiled CPU kernel that is written (not
    pending: a skeleton from ops.new would compute nothing)."""
    return decl.onnx and decl.kernel_dir is not None and "cpu" not in decl.kernels_pending


def _attr_default(a) -> str:
    if not a.has_default:
        return {"int": "0", "float": "0.0", "bool": "0", "str": '""', "list[int]": "{}", "list[float]": "{}"}[a.type]
    v = a.default
    return {
        "int": lambda: cpp_int(v),
        "float": lambda: cpp_double(v),
        "bool": lambda: "1" if v else "0",
        "str": lambda: c_string(v),
        "list[int]": lambda: "{" + ", ".join(cpp_int(e) for e in v) + "}",
        "list[float]": lambda: "{" + ", ".join(cpp_double(e) for e in v) + "}",
    }[a.type]()


def _attr_read(a) -> str:
    reader = {
        "int": "attr_int",
        "float": "attr_float",
        "bool": "attr_int",
        "str": "attr_string",
        "list[int]": "attr_ints",
        "list[float]": "attr_floats",
    }[a.type]
    call = f"ort::{reader}(kOp, info, {c_string(a.name)}, {'true' if a.has_default else 'false'}, {_attr_default(a)})"
    return f"{call} != 0" if a.type == "bool" else call


def _expr(decl: OpDecl, node, size_values: dict[str, str], rule: str) -> str:
    """C++ of one shape-rule expression; `rule` names it in the message of a division by zero."""
    attrs = {a.name for a in decl.attrs}

    def name_code(n):
        return f"a_{n}" if n in attrs else size_values[n]

    # list[int] elements (stride[0]; the declaration made indices absolute) index the attribute's vector,
    # whose length the kernel's constructor checked against the declared one.
    algebra = sr.CppAlgebra(lambda i, k: f"i_{i}.size({k})", name_code, lambda n, k: f"a_{n}[{k}]", c_string(rule))
    return sr.evaluate(node, algebra)


def _dims(decl: OpDecl, rule: sr.Dims, size_values: dict[str, str], what: str) -> str:
    named = f"{what} = {sr.to_text(rule)}"
    return "std::initializer_list<int64_t>{" + ", ".join(_expr(decl, d, size_values, named) for d in rule.dims) + "}"


def _out_dtype(o: ResolvedOutput) -> str:
    return kernel_dtype(o.dtype) if o.dtype else f"i_{o.dtype_like}.dtype"


def variants(decl: OpDecl) -> list[dict[str, str]]:
    """Every combination of input dtypes the op accepts (ops.core.declaration.dtype_variants), within the
    number of kernels a native ONNX Runtime op registers."""
    out = dtype_variants(decl)
    if len(out) > MAX_VARIANTS:
        raise OpforgeError(
            f"{decl.id}: its inputs allow {len(out)} dtype combinations; a native ONNX Runtime op "
            f"registers one kernel per combination and at most {MAX_VARIANTS} are supported. Fix: "
            "narrow the inputs' dtypes, or tie them with dtypes='like(other)'."
        )
    return out


def _kernel_class(w, decl: OpDecl) -> None:
    kernel_ns = f"opforge_kernels::{decl.namespace}::{decl.name}"
    w("class Kernel final : public ort::KernelBase {")
    w(" public:")
    init = "".join(f",\n        a_{a.name}({_attr_read(a)})" for a in decl.attrs)
    w(f"  Kernel(const OrtKernelInfo* info, ort::Device device)\n      : KernelBase(info, kOp, device){init} {{")
    for a in decl.attrs:
        if a.length is not None:
            w(f"    ort::expect_length(kOp, {c_string(a.name)}, a_{a.name}.size(), {a.length});")
        if a.choices:
            w(
                f"    ort::expect_choice(kOp, {c_string(a.name)}, a_{a.name}, "
                f"{{{', '.join(c_string(c) for c in a.choices)}}});"
            )
    w("  }")
    w()
    w("  void compute(OrtKernelContext* context) override {")
    w("    ort::Call call(*this, context);")
    for k, i in enumerate(decl.inputs):
        dtypes = kernel_dtypes(i.dtypes)
        rank = -1 if i.rank is None else i.rank
        w(f"    opforge::TensorView i_{i.name};")
        check = (
            f"call.input({k}, {c_string(i.name)}, {dtypes}, {rank}, {i.min_rank}, "
            f"{'true' if i.optional else 'false'}, &i_{i.name})"
        )
        w(f"    const bool has_{i.name} = {check};" if i.optional else f"    {check};")
    for i in decl.inputs:
        guard = f"if (has_{i.name}) " if i.optional else ""
        if i.dtype_like:
            w(
                f"    {guard}call.same_dtype({c_string(i.name)}, i_{i.name}, {c_string(i.dtype_like)}, i_{i.dtype_like});"
            )
        if i.shape is not None:
            if isinstance(i.shape, sr.Like):
                expected = f"i_{i.shape.input}"
            else:
                expected = _dims(decl, i.shape, {}, f"input '{i.name}'")
            w(
                f"    {guard}call.expect_shape({c_string(i.name)}, i_{i.name}, {expected}, "
                f"{c_string(sr.to_text(i.shape))});"
            )
    # Outputs. Those whose size the kernel decides (size outputs, and outputs whose shape names one) are
    # computed into upper-bound buffers; the others are ORT's outputs from the start.
    sizes = [o for o in decl.outputs if o.is_size]
    size_names = {o.name for o in sizes}
    upper = {o.name: f"upper_{o.name}" for o in sizes}
    deferred = {
        o.name
        for o in decl.outputs
        if o.is_size or (isinstance(o.shape, sr.Dims) and sr.references(o.shape)[1] & size_names)
    }
    for o in sizes:
        upper_rule = f"the upper bound of size output '{o.name}' = {sr.to_text(o.upper)}"
        w(f"    const int64_t upper_{o.name} = {_expr(decl, o.upper, {}, upper_rule)};")
    for k, o in enumerate(decl.outputs):
        rule = c_string(sr.to_text(o.shape))
        if o.name in deferred:
            w(
                f"    const opforge::TensorView o_{o.name} = call.temp({c_string(o.name)}, "
                f"{_dims(decl, o.shape, upper, f'output {o.name!r}')}, {_out_dtype(o)}, {rule});"
            )
        elif isinstance(o.shape, sr.Like):
            w(
                f"    const opforge::TensorView o_{o.name} = call.output({k}, {c_string(o.name)}, i_{o.shape.input}, "
                f"{_out_dtype(o)}, {rule});"
            )
        else:
            w(
                f"    const opforge::TensorView o_{o.name} = call.output({k}, {c_string(o.name)}, "
                f"{_dims(decl, o.shape, {}, f'output {o.name!r}')}, {_out_dtype(o)}, {rule});"
            )
    workspace = _expr(decl, decl.workspace, {}, f"the workspace = {sr.to_text(decl.workspace)}")
    w(f"    const opforge::DeviceContext ctx = call.context({workspace});")
    args = [f"has_{i.name} ? &i_{i.name} : nullptr" if i.optional else f"i_{i.name}" for i in decl.inputs]
    args += [f"o_{o.name}" for o in decl.outputs]
    args += [KERNEL_ATTR_ARG[a.type].format(n=f"a_{a.name}") for a in decl.attrs]
    args = ", ".join(args + ["ctx"])
    w('    opforge::Status status = opforge::Status::error(opforge::Status::kInternal, "no kernel for this device");')
    if "cpu" in decl.devices:
        w(f"    if (device() == ort::Device::kCpu) status = {kernel_ns}::cpu({args});")
    if "cuda" in decl.devices:
        w("#ifdef OPFORGE_ORT_WITH_CUDA")
        w(f"    if (device() == ort::Device::kCuda) status = {kernel_ns}::cuda({args});")
        w("#endif")
    w("    call.check_kernel(status);")
    if deferred:
        values = {o.name: f"value_{o.name}" for o in sizes}
        for o in sizes:
            w(f"    const int64_t value_{o.name} = call.size_value({c_string(o.name)}, o_{o.name}, upper_{o.name});")
        for k, o in enumerate(decl.outputs):
            if o.name not in deferred:
                continue
            rule = c_string(sr.to_text(o.shape))
            w(
                f"    const opforge::TensorView r_{o.name} = call.output({k}, {c_string(o.name)}, "
                f"{_dims(decl, o.shape, values, f'output {o.name!r}')}, {_out_dtype(o)}, {rule});"
            )
            if o.is_size:
                w(f"    call.write_size(r_{o.name}, value_{o.name});")
            else:
                w(f"    call.narrow_into(r_{o.name}, o_{o.name});")
    w("  }")
    if decl.attrs:
        w()
        w(" private:")
        for a in decl.attrs:
            w(f"  const {ATTR_MEMBER[a.type]} a_{a.name};")
    w("};")


def _variant_table(w, decl: OpDecl, device: str) -> None:
    enum = "kCpu" if device == "cpu" else "kCuda"
    w(f"const ort::CustomOp kOps_{device}[] = {{")
    for chosen in variants(decl):
        ins = ", ".join(onnx_element_type(chosen[i.name]) for i in decl.inputs)
        opt = ", ".join("true" if i.optional else "false" for i in decl.inputs)
        outs = ", ".join(onnx_element_type(chosen[o.name]) for o in decl.outputs)
        w(
            f"    {{{c_string(decl.namespace)}, {c_string(decl.name)}, ort::Device::{enum}, {decl.version}, "
            f"{{{ins}}}, {{{opt}}}, {{{outs}}}, &make}},"
        )
    w("};")
    w(
        f"const ort::Register kRegister_{device}{{"
        + ", ".join(f"&kOps_{device}[{k}]" for k in range(len(variants(decl))))
        + "};"
    )


def generate(decl: OpDecl) -> str:
    """The C++ source of the op's ONNX Runtime glue. User names get prefixes (i_ inputs, o_ outputs, a_
    attributes) so no declared name can collide with a C++ keyword or a local of the glue."""
    if not has_library_op(decl):
        raise OpforgeError(
            f"{decl.id}: a native ONNX Runtime op needs compiled kernels and onnx=True "
            f"(kernels={'None' if decl.kernel_dir is None else 'set'}, onnx={decl.onnx})."
        )
    lines: list[str] = []

    def w(line: str = ""):
        lines.append(line)

    w(f"// Generated by opforge (ORT glue v{GENERATOR_VERSION}) from the declaration of {decl.id} at {decl.source}.")
    w("// Do not edit: `python -m ops.ort.build` regenerates it.")
    w('#include "opforge/ort/glue.h"')
    w(f'#include "{include_path(decl)}"  // the generated prototypes (ops/native/prototypes.py)')
    w()
    w("namespace {")
    w("namespace ort = ::opforge::ort;")
    w(f"constexpr const char* kOp = {c_string(decl.id)};")
    w()
    _kernel_class(w, decl)
    w()
    w("ort::KernelBase* make(const OrtKernelInfo* info, ort::Device device) { return new Kernel(info, device); }")
    w()
    if "cpu" in decl.devices:
        _variant_table(w, decl, "cpu")
    if "cuda" in decl.devices:
        w("#ifdef OPFORGE_ORT_WITH_CUDA")
        _variant_table(w, decl, "cuda")
        w("#endif")
    w("}  // namespace")
    return "\n".join(lines) + "\n"


INDEX = """\
// Generated by opforge: the entry points of lib{stem}.so, the ONNX Runtime custom-op library of the op
// package {package} ({count} ops: {ops}).
// Each op's glue registers its variants itself (opforge::ort::Register), so this file lists none.
#include "opforge/ort/glue.h"

#define OPFORGE_ORT_EXPORT extern "C" __attribute__((visibility("default")))

// Called by OrtApi::RegisterCustomOpsLibrary (Python: SessionOptions.register_custom_ops_library).
OPFORGE_ORT_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api) {{
  return opforge::ort::register_all(options, api);
}}

// What the library holds, one line per variant: "<domain>::<op_type> v<since> <provider> <input types>",
// for tests and `python -m ops.ort.build --list` (the ONNX element type numbers of the inputs).
OPFORGE_ORT_EXPORT const char* OpforgeOrtLibraryInfo() {{
  static const std::string text = [] {{
    std::string out = "api {api_line}\\n";
    for (const opforge::ort::CustomOp* op : opforge::ort::registry()) {{
      out += opforge::ort::concat(op->domain, "::", op->name, " v", op->since_version, " ", op->provider);
      for (auto t : op->input_types) out += opforge::ort::concat(" ", static_cast<int>(t));
      out += "\\n";
    }}
    return out;
  }}();
  return text.c_str();
}}
"""


def generate_index(decls: list[OpDecl], package: str, stem: str) -> str:
    return INDEX.format(
        stem=stem,
        package=package,
        count=len(decls),
        ops=", ".join(d.id for d in decls) or "none",
        api_line='" + std::to_string(ORT_API_VERSION) + "',
    )
