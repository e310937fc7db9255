"""Python side of the plugin host harness (harness.cpp): build it, load a plugin library through it,
and drive each plugin through TensorRT's plugin interfaces without the TensorRT library.

This proves the plugin honours the IPluginV3 interface as the 10.x headers define it. It does not prove
that TensorRT accepts the plugin in a build: that needs TensorRT itself (ops.build_engine / trtexec).

Also here: `fields_from_onnx_node`, the TensorRT ONNX parser's rules for turning a node's attributes
into a PluginFieldCollection, and `onnx_node_for`, the node an exporter writes for an op.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core import lazy
from ...core.paths import build_root
from ...onnx import export_onnx
from ...onnx.models import single_op_module
from .. import headers
from ..build import cuda_home

HERE = Path(__file__).resolve().parent

# nvinfer1 enums (NvInferRuntimeBase.h / NvInferPluginBase.h / NvInferRuntime.h, TensorRT 10.x)
TRT_DTYPE = {"float32": 0, "float16": 1, "int8": 2, "int32": 3, "bool": 4, "uint8": 5, "bfloat16": 7, "int64": 8}
TRT_DTYPE_NAME = {v: k for k, v in TRT_DTYPE.items()}
ALL_TRT_DTYPES = list(range(12))  # kFLOAT .. kE8M0
K_LINEAR, K_CHW2 = 0, 1
FIELD_TYPE = {
    "kFLOAT16": 0,
    "kFLOAT32": 1,
    "kFLOAT64": 2,
    "kINT8": 3,
    "kINT16": 4,
    "kINT32": 5,
    "kCHAR": 6,
    "kDIMS": 7,
    "kUNKNOWN": 8,
    "kBF16": 9,
    "kINT64": 10,
}
FIELD_TYPE_NAME = {v: k for k, v in FIELD_TYPE.items()}
K_BUILD, K_RUNTIME = 0, 1
LABEL = "plugin host harness: proves the plugin honours TensorRT's plugin interfaces, not that TensorRT accepted it"


class PluginField(ctypes.Structure):  # nvinfer1::PluginField
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("data", ctypes.c_void_p),
        ("type", ctypes.c_int32),
        ("length", ctypes.c_int32),
    ]


class HxTensor(ctypes.Structure):  # harness.cpp HxTensor
    _fields_ = [
        ("rank", ctypes.c_int32),
        ("dims", ctypes.c_int64 * 8),
        ("min", ctypes.c_int64 * 8),
        ("max", ctypes.c_int64 * 8),
        ("type", ctypes.c_int32),
        ("format", ctypes.c_int32),
    ]


def tensor(dims, dtype=0, fmt=K_LINEAR, mins=None, maxs=None) -> HxTensor:
    t = HxTensor()
    t.rank = len(dims)
    for i, d in enumerate(dims):
        t.dims[i] = d
        t.min[i] = (mins or dims)[i]
        t.max[i] = (maxs or dims)[i]
    t.type, t.format = dtype, fmt
    return t


def tensors(items) -> ctypes.Array:
    arr = (HxTensor * max(len(items), 1))()
    for i, t in enumerate(items):
        arr[i] = t
    return arr


# ---- building ---------------------------------------------------------------------------------------


def _compile(out: Path, sources: list[Path], flags: list[str]) -> Path:
    """Rebuild `out` when a source or header it depends on is newer (cheap: one translation unit)."""
    deps = sources + sorted(HERE.glob("*.h"))
    if out.exists() and all(out.stat().st_mtime >= p.stat().st_mtime for p in deps):
        return out
    trt = headers.require()
    cuda = cuda_home()
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "c++",
        "-std=c++17",
        "-Wall",
        "-Wno-deprecated-declarations",
        f"-I{trt}",
        f"-I{cuda}/include",
        *map(str, sources),
        "-o",
        str(out),
        "-ldl",
        *flags,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building {out.name} failed:\n{' '.join(cmd)}\n{done.stderr[-4000:]}")
    return out


def _harness_build_dir() -> Path:
    return build_root() / "opforge_trt_harness"


def build_harness() -> Path:
    return _compile(
        _harness_build_dir() / "libopforge_trt_harness.so",
        [HERE / "harness.cpp"],
        ["-shared", "-fPIC", "-O1", "-g", "-fvisibility=hidden"],
    )


def build_fuzzer() -> Path:
    """The createPlugin fuzzer, with AddressSanitizer (pair it with the 'asan' plugin library)."""
    return _compile(
        _harness_build_dir() / "opforge_trt_fuzz_asan",
        [HERE / "fuzz.cpp"],
        ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"],
    )


def run_fuzzer(library: Path, cases: int = 2000, seed: int = 1, timeout: float = 120) -> tuple[int, str]:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1")
    done = subprocess.run(
        [str(build_fuzzer()), str(library), str(cases), str(seed)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return done.returncode, done.stdout + done.stderr


# ---- the ONNX parser's field rules --------------------------------------------------------------------


@dataclass
class Fields:
    """A PluginFieldCollection built from Python values; keeps every buffer alive."""

    items: list[tuple[str, int, bytes, int]] = field(default_factory=list)  # name, type, data, length

    def add(self, name: str, ftype: int, data: bytes, length: int) -> Fields:
        self.items.append((name, ftype, data, length))
        return self

    def as_ctypes(self):
        arr = (PluginField * max(len(self.items), 1))()
        keep = []
        for i, (name, ftype, data, length) in enumerate(self.items):
            buf = ctypes.create_string_buffer(data, len(data)) if data else None
            keep.append(buf)
            arr[i] = PluginField(name.encode(), ctypes.cast(buf, ctypes.c_void_p) if buf else None, ftype, length)
        return arr, len(self.items), keep

    def as_dict(self) -> dict:
        return {name: decode_field(ftype, data, length) for name, ftype, data, length in self.items}


def decode_field(ftype: int, data: bytes, length: int):
    kind = FIELD_TYPE_NAME.get(ftype)
    if kind == "kCHAR":
        return data[:length].split(b"\0", 1)[0].decode()
    fmt = {"kINT32": "<i4", "kINT64": "<i8", "kFLOAT32": "<f4", "kFLOAT64": "<f8"}[kind]
    return np.frombuffer(data, dtype=fmt, count=length).tolist()


def fields_from_onnx_node(node, field_names: dict[str, tuple[int, int]]) -> Fields:
    """What TensorRT's ONNX parser (FallbackPluginImporter) passes to createPlugin for `node`: only the
    attributes named by the creator's getFieldNames() (`field_names`: name -> (type, length)); INT/INTS ->
    kINT32 with int64 values narrowed, FLOAT/FLOATS -> kFLOAT32, STRING -> kCHAR. plugin_version and
    plugin_namespace pick the creator and are not passed as fields."""
    AttributeProto = lazy.onnx().AttributeProto

    out = Fields()
    for attr in node.attribute:
        if attr.name in ("plugin_version", "plugin_namespace") or attr.name not in field_names:
            continue
        if attr.type == AttributeProto.INT:
            out.add(attr.name, FIELD_TYPE["kINT32"], np.array([attr.i], np.int64).astype(np.int32).tobytes(), 1)
        elif attr.type == AttributeProto.INTS:
            out.add(
                attr.name,
                FIELD_TYPE["kINT32"],
                np.array(list(attr.ints), np.int64).astype(np.int32).tobytes(),
                len(attr.ints),
            )
        elif attr.type == AttributeProto.FLOAT:
            out.add(attr.name, FIELD_TYPE["kFLOAT32"], np.array([attr.f], np.float32).tobytes(), 1)
        elif attr.type == AttributeProto.FLOATS:
            out.add(
                attr.name, FIELD_TYPE["kFLOAT32"], np.array(list(attr.floats), np.float32).tobytes(), len(attr.floats)
            )
        elif attr.type == AttributeProto.STRING:
            out.add(attr.name, FIELD_TYPE["kCHAR"], attr.s, len(attr.s))
        else:
            raise ValueError(f"attribute {attr.name!r} of type {attr.type} has no plugin field type")
    return out


def plugin_key_from_onnx_node(node) -> tuple[str, str, str]:
    """(name, version, namespace) the parser looks the creator up with."""
    attrs = {a.name: a.s.decode() for a in node.attribute if a.name in ("plugin_version", "plugin_namespace")}
    return node.op_type, attrs.get("plugin_version", "1"), attrs.get("plugin_namespace", "")


def onnx_node_for(op, attrs: dict, inputs) -> onnx.NodeProto:  # noqa: F821
    """The op's node as the exporter writes it (ops.onnx.export_onnx of a one-op module). This is the one
    place to switch if the exporter changes; `synthetic_onnx_node` is the exporter-free alternative."""
    model = export_onnx(single_op_module(op, attrs), tuple(inputs), opset=17, check=False)
    nodes = [n for n in model.graph.node if n.domain == op.decl.namespace and n.op_type == op.decl.name]
    assert len(nodes) == 1, f"expected one {op.id} node in the exported graph, found {len(nodes)}"
    return nodes[0]


def synthetic_onnx_node(op, attrs: dict):
    """A node built with onnx.helper exactly as an exporter would: op_type = name, domain = namespace,
    typed attributes for every declared attribute, plus plugin_version/plugin_namespace strings."""
    helper = lazy.onnx().helper

    d = op.decl
    values = {a.name: a.default for a in d.attrs if a.has_default}
    values.update(attrs)
    kwargs = {}
    for a in d.attrs:
        v = values[a.name]
        kwargs[a.name] = int(v) if a.type == "bool" else list(v) if a.type.startswith("list[") else v
    node = helper.make_node(d.name, [i.name for i in d.inputs], [o.name for o in d.outputs], domain=d.namespace)
    # added one by one, not as make_node's **kwargs: an attribute may be called `name` or `domain`
    node.attribute.extend(helper.make_attribute(k, v) for k, v in kwargs.items())
    node.attribute.extend(
        [
            helper.make_attribute("plugin_version", str(d.version)),
            helper.make_attribute("plugin_namespace", d.namespace),
        ]
    )
    return node


# ---- the host -----------------------------------------------------------------------------------------


@dataclass
class CreatorInfo:
    index: int
    name: str
    version: str
    namespace: str
    interface: str
    fields: dict[str, tuple[int, int]]  # name -> (PluginFieldType, length)


class Host:
    """A loaded plugin library, driven through harness.cpp."""

    def __init__(self, library: Path, lib=None):
        # lib: the harness functions; ops/cross/remote_harness.py passes an aarch64 harness under qemu.
        self.lib = lib if lib is not None else ctypes.CDLL(str(build_harness()))
        L = self.lib
        vp, i32, i64, cp = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_char_p
        T = ctypes.POINTER(HxTensor)
        sigs = {
            "hx_open": (vp, [cp, cp, i32]),
            "hx_num_creators": (i32, [vp]),
            "hx_creator_info": (i32, [vp, i32, cp, i32]),
            "hx_log": (i32, [vp, cp, i32, i32]),
            "hx_create": (vp, [vp, i32, cp, ctypes.POINTER(PluginField), i32, i32]),
            "hx_create_null_fc": (vp, [vp, i32]),
            "hx_destroy": (None, [vp]),
            "hx_plugin_info": (i32, [vp, cp, i32]),
            "hx_output_shapes": (i32, [vp, T, i32, i32, cp, i32]),
            "hx_output_types": (i32, [vp, ctypes.POINTER(i32), i32, ctypes.POINTER(i32), i32]),
            "hx_supports": (i32, [vp, i32, T, i32, i32]),
            "hx_configure": (i32, [vp, T, i32, T, i32]),
            "hx_workspace": (i64, [vp, T, i32, T, i32]),
            "hx_on_shape_change": (i32, [vp, T, i32, T, i32]),
            "hx_enqueue": (i32, [vp, T, i32, ctypes.POINTER(vp), T, i32, ctypes.POINTER(vp), vp, vp]),
            "hx_serialized_fields": (i32, [vp, cp, i32]),
            "hx_recreate": (vp, [vp, i32, vp]),
            "hx_clone": (vp, [vp]),
            "hx_attach": (vp, [vp]),
            "hx_timing_cache_id": (cp, [vp]),
        }
        for name, (res, args) in sigs.items():
            fn = getattr(L, name)
            fn.restype, fn.argtypes = res, args
        err = ctypes.create_string_buffer(4096)
        self.h = L.hx_open(str(library).encode(), err, len(err))
        if not self.h:
            raise RuntimeError(err.value.decode())
        self.creators = [self._creator_info(i) for i in range(L.hx_num_creators(self.h))]

    def _text(self, fn, *args) -> str:
        size = 1 << 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = fn(*args, buf, size)
            if n < size:
                return buf.value.decode()
            size = n + 1

    def _creator_info(self, i: int) -> CreatorInfo:
        lines = self._text(self.lib.hx_creator_info, self.h, i).splitlines()
        fields = {}
        for line in lines[4:]:
            name, ftype, length = line.split("\t")
            fields[name] = (int(ftype), int(length))
        return CreatorInfo(i, lines[0], lines[1], lines[2], lines[3], fields)

    def creator(self, name: str, version: str, namespace: str) -> CreatorInfo:
        found = [c for c in self.creators if (c.name, c.version, c.namespace) == (name, version, namespace)]
        assert len(found) == 1, f"{len(found)} creators for {(name, version, namespace)}"
        return found[0]

    def log(self, clear: bool = True) -> str:
        size = 1 << 20
        buf = ctypes.create_string_buffer(size)
        self.lib.hx_log(self.h, buf, size, int(clear))
        return buf.value.decode()

    def create(self, creator: CreatorInfo, fields: Fields, phase: int = K_BUILD, name: str = "layer") -> Plugin | None:
        arr, n, keep = fields.as_ctypes()
        p = self.lib.hx_create(self.h, creator.index, name.encode(), arr, n, phase)
        del keep
        return Plugin(self, creator, p) if p else None


class Plugin:
    def __init__(self, host: Host, creator: CreatorInfo, handle):
        self.host, self.creator, self.h = host, creator, handle
        self.L = host.lib

    def destroy(self):
        if self.h:
            self.L.hx_destroy(self.h)
            self.h = None

    def __del__(self):
        try:
            self.destroy()
        except Exception:
            pass

    def info(self) -> list[str]:
        return self.host._text(self.L.hx_plugin_info, self.h).splitlines()

    def output_shapes(self, ins: list[HxTensor], nb_out: int) -> tuple[int, list, str]:
        """(status, [per output: list of int or expression text], raw text)."""
        text = self.host._text(self.L.hx_output_shapes, self.h, tensors(ins), len(ins), nb_out)
        shapes = []
        for line in text.splitlines():
            if line in ("sizes:", "errors:"):
                break
            parts = line.split("\t")
            shapes.append([int(p) if p.lstrip("-").isdigit() else p for p in parts[1:]])
        status = self.L.hx_output_shapes(self.h, tensors(ins), len(ins), nb_out, None, 0)
        return status, shapes, text

    def output_types(self, in_types: list[int], nb_out: int) -> tuple[int, list[int]]:
        a = (ctypes.c_int32 * max(len(in_types), 1))(*in_types)
        out = (ctypes.c_int32 * max(nb_out, 1))()
        st = self.L.hx_output_types(self.h, a, len(in_types), out, nb_out)
        return st, list(out)[:nb_out]

    def supports(self, pos: int, io: list[HxTensor], nb_in: int) -> bool:
        return bool(self.L.hx_supports(self.h, pos, tensors(io), nb_in, len(io) - nb_in))

    def configure(self, ins, outs) -> int:
        return self.L.hx_configure(self.h, tensors(ins), len(ins), tensors(outs), len(outs))

    def workspace(self, ins, outs) -> int:
        return self.L.hx_workspace(self.h, tensors(ins), len(ins), tensors(outs), len(outs))

    def on_shape_change(self, ins, outs) -> int:
        return self.L.hx_on_shape_change(self.h, tensors(ins), len(ins), tensors(outs), len(outs))

    def enqueue(self, ins, in_ptrs, outs, out_ptrs, workspace=None, stream=None) -> int:
        ip = (ctypes.c_void_p * max(len(in_ptrs), 1))(*in_ptrs)
        op = (ctypes.c_void_p * max(len(out_ptrs), 1))(*out_ptrs)
        return self.L.hx_enqueue(self.h, tensors(ins), len(ins), ip, tensors(outs), len(outs), op, workspace, stream)

    def serialized_fields(self) -> dict:
        out = {}
        for line in self.host._text(self.L.hx_serialized_fields, self.h).splitlines():
            name, ftype, length, hexdata = line.split("\t")
            out[name] = (int(ftype), decode_field(int(ftype), bytes.fromhex(hexdata), int(length)))
        return out

    def recreate(self) -> Plugin | None:
        p = self.L.hx_recreate(self.host.h, self.creator.index, self.h)
        return Plugin(self.host, self.creator, p) if p else None

    def clone(self) -> Plugin | None:
        p = self.L.hx_clone(self.h)
        return Plugin(self.host, self.creator, p) if p else None

    def attach(self) -> Plugin | None:
        p = self.L.hx_attach(self.h)
        return Plugin(self.host, self.creator, p) if p else None

    def timing_cache_id(self) -> str:
        v = self.L.hx_timing_cache_id(self.h)
        return v.decode() if v else ""


def have_compiler() -> str | None:
    """Why the harness cannot be built here, or None."""
    if shutil.which("c++") is None:
        return "no C++ compiler (c++) on PATH"
    return None
