"""export_onnx for every library op x exporter x opset: opset honoured, checker + strict inference,
TensorRT attributes, graphsurgeon shapes, and ORT (same kernels) at batch 1/3/8 from one export."""

import numpy as np
import onnx
import pytest
import torch

import ops
from ops.check.batching import batch_plan
from ops.check.oracle import reference_outputs
from ops.core.registry import library_ops
from ops.onnx import export_onnx, ort_session
from ops.onnx.models import run_session, single_op_module
from ops.onnx.schema import output_dims

LIBRARY_OPS = [op for op in library_ops() if op.decl.onnx]  # onnx=False ops are never exported

OPSETS = [11, 13, 17, 18, 20, 23]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("op", LIBRARY_OPS, ids=lambda op: op.id)
def test_export_check_and_run(op, opset, tmp_path):
    import onnx_graphsurgeon as gs

    plan = batch_plan(op)
    sample = plan.sample
    path = tmp_path / "op.onnx"
    export_onnx(single_op_module(op, sample.attrs), sample.inputs, path, opset=opset, dynamic=plan.dynamic)
    m = onnx.load(str(path))
    assert {o.domain: o.version for o in m.opset_import}[""] == opset
    assert {o.domain: o.version for o in m.opset_import}[op.decl.namespace] == op.decl.version
    onnx.checker.check_model(m, full_check=True)
    onnx.shape_inference.infer_shapes(m, strict_mode=True)
    nodes = [n for n in m.graph.node if (n.domain, n.op_type) == (op.decl.namespace, op.decl.name)]
    assert len(nodes) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["plugin_version"] == str(op.decl.version).encode()
    assert attrs["plugin_namespace"] == op.decl.namespace.encode()
    assert {a.name for a in op.decl.attrs} <= set(attrs)  # every attribute explicit
    for a in op.decl.attrs:  # list attributes travel as INTS/FLOATS of their exact values
        if a.type.startswith("list["):
            assert list(attrs[a.name]) == list(sample.attrs.get(a.name, a.default))
    # graphsurgeon sees the custom node's outputs with the shapes the rules give over the symbolic batch
    want = output_dims(op.decl, plan.dim_names(op.decl), {**{a.name: a.default for a in op.decl.attrs}, **sample.attrs})
    custom = [n for n in gs.import_onnx(m).nodes if n.op == op.decl.name]
    for out, dims in zip(custom[0].outputs, want):
        if dims is not None:
            assert [d for d, w in zip(out.shape, dims) if w is not None] == [w for w in dims if w is not None]
    session = ort_session(path)
    for b in plan.sizes((1, 3, 8)):
        inputs = plan.inputs(b)
        got = run_session(session, inputs)
        want = reference_outputs(op, ops.Sample(*inputs, **sample.attrs))
        rtol, atol = op.decl.tolerance("float32")
        for g, w, kernel in zip(got, want, _as_tuple(op(*inputs, **sample.attrs))):
            torch.testing.assert_close(g, w.to(g.dtype), rtol=rtol, atol=atol)
            torch.testing.assert_close(g, kernel, rtol=0, atol=0)  # the same kernel


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@pytest.mark.parametrize("opset", [11, 20])
def test_float_attributes_arrive_exactly(opset, tmp_path):
    """FLOAT attributes reach the native ORT op as the float32 the model holds, not rounded text."""
    rms, gelu = ops.get_op("opforge::rms_norm"), ops.get_op("opforge::scaled_gelu")
    x = torch.randn(4, 16) * 1e-4  # x^2 ~ eps: eps's 7th digit shows in the output
    w = torch.ones(16)
    for op, inputs, attrs, rounded in (
        (rms, (x, w), {"eps": 1.2345678e-7}, {"eps": 1.23457e-7}),
        (gelu, (torch.randn(4, 16),), {"alpha": 1.23456789}, {"alpha": 1.23457}),
    ):
        path = tmp_path / f"{op.decl.name}.onnx"
        export_onnx(single_op_module(op, attrs), inputs, path, opset=opset)
        got = run_session(ort_session(path), inputs)[0]
        exact = op(*inputs, **{k: float(np.float32(v)) for k, v in attrs.items()})
        assert torch.equal(got, exact)
        assert not torch.equal(got, op(*inputs, **rounded))  # the test would notice 6-digit rounding


def test_fallback_runs_in_plain_ort(tmp_path, mixed_model):
    import onnxruntime as ort

    model, args = mixed_model.make()
    path = tmp_path / "fb.onnx"
    m = export_onnx(model, args, path, opset=17, dynamic=True, fallback=True)
    assert {(f.domain, f.name) for f in m.functions} == {("opforge", "rms_norm"), ("opforge", "scaled_gelu")}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # no opforge binding
    for b in (1, 3, 8):
        x = torch.randn(b, 3, 16)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.inference_mode():
            np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_opset_mismatch_fails_loudly(monkeypatch):
    import ops.onnx.export as ex

    real = ex.export_torchscript

    def wrong_opset(model, args, opset, dynamic, op_list):
        return real(model, args, opset + 1, dynamic, op_list)

    monkeypatch.setattr(ex, "export_torchscript", wrong_opset)
    op = ops.get_op("opforge::scaled_gelu")
    with pytest.raises(ops.ExportError, match="asked for opset 11 but the exporter wrote opset 12"):
        export_onnx(single_op_module(op), (torch.randn(2, 3),), opset=11)


def test_bad_opset_and_missing_torchscript(monkeypatch):
    op = ops.get_op("opforge::scaled_gelu")
    with pytest.raises(ops.ExportError, match="opset must be an int in 11-23"):
        export_onnx(single_op_module(op), (torch.randn(2, 3),), opset=10)
    monkeypatch.delattr(torch.onnx, "register_custom_op_symbolic")
    with pytest.raises(ops.ExportError, match="no longer ships the TorchScript ONNX exporter"):
        export_onnx(single_op_module(op), (torch.randn(2, 3),), opset=17)


@pytest.mark.parametrize("opset", [17, 18, 20, 23])
def test_an_explicit_none_argument_keeps_the_declared_dim_names(opset):
    """`forward(x, offset, weight, mask=None)` called with mask=None: both exporters keep the names given in
    `dynamic` (the dynamo exporter used to fall back to torch's own symbols, e.g. 's77'), and the graph inputs
    keep the forward's parameter names."""

    class Model(torch.nn.Module):
        def forward(self, x, offset, weight, mask=None):
            return torch.ops.opforge.modulated_deform_conv2d(
                x, offset, weight, mask, None, [1, 1], [1, 1], [1, 1], 1, 1
            )

    x, offset, weight = torch.randn(2, 4, 7, 6), torch.randn(2, 18, 7, 6), torch.randn(3, 4, 3, 3)
    dims = {}
    for args in ((x, offset, weight), (x, offset, weight, None)):
        m = export_onnx(Model(), args, opset=opset, dynamic={0: {0: "n"}, 1: {0: "n"}, 3: {0: "n"}})
        assert [i.name for i in m.graph.input] == ["x", "offset", "weight"]
        dims[len(args)] = [
            [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(m.graph.input) + list(m.graph.output)
        ]
    assert dims[4] == dims[3] == [["n", 4, 7, 6], ["n", 18, 7, 6], [3, 4, 3, 3], ["n", 3, 7, 6]]
