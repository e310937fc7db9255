"""The `onnx.defs.OpSchema` of a declaration, with type and shape inference translated from its shape rules.

Registering it (`register_schemas`) is what lets `onnx.checker.check_model(m, full_check=True)` and
`onnx.shape_inference.infer_shapes(m, strict_mode=True)` accept an exported model and infer *through* the
custom node; onnxscript (the dynamo exporter) also needs it to emit the node. onnx 1.23 runs a Python
inference function as `fn(ctx: onnx.shape_inference.InferenceContext)`: `ctx.get_input_type(i)` returns a
copy of the input's TypeProto (or None), `ctx.get_attribute(name)` the node's AttributeProto (or None: the
default is ours to apply), and `ctx.set_output_type(i, type_proto)` publishes an output.
"""

from __future__ import annotations

from typing import Any

from ..core import lazy
from ..core import shape_rule as sr
from ..core.declaration import OpDecl, ResolvedAttr
from ..core.errors import ExportError
from ..core.registry import all_ops

# declaration dtype -> (ONNX type string, TensorProto enum)
ONNX_DTYPES: dict[str, tuple[str, int]] = {
    "float32": ("tensor(float)", 1),
    "uint8": ("tensor(uint8)", 2),
    "int8": ("tensor(int8)", 3),
    "int32": ("tensor(int32)", 6),
    "int64": ("tensor(int64)", 7),
    "bool": ("tensor(bool)", 9),
    "float16": ("tensor(float16)", 10),
    "float64": ("tensor(double)", 11),
    "bfloat16": ("tensor(bfloat16)", 16),
}
ELEM_TO_DTYPE = {enum: name for name, (_, enum) in ONNX_DTYPES.items()}

# TensorRT's ONNX parser reads these two STRING attributes itself (plugin version / namespace of the
# creator to look up); they are never passed to the plugin. Declared here so the checker accepts them.
TRT_ATTRS = ("plugin_version", "plugin_namespace")

_REGISTERED: dict[str, Any] = {}  # op id -> registered OpSchema (onnx keeps one per process)


def onnx_supported(decl: OpDecl) -> bool:
    """A declaration opts out of ONNX with `register_op(..., onnx=False)`."""
    return decl.onnx


def onnx_attr_value(a: ResolvedAttr, value):
    """A declared attribute's value as ONNX stores it (ONNX has no bool attribute: INT 0/1)."""
    if a.type == "bool":
        return int(bool(value))
    if a.type == "float":
        return float(value)
    if a.type == "list[float]":
        return [float(v) for v in value]
    if a.type == "list[int]":
        return [int(v) for v in value]
    return value


def _attr_type(onnx_defs, a: ResolvedAttr):
    T = onnx_defs.OpSchema.AttrType
    return {
        "int": T.INT,
        "bool": T.INT,
        "float": T.FLOAT,
        "str": T.STRING,
        "list[int]": T.INTS,
        "list[float]": T.FLOATS,
    }[a.type]


def type_params(decl: OpDecl) -> dict[str, str]:
    """input/output name -> its type-constraint name (shared when one input's dtype is like another's)."""
    params = {}
    for i in decl.inputs:
        params[i.name] = params[i.dtype_like] if i.dtype_like else f"T_{i.name}"
    for o in decl.outputs:
        params[o.name] = params[o.dtype_like] if o.dtype_like else ONNX_DTYPES[o.dtype][0]
    return params


class OnnxShapeAlgebra:
    """Evaluates a shape rule over ONNX dims: a known int stays an int, a symbolic dim (dim_param) stays
    its name when copied unchanged, and anything computed from an unknown is unknown (None)."""

    def __init__(self, shapes: dict[str, list], names: dict[str, Any]):
        self.shapes, self.names = shapes, names

    def const(self, value):
        return value

    def dim(self, input, index):
        shape = self.shapes.get(input)
        if shape is None or not -len(shape) <= index < len(shape):
            return None
        return shape[index]

    def name(self, name):
        return self.names.get(name)

    def item(self, name, index):
        values = self.names.get(name)
        return None if values is None or not -len(values) <= index < len(values) else int(values[index])

    def binary(self, op, a, b):
        if isinstance(a, int) and isinstance(b, int):
            return sr.IntAlgebra({}, {}).binary(op, a, b)
        # x*1, x+0, x-0, x//1 keep a symbolic dim's name: the common `like`-ish rules stay symbolic.
        if (op in ("mul", "floordiv") and b == 1) or (op in ("add", "sub") and b == 0):
            return a
        if (op == "mul" and a == 1) or (op == "add" and a == 0):
            return b
        return None


def _dims_of(type_proto) -> list | None:
    if type_proto is None or not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    out = []
    for d in type_proto.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None))
    return out


