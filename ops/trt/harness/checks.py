"""The harness checks `python -m ops.check` runs per op (the pytest files go further). Each returns
(ok, detail, metrics); nothing is reported as passing that did not run."""

from __future__ import annotations

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
    n_shapes = n_roundtrips = 0
    nb_out = len(d.outputs)
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
    problem, n_formats = format_queries(p, op)
    p.destroy()
    if problem:
        return False, problem, {}
    dtypes = [harness.TRT_DTYPE_NAME[t] for t in trt_types(d.dtypes)]
    detail = (
        f"[{harness.LABEL}] fields from {source}; output shapes on {n_shapes} samples; "
        f"{n_formats} format queries match dtypes {dtypes} (every dtype at every position TensorRT asks about, "
        f"{len(harness.ALL_TRT_DTYPES)} fillings of the later positions each; non-linear formats refused); "
        "configure/onShapeChange; serialize round trip "
        f"and clone on {n_roundtrips} samples"
    )
    return True, detail, {"samples": n_shapes, "format_queries": n_formats}


def format_queries(p: harness.Plugin, op) -> tuple[str | None, int]:
    """supportsFormatCombination against the declared dtypes, as TensorRT asks it: about position pos only once
    inOut[0..pos-1] hold a supported choice. So walk the tree of supported prefixes, every dtype tried at each
    position, instead of every full combination (12^6 for six tensors, nearly all of them repeats of the same
    question). The positions after pos are not yet chosen when TensorRT asks, so the answer must not depend
    on them: each question is asked with every dtype at every later position (one filling per dtype,
    rotated), and once more in a non-linear format, which must be refused. Returns (problem or None, count)."""
    d = op.decl
    nb_in, n = len(d.inputs), len(d.inputs) + len(d.outputs)
    valid = set(valid_type_combos(op))
    dims = [2] * max(d.inputs[0].min_rank, 1)
    dtypes = harness.ALL_TRT_DTYPES
    count, prefixes = 0, [()]
    while prefixes:
        prefix = prefixes.pop()
        pos = len(prefix)
        for t in dtypes:
            want = any(v[: pos + 1] == (*prefix, t) for v in valid)
            for shift in range(len(dtypes) if pos + 1 < n else 1):  # nothing after the last position
                combo = (*prefix, t, *(dtypes[(shift + j) % len(dtypes)] for j in range(n - pos - 1)))
                io = [harness.tensor(dims, c) for c in combo]
                if p.supports(pos, io, nb_in) != want:
                    return f"supportsFormatCombination(pos={pos}) disagrees with the declared dtypes on {combo}", count
                count += 1
            io[pos] = harness.tensor(dims, t, harness.K_CHW2)
            if p.supports(pos, io, nb_in):
                return f"supportsFormatCombination(pos={pos}) accepts a non-linear format on {combo}", count
            count += 1
            if want and pos + 1 < n:
                prefixes.append((*prefix, t))
    return None, count
