"""Registers a declaration with torch from Python: schema, fake kernel, and for reference-only ops the
reference as the implementation and their autograd.

Ops with compiled kernels get everything on their hot path from the generated C++ glue in their extension
(ops/torch/glue.py): CPU/CUDA kernels and an Autograd kernel, so a call never enters Python, and the
schema too where Python has not defined it (libtorch, AOTInductor). Their declared backward is Python: the
C++ autograd node calls it through a helper op, `ns::<name>_opforge_backward`, registered here."""

from __future__ import annotations

from typing import Any

import torch

from ..core import shape_rule as sr
from ..core.declaration import OpDecl
from ..core.dtypes import torch_dtype
from ..core.errors import BackwardNotDeclared, ExtensionError
from .checks import check_inputs
from .schema import backward_op_name, backward_schema, schema

_LIBRARIES: dict[str, torch.library.Library] = {}  # kept alive: dropping one unregisters its ops


def split_args(decl: OpDecl, args: tuple) -> tuple[dict, dict]:
    """Positional schema arguments -> ({input: tensor}, {attr: value})."""
    n = len(decl.inputs)
    inputs = {i.name: args[k] if k < len(args) else None for k, i in enumerate(decl.inputs)}
    attrs = {}
    for k, a in enumerate(decl.attrs):
        attrs[a.name] = args[n + k] if n + k < len(args) else a.default
    return inputs, attrs


def output_shapes(decl: OpDecl, inputs: dict, attrs: dict, sizes: dict) -> list[list[Any]]:
    """Every output's shape (ints or SymInts) from the shape rules."""
    names = decl.shape_names(attrs)
    names.update(sizes)
    algebra = sr.IntAlgebra({n: t.shape for n, t in inputs.items() if t is not None}, names)
    return [sr.evaluate_shape(o.shape, algebra, lambda n: inputs[n].dim()) for o in decl.outputs]


def output_dtype(decl: OpDecl, o, inputs: dict):
    return torch_dtype(o.dtype) if o.dtype else inputs[o.dtype_like].dtype


def _fake_kernel(decl: OpDecl):
    def fake(*args):
        inputs, attrs = split_args(decl, args)
        check_inputs(decl, inputs, attrs)
        device = next(t for t in inputs.values() if t is not None).device
        sizes = {}
        if any(o.is_size for o in decl.outputs):
            ctx = torch.library.get_ctx()
            upper_algebra = sr.IntAlgebra(
                {n: t.shape for n, t in inputs.items() if t is not None}, decl.shape_names(attrs)
            )
            for o in decl.outputs:
                if o.is_size:
                    n = ctx.new_dynamic_size()
                    torch._check(n <= sr.evaluate(o.upper, upper_algebra))
                    sizes[o.name] = n
        outs = []
        for o, shape in zip(decl.outputs, output_shapes(decl, inputs, attrs, sizes)):
            outs.append(torch.empty(shape, dtype=output_dtype(decl, o, inputs), device=device))
        return outs[0] if len(outs) == 1 else tuple(outs)

    return fake


def _reference_kernel(decl: OpDecl):
    def impl(*args):
        inputs, attrs = split_args(decl, args)
        check_inputs(decl, inputs, attrs)
        out = decl.reference(*inputs.values(), *attrs.values())
        outs = out if isinstance(out, (tuple, list)) else (out,)
        # The dispatcher forbids returning an input (aliasing); copy such an output.
        outs = tuple(o.clone() if any(o is t for t in inputs.values()) else o for o in outs)
        return outs[0] if len(outs) == 1 else outs

    return impl


def _pending_kernel(decl: OpDecl):
    """What runs on a device whose kernel is pending (kernels_pending): the reference, computed like the oracle
    ops.check compares kernels with (floating inputs in float32, outputs cast back to their declared dtype),
    and never returning a view of an input (a kernel writes fresh outputs; the dispatcher forbids aliasing)."""

    def impl(*args):
        inputs, attrs = split_args(decl, args)
        check_inputs(decl, inputs, attrs)
        up = [t.float() if t is not None and t.is_floating_point() else t for t in inputs.values()]
        out = decl.reference(*up, *attrs.values())
        outs = out if isinstance(out, (tuple, list)) else (out,)
        # always a fresh contiguous tensor (a reference may return a view of an input, e.g. x[:, ::2])
        fixed = [t.to(output_dtype(decl, o, inputs), copy=True).contiguous() for o, t in zip(decl.outputs, outs)]
        return fixed[0] if len(fixed) == 1 else tuple(fixed)

    return impl


class BackwardContext:
    """The `ctx` a declared backward receives: every attribute and every saved tensor by name (an absent
    optional input is None). Reading an input or output that `saves=` leaves out says so, with the fix."""

    def __init__(self, decl: OpDecl, saved: dict, attrs: dict):
        self.__dict__["_opforge_decl"] = decl  # no declared name starts with opforge_ (ops.core.declaration)
        self.__dict__.update(attrs)
        self.__dict__.update(saved)

    def __getattr__(self, name):  # only reached for names that are not set
        decl = self.__dict__["_opforge_decl"]
        tensors = [i.name for i in decl.inputs] + [o.name for o in decl.outputs]
        if name in tensors:
            raise AttributeError(
                f"{decl.id}: the backward reads ctx.{name}, but the declaration saves only "
                f"{list(decl.saves)} for it. Fix: add {name!r} to saves= in its register_op "
                f"({decl.source})"
            )
        raise AttributeError(
            f"{decl.id}: ctx has no {name!r}; it holds the attributes "
            f"{[a.name for a in decl.attrs]} and the saved tensors {list(decl.saves)}"
        )


