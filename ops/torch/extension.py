"""Loading an op package's compiled kernels, with a clear error when they are missing, stale, or built for
another torch.

The build writes a record beside the extension (`ops/_C.build.json` for opforge's own): the torch it was
built against, whether CUDA kernels are in it, and a fingerprint per op (its declaration as the glue sees
it, the glue generator, the shared kernel headers and the op's kernel sources). Loading compares that record
with the declarations as they are now, *before* the library is loaded, so a stale build never registers
kernels that disagree with their declaration.

The fingerprint reads a few small files per op and runs no code generation, so checking it at import costs
microseconds per op. An installed package that ships its extension but not its kernel sources cannot be
checked for staleness; its record is trusted.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
from pathlib import Path

import torch

from ..core import paths
from ..core.errors import ExtensionError
from ..core.packages import left_out, package
from ..core.registry import compiled_ops_in
from ..native.cpu_isa import LEVELS
from .register import register_missing_kernels

REBUILD = "pip install --no-build-isolation -e . (or: python -m ops.build)"
FINGERPRINT_VERSION = "2"
SHARED_SOURCES = (
    "opforge/kernel_api.h",
    "opforge/cpu_isa.h",
    "opforge/kernel_cuda.cuh",
    "opforge/torch/glue.h",
    "opforge/torch/autograd.cpp",
)
OPFORGE_PACKAGE = "ops.library"

_state: dict[str, dict] = {}  # op package name -> {"loaded", "error", "cuda"}


def rebuild_hint(package) -> str:
    if package.name == OPFORGE_PACKAGE:
        return REBUILD
    return (
        f"python -m ops.build --package {package.name} (or reinstall its project: pip install --no-build-isolation .)"
    )


@functools.lru_cache(maxsize=1)
def _generator_digest() -> bytes:
    """What every op's glue depends on besides its declaration: the generator and the shared headers."""
    h = hashlib.sha256(FINGERPRINT_VERSION.encode())
    here = (
        Path(__file__).resolve().parent
    )  # the generators' files, read without importing them (import ops stays light)
    generators = [here / "glue.py", here / "schema.py", here.parent / "native" / "prototypes.py"]
    for path in [*generators, *(paths.csrc_dir() / s for s in SHARED_SOURCES)]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.digest()


def declaration_text(decl) -> str:
    """The parts of a declaration the generated glue is made from (not its source line or callables; of the
    backward, whether there is one and what it saves: the glue's autograd node depends on those)."""
    parts = (
        decl.id,
        decl.inputs,
        decl.outputs,
        decl.attrs,
        decl.devices,
        decl.workspace,
        decl.version,
        decl.backward is not None,
        decl.saves,
    )
    # Which devices register their compiled kernel: dropping a device from kernels_pending needs a rebuild.
    extra = (("kernels_pending", decl.kernels_pending),) if decl.kernels_pending else ()
    extra += (("triton", decl.triton),) if decl.triton else ()  # the launch description shapes the launcher
    return repr(parts + extra)


