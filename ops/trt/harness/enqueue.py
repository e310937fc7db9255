"""`enqueue` through the harness on a GPU: one op, one sample, the plugin's CUDA path with device pointers
from torch tensors. Used by `ops.check`'s trt.enqueue stage and by the GPU tests."""

from __future__ import annotations

from . import host as harness
from .cases import attrs_of, expected_shapes


class EnqueueError(AssertionError):
    """The plugin rejected a call that TensorRT would make with these tensors (the harness log says why)."""


def run_plugin(trt_host, op, sample):
    """Create the op's plugin from the fields an ONNX node would give, configure it for the sample's shapes
    and run enqueue on the current CUDA stream. Returns the outputs (torch tensors on the GPU)."""
    import torch

    d = op.decl
    creator = trt_host.creator(d.name, str(d.version), d.namespace)
    node = harness.synthetic_onnx_node(op, sample.attrs)
    p = trt_host.create(creator, harness.fields_from_onnx_node(node, creator.fields))
    if p is None:
        raise EnqueueError(f"{d.id}: createPlugin failed: {trt_host.log()}")
    try:
        inputs = [t.contiguous() for t in sample.inputs]
        dtype = harness.TRT_DTYPE[str(inputs[0].dtype).removeprefix("torch.")]
        shapes = [list(t.shape) for t in inputs]
        out_shapes = expected_shapes(op, shapes, attrs_of(op, sample))
        outs = [torch.empty(s, dtype=inputs[0].dtype, device="cuda") for s in out_shapes]
        ins_desc = [harness.tensor(list(t.shape), harness.TRT_DTYPE[str(t.dtype).removeprefix("torch.")])
                    for t in inputs]
        outs_desc = [harness.tensor(list(t.shape), dtype) for t in outs]
        if p.configure(ins_desc, outs_desc) != 0 or p.on_shape_change(ins_desc, outs_desc) != 0:
            raise EnqueueError(f"{d.id}: configurePlugin/onShapeChange failed: {trt_host.log()}")
        ws_bytes = p.workspace(ins_desc, outs_desc)
        ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8, device="cuda")
        stream = torch.cuda.current_stream()
        st = p.enqueue(ins_desc, [t.data_ptr() for t in inputs], outs_desc, [t.data_ptr() for t in outs],
                       ws.data_ptr() if ws_bytes else None, stream.cuda_stream)
        stream.synchronize()
        if st != 0:
            raise EnqueueError(f"{d.id}: enqueue returned {st}: {trt_host.log()}")
        return tuple(outs)
    finally:
        p.destroy()
