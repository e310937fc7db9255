"""Inductor as the author of an op's CUDA kernel (`register_op(..., triton=ops.Inductor())`): the op a build
compiles, with the launch of the Triton kernel Inductor writes for its reference.

ops/native/inductor_lowering.py lowers the reference and captures the kernel and its launch; from there the op is
an ordinary Triton op: compiled ahead of time for every arch (ops/native/triton_aot.py), launched by the generated
C++ launcher in the torch extension, the ONNX Runtime CUDA EP variant and the TensorRT plugin. Every build and
ops.check of the op asks here (ops/native/kernel_sources.py, ops/check/triton_stages.py, ops/tune.py).

The capture is cached under <package build dir>/inductor/<ns>_<op>/ by a hash of the reference's source file,
the declaration and the torch and Triton versions: `<op>_triton.py` there is Inductor's kernel as compiled (one
function per distinct dtype variant's kernel), `capture.json` its launch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from pathlib import Path

import torch

from ..core import lazy
from ..core.declaration import OpDecl
from ..core.packages import package
from ..core.triton_launch import Scratch, Triton, TritonConfig, resolve

CAPTURE_VERSION = 3


def _cache_key(decl: OpDecl) -> str:
    triton = lazy.require("triton")
    ref_file = inspect.getsourcefile(decl.reference)
    parts = [
        CAPTURE_VERSION,
        torch.__version__,
        triton.__version__,
        Path(ref_file).read_text() if ref_file else inspect.getsource(decl.reference),
        repr((decl.id, decl.inputs, decl.outputs, decl.attrs, decl.triton)),
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def _to_json(source):
    return {"scratch": source.size, "dtype": source.dtype} if isinstance(source, Scratch) else source


def _from_json(source):
    return Scratch(source["scratch"], source["dtype"]) if isinstance(source, dict) else source


def capture_dir(decl: OpDecl) -> Path:
    return package(decl.package or "ops.library").build_dir / "inductor" / f"{decl.namespace}_{decl.name}"


def concrete(decl: OpDecl, log=None) -> OpDecl:
    """The op with the launch description of Inductor's kernel (its `triton` a ResolvedTriton whose source is
    the captured kernel file); an op with a hand-written Triton kernel, or none, as it is."""
    if not decl.from_inductor:
        return decl
    directory = capture_dir(decl)
    key = _cache_key(decl)
    record_path, kernel_path = directory / "capture.json", directory / f"{decl.name}_triton.py"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if record.get("key") != key or not kernel_path.is_file():
        # Deferred: the lowering imports Dynamo and Inductor (~1.8 s), which a build with nothing to capture skips.
        from . import inductor_lowering

        spec, per_variant, text = inductor_lowering.describe(decl)
        directory.mkdir(parents=True, exist_ok=True)
        kernel_path.write_text(text)
        record = {
            "key": key,
            "torch": torch.__version__,
            "kernel": spec.kernel,
            "variant_kernels": per_variant,
            "args": {p: _to_json(v) for p, v in spec.args.items()},
            "grid": list(spec.grid),
            "launch_key": spec.key,
            "int64": list(spec.int64),
            "aligned": list(spec.aligned),
            "fp64": list(spec.fp64),
            "configs": [
                {**c.meta, "num_warps": c.num_warps, "num_stages": c.num_stages, "max_key": c.max_key}
                for c in spec.configs
            ],
        }
        record_path.write_text(json.dumps(record, indent=1) + "\n")
        if log is not None:
            log(
                f"{decl.id}: Inductor's kernel captured ({', '.join(sorted(set(per_variant.values())))}) -> {kernel_path}"
            )
    configs = [TritonConfig(**c) for c in record["configs"]]
    spec = Triton(
        kernel=record["kernel"],
        args={p: _from_json(v) for p, v in record["args"].items()},
        grid=record["grid"],
        key=record["launch_key"],
        configs=configs,
        int64=tuple(record["int64"]),
        aligned=tuple(record["aligned"]),
        fp64=tuple(record["fp64"]),
        tune=decl.triton.tune,
    )
    resolved = resolve(decl.id, spec, decl.inputs, decl.outputs, decl.attrs, decl.kernel_dir, decl.devices)
    return dataclasses.replace(
        decl,
        triton=dataclasses.replace(
            resolved,
            source=kernel_path,
            variant_kernels=tuple(sorted(record["variant_kernels"].items())),
        ),
    )


__all__ = ["concrete", "capture_dir", "CAPTURE_VERSION"]
