"""`enqueue` through the harness on a GPU: one op, one sample, the plugin's CUDA path with device pointers
from torch tensors. Used by `ops.check`'s trt.enqueue stage and by the GPU tests."""

from __future__ import annotations

import torch

from ...core.dtypes import torch_dtype
from . import host as harness
from .cases import attrs_of, expected_shapes, has_gap


class EnqueueError(AssertionError):
    """The plugin rejected a call that TensorRT would make with these tensors (the harness log says why)."""


def run_plugin(trt_host, op, sample):
    """Create the op's plugin from the fields an ONNX node would give, configure it for the sample's shapes
    and run enqueue on the current CUDA stream. Returns the outputs (torch tensors on the GPU)."""
    d = op.decl
    if has_gap(sample):
        raise EnqueueError(
            f"{d.id}: an absent optional input is followed by a present one; TensorRT passes plugin "
            "inputs by position, so this call has no TensorRT form. Fix: pass the earlier input "
            "(or reorder the declaration's optional inputs)"
        )
    creator = trt_host.creator(d.name, str(d.version), d.namespace)
    node = harness.synthetic_onnx_node(op, sample.attrs)
    p = trt_host.create(creator, harness.fields_from_onnx_node(node, creator.fields))
    if p is None:
        raise EnqueueError(f"{d.id}: createPlugin failed: {trt_host.log()}")
    try:
        inputs = [t.contiguous() for t in sample.inputs if t is not None]  # absent optional inputs: nbInputs smaller
        shapes = [list(t.shape) for t in inputs]
        # Outputs at their upper bound where the size is data-dependent (TensorRT allocates that much too);
        # size outputs are TensorRT's int32 size tensors.
        out_shapes = expected_shapes(op, shapes, attrs_of(op, sample), at_upper=True)
        outs = [
            torch.empty(s if s is not None else [], dtype=_out_dtype(o, d, inputs), device="cuda")
            for o, s in zip(d.outputs, out_shapes)
        ]
        ins_desc = [
            harness.tensor(list(t.shape), harness.TRT_DTYPE[str(t.dtype).removeprefix("torch.")]) for t in inputs
        ]
        outs_desc = [
            harness.tensor(list(t.shape), harness.TRT_DTYPE[str(t.dtype).removeprefix("torch.")]) for t in outs
        ]
        if p.configure(ins_desc, outs_desc) != 0 or p.on_shape_change(ins_desc, outs_desc) != 0:
            raise EnqueueError(f"{d.id}: configurePlugin/onShapeChange failed: {trt_host.log()}")
        ws_bytes = p.workspace(ins_desc, outs_desc)
        ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8, device="cuda")
        stream = torch.cuda.current_stream()
        st = p.enqueue(
            ins_desc,
            [t.data_ptr() for t in inputs],
            outs_desc,
            [t.data_ptr() for t in outs],
            ws.data_ptr() if ws_bytes else None,
            stream.cuda_stream,
        )
        stream.synchronize()
        if st != 0:
            raise EnqueueError(f"{d.id}: enqueue returned {st}: {trt_host.log()}")
        sizes = {o.name: int(t.item()) for o, t in zip(d.outputs, outs) if o.is_size}
        if sizes:  # narrow the upper-bound buffers to what the kernel reported, as the torch glue does
            final = expected_shapes(op, shapes, attrs_of(op, sample), sizes=sizes)
            outs = [t.to(torch.int64) if o.is_size else _narrow(t, f) for o, t, f in zip(d.outputs, outs, final)]
        return tuple(outs)
    finally:
        p.destroy()


def _out_dtype(o, d, inputs):
    """The torch dtype of a declared output as the plugin writes it (size outputs: TensorRT's int32)."""
    if o.is_size:
        return torch.int32
    if o.dtype:
        return torch_dtype(o.dtype)
    return inputs[[i.name for i in d.inputs].index(o.dtype_like)].dtype


def _narrow(t, shape):
    for dim, n in enumerate(shape):
        if n != t.shape[dim]:
            t = t.narrow(dim, 0, n)
    return t
