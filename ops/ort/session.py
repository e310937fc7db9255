"""ONNX Runtime sessions with opforge's native custom-op libraries registered.

Every op package with compiled kernels has a generated library, lib<package>_ort_ops.so (opforge's own:
libopforge_ort_ops.so; see ops/ort/), holding one ORT custom op per declared op that calls the same
framework-free kernels as torch and TensorRT: optional inputs, every attribute type read exactly, float16
and bfloat16 computed natively, data-dependent output sizes, ORT's allocator and intra-op thread pool.
`ort_session` finds the opforge nodes a model uses, builds the libraries of their packages on demand
(incremental, once per process and package, like the TensorRT stages build the plugin library) and
registers them with `SessionOptions.register_custom_ops_library`. Nothing of torch runs inside ORT.

Ops declared with `kernels=None` (the reference is the implementation) have no compiled kernel for a
native library to call. A model that uses one runs in ORT only when it was exported with
`export_onnx(..., fallback=True)`: ORT then runs the node's ONNX function (the reference's body). Without
a fallback body, ort_session refuses the model with an OpforgeError that says so.
"""

from __future__ import annotations

from pathlib import Path

from ..core import lazy
from ..core.errors import OpforgeError
from ..core.packages import left_out
from ..core.registry import all_ops
from ..onnx.schema import onnx_supported
from .build import build
from .codegen import has_library_op

_LIBRARIES: dict[str, Path] = {}  # op package -> its built library, this process


def _load(model):
    onnx = lazy.onnx()
    if isinstance(model, (str, Path)):
        return onnx.load(str(model), load_external_data=False)
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    return model


def library_for(package: str) -> Path:
    """The op package's native ORT library, built (or brought up to date) once per process."""
    if package not in _LIBRARIES:
        _LIBRARIES[package] = build(package).library
    return _LIBRARIES[package]


def used_ops(model) -> list:
    """The registered opforge ops (with ONNX export) whose nodes appear in the model's main graph."""
    m = _load(model)
    by_key = {(op.decl.namespace, op.decl.name): op for op in all_ops() if onnx_supported(op.decl)}
    used = {}
    for node in m.graph.node:
        op = by_key.get((node.domain, node.op_type))
        if op is not None:
            used[op.id] = op
    return list(used.values())


def libraries(model) -> list[Path]:
    """The native libraries a model needs: those of the packages of its opforge ops with compiled kernels.
    An op without compiled kernels is accepted only when the model carries its fallback function."""
    m = _load(model)
    functions = {(f.domain, f.name) for f in m.functions}
    packages = []
    for op in used_ops(m):
        missing = left_out(op.id, op.decl.package)  # a partial build of its package left it out
        if has_library_op(op.decl) and not missing:
            if op.decl.package not in packages:
                packages.append(op.decl.package)
        elif (op.decl.namespace, op.decl.name) not in functions:
            if missing:
                raise OpforgeError(
                    f"the model uses {op.id}, which its package's ONNX Runtime library leaves out, and carries no "
                    f"fallback body for it: {missing}"
                )
            raise OpforgeError(
                f"{op.id}: the model uses this op, which has no compiled CPU kernel (declared with kernels=None, or "
                "its cpu kernel is in kernels_pending), so no "
                "native ONNX Runtime library holds it and the model carries no fallback body for it. Fix: export "
                "with ops.export_onnx(..., fallback=True) so ORT runs the reference's ONNX function, or give the op "
                "kernels (csrc/<name>/)."
            )
    return [library_for(p) for p in packages]


def ort_session(model, providers=("CPUExecutionProvider",), session_options=None, bind_ops: bool = True):
    """An InferenceSession for `model` (path, bytes or ModelProto) with the native libraries of the opforge
    ops it uses registered. With bind_ops=False nothing is registered (a graph exported with fallback=True
    then runs on its functions)."""
    ort = lazy.require("onnxruntime")
    m = _load(model)
    options = session_options or ort.SessionOptions()
    if bind_ops:
        for library in libraries(m):
            options.register_custom_ops_library(str(library))
    # A path is handed over as a path, so ORT resolves external data relative to the model's directory.
    source = str(model) if isinstance(model, (str, Path)) else m.SerializeToString()
    return ort.InferenceSession(source, options, providers=list(providers))
