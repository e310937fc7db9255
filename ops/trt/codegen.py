"""Generates the per-op part of the TensorRT plugin from an OpDecl: one `OpSpec` per op.

The plugin class itself is generic (plugins/opforge_trt_plugin.cpp); what differs between ops is data
(name, version, namespace, fields, dtype rules) plus four small functions translated from the
declaration's shape language: output shapes through `IExprBuilder`, the same rules over concrete dims
(for onShapeChange/configurePlugin checks), the workspace size, and the call into
`opforge_kernels::<ns>::<name>::cuda`. The output goes to the build directory, never into git.
"""

from __future__ import annotations

from ..core import shape_rule as sr
from ..core.cpp import c_string, cpp_double, cpp_int, dtype_mask
from ..core.declaration import OpDecl
from ..core.dtypes import DTYPES
from ..native.prototypes import include_path

GENERATOR_VERSION = 4

FIELD_KIND = {
    "int": "kInt",
    "list[int]": "kInts",
    "float": "kFloat",
    "list[float]": "kFloats",
    "str": "kStr",
    "bool": "kBool",
}
KERNEL_ATTR = {
    "int": "a.i({k})",
    "float": "a.f({k})",
    "bool": "a.b({k})",
    "str": "a.s({k})",
    "list[int]": "a.is({k})",
    "list[float]": "a.fs({k})",
}
DIM_OPS = {
    "add": "kSUM",
    "sub": "kSUB",
    "mul": "kPROD",
    "floordiv": "kFLOOR_DIV",
    "ceil_div": "kCEIL_DIV",
    "max": "kMAX",
    "min": "kMIN",
}


def has_plugin(decl: OpDecl) -> bool:
    """Ops with compiled CUDA kernels and an ONNX export get a plugin. Others have nothing TensorRT could run,
    or (onnx=False, e.g. a backward op) never reach TensorRT, whose ONNX parser is how a graph gets there."""
    return decl.kernel_dir is not None and "cuda" in decl.devices and decl.onnx and "cuda" not in decl.kernels_pending


def symbol(decl: OpDecl) -> str:
    return f"spec_{decl.namespace}__{decl.name}"


class ExprAlgebra:
    """C++ text building an `IDimensionExpr const*` (null when any operand is null)."""

    def __init__(self, decl: OpDecl, size_exprs: dict[str, str]):
        self.index = {i.name: k for k, i in enumerate(decl.inputs)}
        self.attr_index = {a.name: k for k, a in enumerate(decl.attrs)}
        self.size_exprs = size_exprs

    def const(self, value):
        return f"eb.constant(int64_t({value}))"

    def dim(self, input, index):
        # Negative indices resolve against the input's nbDims at build time (e_dim).
        return f"e_dim(in, nb_in, {self.index[input]}, {index})"

    def name(self, name):
        if name in self.size_exprs:
            return self.size_exprs[name]
        return f"eb.constant(a.i({self.attr_index[name]}))"

    def item(self, name, index):  # createPlugin checked the declared length
        return f"eb.constant(a.ints[{self.attr_index[name]}][{index}])"

    def binary(self, op, a, b):
        return f"e_op(eb, nvinfer1::DimensionOperation::{DIM_OPS[op]}, {a}, {b})"


class KnownAlgebra:
    """C++ text computing a KnownInt over concrete (possibly -1 = unknown) input dims."""

    def __init__(self, decl: OpDecl, sizes_from: str | None = None):
        """`sizes_from`: the C++ name of a `const KnownInt*` indexed by output number that holds values for
        the size outputs (may be null at run time); without it a size is unknown."""
        self.index = {i.name: k for k, i in enumerate(decl.inputs)}
        self.attr_index = {a.name: k for k, a in enumerate(decl.attrs)}
        self.sizes = {o.name: j for j, o in enumerate(decl.outputs) if o.is_size}
        self.sizes_from = sizes_from

    def const(self, value):
        return f"KnownInt::of(int64_t({value}))"

    def dim(self, input, index):
        return f"k_dim(in, nb_in, {self.index[input]}, {index})"

    def name(self, name):
        if name in self.sizes:
            if self.sizes_from is None:
                return "KnownInt::unknown()"
            return f"({self.sizes_from} ? {self.sizes_from}[{self.sizes[name]}] : KnownInt::unknown())"
        return f"KnownInt::of(a.i({self.attr_index[name]}))"

    def item(self, name, index):
        return f"KnownInt::of(a.ints[{self.attr_index[name]}][{index}])"

    def binary(self, op, a, b):
        return f'k_binary("{op}", {a}, {b})'


