"""The ONNX and ONNX Runtime backend, generated from each declaration.

    ops.export_onnx(model, args, "model.onnx", opset=20, dynamic=True)   # or python -m ops.export
    sess = ops.onnx.ort_session("model.onnx")                            # native lib<pkg>_ort_ops.so registered

- schema.py: onnx.defs.OpSchema per op, with shape inference translated from its shape rule
- dynamo.py / torchscript.py: the node emitters for torch's two exporters
- export.py: export_onnx (exporter choice by opset, post-processing, opset check)
- fallback.py: the reference as an ONNX function, for runtimes without the custom op
- ort.py: ONNX Runtime sessions with the native custom-op libraries of ops/ort registered (same kernels)
Every heavy package (onnx, onnxscript, onnxruntime, ...) is imported lazily with an install hint.
"""

from __future__ import annotations

from ..ort.session import ort_session as make
from .export import DEFAULT_OPSET, export_onnx
from .schema import onnx_supported, register_schemas


def ort_session(model, providers=("CPUExecutionProvider",), **kwargs):
    """An onnxruntime.InferenceSession for `model` (path, bytes or ModelProto) with the native custom-op
    libraries of the opforge ops it uses registered (built on demand)."""
    return make(model, providers=providers, **kwargs)


__all__ = ["DEFAULT_OPSET", "export_onnx", "onnx_supported", "ort_session", "register_schemas"]
