"""Rewrite a float32 ONNX graph so that chosen nodes run in half and the rest in float32, with an explicit
Cast at every boundary.

Every float32 tensor a half node reads becomes half (a weight is stored converted: "weights included";
anything else goes through a Cast node), every tensor a float32 node reads from a half producer goes back
through a Cast to float32, and the graph's inputs and outputs keep float32. No node ever sees mixed types
for one type parameter, so the file is valid for a strongly typed TensorRT build (TensorRT 11 derives each
layer's precision from exactly these types) and for ONNX Runtime."""

from __future__ import annotations

import copy

import numpy as np

from ..core import lazy
from ..onnx.export import opforge_ops_in
from ..onnx.schema import onnx_supported, register_schemas
from .flops import LAYOUT_OPS
from .formats import HalfFormat
from .node_types import FLOAT, elem_types, half_slots


def is_layout(node) -> bool:
    """Data movement only (no arithmetic): exact in any precision."""
    return (
        node.domain in ("", "ai.onnx")
        and node.op_type in LAYOUT_OPS
        and node.op_type not in ("Cast", "Constant", "ConstantOfShape", "Range", "Shape", "Size")
    )


def _suffix(elem: int) -> str:
    return {1: "float32", 10: "float16", 16: "bfloat16"}[elem]


def _convert_tensor(proto, elem: int, name: str):
    numpy_helper = lazy.onnx().numpy_helper

    array = numpy_helper.to_array(proto)
    if elem == 16:
        import ml_dtypes

        array = array.astype(ml_dtypes.bfloat16)
    else:
        array = array.astype({1: np.float32, 10: np.float16}[elem])
    return numpy_helper.from_array(array, name)


def convert_to_mixed(model, keep_float32: set, fmt: HalfFormat):
    """A copy of `model` in which every node that can run in half, and is not named in keep_float32, does."""
    onnx = lazy.onnx()

    m = copy.deepcopy(model)
    g = m.graph
    types = elem_types(m)
    originals = {t.name: t for t in g.initializer}
    current = {n: t for n, t in types.items() if n in originals or n in {i.name for i in g.input}}
    made_inits, nodes, casts = [], [], {}

    def as_type(name: str, want: int) -> str:
        if current.get(name) == want:
            return name
        if (name, want) in casts:
            return casts[(name, want)]
        new = f"{name}__{_suffix(want)}"
        if name in originals:  # a weight: stored in the wanted type, no Cast node at run time
            made_inits.append(_convert_tensor(originals[name], want, new))
        else:
            nodes.append(onnx.helper.make_node("Cast", [name], [new], name=f"{new}__cast", to=want))
        current[new] = want
        casts[(name, want)] = new
        return new

    for node in g.node:
        slots = half_slots(node, m, types, fmt.onnx_type)
        half = slots is not None and node.name not in keep_float32
        if half and is_layout(node):
            # data movement follows its producer: a Cast then sits right before the next compute node
            first = next((n for n in node.input if n and types.get(n) == FLOAT), None)
            half = first is None or current.get(first) != FLOAT
        n = copy.deepcopy(node)
        for i, name in enumerate(n.input):
            if name and types.get(name) == FLOAT:
                n.input[i] = as_type(name, fmt.onnx_type if half and i in slots.inputs else FLOAT)
        for k, name in enumerate(n.output):
            if not name:
                continue
            current[name] = (
                fmt.onnx_type if (half and types.get(name) == FLOAT and k in slots.outputs) else types.get(name)
            )
        if half:
            _retype_attributes(n, slots, fmt)
        nodes.append(n)

    # graph outputs keep float32: a half result is produced under another name and cast back
    renames = {}
    for o in g.output:
        if types.get(o.name) == FLOAT and current.get(o.name) != FLOAT:
            renames[o.name] = f"{o.name}__{_suffix(current[o.name])}"
    if renames:
        for n in nodes:
            for seq in (n.input, n.output):
                for i, name in enumerate(seq):
                    if name in renames:
                        seq[i] = renames[name]
        for old, new in renames.items():
            nodes.append(onnx.helper.make_node("Cast", [new], [old], name=f"{old}__cast", to=FLOAT))

    used = {name for n in nodes for name in n.input}
    keep_inits = [t for t in g.initializer if t.name in used] + [t for t in made_inits if t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    del g.value_info[:]
    register_schemas([op for op in opforge_ops_in() if onnx_supported(op.decl)])
    return onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True, data_prop=True)


def _retype_attributes(node, slots, fmt: HalfFormat) -> None:
    """Nodes whose float output type is an attribute (Cast's `to`, a Constant's value)."""
    for a in node.attribute:
        if node.op_type == "Cast" and a.name == "to" and a.i == FLOAT and slots.outputs:
            a.i = fmt.onnx_type
        elif node.op_type in ("Constant", "ConstantOfShape") and a.name == "value" and a.t.data_type == FLOAT:
            a.t.CopyFrom(_convert_tensor(a.t, fmt.onnx_type, a.t.name))
