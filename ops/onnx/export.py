"""`export_onnx`: one entry point over both torch exporters, then the post-processing every opforge
model gets (opset check, custom-domain import, TensorRT parser attributes, value_info, graph cleanup,
optional fallback functions).

Exporter choice follows the opset: 11-17 TorchScript (`dynamo=False`, symbolics), 18-23 dynamo
(`custom_translation_table`). The opset written is compared with the one asked for; any difference
fails loudly. Exporter failures caused by an op are re-raised as ExportError naming the op and the fix,
without the exporter's deep stack."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from ..core import lazy
from ..core.errors import ExportError, OpforgeError
from ..core.registry import all_ops
from .dynamo import translation
from .fallback import attach_fallbacks
from .quiet import quiet_dynamo_registration_log, quiet_torchscript_log
from .schema import TRT_ATTRS, onnx_attr_value, onnx_supported, register_schemas
from .torchscript import register_symbolics, torchscript_api

TORCHSCRIPT_OPSETS = range(11, 18)  # torch.onnx.export(dynamo=False): opforge's symbolics
DYNAMO_OPSETS = range(18, 24)  # torch.onnx.export(dynamo=True): custom_translation_table, onnxscript optimiser
DEFAULT_OPSET = 20


def opforge_ops_in():
    return all_ops()


def _unsupported_translation(op):
    """Stands in for an op declared onnx=False, so the exporter stops at it with our message."""

    def refuse(*args, **kwargs):
        raise ExportError(
            f"{op.id} cannot be exported to ONNX: it is declared with onnx=False (at "
            f"{op.decl.source}). Fix: keep it out of the exported model (e.g. replace it by its "
            "reference for export), or give it ONNX support and drop onnx=False."
        )

    return refuse


def _find_cause(exc: BaseException):
    """Our own ExportError somewhere in an exporter's exception chain, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OpforgeError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


_UNKNOWN_OP = [
    re.compile(r"No (?:ONNX function|decompositions registered) (?:found )?for .*?op='([\w.:]+)'"),
    re.compile(r"Exporting the operator '([\w:.]+)' to ONNX opset version \d+ is not supported"),
    re.compile(r"OpOverload\(op='([\w.]+)'"),
    re.compile(r"operator with unrecognized namespace ([\w:.]+?)\.? If"),
]


def _translate_failure(e: BaseException, opset: int, exporter: str) -> ExportError:
    ours = _find_cause(e)
    if ours is not None:
        return ours if isinstance(ours, ExportError) else ExportError(str(ours))
    text = ""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text += f"\n{e}"
        e = e.__cause__ or e.__context__
    for pattern in _UNKNOWN_OP:
        m = pattern.search(text)
        if m:
            name = m.group(1).replace(".", "::", 1) if "::" not in m.group(1) else m.group(1)
            return ExportError(
                f"the model calls '{name}', which neither opforge nor torch.onnx ({exporter} exporter, opset {opset}) "
                f"can export. Fix: declare it with ops.register_op (then it exports as an ONNX node), or "
                f"replace it in the model before export."
            )
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return ExportError(f"the {exporter} exporter failed at opset {opset}: {first[:500]}")


def _normalise_dynamic(dynamic, args) -> dict[int, dict[int, str]]:
    """dynamic: False/None (static), True (dim 0 of every tensor argument is 'batch'), or
    {arg index: {dim: name}}."""
    if not dynamic:
        return {}
    if dynamic is True:
        return {k: {0: "batch"} for k, a in enumerate(args) if isinstance(a, torch.Tensor) and a.dim() > 0}
    if isinstance(dynamic, dict):
        return {int(k): {int(d): str(n) for d, n in v.items()} for k, v in dynamic.items()}
    raise ExportError(f"dynamic must be True, False or {{arg index: {{dim: name}}}}, got {dynamic!r}")


def _ops_for_translation(model, args, ops):
    """The ops to give the dynamo exporter translations for. onnxscript requires op names to be unique across
    domains, so when two op packages declare the same name (a::clip, b::clip) only the ops the model calls
    are given: found by running it once on fake tensors with a recording dispatch mode (no kernels run)."""
    from collections import Counter

    names = Counter(op.decl.name for op in ops)
    if all(n == 1 for n in names.values()):
        return ops
    wanted = {op.torch_op: op for op in ops}
    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, a=(), kw=None):
            if func in wanted:
                seen.append(wanted[func])
            return func(*a, **(kw or {}))

    with FakeTensorMode(allow_non_fake_inputs=True) as fake, Record():
        model(*[fake.from_tensor(t) if isinstance(t, torch.Tensor) else t for t in args])
    used = list(dict.fromkeys(seen))
    clash = sorted({op.id for op in used if Counter(u.decl.name for u in used)[op.decl.name] > 1})
    if clash:
        raise ExportError(
            f"the model calls ops {clash} that share a name in different namespaces; the dynamo "
            "exporter (onnxscript) needs op names unique across domains. Fix: rename one of them, "
            "or export at opset <= 17 (TorchScript exporter)"
        )
    return used


