"""`register_op` and the registry of declared ops. The registry is the only list of ops: the build,
the CLIs and the tests enumerate it; adding an op never edits a central file."""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import paths
from .declaration import DEVICES, OpDecl, schema_names
from .errors import DeclarationError, OpforgeError
from .packages import built_op_ids
from .validate import build_decl

_OPS: dict[str, Op] = {}
# What backends do with a declaration when it registers (ops.torch defines the torch op): they add themselves
# here when imported, so the core never imports a backend.
_ON_REGISTER: list[Callable[[OpDecl], None]] = []


def on_register(hook: Callable[[OpDecl], None]) -> Callable[[OpDecl], None]:
    """Call `hook(decl)` for every op declared from now on (a backend's registration)."""
    _ON_REGISTER.append(hook)
    return hook


class Op:
    """A declared op. Calling it calls `torch.ops.<ns>.<name>` with the declaration's names as keywords (the
    schema spells the few names torch treats specially otherwise, ops/torch/schema.py); `.reference` is the
    plain-PyTorch oracle."""

    def __init__(self, decl: OpDecl):
        self.decl = decl
        self.reference = decl.reference
        self.__doc__ = decl.doc
        self.__name__ = decl.name
        self._renamed = {k: v for k, v in schema_names(decl).items() if k != v}

    @property
    def id(self) -> str:
        return self.decl.id

    @property
    def torch_op(self):
        return getattr(getattr(torch.ops, self.decl.namespace), self.decl.name).default

    def schema_kwargs(self, kwargs: dict) -> dict:
        """Keyword arguments by declared name -> by torch schema name (what torch.ops.<ns>.<name> and opcheck take)."""
        return {self._renamed.get(k, k): v for k, v in kwargs.items()} if self._renamed else dict(kwargs)

    def __call__(self, /, *args, **kwargs):  # positional-only: an attribute may be called `self`
        if kwargs and self._renamed:
            kwargs = self.schema_kwargs(kwargs)
        return self.torch_op(*args, **kwargs)

    def __repr__(self):
        return f"<opforge op {self.decl.id} declared at {self.decl.source}>"


REGISTER_OP_OPTIONS = (
    "inputs",
    "outputs",
    "attrs",
    "devices",
    "kernels",
    "workspace",
    "backward",
    "saves",
    "samples",
    "tolerances",
    "version",
    "onnx",
    "onnx_fallback",
    "kernels_pending",
    "triton",
    "batch",
)


def register_op(
    id: str,
    *,
    inputs,
    outputs,
    attrs=(),
    devices=DEVICES,
    kernels="auto",
    workspace=0,
    backward=None,
    saves=None,
    samples=None,
    tolerances=None,
    version=1,
    onnx=True,
    onnx_fallback=True,
    kernels_pending=(),
    batch="auto",
    triton=None,
    **unknown,
) -> Callable[[Callable], Op]:
    """Declare an op once; decorate its plain-PyTorch reference implementation.

    See README.md ("Write your first op") for every field. The declaration is validated here: a bad one
    raises DeclarationError naming the op, the field, what was expected, what was given, and the fix.
    The op belongs to the op package (ops.core.packages) of the module that declares it; `kernels='auto'` finds
    csrc/<name>/ relative to that module.
    """
    op_name = id if isinstance(id, str) else repr(id)
    for key in unknown:  # a misspelt option must not be silently ignored
        close = difflib.get_close_matches(key, REGISTER_OP_OPTIONS, n=1, cutoff=0.5)
        raise DeclarationError(
            op_name,
            key,
            f"one of register_op's options {list(REGISTER_OP_OPTIONS)}",
            key,
            f"did you mean {close[0]!r}?" if close else "remove it",
        )

    def decorate(reference: Callable) -> Op:
        origin, source = _where(reference)
        package = _package_of(reference)
        decl = build_decl(
            id,
            reference,
            inputs=inputs,
            outputs=outputs,
            attrs=attrs,
            devices=devices,
            kernels=kernels,
            workspace=workspace,
            backward=backward,
            saves=saves,
            samples=samples,
            tolerances=tolerances,
            version=version,
            onnx=onnx,
            onnx_fallback=onnx_fallback,
            kernels_pending=kernels_pending,
            triton=triton,
            batch=batch,
            source=source,
            package=package,
            origin=origin,
            built=lambda: built_op_ids(package),
        )
        if decl.id in _OPS:
            raise DeclarationError(
                decl.id,
                "id",
                "an id declared once",
                decl.id,
                f"it is declared at {_OPS[decl.id].decl.source} and again at {source}; rename one "
                "(or make sure the module is imported under one name only)",
            )
        if not _ON_REGISTER:
            raise OpforgeError(f"{decl.id}: no backend registered a hook (import ops, not ops.core.registry alone)")
        for hook in _ON_REGISTER:
            try:
                hook(decl)
            except (RuntimeError, ValueError) as e:  # the backend rejected something validation let through
                raise DeclarationError(
                    decl.id,
                    "schema",
                    "a declaration torch.library accepts",
                    str(e),
                    "report this as an opforge bug, with the declaration",
                ) from e
        op = Op(decl)
        _OPS[decl.id] = op
        return op

    return decorate


def _where(reference) -> tuple[Path | None, str]:
    """(directory of the declaring module, 'file:line' for messages; relative to its project root)."""
    try:
        path = Path(inspect.getsourcefile(reference)).resolve()
        return path.parent, f"{paths.relative_to_project(path)}:{inspect.getsourcelines(reference)[1]}"
    except (TypeError, OSError):
        return None, getattr(reference, "__qualname__", "?")


def _package_of(reference) -> str | None:
    """The package that holds the declaring module: the op package the op's artefacts belong to."""
    module = sys.modules.get(getattr(reference, "__module__", None) or "")
    name = getattr(module, "__package__", None) if module is not None else None
    return name or None


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


def ops_in(package: str) -> list[Op]:
    """The ops declared by modules of one op package."""
    return [op for op in all_ops() if op.decl.package == package]


def compiled_ops_in(package: str) -> list[Op]:
    return [op for op in ops_in(package) if op.decl.kernel_dir is not None]


def library_ops() -> list[Op]:
    """Ops with compiled kernels, in every op package."""
    return [op for op in all_ops() if op.decl.kernel_dir is not None]


def _unregister_for_tests(op_id: str) -> Any:
    return _OPS.pop(op_id, None)
