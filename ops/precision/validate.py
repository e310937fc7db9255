"""Checks that a mixed-precision graph is what a strongly typed build needs: every tensor has an explicit
element type, and every node binds each type parameter of its schema to exactly one allowed type (no
implicit mixing of float16 and float32 inside a node; the only dtype changes are Cast nodes)."""

from __future__ import annotations

from ..core import lazy
from ..core.errors import OpforgeError
from .node_types import elem_types, formal_param, node_schema


def type_problems(model) -> list[str]:
    """Human-readable problems, empty when the graph is consistently typed."""
    types = elem_types(model)
    problems = []
    for node in model.graph.node:
        for name in list(node.input) + list(node.output):
            if name and name not in types:
                problems.append(f"{node.name}: tensor {name!r} has no explicit element type")
        schema = node_schema(node, model)
        if schema is None:
            continue
        allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        bound: dict = {}
        for names, params in ((node.input, schema.inputs), (node.output, schema.outputs)):
            for i, name in enumerate(names):
                formal = formal_param(params, i) if params else None
                if not name or formal is None or name not in types:
                    continue
                bound.setdefault(formal.type_str, set()).add(types[name])
        onnx = lazy.onnx()

        for param, elems in bound.items():
            strs = {
                f"tensor({onnx.helper.tensor_dtype_to_np_dtype(e).name if e != 16 else 'bfloat16'})".replace(
                    "float64", "double"
                ).replace("float32", "float")
                for e in elems
            }
            if param in allowed and len(elems) > 1:
                problems.append(f"{node.name} ({node.op_type}): type parameter {param} bound to {sorted(strs)}")
            elif param in allowed and not strs <= allowed[param]:
                problems.append(f"{node.name} ({node.op_type}): {param} = {sorted(strs)} not allowed")
            elif param not in allowed and param.startswith("tensor(") and strs != {param}:
                problems.append(f"{node.name} ({node.op_type}): fixed type {param} given {sorted(strs)}")
    return problems


def check_strongly_typed(model) -> None:
    """Raise OpforgeError listing the first problems, if any."""
    problems = type_problems(model)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise OpforgeError(
            "the mixed-precision graph is not consistently typed: "
            + "; ".join(problems[:5])
            + more
            + ". This is an opforge bug: please report it with the model."
        )
