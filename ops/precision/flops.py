"""FLOPs per ONNX node, from the shapes of the values one float32 run produced.

MatMul, Gemm and Conv count 2 per multiply-add (they dominate every real model); an opforge node with a
rank-4 `weight` input (deformable conv) counts like a conv of its output; layout and shape ops (Reshape,
Transpose, Gather, Shape, ...) count 0; everything else counts one per element of its largest float tensor.
The fraction of FLOPs that runs in half is what the mixed export reports."""

from __future__ import annotations

import math

from .torch_eval import custom_op

LAYOUT_OPS = {
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Gather",
    "Shape",
    "Size",
    "Slice",
    "Concat",
    "Split",
    "Expand",
    "Identity",
    "Constant",
    "ConstantOfShape",
    "Cast",
    "Range",
    "Tile",
    "Dropout",
}


def _numel(t) -> int:
    return int(t.numel()) if hasattr(t, "numel") else 0


def node_flops(node, env: dict) -> float:
    ins = [env.get(n) if n else None for n in node.input]
    outs = [env.get(n) for n in node.output if n]
    out = outs[0] if outs else None
    if node.op_type in LAYOUT_OPS and node.domain in ("", "ai.onnx"):
        return 0.0
    if node.op_type == "MatMul" and ins[0] is not None and out is not None:
        return 2.0 * _numel(out) * ins[0].shape[-1]
    if node.op_type == "Gemm" and ins[0] is not None and out is not None:
        transposed = any(a.name == "transA" and a.i for a in node.attribute)
        return 2.0 * _numel(out) * ins[0].shape[0 if transposed else -1]
    if node.op_type in ("Conv", "ConvTranspose") and len(ins) > 1 and ins[1] is not None and out is not None:
        return 2.0 * _numel(out) * math.prod(ins[1].shape[1:])
    if node.domain not in ("", "ai.onnx") and out is not None:
        op = custom_op(node)
        names = [i.name for i in op.decl.inputs] if op is not None else []
        weight = next((t for n, t in zip(names, ins) if n == "weight" and t is not None and t.dim() == 4), None)
        if weight is not None:
            return 2.0 * _numel(out) * math.prod(weight.shape[1:])
    sizes = [_numel(t) for t in ins + outs if t is not None and getattr(t, "is_floating_point", lambda: False)()]
    return float(max(sizes, default=0))
