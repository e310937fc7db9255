"""`custom_translation_table` entries for the dynamo exporter (torch.onnx.export(..., dynamo=True)).

One translation function per declaration, generated as Python source so its signature *is* the
declaration: the exporter reads parameter annotations to tell tensor inputs (unannotated / Optional)
from attributes (int, float, bool, str, Sequence[...]), and binds the FX node's arguments by name, so the
parameters are the torch schema's names (ops/torch/schema.py: `kernel_` for a declared `kernel`) while the ONNX
node's attributes keep the declared ones. The helpers it calls are `_opforge_`-prefixed globals: no declared
name starts so (ops.core.declaration.RESERVED_PREFIX), so no parameter can hide them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from ..core import lazy
from ..core.declaration import OpDecl, schema_names
from .schema import onnx_attr_value, register_schema

ANNOTATIONS = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "str": "str",
    "list[int]": "Sequence[int]",
    "list[float]": "Sequence[float]",
}


def translation(decl: OpDecl):
    """An onnxscript-traceable function emitting one node (domain = namespace, op_type = name)."""
    onnxscript = lazy.require("onnxscript")
    register_schema(decl)  # onnxscript looks the op up in the registered schemas
    opset = onnxscript.values.Opset(decl.namespace, decl.version)
    emit = getattr(opset, decl.name)
    attrs = {a.name: a for a in decl.attrs}

    def call(inputs: list, attr_values: dict):
        values = {n: onnx_attr_value(attrs[n], v) for n, v in attr_values.items()}
        # trailing absent optional inputs are dropped; inner ones stay as empty names (None)
        while inputs and inputs[-1] is None:
            inputs.pop()
        if "self" in values:  # onnxscript's Op.__call__(self, *args, **kwargs) would take it for its own
            return _emit_without_self(emit, inputs, values)
        return emit(*inputs, **values)

    names = schema_names(decl)
    params = []
    for i in decl.inputs:
        params.append(f"{names[i.name]}=None" if i.optional else names[i.name])
    for a in decl.attrs:
        params.append(f"{names[a.name]}: {ANNOTATIONS[a.type]}" + (f" = {a.default!r}" if a.has_default else ""))
    source = (
        f"def {decl.namespace}_{decl.name}({', '.join(params)}):\n"
        f"    return _opforge_call([{', '.join(names[i.name] for i in decl.inputs)}], "
        f"{{{', '.join(f'{a.name!r}: {names[a.name]}' for a in decl.attrs)}}})\n"
    )
    # Annotations are evaluated where the function is defined, among globals only: a parameter named `Sequence`
    # cannot hide them.
    namespace = {"_opforge_call": call, "Sequence": Sequence, "Optional": Optional}
    exec(compile(source, f"<opforge onnx translation of {decl.id}>", "exec"), namespace)
    return namespace[f"{decl.namespace}_{decl.name}"]


def _emit_without_self(op, inputs: list, attrs: dict):
    """What onnxscript's `Op.__call__` does, for an attribute named `self` (which its own parameter would take)."""
    evaluator = lazy.require("onnxscript.evaluator").default()
    if hasattr(evaluator, "eval"):  # onnxscript < 0.6 (torch 2.10 and older)
        return evaluator.eval(op.op_schema, inputs, attrs)
    return evaluator.eval_op(op, inputs, attrs)


def translation_table(ops) -> dict:
    """{torch OpOverload: translation} for `ops` (declared ops that support ONNX)."""
    return {op.torch_op: translation(op.decl) for op in ops}