def _fields(decl: OpDecl, w: list[str]) -> None:
    rows = []
    for k, a in enumerate(decl.attrs):
        ints, floats, text, choices = "nullptr, 0", "nullptr, 0", "nullptr", "nullptr, 0"
        if a.has_default:
            if a.type in ("int", "bool", "list[int]"):
                values = [int(v) for v in (a.default if a.type == "list[int]" else [a.default])]
                if values:
                    w.append(f"const int64_t kDefault{k}[] = {{{', '.join(cpp_int(v) for v in values)}}};")
                    ints = f"kDefault{k}, {len(values)}"
            elif a.type in ("float", "list[float]"):
                values = list(a.default) if a.type == "list[float]" else [a.default]
                if values:
                    w.append(f"const double kDefault{k}[] = {{{', '.join(cpp_double(v) for v in values)}}};")
                    floats = f"kDefault{k}, {len(values)}"
            else:
                text = c_string(a.default)
        if a.choices:
            w.append(f"const char* const kChoices{k}[] = {{{', '.join(c_string(c) for c in a.choices)}}};")
            choices = f"kChoices{k}, {len(a.choices)}"
        required = "false" if a.has_default else "true"
        length = -1 if a.length is None else a.length
        rows.append(
            f"    {{{c_string(a.name)}, FieldKind::{FIELD_KIND[a.type]}, {required}, {ints}, {floats}, {text}, "
            f"{choices}, {length}}},"
        )
    if rows:
        w.append("const FieldSpec kFields[] = {")
        w.extend(rows)
        w.append("};")


def _output_shapes(decl: OpDecl, w: list[str]) -> None:
    index = {i.name: k for k, i in enumerate(decl.inputs)}
    w.append(
        "int32_t output_shapes(const Attrs& a, const nvinfer1::DimsExprs* in, int32_t nb_in, "
        "nvinfer1::DimsExprs* out, nvinfer1::IExprBuilder& eb, const char** why) {"
    )
    w.append("  (void)a; (void)in; (void)nb_in; (void)eb; (void)why;")
    size_exprs: dict[str, str] = {}
    plain = ExprAlgebra(decl, {})
    for j, o in enumerate(decl.outputs):  # size tensors first: other outputs' rules may use them
        if not o.is_size:
            continue
        w.append(f"  const nvinfer1::IDimensionExpr* opt_{j} = {sr.evaluate(o.opt, plain)};")
        w.append(f"  const nvinfer1::IDimensionExpr* upper_{j} = {sr.evaluate(o.upper, plain)};")
        w.append(
            f'  if (opt_{j} == nullptr || upper_{j} == nullptr) return *why = "the opt/upper bound of size output '
            f"'{o.name}' could not be built\", 1;"
        )
        w.append(f"  const nvinfer1::IDimensionExpr* size_{j} = eb.declareSizeTensor({j}, *opt_{j}, *upper_{j});")
        w.append(f"  if (size_{j} == nullptr) return *why = \"declareSizeTensor failed for '{o.name}'\", 1;")
        w.append(f"  out[{j}].nbDims = 0;")
        size_exprs[o.name] = f"size_{j}"
    algebra = ExprAlgebra(decl, size_exprs)
    for j, o in enumerate(decl.outputs):
        if o.is_size:
            continue
        rule = sr.to_text(o.shape).replace('"', "'")
        if isinstance(o.shape, sr.Like):
            k = index[o.shape.input]
            w.append(f"  out[{j}] = in[{k}];  // {rule}: copies the dims")
            continue
        w.append(f"  out[{j}].nbDims = {len(o.shape.dims)};  // {rule}")
        for i, d in enumerate(o.shape.dims):
            w.append(f"  out[{j}].d[{i}] = {sr.evaluate(d, algebra)};")
            w.append(
                f"  if (out[{j}].d[{i}] == nullptr) return *why = \"dim {i} of output '{o.name}' ({rule}) "
                f'could not be built", 1;'
            )
    w.append("  return 0;")
    w.append("}")


