"""Argument checks in Python, for the paths that never reach the C++ glue: fake tensors (torch.export,
torch.compile) and ops whose reference is their implementation. Messages match the C++ glue's."""

from __future__ import annotations

import torch

from ..core import shape_rule as sr
from ..core.declaration import OpDecl
from ..core.dtypes import dtype_name


def _fail(error: type, decl: OpDecl, message: str):
    raise error(f"{decl.id}: {message}")


def check_inputs(decl: OpDecl, inputs: dict, attrs: dict) -> None:
    for i in decl.inputs:
        t = inputs.get(i.name)
        if t is None:
            if not i.optional:
                _fail(ValueError, decl, f"input '{i.name}' is missing. Fix: pass a tensor.")
            continue
        if not isinstance(t, torch.Tensor):
            _fail(TypeError, decl, f"input '{i.name}' must be a tensor, got {type(t).__name__}. Fix: pass a tensor.")
        try:
            name = dtype_name(t.dtype)
        except KeyError:
            name = str(t.dtype)
        if i.dtype_like and inputs.get(i.dtype_like) is not None and t.dtype != inputs[i.dtype_like].dtype:
            _fail(
                TypeError,
                decl,
                f"input '{i.name}' must have the dtype of '{i.dtype_like}' "
                f"({dtype_name(inputs[i.dtype_like].dtype)}), got {name}. Fix: cast it with .to({i.dtype_like}.dtype).",
            )
        if name not in i.dtypes:
            _fail(
                TypeError,
                decl,
                f"input '{i.name}' must have dtype in {{{', '.join(i.dtypes)}}}, got {name}. "
                "Fix: cast it with .to(<one of those dtypes>).",
            )
        if i.rank is not None and t.dim() != i.rank:
            _fail(
                ValueError,
                decl,
                f"input '{i.name}' must have rank {i.rank}, got rank {t.dim()} "
                f"(shape {list(t.shape)}). Fix: reshape it.",
            )
        if t.dim() < i.min_rank:
            _fail(
                ValueError,
                decl,
                f"input '{i.name}' must have rank >= {i.min_rank}, got rank {t.dim()} "
                f"(shape {list(t.shape)}). Fix: reshape it.",
            )
    first = next(t for t in inputs.values() if t is not None)
    for i in decl.inputs:
        t = inputs.get(i.name)
        if t is not None and t.device != first.device:
            _fail(
                RuntimeError,
                decl,
                f"input '{i.name}' is on {t.device} but '{decl.inputs[0].name}' is on "
                f"{first.device}. Fix: move all inputs to one device.",
            )
    for a in decl.attrs:
        value = attrs.get(a.name)
        if a.length is not None and (not isinstance(value, (list, tuple)) or len(value) != a.length):
            got = f"{len(value)} elements" if isinstance(value, (list, tuple)) else repr(value)
            _fail(
                ValueError,
                decl,
                f"attribute '{a.name}' must have {a.length} elements, got {got}. "
                f"Fix: pass a list of {a.length} values.",
            )
    algebra = sr.IntAlgebra({n: t.shape for n, t in inputs.items() if t is not None}, attrs)
    for i in decl.inputs:
        t = inputs.get(i.name)
        if t is None or i.shape is None:
            continue
        expected = sr.evaluate_shape(i.shape, algebra, lambda n: inputs[n].dim())

        def message(i=i, t=t, expected=expected):
            return (
                f"{decl.id}: input '{i.name}' must have shape {sr.to_text(i.shape)} = {list(expected)}, got "
                f"{list(t.shape)}. Fix: pass a tensor of that shape."
            )

        torch._check_with(ValueError, len(expected) == t.dim(), message)
        for got, want in zip(t.shape, expected):
            # One check per dim: with SymInts each is a deferred runtime assert. Combining them with `and` would
            # call bool() on a SymBool, which guards on (specialises) the sizes.
            torch._check_with(ValueError, got == want, message)
    for a in decl.attrs:
        if a.choices and attrs.get(a.name) not in a.choices:
            _fail(
                ValueError,
                decl,
                f"attribute '{a.name}' must be one of {list(a.choices)}, got "
                f"{attrs.get(a.name)!r}. Fix: pass one of those.",
            )
