"""Registers a declaration with torch: schema, fake kernel, autograd, and (for reference-only ops) the
reference as the implementation. Compiled CPU/CUDA kernels register themselves from ops._C."""

from __future__ import annotations

import types
from typing import Any

import torch

from .. import shape_rule as sr
from ..declaration import OpDecl
from ..dtypes import torch_dtype
from ..errors import BackwardNotDeclared
from .checks import check_inputs
from .schema import schema

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
            upper_algebra = sr.IntAlgebra({n: t.shape for n, t in inputs.items() if t is not None},
                                          decl.shape_names(attrs))
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


def _autograd(decl: OpDecl):
    tensor_inputs = [i.name for i in decl.inputs]

    def setup_context(ctx, inputs, output):
        ins, attrs = split_args(decl, inputs)
        outs = output if isinstance(output, tuple) else (output,)
        ctx.save_for_backward(*[ins[n] for n in tensor_inputs], *outs)
        ctx.opforge_attrs = attrs
        ctx.opforge_absent = {n for n, t in ins.items() if t is None}

    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        view = types.SimpleNamespace(**ctx.opforge_attrs)
        for k, n in enumerate(tensor_inputs):
            setattr(view, n, saved[k])
        for k, o in enumerate(decl.outputs):
            setattr(view, o.name, saved[len(tensor_inputs) + k])
        result = decl.backward(view, *grads)
        if isinstance(result, dict):
            result = tuple(result.get(n) for n in tensor_inputs)
        if not isinstance(result, (tuple, list)):
            result = (result,)
        if len(result) != len(tensor_inputs):
            raise RuntimeError(f"{decl.id}: backward returned {len(result)} gradients, expected one per input "
                               f"{tensor_inputs} (None where there is none)")
        return tuple(result) + (None,) * len(decl.attrs)

    return setup_context, backward


def _no_backward(decl: OpDecl):
    """The autograd kernel of an op that declares no backward: the forward records a node, and
    differentiating through it raises (naming the op) instead of torch's fallback, which only warns that
    the autograd kernel was not registered and returns silently incorrect (zero or missing) gradients."""

    def setup_context(ctx, inputs, output):
        pass

    def backward(ctx, *grads):
        raise BackwardNotDeclared(
            f"{decl.id} declares no backward, so it cannot be differentiated: a gradient was requested through "
            f"it (declared at {decl.source}). Fix: declare backward=fn(ctx, *grad_outputs) in its register_op, or "
            "call it on inputs that do not require grad (e.g. under torch.no_grad() or with .detach()).")

    return setup_context, backward


def register(decl: OpDecl) -> None:
    lib = _LIBRARIES.get(decl.namespace)
    if lib is None:
        lib = _LIBRARIES[decl.namespace] = torch.library.Library(decl.namespace, "FRAGMENT")
    lib.define(schema(decl), tags=(torch.Tag.pt2_compliant_tag,))
    torch.library.register_fake(decl.id, _fake_kernel(decl), lib=lib)
    if decl.kernel_dir is None:
        lib.impl(decl.name, _reference_kernel(decl), "CompositeExplicitAutograd")
    setup_context, backward = _autograd(decl) if decl.backward is not None else _no_backward(decl)
    torch.library.register_autograd(decl.id, backward, setup_context=setup_context, lib=lib)


def register_missing_kernels(decl: OpDecl, devices, error_message: str) -> None:
    """Stand-ins for compiled kernels that could not be loaded: calling them raises the load error
    (with the rebuild command) instead of torch's generic 'could not run ... with the CPU backend'."""
    from ..errors import ExtensionError

    def missing(*args):
        raise ExtensionError(f"{decl.id}: {error_message}")

    for device in devices:
        _LIBRARIES[decl.namespace].impl(decl.name, missing, device.upper())
