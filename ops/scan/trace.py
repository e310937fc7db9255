"""Trace a model once with torch.export and list the operators it calls.

torch.export's graph is at the level both ONNX exporters start from: CompositeImplicitAutograd operators
such as aten::rms_norm, aten::linear or aten::group_norm stay whole (the TorchScript exporter sees them
whole too), and every call carries the module path that made it (`nn_module_stack`) and the metadata of its
inputs (`meta['val']`: fake tensors). Nothing here runs a kernel."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx

from ..core.errors import OpforgeError

# Graph nodes that are bookkeeping of torch.export, not operators of the model: runtime shape assertions and
# symbolic-size queries. Neither exporter emits a node for them.
_BOOKKEEPING_PREFIXES = ("_assert", "sym_", "_check")
_BOOKKEEPING = {
    "aten::sym_size",
    "aten::sym_numel",
    "aten::sym_stride",
    "aten::sym_storage_offset",
    "aten::_assert_tensor_metadata",
    "aten::_assert_scalar",
    "aten::_assert_async",
    "aten::sym_constrain_range",
    "aten::sym_constrain_range_for_size",
}


@dataclass(frozen=True)
class TensorSpec:
    """What a trial needs to make an input like the recorded one."""

    shape: tuple[int, ...]
    dtype: str  # torch dtype name, e.g. 'float32'

    def __str__(self):
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"


@dataclass
class Call:
    """One call of an operator in the traced graph."""

    node: str  # fx node name, e.g. 'conv2d_3': what the dynamo exporter's node metadata names
    module: str  # module path, e.g. 'block1.norm'; '' for the model's own forward
    args: tuple  # the call's arguments with every tensor replaced by a TensorSpec
    kwargs: dict

    def signature(self) -> tuple:
        """Calls with equal signatures export the same way: one trial stands for all of them."""
        return repr((self.args, sorted(self.kwargs.items())))


@dataclass
class Operator:
    """A distinct operator overload the model calls, e.g. aten::rms_norm, opforge::scaled_gelu."""

    overload: object  # torch._ops.OpOverload
    calls: list[Call] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.overload.namespace

    @property
    def name(self) -> str:
        """'ns::name', with '.overload' when it is not the default one (e.g. aten::add.Tensor)."""
        base = self.overload._schema.name
        overload = self.overload._overloadname
        return base if overload == "default" else f"{base}.{overload}"

    @property
    def qualified(self) -> str:
        """The exporter's spelling, e.g. 'aten.upsample_bilinear2d.vec'."""
        return str(self.overload)

    @property
    def modules(self) -> list[str]:
        return list(dict.fromkeys(c.module for c in self.calls))

    def signatures(self) -> list[Call]:
        """One representative call per distinct input signature, in the order of first appearance."""
        seen = {}
        for call in self.calls:
            seen.setdefault(call.signature(), call)
        return list(seen.values())


@dataclass
class Trace:
    exported: object  # torch.export.ExportedProgram, re-used by the whole-model dynamo export
    operators: list[Operator]
    others: list[str]  # call targets that are not operator overloads (higher-order ops): listed, not tried


def is_bookkeeping(name: str) -> bool:
    ns, _, op = name.partition("::")
    return name.split(".")[0] in _BOOKKEEPING or (ns == "aten" and op.startswith(_BOOKKEEPING_PREFIXES))


def _module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, _cls = list(stack.values())[-1]
    return path


def _concrete(value) -> int:
    """An int for a (possibly symbolic) size. A data-dependent size (e.g. the count a NMS returns) has no
    value at trace time: take a small one inside its known range, which is enough to build a trial input."""
    if isinstance(value, int):
        return value
    if isinstance(value, torch.SymInt):
        node = value.node
        hint = getattr(node, "hint", None)
        if hint is not None:
            return int(hint)
        try:
            bounds = node.shape_env.bound_sympy(node.expr)
            low = int(bounds.lower) if bounds.lower.is_finite else 0
            high = int(bounds.upper) if bounds.upper.is_finite else low + 2
            return max(low, min(high, 2))
        except Exception:  # no range known: any small size builds an input
            return 2
    return int(value)


def _spec(value):
    """Replace fx nodes in an argument by what they stand for: TensorSpec for tensors, ints for sizes."""
    if isinstance(value, torch.fx.Node):
        value = value.meta.get("val")
        if value is None:
            return None
    if isinstance(value, torch.Tensor):
        return TensorSpec(tuple(_concrete(s) for s in value.shape), str(value.dtype).replace("torch.", ""))
    if isinstance(value, (list, tuple)):
        return type(value)(_spec(v) for v in value)
    if isinstance(value, torch.SymInt):
        return _concrete(value)
    if isinstance(value, (torch.SymFloat, torch.SymBool)):
        return value.node.hint
    return value


def trace_model(model, args) -> Trace:
    """torch.export the model once (non-strict, static shapes) and group its calls by operator overload."""
    if isinstance(model, torch.nn.Module):
        model = model.eval()
    try:
        exported = torch.export.export(model, tuple(args), strict=False)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OpforgeError(
            f"torch.export could not trace the model, so ops.scan cannot list its operators: "
            f"{type(e).__name__}: {first[:300]}. Fix: make the model traceable by torch.export "
            "(see the torch.export documentation on data-dependent control flow), or scan the part "
            "of it that is"
        ) from None
    operators: dict[object, Operator] = {}
    others = []
    for node in exported.graph.nodes:
        if node.op != "call_function":
            continue
        target = node.target
        if not isinstance(target, torch._ops.OpOverload):
            if isinstance(target, torch._ops.HigherOrderOperator):
                others.append(str(target))
            continue  # operator.getitem and friends: Python plumbing, not operators
        op = operators.setdefault(target, Operator(target))
        if is_bookkeeping(op.name):
            del operators[target]
            continue
        op.calls.append(
            Call(
                node.name,
                _module_path(node),
                tuple(_spec(a) for a in node.args),
                {k: _spec(v) for k, v in node.kwargs.items()},
            )
        )
    return Trace(exported, list(operators.values()), list(dict.fromkeys(others)))
