"""opforge: declare a custom op once; get torch, ONNX, ONNX Runtime and TensorRT from it.

    import ops
    ops.get_op("opforge::rms_norm")(x, weight)      # or torch.ops.opforge.rms_norm(x, weight)

Importing `ops` registers opforge's built-in ops (the op package `ops.library`) with torch and loads their
compiled kernels (ops._C). A user's op package does the same for its own ops when it is imported (its
`__init__.py` calls `ops.op_package(__name__)`). A build problem never breaks an import: calling a compiled
op then raises ExtensionError with the rebuild command, and `ops.load_extension()` raises it directly.
"""

from .core.batch import Batch
from .core.declaration import REQUIRED, Attr, Input, Output, Sample
from .core.discovery import op_package, packages
from .core.dtypes import FLOATING
from .core.errors import BackendUnavailable, DeclarationError, ExportError, ExtensionError, OpforgeError, ShapeRuleError
from .core.packages import OpPackage
from .core.packages import package as op_package_named
from .core.registry import Op, all_ops, get_op, register_op
from .core.triton_launch import Inductor, Scratch, Triton, TritonConfig
from .torch import extension as _extension  # the torch backend registers its hooks on import, before any op

__all__ = [
    "Attr",
    "Batch",
    "BackendUnavailable",
    "DeclarationError",
    "ExportError",
    "ExtensionError",
    "FLOATING",
    "Input",
    "Op",
    "OpPackage",
    "OpforgeError",
    "Output",
    "REQUIRED",
    "Sample",
    "ShapeRuleError",
    "Inductor",
    "Scratch",
    "Triton",
    "TritonConfig",
    "all_ops",
    "build_engine",
    "export_onnx",
    "get_op",
    "load_extension",
    "op_package",
    "register_op",
]


def load_extension(package: str | None = None):
    """Load the compiled kernels of one op package (default: every op package imported so far), raising
    ExtensionError (with the rebuild command) if they are missing, stale or built for another torch."""
    for pkg in packages() if package is None else [op_package_named(package)]:
        _extension.load(pkg, strict=True)


PRECISIONS = ("float32", "mixed-float16", "mixed-bfloat16")


def export_onnx(
    model,
    args,
    path=None,
    *,
    precision: str = "float32",
    calibration=None,
    budget: float | None = None,
    target: float | None = None,
    **kwargs,
):
    """Export a model with opforge ops to ONNX; see ops.onnx.export_onnx for the arguments (imported on first
    call: `import ops` loads the core, the torch backend and the op library only, never the ONNX or TensorRT
    backends or a tool).

    precision="mixed-float16" (or "mixed-bfloat16") writes a mixed-precision graph (ops.precision): the parts
    that overflow or break the error budget in half on `args` (and the `calibration` argument tuples) stay
    float32 behind explicit Casts, everything else is half, weights included; budget/target are the per-node
    and end-to-end rel_l2 limits."""
    if precision not in PRECISIONS:
        raise ExportError(
            f"precision must be one of {PRECISIONS}, got {precision!r}. Fix: e.g. precision='mixed-float16'."
        )
    if precision != "float32":
        from .onnx import DEFAULT_OPSET
        from .precision import DEFAULT_BUDGET, DEFAULT_TARGET, export_mixed

        mixed, _ = export_mixed(
            model,
            args,
            path,
            dtype=precision.removeprefix("mixed-"),
            calibration=calibration,
            opset=kwargs.get("opset", DEFAULT_OPSET),
            dynamic=kwargs.get("dynamic", False),
            fallback=kwargs.get("fallback", False),
            budget=budget or DEFAULT_BUDGET,
            target=target or DEFAULT_TARGET,
        )
        return mixed
    from .onnx import export_onnx as export

    return export(model, args, path, **kwargs)


def build_engine(onnx_path, shapes=None, engine_path=None, **kwargs):
    """Build a TensorRT engine with the opforge plugins; see ops.trt.engine.build_engine (needs TensorRT)."""
    from .trt.engine import build_engine as build

    return build(onnx_path, shapes, engine_path, **kwargs)


from . import library  # noqa: E402,F401  (last: opforge's own op package declares its ops on import)