def _output_dims(decl: OpDecl, w: list[str]) -> None:
    index = {i.name: k for k, i in enumerate(decl.inputs)}
    alg = KnownAlgebra(decl, sizes_from="sizes")
    w.append(
        "int32_t output_dims(const Attrs& a, const nvinfer1::Dims* in, int32_t nb_in, int32_t k, KnownInt* d, "
        "const KnownInt* sizes) {"
    )
    w.append("  (void)a; (void)in; (void)nb_in; (void)d; (void)sizes;")
    w.append("  switch (k) {")
    for j, o in enumerate(decl.outputs):
        if isinstance(o.shape, sr.Like):
            src = index[o.shape.input]
            w.append(f"    case {j}:")
            w.append(f"      if ({src} >= nb_in) return -1;")
            w.append(
                f"      for (int32_t i = 0; i < in[{src}].nbDims && i < nvinfer1::Dims::MAX_DIMS; ++i) "
                f"d[i] = k_dim(in, nb_in, {src}, i);"
            )
            w.append(f"      return in[{src}].nbDims;")
        else:
            w.append(f"    case {j}:")
            for i, e in enumerate(o.shape.dims):
                w.append(f"      d[{i}] = {sr.evaluate(e, alg)};")
            w.append(f"      return {len(o.shape.dims)};")
    w.append("    default: return -1;")
    w.append("  }")
    w.append("}")


def _check_input_shapes(decl: OpDecl, w: list[str]) -> None:
    index = {i.name: k for k, i in enumerate(decl.inputs)}
    alg = KnownAlgebra(decl)
    w.append("bool check_input_shapes(const Attrs& a, const nvinfer1::Dims* in, int32_t nb_in, std::string* why) {")
    w.append("  (void)a; (void)in; (void)nb_in; (void)why;")
    for k, i in enumerate(decl.inputs):
        if i.shape is None:
            continue
        rule = sr.to_text(i.shape)
        w.append(f"  if ({k} < nb_in) {{  // {i.name}: {rule}")
        if isinstance(i.shape, sr.Like):
            src = index[i.shape.input]
            w.append("    std::vector<KnownInt> e;")
            w.append(f"    for (int32_t d = 0; d < in[{src}].nbDims; ++d) e.push_back(k_dim(in, nb_in, {src}, d));")
        else:
            w.append(f"    std::vector<KnownInt> e = {{{', '.join(sr.evaluate(d, alg) for d in i.shape.dims)}}};")
        w.append(f"    if (!shape_matches(in[{k}], e, {c_string(i.name)}, {c_string(rule)}, why)) return false;")
        w.append("  }")
    w.append("  return true;")
    w.append("}")


def _launch(decl: OpDecl, w: list[str]) -> None:
    w.append(
        "::opforge::Status launch(const Attrs& a, const ::opforge::TensorView* in, const bool* present, "
        "const ::opforge::TensorView* out, const ::opforge::DeviceContext& ctx) {"
    )
    w.append("#ifdef OPFORGE_TRT_WITH_KERNELS")
    args = [f"present[{k}] ? &in[{k}] : nullptr" if i.optional else f"in[{k}]" for k, i in enumerate(decl.inputs)]
    args += [f"out[{j}]" for j in range(len(decl.outputs))]
    args += [KERNEL_ATTR[at.type].format(k=k) for k, at in enumerate(decl.attrs)]
    w.append("  (void)present;")
    w.append(f"  return ::opforge_kernels::{decl.namespace}::{decl.name}::cuda({', '.join(args + ['ctx'])});")
    w.append("#else")
    w.append("  (void)a; (void)in; (void)present; (void)out; (void)ctx;")
    w.append(
        "  return ::opforge::Status::error(::opforge::Status::kInternal, "
        '"this plugin library was built without CUDA kernels");'
    )
    w.append("#endif")
    w.append("}")


