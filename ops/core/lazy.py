"""Lazy imports of the optional packages (ONNX, ONNX Runtime, Polygraphy, Triton), each with the pip command that
installs it."""

from __future__ import annotations

import importlib

from .errors import BackendUnavailable

PACKAGES = {
    "onnx": "onnx",
    "onnxscript": "onnxscript",
    "onnxruntime": "onnxruntime",
    "onnx_graphsurgeon": "onnx-graphsurgeon",
    "polygraphy": "polygraphy",
    "triton": "'opforge[triton]'",
}


def require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise BackendUnavailable(
            f"{module} is needed for this feature but cannot be imported ({e}). "
            f"Install it: pip install {PACKAGES.get(top, top)}"
        ) from e


def onnx():
    m = require("onnx")
    require("onnx.defs")
    require("onnx.shape_inference")
    return m
