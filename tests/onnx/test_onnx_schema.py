"""The generated OpSchema: registered, typed, and inferring shapes through the node from the shape rule."""

import onnx
import pytest
import torch
from onnx import TensorProto, helper

import ops
from ops.check.batching import batch_plan
from ops.core.registry import library_ops
from ops.onnx.schema import ONNX_DTYPES, onnx_supported, output_dims, register_schema, register_schemas

LIBRARY_OPS = [op for op in library_ops() if onnx_supported(op.decl)]  # onnx=False ops have no schema


def _graph_through(decl, input_shapes, attrs=None, dtype=TensorProto.FLOAT):
    """One node of the op; `dtype` is one elem type for every input or a list of them."""
    names = [i.name for i in decl.inputs][: len(input_shapes)]
    dtypes = dtype if isinstance(dtype, list) else [dtype] * len(names)
    node = helper.make_node(decl.name, names, [o.name for o in decl.outputs], domain=decl.namespace, **(attrs or {}))
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in zip(names, dtypes, input_shapes)],
        [
            helper.make_tensor_value_info(
                o.name, ONNX_DTYPES[o.dtype][1] if o.dtype else dtypes[names.index(o.dtype_like)], None
            )
            for o in decl.outputs
        ],
    )
    graph.output[0].type.tensor_type.ClearField("shape")
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(decl.namespace, decl.version)]
    )


def _dims(vi):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param or None for d in vi.type.tensor_type.shape.dim]


@pytest.mark.parametrize("op", LIBRARY_OPS, ids=lambda op: op.id)
def test_schema_matches_declaration(op):
    register_schemas([op])
    d = op.decl
    schema = onnx.defs.get_schema(d.name, d.version, d.namespace)
    assert (schema.domain, schema.name, schema.since_version) == (d.namespace, d.name, d.version)
    assert [p.name for p in schema.inputs] == [i.name for i in d.inputs]
    assert [p.name for p in schema.outputs] == [o.name for o in d.outputs]
    for a in d.attrs:
        attr = schema.attributes[a.name]
        assert attr.required == (not a.has_default)
        if a.has_default:
            expected = (
                a.default.encode()
                if a.type == "str"
                else int(a.default)
                if a.type == "bool"  # ONNX INT
                else pytest.approx(a.default)
            )
            assert helper.get_attribute_value(attr.default_value) == expected
    assert {"plugin_version", "plugin_namespace"} <= set(schema.attributes)
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    first = d.inputs[0]
    assert allowed[schema.inputs[0].type_str] == {ONNX_DTYPES[t][0] for t in first.dtypes}


@pytest.mark.parametrize("op", LIBRARY_OPS, ids=lambda op: op.id)
def test_inference_keeps_symbolic_dims(op):
    """Inference through the node gives every output the dtype its rule says (float inputs fed as FLOAT16) and
    the dims the shape rules give over a symbolic batch."""
    register_schemas([op])
    d = op.decl
    plan = batch_plan(op)
    present = [(i, t) for i, t in zip(d.inputs, plan.sample.inputs) if t is not None]
    named = plan.dim_names(d)
    shapes = [named[i.name] for i, _ in present]
    types = [
        TensorProto.FLOAT16 if t.is_floating_point() else ONNX_DTYPES[str(t.dtype).removeprefix("torch.")][1]
        for _, t in present
    ]
    attrs = {
        a.name: (list(v) if isinstance(v, tuple) else v)
        for a in d.attrs
        if (v := plan.sample.attrs.get(a.name)) is not None
    }
    m = _graph_through(d, shapes, attrs, dtype=types)
    inferred = {o.name: o for o in onnx.shape_inference.infer_shapes(m, strict_mode=True).graph.output}
    values = {**{a.name: a.default for a in d.attrs}, **plan.sample.attrs}
    want = output_dims(d, {i.name: s for (i, _), s in zip(present, shapes)}, values)
    names = [i.name for i, _ in present]
    for o, dims in zip(d.outputs, want):
        out = inferred[o.name]
        expected_type = ONNX_DTYPES[o.dtype][1] if o.dtype else types[names.index(o.dtype_like)]
        assert out.type.tensor_type.elem_type == expected_type, o.name
        if dims is not None:
            assert [g for g, w in zip(_dims(out), dims) if w is not None] == [w for w in dims if w is not None]


@pytest.fixture(scope="module")
def computed_shape_op():
    """A reference-only op with an arithmetic shape rule over an int attribute."""
    op_id = "opforge_test_onnx::repeat_cols"
    if op_id in {o.id for o in ops.all_ops()}:
        return ops.get_op(op_id)

    @ops.register_op(
        op_id,
        inputs=[ops.Input("x", dtypes=("float32",), rank=2)],
        outputs=[ops.Output("y", shape="[x.shape[0], x.shape[1] * k + 1]")],
        attrs=[ops.Attr("k", int, 2)],
        kernels=None,
    )
    def repeat_cols(x, k=2):
        return torch.cat([x.repeat(1, k), x[:, :1]], dim=1)

    return repeat_cols


def test_inference_arithmetic(computed_shape_op):
    d = computed_shape_op.decl
    register_schema(d)

    def infer(shapes, attrs=None):
        graph = onnx.shape_inference.infer_shapes(_graph_through(d, shapes, attrs), strict_mode=True).graph
        return _dims(graph.output[0])

    assert infer([["n", 5]]) == ["n", 11]  # known ints computed, default k=2, symbolic dim copied
    assert infer([["n", 5]], {"k": 3}) == ["n", 16]  # the node's attribute wins
    got = infer([[4, "m"]])  # computed from an unknown: unknown (onnx names it unk__N); the rank is known
    assert got[0] == 4 and len(got) == 2 and (got[1] is None or got[1].startswith("unk__"))
