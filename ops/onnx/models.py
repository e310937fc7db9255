"""Small torch modules around one declared op, for exporting an op on its own (ops.check, tests)."""

from __future__ import annotations


def single_op_module(op, attrs: dict | None = None):
    """A torch.nn.Module whose forward takes the op's tensor inputs (by their declared names, so both
    exporters name the graph inputs after them) and calls the op with fixed `attrs`."""
    import torch

    decl = op.decl
    values = {a.name: a.default for a in decl.attrs if a.has_default}
    values.update(attrs or {})
    names = [i.name for i in decl.inputs]
    params = ", ".join(f"{n}=None" if i.optional else n for n, i in zip(names, decl.inputs))
    source = (f"def forward(self, {params}):\n"
              f"    return _op({', '.join(names)}, *_attrs)\n")
    namespace = {"_op": op.torch_op, "_attrs": [values[a.name] for a in decl.attrs]}
    exec(compile(source, f"<opforge single-op module of {decl.id}>", "exec"), namespace)
    return type(f"{decl.name}_module", (torch.nn.Module,), {"forward": namespace["forward"]})().eval()


def run_session(session, tensors) -> tuple:
    """Run an ORT session on torch tensors (graph inputs in order; absent optional ones skipped)."""
    import torch

    present = [t for t in tensors if t is not None]
    feed = {i.name: t.detach().cpu().numpy() for i, t in zip(session.get_inputs(), present)}
    return tuple(torch.from_numpy(o) for o in session.run(None, feed))