def grads_per_input(decl: OpDecl, result) -> list:
    """A declared backward's result -> one gradient (or None) per declared input."""
    names = [i.name for i in decl.inputs]
    if isinstance(result, dict):
        unknown = set(result) - set(names)
        if unknown:
            raise RuntimeError(
                f"{decl.id}: backward returned gradients for {sorted(unknown)}, which are not inputs {names}"
            )
        result = [result.get(n) for n in names]
    if not isinstance(result, (tuple, list)):
        result = (result,)
    if len(result) != len(names):
        raise RuntimeError(
            f"{decl.id}: backward returned {len(result)} gradients, expected one per input "
            f"{names} (None where there is none)"
        )
    return list(result)


def _run_backward(decl: OpDecl, saved: dict, attrs: dict, grads) -> list:
    if decl.backward is None:
        raise BackwardNotDeclared(
            f"{decl.id} declares no backward, so it cannot be differentiated: a gradient was requested through "
            f"it (declared at {decl.source}). Fix: declare backward=fn(ctx, *grad_outputs) in its register_op, or "
            "call it on inputs that do not require grad (e.g. under torch.no_grad() or with .detach())."
        )
    return grads_per_input(decl, decl.backward(BackwardContext(decl, saved, attrs), *grads))


def _python_autograd(decl: OpDecl):
    """Autograd of a reference-only op (no compiled kernels, so the hot path is Python anyway). Ops with
    compiled kernels get theirs from the generated C++ glue instead (see backward_op_name)."""
    positions = {i.name: k for k, i in enumerate(decl.inputs)}
    output_positions = {o.name: k for k, o in enumerate(decl.outputs)}

    def setup_context(ctx, inputs, output):
        ins, attrs = split_args(decl, inputs)
        outs = output if isinstance(output, tuple) else (output,)
        ctx.save_for_backward(*[ins[n] if n in positions else outs[output_positions[n]] for n in decl.saves])
        ctx.opforge_attrs = attrs

    def backward(ctx, *grads):
        saved = dict(zip(decl.saves, ctx.saved_tensors))
        return tuple(_run_backward(decl, saved, ctx.opforge_attrs, grads)) + (None,) * len(decl.attrs)

    return setup_context, backward


def _backward_kernel(decl: OpDecl):
    attr_names = [a.name for a in decl.attrs]

    def backward(saved, grads, *attrs):
        return _run_backward(decl, dict(zip(decl.saves, saved)), dict(zip(attr_names, attrs)), grads)

    return backward


def _library(namespace: str) -> torch.library.Library:
    lib = _LIBRARIES.get(namespace)
    if lib is None:
        lib = _LIBRARIES[namespace] = torch.library.Library(namespace, "FRAGMENT")
    return lib


def _define(lib: torch.library.Library, decl: OpDecl) -> None:
    """Define the op's schema unless the dispatcher has it already: the op package's compiled extension
    defines it too (for libtorch and AOTInductor, where no Python runs), and may have been loaded first
    (torch.ops.load_library, an AOTInductor package). A schema that differs is a stale build."""
    text = schema(decl)
    existing = torch._C._jit_get_schemas_for_operator(decl.id)
    if not existing:
        lib.define(text, tags=(torch.Tag.pt2_compliant_tag,))
        return
    got = existing[0]
    if got != torch._C.parse_schema(f"{decl.namespace}::{text}"):  # parsed: C++ prints floats at full precision
        raise ExtensionError(
            f"{decl.id} is already registered with torch as {got}, but its declaration (at "
            f"{decl.source}) gives {decl.namespace}::{text}: a stale build of its extension was "
            "loaded before the declaration. Rebuild it (python -m ops.build)"
        )


def register(decl: OpDecl) -> None:
    """Schema and fake kernel of every op. A reference-only op also gets its implementation and its
    autograd here; a compiled op gets its kernels and its autograd kernel from its extension (generated C++,
    so calls stay out of Python), plus the helper op that runs its Python backward."""
    lib = _library(decl.namespace)
    _define(lib, decl)
    torch.library.register_fake(decl.id, _fake_kernel(decl), lib=lib)
    if decl.kernel_dir is None:
        lib.impl(decl.name, _reference_kernel(decl), "CompositeExplicitAutograd")
        setup_context, backward = _python_autograd(decl)
        torch.library.register_autograd(decl.id, backward, setup_context=setup_context, lib=lib)
        return
    # Pending kernels (ops.new skeletons): the reference runs on those devices until the kernel is written; the
    # extension's Autograd kernel redispatches to it like to a compiled kernel.
    for device in decl.kernels_pending:
        lib.impl(decl.name, _pending_kernel(decl), device.upper())
    if not torch._C._jit_get_schemas_for_operator(f"{decl.namespace}::{backward_op_name(decl)}"):
        lib.define(backward_schema(decl))
    # CompositeImplicitAutograd: the backward's own aten ops are what autograd (double backward),
    # torch.compile and export see; the helper never appears in a graph.
    lib.impl(backward_op_name(decl), _backward_kernel(decl), "CompositeImplicitAutograd")


def register_missing_kernels(decl: OpDecl, devices, error_message: str) -> None:
    """Stand-ins for compiled kernels that could not be loaded: calling them raises the load error
    (with the rebuild command) instead of torch's generic 'could not run ... with the CPU backend'.
    No autograd kernel stands in: the extension would have brought it, and without one torch's fallback
    runs the stand-in, which raises before any gradient matters."""

    def missing(*args):
        raise ExtensionError(f"{decl.id}: {error_message}")

    for device in devices:
        if device not in decl.kernels_pending:  # those run the reference, whatever the extension's state
            _LIBRARIES[decl.namespace].impl(decl.name, missing, device.upper())
