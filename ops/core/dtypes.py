"""The dtype vocabulary of declarations: names shared by torch, ONNX, TensorRT and the C++ kernel API."""

from __future__ import annotations

import torch

# name -> (torch attribute name, opforge::DType enum value in csrc/opforge/kernel_api.h)
DTYPES: dict[str, tuple[str, int]] = {
    "float32": ("float32", 0),
    "float16": ("float16", 1),
    "bfloat16": ("bfloat16", 2),
    "float64": ("float64", 3),
    "int8": ("int8", 4),
    "uint8": ("uint8", 5),
    "int32": ("int32", 6),
    "int64": ("int64", 7),
    "bool": ("bool", 8),
}

FLOATING = ("float32", "float16", "bfloat16")


def torch_dtype(name: str):
    return getattr(torch, DTYPES[name][0])


def dtype_name(torch_dtype_value) -> str:
    """float32 for torch.float32, and so on; raises KeyError for dtypes declarations cannot name."""
    text = str(torch_dtype_value).removeprefix("torch.")
    if text not in DTYPES:
        raise KeyError(text)
    return text
