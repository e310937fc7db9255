"""What the three C++ code generators share (ops/torch/glue.py, ops/ort/codegen.py, ops/trt/codegen.py, and
the kernel skeletons of ops/new): C++ literals and the C++ names of the declaration dtypes.

The C++ each generator writes includes csrc/opforge/host.h, where the checks and messages the three hosts
share live; this module is its Python side for the literals those checks are given."""

from __future__ import annotations

from .dtypes import DTYPES

# dtype name -> its opforge::DType enumerator (csrc/opforge/kernel_api.h; DTYPES holds its value).
DTYPE_ENUMERATOR = {
    "float32": "kFloat32",
    "float16": "kFloat16",
    "bfloat16": "kBFloat16",
    "float64": "kFloat64",
    "int8": "kInt8",
    "uint8": "kUInt8",
    "int32": "kInt32",
    "int64": "kInt64",
    "bool": "kBool",
}
# dtype name -> the ONNX TensorProto element type (ONNX Runtime's ONNX_TENSOR_ELEMENT_DATA_TYPE_<...>).
ONNX_ELEMENT = {
    "float32": "FLOAT",
    "float16": "FLOAT16",
    "bfloat16": "BFLOAT16",
    "float64": "DOUBLE",
    "int8": "INT8",
    "uint8": "UINT8",
    "int32": "INT32",
    "int64": "INT64",
    "bool": "BOOL",
}
assert set(DTYPE_ENUMERATOR) == set(ONNX_ELEMENT) == set(DTYPES)


def kernel_dtype(name: str) -> str:
    """`opforge::DType::kFloat32` for "float32"."""
    return f"opforge::DType::{DTYPE_ENUMERATOR[name]}"


def kernel_dtypes(names) -> str:
    """A braced list of kernel dtypes, for a std::initializer_list<opforge::DType> parameter."""
    return "{" + ", ".join(kernel_dtype(n) for n in names) + "}"


def onnx_element_type(name: str) -> str:
    return f"ONNX_TENSOR_ELEMENT_DATA_TYPE_{ONNX_ELEMENT[name]}"


def dtype_mask(names) -> str:
    """A uint32 literal with bit (1 << opforge::DType value) set for each dtype."""
    bits = 0
    for n in names:
        bits |= 1 << DTYPES[n][1]
    return f"0x{bits:x}u"


def c_string(text: str) -> str:
    """A C/C++ string literal holding exactly `text` (UTF-8): printable ASCII as is, everything else octal-escaped,
    and the second '?' of a pair escaped so no trigraph can form."""
    out = []
    for k, ch in enumerate(text):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "?" and k > 0 and text[k - 1] == "?":
            out.append("\\077")
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode())
    return '"' + "".join(out) + '"'


def cpp_int(value: int) -> str:
    """An int64_t expression for `value`; INT64_MIN has no literal of its own."""
    return "(-9223372036854775807 - 1)" if value == -(2**63) else f"int64_t({value})"


def cpp_double(value: float) -> str:
    """A double literal for `value`: Python's shortest text that round-trips, which C++ compilers read back as
    exactly the same double (correctly rounded decimal conversion)."""
    return repr(float(value))
