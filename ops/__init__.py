"""opforge: declare a custom op once; get torch, ONNX, ONNX Runtime and TensorRT from it.

    import ops
    ops.get_op("opforge::rms_norm")(x, weight)      # or torch.ops.opforge.rms_norm(x, weight)

Importing `ops` registers every op in ops/library with torch and loads the compiled kernels (ops._C).
A build problem never breaks the import: calling a compiled op then raises ExtensionError with the
rebuild command, and `ops.load_extension()` raises it directly.
"""

from .declaration import REQUIRED, Attr, Input, Output, Sample
from .dtypes import FLOATING
from .errors import (BackendUnavailable, DeclarationError, ExportError, ExtensionError, OpforgeError,
                     ShapeRuleError)
from .registry import Op, all_ops, get_op, register_op

__all__ = [
    "Attr", "BackendUnavailable", "DeclarationError", "ExportError", "ExtensionError", "FLOATING", "Input", "Op",
    "OpforgeError", "Output", "REQUIRED", "Sample", "ShapeRuleError", "all_ops", "build_engine", "export_onnx", "get_op", "load_extension",
    "register_op",
]


def load_extension():
    """Load ops._C, raising ExtensionError (with the rebuild command) if it is missing, stale or built
    for another torch."""
    from .extension import load

    return load(strict=True)


def export_onnx(model, args, path=None, **kwargs):
    """Export a model with opforge ops to ONNX; see ops.onnx.export_onnx (imported on first call, so
    `import ops` never needs onnx)."""
    from .onnx import export_onnx as export

    return export(model, args, path, **kwargs)


def build_engine(onnx_path, shapes=None, engine_path=None, **kwargs):
    """Build a TensorRT engine with the opforge plugins; see ops.trt.engine.build_engine (needs TensorRT)."""
    from .trt.engine import build_engine as build

    return build(onnx_path, shapes, engine_path, **kwargs)


def _initialise():
    from .extension import load
    from .registry import discover

    discover()
    load(strict=False)


_initialise()
