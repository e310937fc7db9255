"""Small torch modules around one declared op, for exporting an op on its own (ops.check, tests)."""

from __future__ import annotations

import torch

from ..core.declaration import schema_names


def single_op_module(op, attrs: dict | None = None):
    """A torch.nn.Module whose forward takes the op's tensor inputs (by their declared names, so both
    exporters name the graph inputs after them; `self` as `self_`) and calls the op with fixed `attrs`."""
    decl = op.decl
    values = {a.name: a.default for a in decl.attrs if a.has_default}
    values.update(attrs or {})
    # An input called `self` is the parameter (and graph input) `self_`, as in the torch schema: torch.export's
    # unlifted module has a `forward(self, ...)` of its own (ops/torch/schema.py).
    spelled = schema_names(decl)
    names = [spelled[i.name] for i in decl.inputs]
    params = ", ".join(f"{n}=None" if i.optional else n for n, i in zip(names, decl.inputs))
    # The module's own names are `opforge_`-prefixed: no input can be called so (ops.core.declaration.RESERVED_PREFIX),
    # while an input may well be called `self`.
    source = f"def forward(opforge_module, {params}):\n    return _opforge_op({', '.join(names)}, *_opforge_attrs)\n"
    namespace = {"_opforge_op": op.torch_op, "_opforge_attrs": [values[a.name] for a in decl.attrs]}
    exec(compile(source, f"<opforge single-op module of {decl.id}>", "exec"), namespace)
    return type(f"{decl.name}_module", (torch.nn.Module,), {"forward": namespace["forward"]})().eval()


def run_session(session, tensors) -> tuple:
    """Run an ORT session on torch tensors (graph inputs in order; absent optional ones skipped).
    bfloat16 crosses as OrtValues: numpy has no bfloat16, so inputs are fed as their bits with the
    ONNX element type, and outputs are copied out of ORT's buffer by address."""
    import ctypes

    import onnxruntime as ort

    present = [t for t in tensors if t is not None]
    feed = {}
    for i, t in zip(session.get_inputs(), present):
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            bits = t.view(torch.int16).numpy()
            feed[i.name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, 16)  # TensorProto.BFLOAT16
        else:
            feed[i.name] = ort.OrtValue.ortvalue_from_numpy(t.numpy())
    outputs = []
    for value in session.run_with_ort_values(None, feed):
        if value.data_type() == "tensor(bfloat16)":
            out = torch.empty(value.shape(), dtype=torch.bfloat16)
            ctypes.memmove(out.data_ptr(), value.data_ptr(), out.numel() * out.element_size())
            outputs.append(out)
        else:
            outputs.append(torch.from_numpy(value.numpy()))
    return tuple(outputs)
