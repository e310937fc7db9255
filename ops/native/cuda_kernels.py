"""The CUDA toolkit, and an op package's CUDA kernel objects, compiled once for both native libraries that
link them: the TensorRT plugin library (ops/trt/build.py) and the CUDA execution-provider variants of the
ONNX Runtime library (ops/ort/build.py). They used to compile every kernel file each, with the same nvcc
flags: nvcc, the slowest step of both builds, ran twice per op.

The objects live in <build root>/opforge/<package>/cuda/ with the generated prototypes they include and
their own ninja file (incremental). The libraries list them as link inputs, so a rebuilt kernel relinks
each library that uses it."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from ..core import paths
from ..core.declaration import OpDecl
from . import kernel_sources, ninja, prototypes


def cuda_home() -> Path | None:
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env) and (Path(os.environ[env]) / "include" / "cuda_runtime_api.h").is_file():
            return Path(os.environ[env])
    nvcc = shutil.which("nvcc")
    candidates = [Path("/usr/local/cuda")] + ([Path(nvcc).resolve().parent.parent] if nvcc else [])
    return next((c for c in candidates if (c / "include" / "cuda_runtime_api.h").is_file()), None)


def cuda_archs() -> list[str]:
    archs = [a.strip() for a in os.environ.get("OPFORGE_TRT_CUDA_ARCHS", "75").replace(",", ";").split(";")]
    return [a for a in archs if a]


def gencode() -> list[str]:
    """SASS for each arch of cuda_archs(), and PTX of the last one, which the driver JITs on newer GPUs."""
    flags = []
    for a in cuda_archs():
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    if cuda_archs():
        top = cuda_archs()[-1]
        flags += ["-gencode", f"arch=compute_{top},code=compute_{top}"]
    return flags


def build(decls: list[OpDecl], build_dir: Path, nvcc: Path, verbose: bool = False, compilers=None) -> list[Path]:
    """Compile each op's CUDA kernel file into build_dir/obj (ninja: only what changed); return the objects in
    the order of `decls`. The ninja file lists the ops of the last call; other ops' objects stay where they are.
    `compilers` (ops/native/compilers.py) builds for another machine: its nvcc, flags and archs."""
    includes = [paths.csrc_dir(), *prototypes.kernel_include_dirs(decls, build_dir)]
    nvflags = [
        "-std=c++17",
        "-O3",
        "-Xcompiler",
        "-fPIC",
        "-Xcompiler",
        "-fvisibility=hidden",
        *(f"-I{p}" for p in includes),
    ]
    if compilers is not None:
        nvcc = compilers.nvcc
        nvflags += [*compilers.nvcc_flags, *compilers.gencode()]
    else:
        nvflags += gencode()
    objs = [build_dir / "obj" / f"{d.namespace}_{d.name}_cuda.o" for d in decls]
    lines = [
        f"nvflags = {' '.join(shlex.quote(str(a)) for a in nvflags)}",
        "rule nvcc",
        f"  command = {shlex.quote(str(nvcc))} -MD -MF $out.d $nvflags -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = NVCC $out",
    ]
    lines += [
        f"build {ninja.escape(obj)}: nvcc {ninja.escape(kernel_sources.cuda_source(d, build_dir))}"
        for d, obj in zip(decls, objs)
    ]
    ninja.run(build_dir, lines, "compiling the CUDA kernels", verbose)
    return objs
