"""export_onnx(..., fallback=True) at every opset 11-23 for every library op: the graph carries the op's
reference as an ONNX function and runs in plain ONNX Runtime (no opforge binding), matching the reference
with the attribute values of the node (float attributes are function attributes, not baked in).

Opsets 11-17 go through the TorchScript exporter, 18-23 through dynamo (ops/onnx/export.py). At opset 23
dynamo's optimiser fuses rms_norm's reference into ONNX RMSNormalization, whose epsilon is a node
attribute, not a constant: the fallback body must wire the function attribute to that node attribute."""

import pytest
import torch
from op_cases import generated_ops, message, op_param

from ops.check.batching import batch_plan
from ops.check.oracle import reference_outputs
from ops.onnx import export_onnx
from ops.onnx.export import DYNAMO_OPSETS, TORCHSCRIPT_OPSETS
from ops.onnx.models import single_op_module
from ops.onnx.schema import onnx_supported

OPS = [
    op for op in generated_ops() if op.decl.kernel_dir is not None and onnx_supported(op.decl) and op.decl.onnx_fallback
]
NO_FALLBACK = [op for op in generated_ops() if onnx_supported(op.decl) and not op.decl.onnx_fallback]
OPSETS = list(TORCHSCRIPT_OPSETS) + list(DYNAMO_OPSETS)


def test_every_opset_is_covered():
    assert OPSETS == list(range(11, 24))


def _sample(op):
    """One small non-empty sample, with every float attribute moved off its default (so a body that
    baked in the default, or the probe value it was traced with, would not match)."""
    s = batch_plan(op).sample  # the sample ops.check's ort.fallback exports (fallback probes start from it)
    attrs = dict(s.attrs)
    for a in op.decl.attrs:
        if a.type == "float":
            attrs[a.name] = 0.3 + 1.5 * float(attrs.get(a.name, a.default))
    return type(s)(*s.inputs, **attrs)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("op", [op_param(op) for op in OPS])
def test_fallback_runs_in_plain_ort_at_every_opset(op, opset):
    import onnxruntime as ort

    sample = _sample(op)
    m = export_onnx(single_op_module(op, sample.attrs), sample.inputs, opset=opset, fallback=True)
    fn = [f for f in m.functions if (f.domain, f.name) == (op.decl.namespace, op.decl.name)]
    assert len(fn) == 1, [(f.domain, f.name) for f in m.functions]
    floats = [a.name for a in op.decl.attrs if a.type == "float"]
    if opset >= 12:  # opset 11 has no Constant(value_float): floats are specialised there
        assert list(fn[0].attribute) == floats
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), [t for t in sample.inputs if t is not None])}
    got = session.run(None, feed)
    rtol, atol = op.decl.tolerance("float32")
    for g, e in zip(got, reference_outputs(op, sample)):
        torch.testing.assert_close(
            torch.from_numpy(g),
            e,
            rtol=max(rtol, 1e-5),
            atol=max(atol, 1e-5),
            msg=lambda text: message(op, "float32", f"fallback, opset {opset}", sample.inputs[0].shape, text),
        )


@pytest.mark.parametrize("op", [op_param(op) for op in NO_FALLBACK])
def test_an_op_without_fallback_body_is_refused_by_name(op):
    """onnx_fallback=False (batched_nms: greedy suppression is a data-dependent loop): a fallback export names
    the op and the fix instead of tracing a body that cannot exist."""
    from ops.core.errors import ExportError

    sample = _sample(op)
    with pytest.raises(ExportError, match=f"{op.id} declares onnx_fallback=False.*Fix:"):
        export_onnx(single_op_module(op, sample.attrs), sample.inputs, opset=17, fallback=True)
    export_onnx(single_op_module(op, sample.attrs), sample.inputs, opset=17)  # without fallback it exports


def _declare_clip(unique_id, reference):
    from ops import Attr, Input, Output, Sample, register_op

    return register_op(
        unique_id("clip"),
        inputs=[Input("x")],
        outputs=[Output("y")],
        attrs=[Attr("bound", float, 3.0)],
        kernels=None,
        samples=lambda device, dtype: [Sample(torch.randn(4, 6, dtype=dtype, device=device))],
    )(reference)


@pytest.mark.parametrize("opset", [17, 20])
def test_an_attribute_used_twice_becomes_one_function_attribute(unique_id, tmp_path, opset):
    def softclip(x, bound=3.0):
        return bound * torch.tanh(x / bound)

    op = _declare_clip(unique_id, softclip)
    x = torch.randn(4, 6) * 4
    path = tmp_path / "m.onnx"
    export_onnx(single_op_module(op, {"bound": 1.7}), (x,), path, opset=opset, fallback=True)
    from ops.onnx import ort_session
    from ops.onnx.models import run_session

    (got,) = run_session(ort_session(str(path), bind_ops=False), (x,))
    torch.testing.assert_close(torch.as_tensor(got), softclip(x, 1.7))


def test_a_constant_derived_from_an_attribute_is_refused(unique_id, tmp_path):
    def scaled(x, bound=3.0):
        return x / bound + x * (1.0 / bound)  # 1/bound is a constant computed from the attribute

    op = _declare_clip(unique_id, scaled)
    from ops.core.errors import ExportError

    with pytest.raises(ExportError, match="constants computed from them"):
        export_onnx(
            single_op_module(op, {"bound": 1.7}), (torch.randn(4, 6),), tmp_path / "m.onnx", opset=17, fallback=True
        )