def _present_arguments(model, args, dynamic):
    """(model, args, dynamic) without the absent (None) arguments. torch.onnx matches `dynamic_shapes` to the
    flattened tensor arguments, where a None argument has no leaf, so one None among the arguments made it drop
    every declared dim name ('s77' instead of 'batch'). The wrapper takes the present tensors under the
    forward's own parameter names (the graph input names) and calls the model with None where they were."""
    present = [k for k, a in enumerate(args) if a is not None]
    if len(present) == len(args):
        return model, args, dynamic
    names = [_input_names(model, len(args))[k] for k in present]
    namespace: dict = {}
    exec(
        f"def forward(opforge_self, {', '.join(names)}):\n"  # the model's names; the wrapper's own are prefixed
        f"    return opforge_self.opforge_call(({', '.join(names)}{',' if len(names) == 1 else ''}))",
        namespace,
    )

    class PresentArguments(torch.nn.Module):
        forward = namespace["forward"]

        def __init__(self):
            super().__init__()
            self.opforge_model = model

        def opforge_call(self, given):
            full = [None] * len(args)
            for k, t in zip(present, given):
                full[k] = t
            return self.opforge_model(*full)

    return (
        PresentArguments(),
        tuple(args[k] for k in present),
        {j: dynamic[k] for j, k in enumerate(present) if k in dynamic},
    )


def export_dynamo(model, args, opset, dynamic, ops):
    table = {}
    for op in _ops_for_translation(model, args, ops):
        table[op.torch_op] = translation(op.decl) if onnx_supported(op.decl) else _unsupported_translation(op)
    model, args, dynamic = _present_arguments(model, args, dynamic)
    dynamic_shapes = None
    if dynamic:
        dims = {}
        dynamic_shapes = tuple(
            {d: dims.setdefault(n, torch.export.Dim(n)) for d, n in dynamic.get(k, {}).items()} or None
            for k in range(len(args))
        )
    with warnings.catch_warnings(), quiet_dynamo_registration_log():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            tuple(args),
            dynamo=True,
            opset_version=opset,
            custom_translation_table=table,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
            report=False,
        )
    return program.model_proto


def _input_names(model, count: int) -> list[str]:
    """The forward's parameter names (what the dynamo exporter calls the graph inputs too)."""
    import inspect

    try:
        params = [
            p.name
            for p in inspect.signature(model.forward if hasattr(model, "forward") else model).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return params[:count] if len(params) >= count else [f"input_{k}" for k in range(count)]


def export_torchscript(model, args, opset, dynamic, ops):
    torchscript_api()
    supported = [op for op in ops if onnx_supported(op.decl)]
    register_symbolics(supported)
    register, _ = torchscript_api()
    for op in ops:
        if not onnx_supported(op.decl):
            register(op.id, _unsupported_translation(op), 1)
    # An absent optional argument (None) is no graph input at all in the TorchScript exporter, so only the
    # present ones are named.
    all_names = _input_names(model, len(args))
    names = [n for n, a in zip(all_names, args) if a is not None]
    axes = {all_names[k]: v for k, v in dynamic.items() if k < len(args) and args[k] is not None}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), quiet_torchscript_log():
        warnings.simplefilter("ignore")
        # No custom_opsets: the exporter warns (from C++, past any Python filter) about every given domain the
        # model does not use, and _postprocess writes the opset_import of the custom domains from the ops
        # the graph holds, with their declared versions, whatever the exporter wrote.
        torch.onnx.export(
            model, tuple(args), buffer, dynamo=False, opset_version=opset, input_names=names, dynamic_axes=axes or None
        )
    return lazy.onnx().load_from_string(buffer.getvalue())


