"""The harness checks `python -m ops.check` runs per op (the pytest files go further). Each returns
(ok, detail, metrics); nothing is reported as passing that did not run."""

from __future__ import annotations

import itertools

from ...core.dtypes import dtype_name
from . import host as harness
from .cases import (
    attrs_of,
    dims_match,
    expected_shapes,
    input_shapes,
    output_trt_types,
    samples,
    trt_types,
    valid_type_combos,
)


def cpu_checks(h: harness.Host, op) -> tuple[bool, str, dict]:
    d = op.decl
    try:
        creator = h.creator(d.name, str(d.version), d.namespace)
    except AssertionError as e:
        return False, f"creator not found in the library: {e}", {}
    if list(creator.fields) != [a.name for a in d.attrs]:
        return False, f"getFieldNames {list(creator.fields)} != declared attrs {[a.name for a in d.attrs]}", {}
    n_shapes = n_formats = n_roundtrips = 0
    nb_in, nb_out = len(d.inputs), len(d.outputs)
    source = "the exported ONNX node"
    for idx, sample in enumerate(samples(op)):
        node = harness.synthetic_onnx_node(op, sample.attrs)
        if idx == 0:  # the fields TensorRT's parser would see come from a real export: it must work
            try:
                node = harness.onnx_node_for(op, sample.attrs, sample.inputs)
            except Exception as e:
                return False, f"exporting the op's ONNX node failed, so no parser fields: {type(e).__name__}: {e}", {}
        p = h.create(creator, harness.fields_from_onnx_node(node, creator.fields))
        if p is None:
            return False, f"createPlugin rejected the fields of sample {idx}: {h.log().strip()}", {}
        shapes = input_shapes(op, sample)
        want = expected_shapes(op, shapes, attrs_of(op, sample))
        st, got, text = p.output_shapes([harness.tensor(s) for s in shapes], nb_out)
        if st != 0 or not all(dims_match(g, w) for g, w in zip(got, want)):
            return (
                False,
                f"getOutputShapes for inputs {shapes} gave {text.strip()!r} (status {st}), expected {want}",
                {},
            )
        n_shapes += 1
        ins = [
            harness.tensor(list(t.shape), harness.TRT_DTYPE[dtype_name(t.dtype)])
            for t in sample.inputs
            if t is not None
        ]
        outs = [
            harness.tensor(s or [], t)
            for s, t in zip(
                expected_shapes(op, shapes, attrs_of(op, sample), at_upper=True), output_trt_types(op, sample)
            )
        ]
        if p.configure(ins, outs) != 0 or p.on_shape_change(ins, outs) != 0:
            return False, f"configurePlugin/onShapeChange rejected valid inputs {shapes}: {h.log().strip()}", {}
        again = p.recreate()
        if again is None or again.serialized_fields() != p.serialized_fields():
            return False, f"serialize -> createPlugin(kRUNTIME) did not round-trip: {h.log().strip()}", {}
        clone = p.clone()
        fields = p.serialized_fields()
        p.destroy()
        if clone is None or clone.serialized_fields() != fields:
            return False, "clone() is not an independent copy", {}
        n_roundtrips += 1
        clone.destroy()
        again.destroy()
    first = samples(op)[0].attrs if samples(op) else {}  # required attributes need a value
    p = h.create(creator, harness.fields_from_onnx_node(harness.synthetic_onnx_node(op, first), creator.fields))
    valid = set(valid_type_combos(op))
    for combo in itertools.product(harness.ALL_TRT_DTYPES, repeat=nb_in + nb_out):
        for pos in range(nb_in + nb_out):
            if not any(v[:pos] == combo[:pos] for v in valid):
                break
            io = [harness.tensor([2] * max(d.inputs[0].min_rank, 1), t) for t in combo]
            if p.supports(pos, io, nb_in) != any(v[: pos + 1] == combo[: pos + 1] for v in valid):
                return False, f"supportsFormatCombination(pos={pos}) disagrees with the declared dtypes on {combo}", {}
            n_formats += 1
    p.destroy()
    dtypes = [harness.TRT_DTYPE_NAME[t] for t in trt_types(d.dtypes)]
    detail = (
        f"[{harness.LABEL}] fields from {source}; output shapes on {n_shapes} samples; "
        f"{n_formats} format queries match dtypes {dtypes}; configure/onShapeChange; serialize round trip "
        f"and clone on {n_roundtrips} samples"
    )
    return True, detail, {"samples": n_shapes, "format_queries": n_formats}
