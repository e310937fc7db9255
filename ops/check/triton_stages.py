"""The Triton stage: an op whose CUDA kernel is written in Triton is compiled ahead of time here, with no GPU, and
the row reports what was compiled (archs, dtype variants, configurations) and, when this build links the Triton
kernel (OPFORGE_CUDA_KERNELS / an op with only a Triton kernel), what the built plugin library holds, read from
its own manifest. Running the kernels is the torch.cuda / ort / trt.enqueue stages' work, on a GPU."""

from __future__ import annotations

import ctypes
import json

from ..core.errors import BackendUnavailable, OpforgeError
from ..native import inductor_capture, kernel_sources, triton_aot
from ..trt.codegen import has_plugin
from . import FAIL, PASS, SKIP, StageResult, preparer, stage
from .trt_stages import plugin_library


def manifest(library, decl) -> dict | None:
    """The Triton manifest a built library holds for `decl` (None: the op's launcher is not in it)."""
    lib = ctypes.CDLL(str(library))
    try:
        fn = getattr(lib, f"opforge_triton_manifest_{decl.namespace}__{decl.name}")
    except AttributeError:
        return None
    fn.restype = ctypes.c_char_p
    return json.loads(fn().decode())


@preparer
def capture_inductor_kernels(ops, only, quick):
    """Lower the Inductor ops' references here, before any stage runs and before another thread starts: the
    TensorRT stages' background build needs the captured kernels, and two threads importing torch's Dynamo and
    Inductor at once fail half-way (a partially initialized module). A refusal is the triton.aot row's to report."""
    for op in ops:
        if op.decl.from_inductor:
            try:
                inductor_capture.concrete(op.decl)
            except (OpforgeError, BackendUnavailable):
                pass
    return None


@stage("triton.aot", order=69)
def aot(op, ctx):
    decl = op.decl
    if decl.triton is None:
        return StageResult("triton.aot", SKIP, "no Triton kernel declared: the op's CUDA kernel, if any, is C++")
    try:
        decl = inductor_capture.concrete(decl)  # Inductor's kernel, captured from the reference
        result = triton_aot.compile_op(decl)
    except BackendUnavailable as e:
        return StageResult("triton.aot", SKIP, str(e))
    except OpforgeError as e:
        return StageResult("triton.aot", FAIL, str(e))
    language = kernel_sources.cuda_language(decl)
    metrics = {
        "archs": list(result.archs),
        "kernels": len(result.kernels),
        "variants": [",".join(f"{k}={v}" for k, v in variant.items()) for variant in result.variants],
        "configs": [c.label() for c in decl.triton.configs],
        "triton": result.triton_version,
        "cuda_kernels": language,
    }
    rows = [
        StageResult(
            "triton.aot",
            PASS,
            ("Inductor's kernel for the reference; " if op.decl.from_inductor else "")
            + f"{result.summary()}; this build's CUDA kernel: "
            + ("Triton" if language == "triton" else f"C++ (select Triton with {kernel_sources.ENV}=triton)"),
            metrics,
        )
    ]
    if language == "triton" and has_plugin(decl):
        built, problem = plugin_library(op)
        if problem:
            rows.append(StageResult("triton.linked", SKIP if problem[0] == "skip" else FAIL, problem[1]))
        else:
            held = manifest(built.library, decl)
            expected = {"archs": list(result.archs), "kernels": len(result.kernels)}
            got = None if held is None else {"archs": held["archs"], "kernels": held["kernels"]}
            rows.append(
                StageResult(
                    "triton.linked",
                    PASS if got == expected else FAIL,
                    f"{built.library.name} holds {decl.id}'s launcher: {got}"
                    if got == expected
                    else f"{built.library.name} should hold {expected}, holds {got}",
                    {"library": str(built.library), **(held or {})},
                )
            )
    return rows
