"""Loading ops._C, with a clear error when it is missing, stale, or built for another torch.

The build writes ops/_C.build.json beside the library: the torch it was built against, whether CUDA
kernels are in it, and a fingerprint per op (its generated glue + its kernel sources + the shared
headers). Loading compares that record with the declarations as they are now, *before* the library
is loaded, so a stale build never registers kernels that disagree with their declaration."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from pathlib import Path

from .declaration import PROJECT_ROOT
from .errors import ExtensionError

BUILD_INFO = Path(__file__).with_name("_C.build.json")
REBUILD = "pip install --no-build-isolation -e . (or: python -m ops.build)"
SHARED_HEADERS = ("csrc/opforge/kernel_api.h", "csrc/opforge/torch_glue.h")

KERNEL_SUFFIXES = {".h", ".hpp", ".cuh", ".c", ".cc", ".cpp", ".cu"}

_state: dict = {"loaded": False, "error": None, "cuda": False}


def fingerprint(decl) -> str:
    from .torch.glue import generate

    h = hashlib.sha256(generate(decl).encode())
    files = sorted(p for p in decl.kernel_dir.rglob("*") if p.suffix in KERNEL_SUFFIXES and not any(
        part.startswith(".") for part in p.relative_to(decl.kernel_dir).parts)) if decl.kernel_dir else []
    for path in [*(PROJECT_ROOT / s for s in SHARED_HEADERS), *files]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _problem() -> str | None:
    """Why ops._C cannot be loaded now, or None if it can."""
    import torch

    from .registry import library_ops

    if importlib.util.find_spec("ops._C") is None or not BUILD_INFO.exists():
        return f"the compiled extension ops._C is not built. Build it: {REBUILD}"
    info = json.loads(BUILD_INFO.read_text())
    if info.get("torch") != torch.__version__:
        return (f"ops._C was built for torch {info.get('torch')} but torch {torch.__version__} is installed. "
                f"Rebuild: {REBUILD}")
    built = info.get("ops", {})
    for op in library_ops():
        if op.id not in built:
            return f"{op.id} is declared but not in the built ops._C. Rebuild: {REBUILD}"
        if built[op.id] != fingerprint(op.decl):
            return f"ops._C is stale: {op.id} (declaration or kernels) changed since the build. Rebuild: {REBUILD}"
    return None


def load(strict: bool) -> bool:
    """Load ops._C once. strict=True raises ExtensionError on a problem; strict=False records it and
    registers stand-in kernels that raise it when a compiled op is called."""
    from .registry import library_ops
    from .torch.register import register_missing_kernels

    if _state["loaded"]:
        return True
    if _state["error"] is None:
        problem = _problem()
        if problem is None:
            try:
                importlib.import_module("ops._C")
            except ImportError as e:  # e.g. undefined symbol: an ABI mismatch the record did not catch
                problem = f"ops._C failed to load ({e}). Rebuild: {REBUILD}"
        if problem is None:
            info = json.loads(BUILD_INFO.read_text())
            _state.update(loaded=True, cuda=bool(info.get("cuda")))
            if not _state["cuda"]:
                _register_cpu_only_stand_ins()
            return True
        _state["error"] = problem
        for op in library_ops():
            register_missing_kernels(op.decl, op.decl.devices, problem)
    if strict:
        raise ExtensionError(_state["error"])
    return False


def _register_cpu_only_stand_ins():
    """Built without CUDA (CPU torch or no nvcc): a CUDA call should say so, not 'no kernel'."""
    from .registry import library_ops
    from .torch.register import register_missing_kernels

    for op in library_ops():
        if "cuda" in op.decl.devices:
            register_missing_kernels(op.decl, ["cuda"], "ops._C was built without CUDA kernels (CPU-only torch or "
                                     f"no nvcc at build time). Rebuild with CUDA torch and nvcc: {REBUILD}")


def status() -> dict:
    return {"loaded": _state["loaded"], "cuda": _state["cuda"], "error": _state["error"]}