def output_dims(decl: OpDecl, input_dims: dict[str, list | None], attrs: dict) -> list[list | None]:
    """Every output's dims (int | str | None each), or None for an output whose rank is unknown."""
    algebra = OnnxShapeAlgebra(input_dims, decl.shape_names(attrs))
    result = []
    for o in decl.outputs:
        if isinstance(o.shape, sr.Like) and input_dims.get(o.shape.input) is None:
            result.append(None)
            continue
        needed = {d.input for d in sr.references(o.shape)[2]}
        if any(input_dims.get(n) is None for n in needed):
            result.append([None] * len(o.shape.dims))  # x.shape[i], x of unknown rank: only the rank is known
            continue
        result.append(sr.evaluate_shape(o.shape, algebra, lambda n: len(input_dims[n])))
    return result


def _inference_function(decl: OpDecl):
    onnx = lazy.onnx()

    def infer(ctx):
        dims, elem = {}, {}
        for k, i in enumerate(decl.inputs):
            t = ctx.get_input_type(k) if k < ctx.get_num_inputs() and ctx.has_input(k) else None
            dims[i.name] = _dims_of(t)
            if t is not None and t.HasField("tensor_type"):
                elem[i.name] = t.tensor_type.elem_type
        attrs = {}
        for a in decl.attrs:
            p = ctx.get_attribute(a.name)
            if p is not None:
                attrs[a.name] = onnx.helper.get_attribute_value(p)
        for k, (o, shape) in enumerate(zip(decl.outputs, output_dims(decl, dims, attrs))):
            out = onnx.TypeProto()
            et = ONNX_DTYPES[o.dtype][1] if o.dtype else elem.get(o.dtype_like, 0)
            if et:
                out.tensor_type.elem_type = et
            if shape is not None:
                shape_proto = out.tensor_type.shape
                shape_proto.SetInParent()  # rank 0 is a shape with no dims, not "no shape"
                for d in shape:
                    dim = shape_proto.dim.add()
                    if isinstance(d, int):
                        dim.dim_value = d
                    elif isinstance(d, str):
                        dim.dim_param = d
            if et:
                ctx.set_output_type(k, out)

    return infer


def make_schema(decl: OpDecl):
    """The OpSchema of `decl` (domain = namespace, op_type = name, since_version = version)."""
    onnx = lazy.onnx()
    defs = onnx.defs
    S = defs.OpSchema
    params = type_params(decl)
    inputs = [
        S.FormalParameter(
            i.name,
            params[i.name],
            "",
            param_option=S.FormalParameterOption.Optional if i.optional else S.FormalParameterOption.Single,
        )
        for i in decl.inputs
    ]
    outputs = [S.FormalParameter(o.name, params[o.name], "") for o in decl.outputs]
    constraints = [
        (params[i.name], [ONNX_DTYPES[d][0] for d in i.dtypes], f"dtypes of '{i.name}'")
        for i in decl.inputs
        if not i.dtype_like
    ]
    attributes = []
    for a in decl.attrs:
        if a.has_default:
            proto = onnx.helper.make_attribute(a.name, onnx_attr_value(a, a.default))
            if a.type.startswith("list[") and not a.default:  # make_attribute cannot type an empty list
                proto = onnx.AttributeProto(name=a.name, type=_attr_type(defs, a).value)
            attributes.append(S.Attribute(a.name, proto, f"{a.type}"))
        else:
            attributes.append(S.Attribute(a.name, _attr_type(defs, a), f"{a.type}", required=True))
    for name in TRT_ATTRS:
        attributes.append(S.Attribute(name, S.AttrType.STRING, "read by TensorRT's ONNX parser", required=False))
    schema = S(
        decl.name,
        decl.namespace,
        decl.version,
        decl.doc or decl.id,
        inputs=inputs,
        outputs=outputs,
        type_constraints=constraints,
        attributes=attributes,
    )
    schema.set_type_and_shape_inference_function(_inference_function(decl))
    return schema


def register_schema(decl: OpDecl) -> None:
    """Register the op's OpSchema with onnx once per process (onnx refuses a second registration)."""
    if decl.id in _REGISTERED:
        return
    if not onnx_supported(decl):
        raise ExportError(
            f"{decl.id}: declared with onnx=False (at {decl.source}), so it has no ONNX schema. "
            "Fix: remove onnx=False once the op can be exported, or keep it out of exported models."
        )
    defs = lazy.onnx().defs
    if defs.has(decl.name, decl.version, decl.namespace):
        # registered by an earlier import of another copy of this declaration (e.g. a reloaded module)
        defs.deregister_schema(decl.name, decl.version, decl.namespace)
    schema = make_schema(decl)
    defs.register_schema(schema)
    _REGISTERED[decl.id] = schema


def register_schemas(ops=None) -> None:
    """Register the OpSchema of every declared op that supports ONNX (or of `ops`)."""
    for op in ops if ops is not None else all_ops():
        if onnx_supported(op.decl):
            register_schema(op.decl)
