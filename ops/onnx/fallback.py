"""Fallback bodies: each used op's *reference* as a model-local ONNX function (domain = namespace,
name = op), so a runtime without the custom op (plain ONNX Runtime) inlines it and runs the graph.

How the body is made, generically: the reference is exported with torch (same exporter and opset as
the model) on one of the op's own samples, with every dim dynamic, and the resulting graph becomes the
FunctionProto (initializers turn into Constant nodes). A float attribute becomes a real function
attribute: the reference is exported with a probe value for it, and the one constant holding that value
is replaced by `Constant(value_float = @attr)` (ref_attr_name), reshaped and cast like the original; where
the exporter's optimiser fused the reference into one standard op that holds the value as a node attribute
instead (dynamo at opset 23 turns rms_norm's reference into RMSNormalization(epsilon=...)), that node
attribute refers to the function attribute (ref_attr_name) instead.
(At opset 11, which has no
Constant(value_float), floats are specialised like the rest.) Other attributes (str, int, bool, lists) may change the traced graph's structure, so the body is
specialised to the value the model's nodes use; nodes that disagree cannot share one function and make
this an ExportError. Function bodies are attached after export because exporters inline functions."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..core import lazy
from ..core.dtypes import torch_dtype
from ..core.errors import ExportError
from .quiet import quiet_dynamo_registration_log, quiet_torchscript_log
from .schema import ELEM_TO_DTYPE

PROBES = (0.0123456789, 0.0234567891, 0.0345678912, 0.0456789123)  # distinctive, harmless magnitudes
PROBES_CHECK = (0.0567891234, 0.0678912345, 0.0789123456, 0.0891234567)  # a second export to find derived constants


def _node_facts(m, node, decl):
    onnx = lazy.onnx()
    types = {}
    for v in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        if v.type.HasField("tensor_type"):
            t = v.type.tensor_type
            types[v.name] = (t.elem_type, len(t.shape.dim) if t.HasField("shape") else None)
    for init in m.graph.initializer:
        types[init.name] = (init.data_type, len(init.dims))
    ins = [types.get(n, (0, None)) for n in node.input]
    given = {p.name: onnx.helper.get_attribute_value(p) for p in node.attribute}
    values = {}
    for a in decl.attrs:
        v = given.get(a.name, a.default)
        values[a.name] = v.decode() if isinstance(v, bytes) else v
    return ins, values


def _sample_for(decl, dtype: str, ranks):
    for s in decl.samples("cpu", torch_dtype(dtype)):
        tensors = [t for t in s.inputs]
        if (
            len(tensors) >= len(ranks)
            and all(r is None or t.dim() == r for t, r in zip(tensors, ranks))
            and all(t.numel() > 0 for t in tensors if t is not None)
        ):
            return tensors
    raise ExportError(
        f"{decl.id}: no declared sample has inputs of ranks {ranks} and dtype {dtype}, so no "
        "fallback body can be traced for it. Fix: add such a sample, or export without fallback."
    )


def _export_reference(decl, tensors, attrs, opset):
    import io

    onnx = lazy.onnx()

    class Reference(torch.nn.Module):
        def forward(self, *inputs):
            return decl.reference(*inputs, **attrs)

    names = [i.name for i in decl.inputs][: len(tensors)]
    with warnings.catch_warnings(), quiet_dynamo_registration_log(), quiet_torchscript_log():
        warnings.simplefilter("ignore")
        if opset <= 17:
            buf = io.BytesIO()
            axes = {n: {d: f"{n}_d{d}" for d in range(t.dim())} for n, t in zip(names, tensors)}
            torch.onnx.export(
                Reference(),
                tuple(tensors),
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=names,
                output_names=[o.name for o in decl.outputs],
                dynamic_axes=axes,
            )
            return onnx.load_from_string(buf.getvalue())
        shapes = tuple({d: torch.export.Dim.AUTO for d in range(t.dim())} for t in tensors)
        program = torch.onnx.export(
            Reference(),
            tuple(tensors),
            dynamo=True,
            opset_version=opset,
            input_names=names,
            output_names=[o.name for o in decl.outputs],
            dynamic_shapes={"inputs": shapes},
            verbose=False,
        )
        return program.model_proto


def _constants(g):
    """name -> (numpy value, producing Constant node or None for an initializer)."""
    numpy_helper = lazy.onnx().numpy_helper

    out = {init.name: (numpy_helper.to_array(init), None) for init in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = (numpy_helper.to_array(a.t), n)
    return out


def _probe_hits(consts, probe) -> list[str]:
    return [
        name
        for name, (v, _) in consts.items()
        if v.size == 1 and np.issubdtype(v.dtype, np.floating) and np.float32(v.reshape(-1)[0]) == np.float32(probe)
    ]


def _check_no_derived_constants(decl, tensors, attrs, opset, floats, consts, hit_names):
    """A constant computed from an attribute (say 1/bound, folded by the exporter) would be baked into the
    body with the probe's value. Export again with other probes: every constant that is not an attribute
    occurrence must come out the same."""
    probed = dict(attrs)
    for a, p in zip(floats, PROBES_CHECK):
        probed[a.name] = p
    other = _constants(_export_reference(decl, tensors, probed, opset).graph)
    second_hits = set()
    for p in PROBES_CHECK[: len(floats)]:
        second_hits.update(_probe_hits(other, p))

    def rest(cs, skip):
        return sorted((v.dtype.str, v.shape, v.tobytes()) for name, (v, _) in cs.items() if name not in skip)

    if rest(consts, hit_names) != rest(other, second_hits):
        raise ExportError(
            f"{decl.id}: the fallback body cannot carry attributes {[a.name for a in floats]}: the traced "
            "reference holds constants computed from them (e.g. 1/x folded by the exporter), which a "
            "function attribute cannot reproduce. Fix: export without fallback, or write the reference "
            "so the attribute is used as it is (x / bound, not x * (1 / bound))."
        )


def _body(decl, tensors, attrs, opset):
    """(FunctionProto pieces) of the reference with float attributes wired to function attributes."""
    onnx = lazy.onnx()
    helper = onnx.helper
    # Constant(value_float=...) exists from opset 12; at opset 11 float attributes are baked in too.
    floats = [a for a in decl.attrs if a.type == "float"] if opset >= 12 else []
    probed = dict(attrs)
    for a, p in zip(floats, PROBES):
        probed[a.name] = p
    model = _export_reference(decl, tensors, probed, opset)
    g = model.graph
    consts = _constants(g)
    replace = {}
    hit_names: set = set()
    for a, p in zip(floats, PROBES):
        hits = _probe_hits(consts, p)
        # The exporter's optimiser may fuse the reference into one standard op that takes the value as a
        # node attribute instead of a constant (dynamo at opset 23 turns rms_norm's reference into
        # RMSNormalization(epsilon=...)). Such an attribute refers to the function attribute directly.
        attr_hits = [
            na
            for n in g.node
            if n.op_type != "Constant"
            for na in n.attribute
            if na.type == onnx.AttributeProto.FLOAT and np.float32(na.f) == np.float32(p)
        ]
        if not hits and not attr_hits:
            raise ExportError(
                f"{decl.id}: the fallback body cannot carry attribute '{a.name}': its value appears in "
                "no constant or node attribute of the traced reference (the exporter folded it into "
                "something else). Fix: export without fallback."
            )
        for na in attr_hits:  # the probe value is distinctive: every occurrence is the attribute itself
            na.ClearField("f")
            na.ref_attr_name = a.name
        for name in hits:
            replace[name] = (a.name, consts[name][0])
        hit_names.update(hits)
    if floats:
        _check_no_derived_constants(decl, tensors, attrs, opset, floats, consts, hit_names)
    nodes = []
    for name, (value, producer) in consts.items():
        if name in replace:
            attr, original = replace[name]
            raw = f"{name}__{attr}_f32"
            nodes.append(helper.make_node("Constant", [], [raw], value_float=0.0))
            nodes[-1].attribute[0].ref_attr_name = attr
            shaped = raw
            if original.shape != ():
                shape_name = f"{name}__shape"
                nodes.append(
                    helper.make_node(
                        "Constant",
                        [],
                        [shape_name],
                        value=onnx.numpy_helper.from_array(np.array(original.shape, dtype=np.int64)),
                    )
                )
                shaped = f"{name}__{attr}_shaped"
                nodes.append(helper.make_node("Reshape", [raw, shape_name], [shaped]))
            to = helper.np_dtype_to_tensor_dtype(original.dtype)
            nodes.append(helper.make_node("Cast", [shaped], [name], to=to))
        elif producer is None:  # an initializer: functions have none, so it becomes a Constant
            nodes.append(helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(value, name)))
    for n in g.node:
        if not (n.op_type == "Constant" and n.output[0] in replace):
            nodes.append(n)
    return model, nodes, [i.name for i in g.input if i.name not in consts], [o.name for o in g.output], floats


def make_function(decl, tensors, attrs, opset):
    onnx = lazy.onnx()
    model, nodes, inputs, outputs, floats = _body(decl, tensors, attrs, opset)
    fn = onnx.helper.make_function(
        decl.namespace,
        decl.name,
        inputs,
        outputs,
        nodes,
        opset_imports=list(model.opset_import),
        attributes=[a.name for a in floats],
        doc_string=f"reference of {decl.id}; specialised to "
        f"{ {k: v for k, v in attrs.items() if k not in [a.name for a in floats]} }",
    )
    return fn, list(model.functions), list(model.opset_import)


def attach_fallbacks(m, ops, opset: int) -> None:
    onnx = lazy.onnx()
    inferred = onnx.shape_inference.infer_shapes(m)
    imports = {o.domain: o.version for o in m.opset_import}
    for op in ops:
        decl = op.decl
        if not decl.onnx_fallback:
            raise ExportError(
                f"{decl.id} declares onnx_fallback=False: its reference cannot be written as standard "
                "ONNX ops (e.g. data-dependent loops), so the graph has no fallback body for it. Fix: "
                "export without fallback=True and run the model with opforge's ONNX Runtime library"
            )
        nodes = [n for n in m.graph.node if (n.domain, n.op_type) == (decl.namespace, decl.name)]
        keys = {}
        for n in nodes:
            ins, values = _node_facts(inferred, n, decl)
            fixed = tuple((a.name, repr(values[a.name])) for a in decl.attrs if a.type != "float" or opset < 12)
            keys.setdefault((tuple(ins), fixed), (ins, values))
        if len(keys) != 1:
            raise ExportError(
                f"{decl.id}: its nodes use {len(keys)} different input dtypes/ranks or non-float "
                f"attribute values; one fallback function per op cannot serve them all. Fix: export "
                "without fallback, or use one configuration of the op per model."
            )
        ins, values = next(iter(keys.values()))
        dtype = ELEM_TO_DTYPE.get(ins[0][0], "float32")
        tensors = _sample_for(decl, dtype, [r for _, r in ins])[: len(ins)]
        attrs = {a.name: values[a.name] if a.type != "bool" else bool(values[a.name]) for a in decl.attrs}
        fn, extra_functions, body_imports = make_function(decl, tensors, attrs, opset)
        m.functions.append(fn)
        have = {(f.domain, f.name) for f in m.functions}
        m.functions.extend(f for f in extra_functions if (f.domain, f.name) not in have)
        for o in body_imports:
            if o.domain not in imports:
                m.opset_import.append(onnx.helper.make_opsetid(o.domain, o.version))
                imports[o.domain] = o.version