def default_opset(model_proto) -> int | None:
    return next((o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _postprocess(m, opset: int, ops, fallback: bool, trace_args):
    onnx = lazy.onnx()
    by_key = {(op.decl.namespace, op.decl.name): op for op in ops if onnx_supported(op.decl)}
    written = default_opset(m)
    if written != opset:
        raise ExportError(
            f"asked for opset {opset} but the exporter wrote opset {written}. The file is not "
            f"what was requested. Fix: pick an opset the exporter honours (11-17 TorchScript, "
            f"18-23 dynamo) or report this as an opforge bug."
        )
    used = {}
    for node in m.graph.node:
        op = by_key.get((node.domain, node.op_type))
        if op is None:
            continue
        used[op.id] = op
        present = {a.name for a in node.attribute}
        for a in op.decl.attrs:  # every attribute explicit: ORT's bridge and TensorRT read what is there
            if a.name not in present and a.has_default:
                node.attribute.append(onnx.helper.make_attribute(a.name, onnx_attr_value(a, a.default)))
        for name, value in zip(TRT_ATTRS, (str(op.decl.version), op.decl.namespace)):
            if name not in present:
                node.attribute.append(onnx.helper.make_attribute(name, value))
    domains = {}
    for op in used.values():
        domains[op.decl.namespace] = max(domains.get(op.decl.namespace, 0), op.decl.version)
    imports = [o for o in m.opset_import if o.domain not in domains]
    del m.opset_import[:]
    m.opset_import.extend(imports + [onnx.helper.make_opsetid(d, v) for d, v in sorted(domains.items())])
    _forget_custom_output_shapes(m, by_key)
    if fallback and used:
        attach_fallbacks(m, list(used.values()), opset)
    m = _cleanup(m)
    # value_info for every intermediate, custom outputs included, from the registered schemas
    m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True, data_prop=True)
    return m, sorted(used)


def _forget_custom_output_shapes(m, by_key) -> None:
    """Drop what the exporter guessed about custom-node outputs (TorchScript names their dims itself,
    e.g. 'y_dim_0'), so the final inference writes them from the op's schema: the input's symbolic
    dims carry through (a 'batch' input gives a 'batch' output)."""
    outputs = {o for n in m.graph.node if (n.domain, n.op_type) in by_key for o in n.output}
    keep = [v for v in m.graph.value_info if v.name not in outputs]
    del m.graph.value_info[:]
    m.graph.value_info.extend(keep)
    for v in m.graph.output:
        if v.name in outputs and v.type.HasField("tensor_type"):
            v.type.tensor_type.ClearField("shape")


def _cleanup(m):
    """onnx-graphsurgeon: drop dead nodes, sort topologically; shapes and dtypes of tensors are kept."""
    gs = lazy.require("onnx_graphsurgeon")
    logger = gs.logger.G_LOGGER
    severity, logger.severity = logger.severity, logger.ERROR  # its bfloat16/numpy notes are not ours to show
    try:
        graph = gs.import_onnx(m)
        graph.cleanup().toposort()
        out = gs.export_onnx(graph, do_type_check=False)
    finally:
        logger.severity = severity
    out.ir_version = m.ir_version
    del out.opset_import[:]
    out.opset_import.extend(m.opset_import)
    del out.functions[:]
    out.functions.extend(m.functions)
    for prop in m.metadata_props:
        out.metadata_props.append(prop)
    # graphsurgeon drops node metadata; the dynamo exporter's (module scope of each node, which
    # ops.precision reports in terms of the torch model) is copied back by node name.
    scopes = {n.name: list(n.metadata_props) for n in m.graph.node if n.metadata_props}
    for node in out.graph.node:
        for prop in scopes.get(node.name, ()):
            node.metadata_props.append(prop)
    out.producer_name, out.producer_version = m.producer_name, m.producer_version
    return out


def export_onnx(
    model, args, path=None, *, opset: int = DEFAULT_OPSET, dynamic=False, fallback: bool = False, check: bool = True
):
    """Export `model(*args)` to ONNX with every opforge op as a custom node (domain = namespace).

    opset 11-17 uses the TorchScript exporter, 18-23 the dynamo exporter. dynamic: True makes dim 0 of
    every tensor argument a symbolic 'batch' dim; or {arg index: {dim: name}}. fallback=True attaches an
    ONNX function per used op (its reference in standard ops) so plain ONNX Runtime can run the graph.
    Writes `path` when given; returns the onnx.ModelProto. Raises ExportError on any problem. (A
    mixed-precision graph: `ops.export_onnx(..., precision="mixed-float16")`, which ops.precision writes on
    top of this export.)"""
    onnx = lazy.onnx()
    if not isinstance(opset, int) or opset not in TORCHSCRIPT_OPSETS and opset not in DYNAMO_OPSETS:
        raise ExportError(f"opset must be an int in 11-23 (11-17 TorchScript exporter, 18-23 dynamo), got {opset!r}")
    args = tuple(args) if isinstance(args, (tuple, list)) else (args,)
    if isinstance(model, torch.nn.Module):
        model = model.eval()
    ops = opforge_ops_in()
    register_schemas([op for op in ops if onnx_supported(op.decl)])
    dyn = _normalise_dynamic(dynamic, args)
    exporter = "TorchScript" if opset in TORCHSCRIPT_OPSETS else "dynamo"
    try:
        if exporter == "TorchScript":
            m = export_torchscript(model, args, opset, dyn, ops)
        else:
            m = export_dynamo(model, args, opset, dyn, ops)
    except OpforgeError as e:
        raise (e if isinstance(e, ExportError) else ExportError(str(e))) from None
    except Exception as e:  # exporter internals: translate to one clear line
        raise _translate_failure(e, opset, exporter) from None
    m, used = _postprocess(m, opset, ops, fallback, args)
    if check:
        try:
            onnx.checker.check_model(m, full_check=True)
        except Exception as e:
            raise ExportError(f"the exported model fails onnx.checker (full_check): {e}") from None
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(m, str(path))
    return m
