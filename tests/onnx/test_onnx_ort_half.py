"""float16/bfloat16 graphs through the ORT binding: the bridge has no half types, so the session's copy
of the graph widens the node to float32; the kernels compute in float32 for every storage dtype and
round once, so the output must equal the torch op's bit for bit."""

import onnx
import pytest
import torch

from ops.check.oracle import samples
from ops.onnx import export_onnx, ort_session
from ops.onnx.models import run_session, single_op_module
from ops.onnx.ort import prepare
from ops.registry import library_ops


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("op", library_ops(), ids=lambda op: op.id)
def test_half_precision_node_matches_torch_bit_for_bit(op, dtype, tmp_path):
    sample = samples(op, "cpu", str(dtype).removeprefix("torch."))[1]
    path = tmp_path / "half.onnx"
    export_onnx(single_op_module(op, sample.attrs), sample.inputs, path, opset=17)
    [got] = run_session(ort_session(path), sample.inputs)
    want = op(*sample.inputs, **sample.attrs)
    assert got.dtype == dtype and torch.equal(got, want)


def test_the_callers_model_is_not_rewritten(tmp_path):
    op = next(op for op in library_ops() if op.id == "opforge::scaled_gelu")
    sample = samples(op, "cpu", "float16")[0]
    path = tmp_path / "half.onnx"
    export_onnx(single_op_module(op, sample.attrs), sample.inputs, path, opset=17)
    original = onnx.load(str(path))
    prepared, used = prepare(original)
    assert [n.op_type for n in original.graph.node] == ["scaled_gelu"]
    assert [n.op_type for n in prepared.graph.node] == ["Cast", "scaled_gelu", "Cast"]
    assert [o.id for o in used] == [op.id]
    assert prepared.graph.output[0].name == original.graph.output[0].name
