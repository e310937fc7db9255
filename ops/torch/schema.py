"""The torch operator schema strings of a declaration: the op, and the helper op that runs its backward."""

from __future__ import annotations

from ..declaration import OpDecl, ResolvedAttr

SCHEMA_TYPES = {"int": "int", "float": "float", "bool": "bool", "str": "str", "list[int]": "int[]",
                "list[float]": "float[]"}


def default_text(a: ResolvedAttr) -> str:
    v = a.default
    if a.type == "bool":
        return "True" if v else "False"
    if a.type == "str":
        return '"' + v + '"'
    if a.type.startswith("list["):
        return "[" + ", ".join(repr(e) for e in v) + "]"
    return repr(v)


def schema(decl: OpDecl) -> str:
    """e.g. 'rms_norm(Tensor x, Tensor weight, float eps=1e-06) -> Tensor' (without the namespace)."""
    args = [f"Tensor? {i.name}=None" if i.optional else f"Tensor {i.name}" for i in decl.inputs]
    for a in decl.attrs:
        arg = f"{SCHEMA_TYPES[a.type]} {a.name}"
        args.append(f"{arg}={default_text(a)}" if a.has_default else arg)
    rets = "Tensor" if len(decl.outputs) == 1 else "(" + ", ".join("Tensor" for _ in decl.outputs) + ")"
    return f"{decl.name}({', '.join(args)}) -> {rets}"


def backward_op_name(decl: OpDecl) -> str:
    """The helper op through which the C++ autograd kernel of a compiled op runs its Python backward."""
    return f"{decl.name}_opforge_backward"


def backward_schema(decl: OpDecl) -> str:
    """(saved tensors in `saves` order, None for an absent optional input; a gradient per output, None where
    autograd has none; the attributes) -> a gradient per input, None where there is none. `Tensor?[]` both
    ways, so None round-trips as None (an undefined tensor in C++), never as a zero tensor."""
    attrs = "".join(f", {SCHEMA_TYPES[a.type]} {a.name}" for a in decl.attrs)
    return f"{backward_op_name(decl)}(Tensor?[] saved, Tensor?[] grads{attrs}) -> Tensor?[]"
