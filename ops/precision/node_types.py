"""Which float32 tensors of a node may become half, read from the node's ONNX schema.

A node runs in half only if every type parameter bound to one of its float32 tensors allows the half type
(float16 / bfloat16); all tensors bound to that parameter change together, because a strongly typed build
(TensorRT 11) rejects a node whose T is float16 on one input and float32 on another. Inputs with a fixed
type (Resize's `scales` is tensor(float)) keep float32. For opforge nodes the schema is the one generated
from the declaration (ops/onnx/schema.py), so "an op whose declaration lists float16 takes half" is the same
rule; an op declared float32-only keeps float32 behind Casts."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import lazy

FLOAT, FLOAT16, BFLOAT16 = 1, 10, 16
HALF_TYPES = {"float16": FLOAT16, "bfloat16": BFLOAT16}
_TYPE_STR = {FLOAT16: "tensor(float16)", BFLOAT16: "tensor(bfloat16)"}

# Nodes whose float output type comes from an attribute, not from an input: rewritten by the converter.
ATTRIBUTE_TYPED = {"Cast", "ConstantOfShape", "Constant"}


@dataclass(frozen=True)
class HalfSlots:
    """Positions of a node's float32 tensors that turn half when the node does."""

    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def opset_of(model, domain: str = "") -> int:
    for o in model.opset_import:
        if o.domain == domain or (domain == "" and o.domain == "ai.onnx"):
            return o.version
    return 1


def node_schema(node, model):
    onnx = lazy.onnx()

    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    try:
        return onnx.defs.get_schema(node.op_type, opset_of(model, domain), domain)
    except Exception:
        return None


def formal_param(params, index):
    if index < len(params):
        return params[index]
    last = params[-1] if params else None
    variadic = getattr(onnx_option(), "Variadic", None)
    return last if last is not None and last.option == variadic else None


def onnx_option():
    onnx = lazy.onnx()

    return onnx.defs.OpSchema.FormalParameterOption


def half_slots(node, model, elem_type: dict, half: int = FLOAT16) -> HalfSlots | None:
    """The slots of `node`'s float32 tensors that become `half` when the node runs in half, or None when
    the node cannot run in half (its schema does not allow it, or it has no float32 tensor at all)."""
    floats_in = [i for i, n in enumerate(node.input) if n and elem_type.get(n) == FLOAT]
    floats_out = [i for i, n in enumerate(node.output) if n and elem_type.get(n) == FLOAT]
    if node.op_type in ATTRIBUTE_TYPED and node.domain in ("", "ai.onnx"):
        # Cast: its input may be half whatever `to` says; its output only when `to` is float.
        if not floats_in and not floats_out:
            return None
        return HalfSlots(tuple(floats_in), tuple(floats_out))
    if not floats_in and not floats_out:
        return None
    schema = node_schema(node, model)
    if schema is None:
        return None
    constraints = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    wanted = _TYPE_STR[half]
    bound = set()
    ins, outs = [], []
    for positions, params, chosen in ((floats_in, schema.inputs, ins), (floats_out, schema.outputs, outs)):
        for i in positions:
            formal = formal_param(params, i)
            if formal is None:
                return None
            param = formal.type_str
            if param in constraints:
                if wanted not in constraints[param]:
                    return None  # e.g. Range: T has no float16
                bound.add(param)
                chosen.append(i)
            # a fixed type (tensor(float)) keeps float32: the slot is simply not converted
    # every slot bound to a converted type parameter converts, or the node would mix types
    for positions, params, chosen in ((floats_in, schema.inputs, ins), (floats_out, schema.outputs, outs)):
        for i in positions:
            formal = formal_param(params, i)
            if formal.type_str in bound and i not in chosen:
                chosen.append(i)
    if not ins and not outs:
        return None
    return HalfSlots(tuple(sorted(ins)), tuple(sorted(outs)))


def elem_types(model) -> dict:
    """name -> ONNX element type of every typed value in the main graph."""
    g = model.graph
    types = {t.name: t.data_type for t in g.initializer}
    for v in list(g.input) + list(g.output) + list(g.value_info):
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
            types[v.name] = v.type.tensor_type.elem_type
    for node in g.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            types[node.output[0]] = node.attribute[0].t.data_type
    return types
