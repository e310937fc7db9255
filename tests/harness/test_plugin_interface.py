"""Every op's TensorRT plugin, driven through TensorRT's plugin interfaces by the plugin host harness.

The harness proves the plugin honours IPluginCreatorV3One / IPluginV3OneCore/Build/Runtime as the
10.14.1 headers define them; it does not prove that a TensorRT build accepted the plugin."""

import numpy as np
import pytest

import ops
from ops.core.dtypes import dtype_name
from ops.trt.harness import host as harness
from ops.trt.harness.cases import (
    attrs_of,
    dims_match,
    expected_shapes,
    input_shapes,
    op_ids,
    output_trt_types,
    plugin_ops,
    samples,
    trt_types,
    valid_type_combos,
)

OPS = op_ids()
FIELD_FOR = {
    "int": ("kINT32", 1),
    "bool": ("kINT32", 1),
    "list[int]": ("kINT32", 0),
    "float": ("kFLOAT32", 1),
    "list[float]": ("kFLOAT32", 0),
    "str": ("kCHAR", 0),
}


def test_every_compiled_op_has_a_plugin():
    assert OPS, "no op with CUDA kernels is registered"


def _creator(host, op):
    d = op.decl
    return host.creator(d.name, str(d.version), d.namespace)


def _plugin(host, op, attrs=None, node=None):
    creator = _creator(host, op)
    if attrs is None:  # required attributes need a value: the first sample's
        attrs = samples(op)[0].attrs if samples(op) else {}
    node = node or harness.synthetic_onnx_node(op, attrs)
    p = host.create(creator, harness.fields_from_onnx_node(node, creator.fields))
    assert p is not None, host.log()
    return p


@pytest.mark.parametrize("op_id", OPS)
def test_creator_matches_declaration(trt_host, op_id):
    d = ops.get_op(op_id).decl
    c = _creator(trt_host, ops.get_op(op_id))
    assert c.interface == "PLUGIN CREATOR_V3ONE 1.0"
    assert list(c.fields) == [a.name for a in d.attrs]
    for a in d.attrs:
        ftype, length = FIELD_FOR[a.type]
        assert c.fields[a.name] == (harness.FIELD_TYPE[ftype], length), a.name


def _exported_node(op, sample):
    return harness.onnx_node_for(op, sample.attrs, sample.inputs)  # an export failure fails the test


@pytest.mark.parametrize("op_id", OPS)
def test_create_from_exported_onnx_node(trt_host, op_id):
    """The node the exporter writes, turned into fields by the parser's rules, creates the plugin."""
    op = ops.get_op(op_id)
    for sample in samples(op)[:2]:
        attrs = attrs_of(op, sample)
        node = _exported_node(op, sample)
        assert harness.plugin_key_from_onnx_node(node) == (op.decl.name, str(op.decl.version), op.decl.namespace)
        p = _plugin(trt_host, op, node=node)
        assert p.info()[:5] == [op.decl.name, str(op.decl.version), op.decl.namespace, str(len(op.decl.outputs)), "111"]
        got = p.serialized_fields()
        for a in op.decl.attrs:
            value = got[a.name][1]
            want = attrs[a.name]
            if a.type == "float":  # the parser passes kFLOAT32: the plugin holds exactly the float32 value
                assert value == [float(np.float32(want))]
            elif a.type == "str":
                assert value == want
            else:
                assert value == (list(want) if a.type.startswith("list") else [int(want)])
        p.destroy()


