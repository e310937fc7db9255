"""Which source is an op's CUDA kernel in a build: the hand-written `<op>_cuda.cu`, or the launcher generated
for its Triton kernel (ops/native/triton_launcher.py). Every native build (the torch extension, the ONNX
Runtime CUDA variants, the TensorRT plugin library and its CMake export) asks here, so all three hosts of one
build run the same kernel.

An op with only a Triton kernel always uses it. An op with both uses the C++ kernel unless the build asks for
Triton: OPFORGE_CUDA_KERNELS=triton (every such op) or a comma-separated list of op ids (`python -m ops.build
--cuda-kernels triton` sets it)."""

from __future__ import annotations

import os
from pathlib import Path

from ..core import paths
from ..core.declaration import OpDecl
from ..core.errors import OpforgeError
from . import inductor_capture, triton_aot, triton_launcher

ENV = "OPFORGE_CUDA_KERNELS"


def cuda_language(decl: OpDecl) -> str | None:
    """'cuda' (C++), 'triton', or None when the op has no CUDA kernel."""
    if decl.kernel_dir is None or "cuda" not in decl.devices:
        return None
    if decl.triton is None:
        return "cuda"
    if "cuda" not in decl.kernel_files():
        return "triton"
    choice = os.environ.get(ENV, "cuda").strip()
    if choice in ("", "cuda"):
        return "cuda"
    if choice == "triton":
        return "triton"
    ids = {c.strip() for c in choice.split(",")}
    if not all("::" in i for i in ids):
        raise OpforgeError(f"{ENV}={choice!r}: expected 'cuda', 'triton' or comma-separated op ids like ns::op")
    return "triton" if decl.id in ids else "cuda"


def cuda_source(decl: OpDecl, build_dir: Path, log=None, blob_name: str | None = None) -> Path:
    """The file a build compiles as the op's CUDA kernel. A Triton op's launcher and its images (the blob it
    .incbin's) are (re)generated into build_dir/gen/triton, its kernels compiled ahead of time or taken from
    the cache. `blob_name`: how the launcher names the blob (default: its absolute path)."""
    if cuda_language(decl) == "triton":
        decl = inductor_capture.concrete(decl, log)  # Inductor's kernel, where it writes it
        aot = triton_aot.compile_op(decl, log)
        stem = build_dir / "gen" / "triton" / f"{decl.namespace}_{decl.name}_triton"
        data, _ = triton_launcher.blob(aot)
        blob = stem.with_suffix(".bin")
        if not blob.is_file() or blob.read_bytes() != data:
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
        text = triton_launcher.generate(decl, aot, blob_name or str(blob.resolve()))
        return paths.write_if_changed(stem.with_suffix(".cu"), text)
    return decl.kernel_files()["cuda"]


def has_cuda_kernel(decl: OpDecl) -> bool:
    return cuda_language(decl) is not None