def fingerprint(decl) -> str | None:
    """None when the op's kernel sources are not present (an installed package that ships only binaries)."""
    # A Triton kernel and its tuned table are Python and JSON, not C++, so kernel_sources() leaves them out; an op
    # whose only CUDA kernel is Triton (devices=("cuda",)) has no C++ source at all.
    # An Inductor op's kernel is written from its reference: the reference's file stands for the kernel.
    kernel = Path(inspect.getsourcefile(decl.reference)) if decl.from_inductor else decl.kernel_files().get("triton")
    triton_files = [kernel, decl.kernel_dir / f"{decl.name}_triton_tuned.json"] if decl.triton else []
    files = decl.kernel_sources() + [p for p in triton_files if p.is_file()]
    if not files:
        return None
    h = hashlib.sha256(_generator_digest())
    h.update(declaration_text(decl).encode())
    for path in files:
        where = path.relative_to(decl.kernel_dir) if path.is_relative_to(decl.kernel_dir) else Path(path.name)
        h.update(where.as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def problem(package) -> str | None:
    """Why the package's extension cannot be loaded now, or None if it can."""
    hint = rebuild_hint(package)
    try:
        found = importlib.util.find_spec(package.extension) is not None
    except ImportError:
        found = False
    if not found or not package.build_record.exists():
        return f"the compiled extension {package.extension} is not built. Build it: {hint}"
    info = json.loads(package.build_record.read_text())
    if info.get("torch") != torch.__version__:
        return (
            f"{package.extension} was built for torch {info.get('torch')} but torch {torch.__version__} is "
            f"installed. Rebuild: {hint}"
        )
    built = info.get("ops", {})
    for op in compiled_ops_in(package.name):
        if op.id not in built:
            if info.get("partial"):  # left out on purpose (ops.build --ops): its calls say so (see load)
                continue
            return f"{op.id} is declared but not in the built {package.extension}. Rebuild: {hint}"
        now = fingerprint(op.decl)
        if now is not None and built[op.id] != now:
            return (
                f"{package.extension} is stale: {op.id} (declaration or kernels) changed since the build. "
                f"Rebuild: {hint}"
            )
    return None


def load(package, strict: bool) -> bool:
    """Load the package's extension once. strict=True raises ExtensionError on a problem; strict=False records
    it and registers stand-in kernels that raise it when a compiled op is called."""
    state = _state.setdefault(package.name, {"loaded": False, "error": None, "cuda": False})
    if state["loaded"]:
        return True
    if not compiled_ops_in(package.name):
        state["loaded"] = True  # nothing compiled: nothing to load
        return True
    if state["error"] is None:
        why = problem(package)
        if why is None:
            try:
                importlib.import_module(package.extension)
            except ImportError as e:  # e.g. undefined symbol: an ABI mismatch the record did not catch
                why = f"{package.extension} failed to load ({e}). Rebuild: {rebuild_hint(package)}"
        if why is None:
            info = json.loads(package.build_record.read_text())
            state.update(loaded=True, cuda=bool(info.get("cuda")))
            # A partial build (ops.build --ops): the ops it left out say so when called.
            missing = {op.id: left_out(op.id, package.name) for op in compiled_ops_in(package.name)}
            for op in compiled_ops_in(package.name):
                if missing[op.id]:
                    register_missing_kernels(op.decl, op.decl.devices, missing[op.id])
            if not state["cuda"]:
                _register_cpu_only_stand_ins(package, skip={k for k, v in missing.items() if v})
            return True
        state["error"] = why
        for op in compiled_ops_in(package.name):
            register_missing_kernels(op.decl, op.decl.devices, why)
    if strict:
        raise ExtensionError(state["error"])
    return False


def _register_cpu_only_stand_ins(package, skip=()):
    """Built without CUDA (CPU torch or no nvcc): a CUDA call should say so, not 'no kernel'."""
    for op in compiled_ops_in(package.name):
        if "cuda" in op.decl.devices and op.id not in skip:
            register_missing_kernels(
                op.decl,
                ["cuda"],
                f"{package.extension} was built without CUDA kernels "
                "(CPU-only torch or no nvcc at build time). Rebuild with CUDA torch and nvcc: "
                f"{rebuild_hint(package)}",
            )


def status(package_name: str = OPFORGE_PACKAGE) -> dict:
    s = _state.get(package_name, {"loaded": False, "error": None, "cuda": False})
    return {"loaded": s["loaded"], "cuda": s["cuda"], "error": s["error"]}


def cpu_isa(package_name: str = OPFORGE_PACKAGE) -> str:
    """The form of the hot CPU loops (one of ops.native.cpu_isa.LEVELS) that the package's compiled kernels take in
    this process: cpu_isa.h's cpu_isa() as compiled into its extension, OPFORGE_CPU_ISA applied, read from
    the library itself (ops.native.cpu_isa.selected() derives the same rule from /proc/cpuinfo without loading it).
    Loads the extension; raises ExtensionError when it cannot be loaded or predates this query."""
    import ctypes

    pkg = package(package_name)
    load(pkg, strict=True)
    library = importlib.import_module(pkg.extension).__file__
    try:
        query = ctypes.CDLL(library).opforge_cpu_isa  # the loaded library: dlopen returns the same handle
    except AttributeError:
        raise ExtensionError(
            f"{pkg.extension} has no opforge_cpu_isa(): it was built before the query existed. "
            f"Rebuild: {rebuild_hint(pkg)}"
        ) from None
    query.restype = ctypes.c_int
    return LEVELS[query()]