@pytest.mark.parametrize("op_id", OPS)
def test_output_shapes_constant_and_symbolic(trt_host, op_id):
    op = ops.get_op(op_id)
    for sample in samples(op):
        attrs = attrs_of(op, sample)
        shapes = input_shapes(op, sample)
        expected = expected_shapes(op, shapes, attrs)
        ref = op.reference(*sample.inputs, **sample.attrs)
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        p = _plugin(trt_host, op, sample.attrs)
        # constant input dims fold to the declared (and the reference's) output shape
        st, got, text = p.output_shapes([harness.tensor(s) for s in shapes], len(op.decl.outputs))
        assert st == 0, (text, trt_host.log())
        for g, e, r, o in zip(got, expected, ref, op.decl.outputs):
            if e is not None:  # a data-dependent dim (None in e) is a size tensor in the plugin's answer
                assert dims_match(g, e) and dims_match(list(r.shape), e), (o.name, text)
                assert all(isinstance(d, str) and d.startswith("size") for d, w in zip(g, e) if w is None), text
        # symbolic input dims stay symbolic; substituting the values gives the same shape
        st, got, text = p.output_shapes([harness.tensor([-1] * len(s)) for s in shapes], len(op.decl.outputs))
        assert st == 0, (text, trt_host.log())
        env = {f"in{k}_{i}": v for k, s in enumerate(shapes) for i, v in enumerate(s)}
        env.update(max=max, min=min, ceil_div=lambda a, b: -(-a // b))
        for g, e in zip(got, expected):
            if e is not None:
                assert [w if w is None else eval(str(x), {"__builtins__": {}}, env) for x, w in zip(g, e)] == e, text
        p.destroy()


def _rank_constrained(op):
    return [i for i in op.decl.inputs if i.min_rank > 0 or i.rank is not None]


@pytest.mark.parametrize("op_id", [op.id for op in plugin_ops() if _rank_constrained(op)])
def test_output_shapes_reject_bad_rank(trt_host, op_id):
    op = ops.get_op(op_id)
    bad = _rank_constrained(op)
    p = _plugin(trt_host, op)
    sample = samples(op)[0]
    shapes = input_shapes(op, sample)
    k = [i.name for i in op.decl.inputs].index(bad[0].name)
    shapes[k] = [] if bad[0].rank != 0 else [2]
    st, _, _ = p.output_shapes([harness.tensor(s) for s in shapes], len(op.decl.outputs))
    assert st != 0
    assert op_id in trt_host.log()


@pytest.mark.parametrize("op_id", OPS)
def test_supports_format_combination_matches_declared_dtypes(trt_host, op_id):
    op = ops.get_op(op_id)
    p = _plugin(trt_host, op)
    nb_in, n = len(op.decl.inputs), len(op.decl.inputs) + len(op.decl.outputs)
    valid = set(valid_type_combos(op))
    shapes = input_shapes(op, samples(op)[0])
    shapes += [s for s in expected_shapes(op, shapes, attrs_of(op, samples(op)[0]), at_upper=True)]
    # TensorRT asks about position pos only once inOut[0..pos-1] are supported choices, so walk the tree of
    # supported prefixes (every dtype tried at each position) instead of every full combination (10^6 for
    # six tensors). The positions after pos hold varying dtypes: the answer must not depend on them.
    dtypes = harness.ALL_TRT_DTYPES
    checked = 0
    prefixes = [()]
    while prefixes:
        prefix = prefixes.pop()
        pos = len(prefix)
        for k, t in enumerate(dtypes):
            combo = prefix + (t,) + tuple(dtypes[(k + j) % len(dtypes)] for j in range(1, n - pos))
            io = [harness.tensor(shapes[i] or [], combo[i]) for i in range(n)]
            want = any(v[: pos + 1] == combo[: pos + 1] for v in valid)
            assert p.supports(pos, io, nb_in) == want, (pos, combo)
            io[pos] = harness.tensor(shapes[pos] or [], combo[pos], harness.K_CHW2)
            assert not p.supports(pos, io, nb_in), "only kLINEAR is supported"
            checked += 1
            if want and pos + 1 < n:
                prefixes.append(prefix + (t,))
    assert checked > 0


@pytest.mark.parametrize("op_id", OPS)
def test_output_data_types(trt_host, op_id):
    op = ops.get_op(op_id)
    p = _plugin(trt_host, op)
    nb_in = len(op.decl.inputs)
    for combo in valid_type_combos(op):
        st, out = p.output_types(list(combo[:nb_in]), len(op.decl.outputs))
        assert st == 0 and tuple(out) == combo[nb_in:]
    st, _ = p.output_types([harness.TRT_DTYPE["int8"]] * nb_in, len(op.decl.outputs))
    assert st != 0 and "dtype" in trt_host.log()


def _io(op, sample, dtype=None):
    """Input and output descriptors for a sample: each tensor with its own type (integer inputs and outputs
    keep theirs; `dtype` replaces the floating type of the first input everywhere it appears), data-dependent
    outputs at their upper bound."""
    shapes = input_shapes(op, sample)
    outs = expected_shapes(op, shapes, attrs_of(op, sample), at_upper=True)
    in_types = [harness.TRT_DTYPE[dtype_name(t.dtype)] for t in sample.inputs if t is not None]
    out_types = output_trt_types(op, sample)
    if dtype is not None:
        base = in_types[0]
        in_types = [dtype if t == base else t for t in in_types]
        out_types = [dtype if t == base else t for t in out_types]
    return (
        [harness.tensor(s, t) for s, t in zip(shapes, in_types)],
        [harness.tensor(s or [], t) for s, t in zip(outs, out_types)],
    )


@pytest.mark.parametrize("op_id", OPS)
def test_configure_and_shape_change_accept_declared_inputs(trt_host, op_id):
    op = ops.get_op(op_id)
    for sample in samples(op):
        p = _plugin(trt_host, op, sample.attrs)
        for t in trt_types(op.decl.dtypes):
            ins, outs = _io(op, sample, t)
            assert p.configure(ins, outs) == 0, trt_host.log()
            assert p.on_shape_change(ins, outs) == 0, trt_host.log()
            assert p.workspace(ins, outs) >= 0
        # unknown (-1) dims in desc.dims with concrete min/max, as in a dynamic profile
        ins, outs = _io(op, sample)
        dyn = [
            harness.tensor([-1] * t.rank, t.type, mins=list(t.dims)[: t.rank], maxs=list(t.dims)[: t.rank]) for t in ins
        ]
        assert p.configure(dyn, outs) == 0, trt_host.log()
        p.destroy()


def _violations(op, sample):
    """(description, inputs, outputs) that the declaration forbids, derived from it."""
    d = op.decl
    ins, outs = _io(op, sample)
    for k, i in enumerate(d.inputs):
        if i.min_rank > 0:
            bad = list(ins)
            bad[k] = harness.tensor([], 0)
            yield f"{i.name} rank below {i.min_rank}", bad, outs
        if i.shape is not None and ins[k].rank > 0:
            bad = list(ins)
            dims = list(ins[k].dims)[: ins[k].rank]
            dims[-1] += 1
            bad[k] = harness.tensor(dims, 0)
            yield f"{i.name} shape off by one", bad, outs
        bad = list(ins)
        bad[k] = harness.tensor(list(ins[k].dims)[: ins[k].rank], harness.TRT_DTYPE["int8"])
        yield f"{i.name} dtype int8", bad, outs
    # an output dim the rules fix (a data-dependent one may be anything up to its bound)
    fixed = expected_shapes(op, input_shapes(op, sample), attrs_of(op, sample))
    where = next(((j, i) for j, shape in enumerate(fixed) if shape for i, w in enumerate(shape) if w is not None), None)
    if where is not None:
        j, i = where
        bad_out = list(outs)
        dims = list(outs[j].dims)[: outs[j].rank]
        dims[i] += 1
        bad_out[j] = harness.tensor(dims, outs[j].type)
        yield "output shape differs from the rule", ins, bad_out


@pytest.mark.parametrize("op_id", OPS)
def test_configure_and_shape_change_reject_violations(trt_host, op_id):
    op = ops.get_op(op_id)
    sample = next(s for s in samples(op) if all(t.numel() > 0 for t in s.inputs))
    p = _plugin(trt_host, op, sample.attrs)
    trt_host.log()
    count = 0
    for what, ins, outs in _violations(op, sample):
        is_output = what.startswith("output")
        if not is_output:  # configurePlugin does not check output dims (they may still be wildcards)
            assert p.configure(ins, outs) != 0, what
            assert op_id in trt_host.log(), what
        assert p.on_shape_change(ins, outs) != 0, what
        assert op_id in trt_host.log(), what
        count += 1
    assert count >= 2
    ins, outs = _io(op, sample)
    assert p.on_shape_change(ins[:0], outs) != 0  # wrong input count
    p.destroy()


@pytest.mark.parametrize("op_id", OPS)
def test_serialize_recreate_round_trip(trt_host, op_id):
    op = ops.get_op(op_id)
    for sample in samples(op):
        p = _plugin(trt_host, op, sample.attrs)
        fields = p.serialized_fields()
        again = p.recreate()
        assert again is not None, trt_host.log()
        assert again.serialized_fields() == fields
        assert again.info() == p.info()
        assert again.timing_cache_id() == p.timing_cache_id()
        for a in op.decl.attrs:
            assert a.name in fields
        p.destroy()
        again.destroy()


@pytest.mark.parametrize("op_id", OPS)
def test_clone_and_attach_are_independent(trt_host, op_id):
    op = ops.get_op(op_id)
    sample = samples(op)[1 if len(samples(op)) > 1 else 0]
    p = _plugin(trt_host, op, sample.attrs)
    fields = p.serialized_fields()
    ins, outs = _io(op, sample)
    assert p.configure(ins, outs) == 0
    clone, attached = p.clone(), p.attach()
    assert clone is not None and attached is not None
    # Re-serializing the original (it rebuilds its field buffers) must not touch the clones' ...
    p.serialized_fields()
    p.destroy()  # ... and destroying it must leave them whole (ASan would flag a shared buffer)
    for c in (clone, attached):
        assert c.serialized_fields() == fields
        assert c.on_shape_change(ins, outs) == 0
        st, _, _ = c.output_shapes(ins, len(op.decl.outputs))
        assert st == 0
    clone.destroy()
    assert attached.serialized_fields() == fields
    attached.destroy()


@pytest.mark.parametrize("op_id", OPS)
def test_create_rejects_bad_fields_with_a_message(trt_host, op_id):
    op = ops.get_op(op_id)
    c = _creator(trt_host, op)
    trt_host.log()
    cases = [harness.Fields().add("no_such_field", harness.FIELD_TYPE["kINT32"], b"\0\0\0\0", 1)]
    for a in op.decl.attrs:
        cases.append(harness.Fields().add(a.name, harness.FIELD_TYPE["kDIMS"], b"\0" * 4, 1))  # mistyped
        cases.append(harness.Fields().add(a.name, harness.FIELD_TYPE["kINT32"], b"", -1))  # negative length
        cases.append(harness.Fields().add(a.name, harness.FIELD_TYPE["kINT32"], b"\0" * 4, 1 << 30))  # oversized
        if a.choices:
            cases.append(harness.Fields().add(a.name, harness.FIELD_TYPE["kCHAR"], b"not-a-choice", 12))
    for fields in cases:
        assert trt_host.create(c, fields) is None, fields.items
        assert f"{op_id}: createPlugin" in trt_host.log(), fields.items
    assert trt_host.create(c, harness.Fields()) is not None or any(not a.has_default for a in op.decl.attrs)


def test_static_shim_loads_without_libnvinfer(plugin_build):
    """Static registration finds no libnvinfer here: the shim still loads and says so."""
    import ctypes

    lib = ctypes.CDLL(str(plugin_build.library))
    ctypes.CDLL(str(plugin_build.static_shim))
    assert lib.opforge_trt_static_registration_state() == -1


def test_library_links_nothing_from_tensorrt(plugin_build):
    import subprocess

    for path in (plugin_build.library, plugin_build.static_shim):
        needed = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
        assert "libnvinfer" not in needed
    exported = subprocess.run(
        ["nm", "-D", "--defined-only", str(plugin_build.library)], capture_output=True, text=True
    ).stdout.split()
    assert "getCreators" in exported and "setLoggerFinder" in exported


def test_create_plugin_fuzz_under_asan(asan_build):
    """>= 1,000 malformed field collections per seed; every rejection logged, no ASan report."""
    for seed in (1, 2):
        rc, out = harness.run_fuzzer(asan_build.library, cases=2000, seed=seed)
        assert rc == 0, out[-3000:]
        assert "AddressSanitizer" not in out
        assert '"rejected_silently": 0' in out