def generate(decl: OpDecl) -> str:
    """C++ source defining `opforge::trt::gen::spec_<ns>__<name>`."""
    w = [
        f"// Generated by opforge (trt codegen v{GENERATOR_VERSION}) from the declaration of {decl.id} at "
        f"{decl.source}.",
        "// Do not edit: `python -m ops.build --trt` regenerates it.",
        '#include "opforge_trt_plugin.h"',
        '#include "opforge_trt_codegen_support.h"',
        "#ifdef OPFORGE_TRT_WITH_KERNELS",
        f'#include "{include_path(decl)}"',
        "#endif",
        "",
        "namespace opforge {",
        "namespace trt {",
        "namespace gen {",
        f"namespace {decl.namespace}__{decl.name} {{",
        "namespace {",
        "",
    ]
    _fields(decl, w)
    w.append("const InputSpec kInputs[] = {")
    n_required = 0
    for i in decl.inputs:
        like = [x.name for x in decl.inputs].index(i.dtype_like) if i.dtype_like else -1
        rank = -1 if i.rank is None else i.rank
        n_required += not i.optional
        w.append(
            f"    {{{c_string(i.name)}, {dtype_mask(i.dtypes)}, {like}, {'true' if i.optional else 'false'}, {rank}, "
            f"{i.min_rank}}},"
        )
    w.append("};")
    w.append("const OutputSpec kOutputs[] = {")
    for o in decl.outputs:
        like = [x.name for x in decl.inputs].index(o.dtype_like) if o.dtype_like else -1
        fixed = DTYPES[o.dtype][1] if o.dtype else -1
        w.append(f"    {{{c_string(o.name)}, {fixed}, {like}, {'true' if o.is_size else 'false'}}},")
    w.append("};")
    w.append("")
    _output_shapes(decl, w)
    _output_dims(decl, w)
    _check_input_shapes(decl, w)
    w.append("KnownInt size_upper(const Attrs& a, const nvinfer1::Dims* in, int32_t nb_in, int32_t k) {")
    w.append("  (void)a; (void)in; (void)nb_in;")
    for j, o in enumerate(decl.outputs):
        if o.is_size:
            w.append(f"  if (k == {j}) return {sr.evaluate(o.upper, KnownAlgebra(decl))};")
    w.append("  return KnownInt::unknown();")
    w.append("}")
    w.append("KnownInt workspace_bytes(const Attrs& a, const nvinfer1::Dims* in, int32_t nb_in) {")
    w.append("  (void)a; (void)in; (void)nb_in;")
    w.append(f"  return {sr.evaluate(decl.workspace, KnownAlgebra(decl))};")
    w.append("}")
    _launch(decl, w)
    w += ["", "}  // namespace", f"}}  // namespace {decl.namespace}__{decl.name}", ""]
    ns = f"{decl.namespace}__{decl.name}"
    fields = (f"{ns}::kFields", len(decl.attrs)) if decl.attrs else ("nullptr", 0)  # an op without attributes
    w.append(f"extern const OpSpec {symbol(decl)};")
    w.append(f"const OpSpec {symbol(decl)} = {{")
    w.append(
        f"    {c_string(decl.id)}, {c_string(decl.name)}, {c_string(str(decl.version))}, {c_string(decl.namespace)},"
    )
    w.append(
        f"    {fields[0]}, {fields[1]}, {ns}::kInputs, {len(decl.inputs)}, {n_required}, "
        f"{ns}::kOutputs, {len(decl.outputs)},"
    )
    w.append(
        f"    &{ns}::output_shapes, &{ns}::output_dims, &{ns}::size_upper, &{ns}::check_input_shapes, "
        f"&{ns}::workspace_bytes, &{ns}::launch,"
    )
    w.append("};")
    w += ["", "}  // namespace gen", "}  // namespace trt", "}  // namespace opforge", ""]
    return "\n".join(w)


def generate_index(decls: list[OpDecl]) -> str:
    """The list of every op's spec, read by getCreators."""
    w = [
        "// Generated by opforge: every op with a TensorRT plugin. Do not edit.",
        '#include "opforge_trt_plugin.h"',
        "",
        "namespace opforge {",
        "namespace trt {",
        "namespace gen {",
    ]
    w += [f"extern const OpSpec {symbol(d)};" for d in decls]
    w += [
        "}  // namespace gen",
        "",
        "const OpSpec* const* all_specs(int32_t* count) {",
        "  static const OpSpec* const specs[] = {" + "".join(f"&gen::{symbol(d)}, " for d in decls) + "nullptr};",
        f"  *count = {len(decls)};",
        "  return specs;",
        "}",
        "",
        "}  // namespace trt",
        "}  // namespace opforge",
        "",
    ]
    return "\n".join(w)
