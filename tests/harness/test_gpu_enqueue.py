"""enqueue on a GPU: the plugin (through the harness) against the op's reference, fp32, fp16 and bf16.

Run on the GPU machine:  python -m pytest tests/harness -k gpu -v
Skipped here (no CUDA device). Still the plugin host harness, not TensorRT: it shows enqueue computes
the right values from PluginTensorDesc + device pointers, not that an engine build accepted the plugin."""

import pytest
import torch

import ops
from ops.check.compare import compare
from ops.check.oracle import as_tuple, check_backend, reference_outputs, samples
from ops.trt.harness import host as harness
from ops.trt.harness.cases import has_gap, op_ids, trt_types
from ops.trt.harness.enqueue import run_plugin

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device on this machine: enqueue "
    "needs a GPU (run `python -m pytest tests/harness -k gpu` on the GPU machine)",
)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("op_id", op_ids())
def test_gpu_enqueue_matches_reference(trt_host, op_id, dtype):
    op = ops.get_op(op_id)
    if harness.TRT_DTYPE[dtype] not in trt_types(op.decl.dtypes):
        pytest.skip(f"{op_id} does not declare {dtype}")
    m = check_backend(op, "cuda", dtype, lambda s: run_plugin(trt_host, op, s), keep=lambda s: not has_gap(s))
    assert m["ok"], m
    # ... and against the torch op on the same inputs: one kernel, two hosts, so the results agree
    # exactly unless a host hands the kernel different views or attributes.
    for sample in [s for s in samples(op, "cuda", dtype) if not has_gap(s)]:
        for got, want in zip(run_plugin(trt_host, op, sample), as_tuple(op(*sample.inputs, **sample.attrs))):
            assert torch.equal(got, want), (op_id, dtype, list(got.shape), (got.float() - want.float()).abs().max())


@pytest.mark.parametrize("op_id", op_ids())
def test_gpu_enqueue_bfloat16(trt_host, op_id):
    """bfloat16 through enqueue (kBF16 descs, __nv_bfloat16 kernels): every op that declares bfloat16 runs it,
    with each sample's tensors also at a misaligned address (element offset 1: the scalar kernel path)."""
    op = ops.get_op(op_id)
    if "bfloat16" not in op.decl.dtypes:
        pytest.skip(f"{op_id} does not declare bfloat16")
    assert harness.TRT_DTYPE["bfloat16"] in trt_types(op.decl.dtypes)
    rtol, atol = op.decl.tolerance("bfloat16")
    for sample in samples(op, "cuda", "bfloat16"):
        if has_gap(sample) or any(t is not None and t.numel() == 0 for t in sample.inputs):
            continue
        for shifted in (False, True):
            inputs = sample.inputs
            if shifted:
                inputs = [
                    None
                    if t is None
                    else torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)[1:].view(t.shape).copy_(t)
                    for t in inputs
                ]
            got = run_plugin(trt_host, op, ops.Sample(*inputs, **sample.attrs))
            for g, e, o in zip(got, reference_outputs(op, sample), op.decl.outputs):
                assert o.dtype_like is None or g.dtype == torch.bfloat16  # float outputs follow the input dtype
                m = compare(g, e, rtol, atol)
                assert m["ok"], (op_id, list(g.shape), "misaligned" if shifted else "aligned", m)
