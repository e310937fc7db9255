"""enqueue on a GPU: the plugin (through the harness) against the op's reference, fp32 and fp16.

Run on the GPU machine:  python -m pytest tests/harness -k gpu -v
Skipped here (no CUDA device). Still the plugin host harness, not TensorRT: it shows enqueue computes
the right values from PluginTensorDesc + device pointers, not that an engine build accepted the plugin."""

import pytest
import torch


import ops
from ops.check.oracle import as_tuple, check_backend, samples
from ops.trt.harness import host as harness
from ops.trt.harness.cases import op_ids, trt_types
from ops.trt.harness.enqueue import run_plugin

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: enqueue "
                                "needs a GPU (run `python -m pytest tests/harness -k gpu` on the GPU machine)")


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
