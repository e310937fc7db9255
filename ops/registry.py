"""`register_op` and the registry of declared ops. The registry is the only list of ops: the build,
the CLIs and the tests enumerate it; adding an op never edits a central file."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable

from pathlib import Path

from .declaration import DEVICES, PROJECT_ROOT, OpDecl
from .errors import DeclarationError, OpforgeError

_OPS: dict[str, "Op"] = {}


class Op:
    """A declared op. Calling it calls `torch.ops.<ns>.<name>`; `.reference` is the plain-PyTorch oracle."""

    def __init__(self, decl: OpDecl):
        self.decl = decl
        self.reference = decl.reference
        self.__doc__ = decl.doc
        self.__name__ = decl.name

    @property
    def id(self) -> str:
        return self.decl.id

    @property
    def torch_op(self):
        import torch

        return getattr(getattr(torch.ops, self.decl.namespace), self.decl.name).default

    def __call__(self, *args, **kwargs):
        return self.torch_op(*args, **kwargs)

    def __repr__(self):
        return f"<opforge op {self.decl.id} declared at {self.decl.source}>"


def register_op(id: str, *, inputs, outputs, attrs=(), devices=DEVICES, kernels="auto", workspace=0,
                backward=None, samples=None, tolerances=None, version=1, **extras) -> Callable[[Callable], Op]:
    """Declare an op once; decorate its plain-PyTorch reference implementation.

    See README.md ("Write your first op") for every field. The declaration is validated here: a bad one
    raises DeclarationError naming the op, the field, what was expected, what was given, and the fix.
    """

    def decorate(reference: Callable) -> Op:
        try:
            path = Path(inspect.getsourcefile(reference)).resolve()
            if path.is_relative_to(PROJECT_ROOT):  # relative: the glue (and its fingerprint) must not
                path = path.relative_to(PROJECT_ROOT)  # change when the checkout moves
            src = f"{path}:{inspect.getsourcelines(reference)[1]}"
        except (TypeError, OSError):
            src = getattr(reference, "__qualname__", "?")
        decl = OpDecl.build(id, reference, inputs=inputs, outputs=outputs, attrs=attrs, devices=devices,
                            kernels=kernels, workspace=workspace, backward=backward, samples=samples,
                            tolerances=tolerances, version=version, extras=extras, source=src)
        if decl.id in _OPS:
            raise DeclarationError(decl.id, "id", "an id not declared before", decl.id,
                                   f"it is already declared at {_OPS[decl.id].decl.source}; rename one")
        from .torch.register import register

        try:
            register(decl)
        except (RuntimeError, ValueError) as e:  # torch rejected something validation let through
            raise DeclarationError(decl.id, "schema", "a declaration torch.library accepts", str(e),
                                   "report this as an opforge bug, with the declaration") from e
        op = Op(decl)
        _OPS[decl.id] = op
        return op

    return decorate


def discover() -> None:
    """Import every declaration module in ops/library (each registers its op on import)."""
    from . import library

    for module in pkgutil.iter_modules(library.__path__):
        importlib.import_module(f"{library.__name__}.{module.name}")


def all_ops() -> list[Op]:
    return [_OPS[k] for k in sorted(_OPS)]


def get_op(name: str) -> Op:
    """Look an op up by 'ns::name' or, when unambiguous, by 'name'."""
    if name in _OPS:
        return _OPS[name]
    matches = [op for op in _OPS.values() if op.decl.name == name]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(_OPS)) or "none"
    hint = "it is ambiguous; use the full 'ns::name'" if matches else f"known ops: {known}"
    raise OpforgeError(f"no op named {name!r}: {hint}")


def library_ops() -> list[Op]:
    """Ops whose kernels are compiled into ops._C."""
    return [op for op in all_ops() if op.decl.kernel_dir is not None]


def _unregister_for_tests(op_id: str) -> Any:
    return _OPS.pop(op_id, None)
