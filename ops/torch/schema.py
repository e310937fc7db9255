"""The torch operator schema strings of a declaration: the op, and the helper op that runs its backward.

A declaration's names are the user's, and the schema keeps them, except where torch itself gives an argument
name a meaning (checked on torch 2.11 and 2.13):

- `self`: torch.fx renames a schema's `self` to `input` when it normalises a call (torch.fx.operator_schemas), so
  inductor's lowering passes a defaulted `self` as `input=` (an unknown keyword), and `self` next to an `input`
  is a duplicate parameter (opcheck's test_schema and torch.compile fail);
- `kernel`, `cls`: inductor lowers a custom op with `FallbackKernel.create(cls, kernel, *args, **kwargs)`, and
  the defaulted arguments it normalises into keywords collide with those two ("got multiple values").

Such a name is spelled with a trailing `_` in the schema (`kernel_`; more `_` if the declaration already uses
that name): what `torch.ops.ns.op(..., kernel_=...)` takes. Everything else keeps the user's name: the op's
Python call (`ops.get_op(...)(x, kernel=...)`, which maps it), the reference, samples, the backward's ctx, the
ONNX attribute and the TensorRT plugin field.
"""

from __future__ import annotations

from ..core.declaration import OpDecl, ResolvedAttr, schema_names  # in the core: ops.Op maps its keywords too

SCHEMA_TYPES = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "str": "str",
    "list[int]": "int[]",
    "list[float]": "float[]",
}


def default_text(a: ResolvedAttr) -> str:
    v = a.default
    if a.type == "bool":
        return "True" if v else "False"
    if a.type == "str":
        return '"' + v + '"'
    if a.type.startswith("list["):
        return "[" + ", ".join(repr(e) for e in v) + "]"
    return repr(v)


def schema_kwargs(decl: OpDecl, kwargs: dict) -> dict:
    """Keyword arguments by declared name -> by schema name (for torch.ops.<ns>.<name> and opcheck)."""
    names = schema_names(decl)
    return {names.get(k, k): v for k, v in kwargs.items()}


def schema(decl: OpDecl) -> str:
    """e.g. 'rms_norm(Tensor x, Tensor weight, float eps=1e-06) -> Tensor' (without the namespace)."""
    names = schema_names(decl)
    args = [f"Tensor? {names[i.name]}=None" if i.optional else f"Tensor {names[i.name]}" for i in decl.inputs]
    for a in decl.attrs:
        arg = f"{SCHEMA_TYPES[a.type]} {names[a.name]}"
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
    names = schema_names(decl)
    attrs = "".join(f", {SCHEMA_TYPES[a.type]} {names[a.name]}" for a in decl.attrs)
    # opforge_-prefixed: declared names never start so (ops.core.declaration.RESERVED_PREFIX)
    return f"{backward_op_name(decl)}(Tensor?[] opforge_saved, Tensor?[] opforge_grads{attrs}) -> Tensor?[]"
