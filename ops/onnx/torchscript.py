"""Symbolics for the TorchScript exporter (torch.onnx.export(..., dynamo=False)), opsets 11-17.

One symbolic per declaration, registered with `torch.onnx.register_custom_op_symbolic` for every
opset it may be asked for. It emits the node (domain = namespace) with typed attributes and sets the
output types and shapes from the shape rule, so the exporter's own shape inference (which knows nothing
of the custom op) still writes value_info for what follows it. The TorchScript exporter is deprecated
in torch 2.x; a torch that dropped it gives an ExportError, not an AttributeError."""

from __future__ import annotations

import torch

from ..core import shape_rule as sr
from ..core.declaration import OpDecl
from ..core.dtypes import torch_dtype
from ..core.errors import ExportError
from .schema import onnx_attr_value

OPSETS = range(11, 18)
# parse_args descriptors: the value kind torch hands a symbolic for each declared attribute type
PARSE = {"int": "i", "bool": "b", "float": "f", "str": "s", "list[int]": "is", "list[float]": "fs"}
SUFFIX = {"int": "i", "bool": "i", "float": "f", "str": "s", "list[int]": "i", "list[float]": "f"}
_REGISTERED: set[str] = set()


def torchscript_api():
    """(register_custom_op_symbolic, parse_args), or ExportError if this torch no longer has them."""
    try:
        from torch.onnx import register_custom_op_symbolic
        from torch.onnx.symbolic_helper import parse_args
    except ImportError as e:
        raise ExportError(
            f"this torch ({torch.__version__}) no longer ships the TorchScript ONNX exporter ({e}), "
            "which opforge uses for opsets 11-17. Fix: export at opset 18 or newer (dynamo "
            "exporter), or use a torch that still has torch.onnx.register_custom_op_symbolic."
        ) from e
    return register_custom_op_symbolic, parse_args


def _output_type(decl: OpDecl, o, inputs: dict, attrs: dict):
    """The TorchScript type of output `o` (dtype + sizes where the rule gives them)."""

    source = inputs.get(o.dtype_like) if o.dtype_like else next(v for v in inputs.values() if v is not None)
    dtype = torch_dtype(o.dtype) if o.dtype else None
    sizes = {n: v.type().varyingSizes() for n, v in inputs.items() if v is not None}
    if isinstance(o.shape, sr.Like):
        shape = sizes.get(o.shape.input)
    elif any(sizes.get(d.input) is None for d in sr.references(o.shape)[2]):
        shape = [None] * len(o.shape.dims)
    else:
        names = decl.shape_names(attrs)
        names.update({s.name: None for s in decl.outputs if s.is_size})  # data-dependent: unknown until run

        class Algebra(sr.IntAlgebra):  # unknown (None) dims stay unknown through arithmetic
            def binary(self, op, a, b):
                return None if a is None or b is None else super().binary(op, a, b)

        algebra = Algebra(sizes, names)
        shape = [sr.evaluate(d, algebra) for d in o.shape.dims]
    base = source.type()
    if dtype is not None:
        base = base.with_dtype(dtype)
    if shape is None:
        return base
    return base.with_sizes(shape)


def symbolic(decl: OpDecl):
    _, parse_args = torchscript_api()
    attrs_decl = decl.attrs
    n_in = len(decl.inputs)

    def emit(g, args):
        inputs = dict(zip([i.name for i in decl.inputs], args[:n_in]))
        values = dict(zip([a.name for a in attrs_decl], args[n_in:]))
        for name, v in inputs.items():
            if v is not None and v.node().mustBeNone():
                inputs[name] = None
        kwargs = {f"{a.name}_{SUFFIX[a.type]}": onnx_attr_value(a, values[a.name]) for a in attrs_decl}
        ins = list(inputs.values())
        while ins and ins[-1] is None:
            ins.pop()
        ins = [g.op("prim::Constant").setType(_none_type()) if v is None else v for v in ins]
        out = g.op(f"{decl.namespace}::{decl.name}", *ins, outputs=len(decl.outputs), **kwargs)
        outs = out if isinstance(out, (tuple, list)) else [out]
        for o, value in zip(decl.outputs, outs):
            value.setType(_output_type(decl, o, inputs, values))
        return outs[0] if len(outs) == 1 else tuple(outs)

    # torch calls a symbolic with the graph context and the node's inputs by position; the generated signature
    # is the declaration's (inputs, then attributes), so parse_args sees one parameter per argument. Its own
    # names are `opforge_`-prefixed, which no declared name can be (ops.core.declaration.RESERVED_PREFIX).
    names = [i.name for i in decl.inputs] + [a.name for a in attrs_decl]
    source = (
        f"def {decl.namespace}_{decl.name}(opforge_g, {', '.join(names)}):\n"
        f"    return _opforge_emit(opforge_g, [{', '.join(names)}])\n"
    )
    namespace = {"_opforge_emit": emit}
    exec(compile(source, f"<opforge torchscript symbolic of {decl.id}>", "exec"), namespace)
    return parse_args(*(["v"] * n_in), *(PARSE[a.type] for a in attrs_decl))(namespace[f"{decl.namespace}_{decl.name}"])


def _none_type():
    return torch._C.OptionalType.ofTensor()


def register_symbolics(ops) -> None:
    """Register the symbolic of each op (idempotent). torch looks a custom-domain symbolic up by the
    *custom* domain's opset (export's custom_opsets, = decl.version), not the default domain's; registered
    at 1 it serves every version, whatever default opset (11-17) is exported."""
    register, _ = torchscript_api()
    for op in ops:
        if op.id in _REGISTERED:
            continue
        register(op.id, symbolic(op.decl), 1)
        _REGISTERED.add(op.id)
