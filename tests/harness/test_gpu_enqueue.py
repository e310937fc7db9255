"""enqueue on a GPU: the plugin (through the harness) against the op's reference, fp32 and fp16.

Run on the GPU machine:  python -m pytest tests/harness -k gpu -v
Skipped here (no CUDA device). Still the plugin host harness, not TensorRT: it shows enqueue computes
the right values from PluginTensorDesc + device pointers, not that an engine build accepted the plugin."""

import pytest
import torch

import host as harness
from cases import attrs_of, expected_shapes, op_ids, trt_types

import ops
from ops.check.oracle import as_tuple, check_backend, samples

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: enqueue "
                                "needs a GPU (run `python -m pytest tests/harness -k gpu` on the GPU machine)")


def run_plugin(trt_host, op, sample):
    d = op.decl
    creator = trt_host.creator(d.name, str(d.version), d.namespace)
    node = harness.synthetic_onnx_node(op, sample.attrs)
    p = trt_host.create(creator, harness.fields_from_onnx_node(node, creator.fields))
    assert p is not None, trt_host.log()
    inputs = [t.contiguous() for t in sample.inputs]
    dtype = harness.TRT_DTYPE[str(inputs[0].dtype).removeprefix("torch.")]
    shapes = [list(t.shape) for t in inputs]
    out_shapes = expected_shapes(op, shapes, attrs_of(op, sample))
    outs = [torch.empty(s, dtype=inputs[0].dtype, device="cuda") for s in out_shapes]
    ins_desc = [harness.tensor(list(t.shape), harness.TRT_DTYPE[str(t.dtype).removeprefix("torch.")]) for t in inputs]
    outs_desc = [harness.tensor(list(t.shape), dtype) for t in outs]
    assert p.configure(ins_desc, outs_desc) == 0, trt_host.log()
    assert p.on_shape_change(ins_desc, outs_desc) == 0, trt_host.log()
    ws_bytes = p.workspace(ins_desc, outs_desc)
    ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8, device="cuda")
    stream = torch.cuda.current_stream()
    st = p.enqueue(ins_desc, [t.data_ptr() for t in inputs], outs_desc, [t.data_ptr() for t in outs],
                   ws.data_ptr() if ws_bytes else None, stream.cuda_stream)
    stream.synchronize()
    assert st == 0, trt_host.log()
    p.destroy()
    return tuple(outs)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("op_id", op_ids())
def test_gpu_enqueue_matches_reference(trt_host, op_id, dtype):
    op = ops.get_op(op_id)
    if harness.TRT_DTYPE[dtype] not in trt_types(op.decl.dtypes):
        pytest.skip(f"{op_id} does not declare {dtype}")
    m = check_backend(op, "cuda", dtype, lambda s: run_plugin(trt_host, op, s))
    assert m["ok"], m
    # ... and against the torch op on the same inputs: one kernel, two hosts, so the results agree
    # exactly unless a host hands the kernel different views or attributes.
    for sample in samples(op, "cuda", dtype):
        for got, want in zip(run_plugin(trt_host, op, sample), as_tuple(op(*sample.inputs, **sample.attrs))):
            assert torch.equal(got, want), (op_id, dtype, list(got.shape), (got.float() - want.float()).abs().max())
