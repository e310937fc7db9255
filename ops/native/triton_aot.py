"""Ahead-of-time compilation of an op's Triton kernel: every (dtype variant, pointer alignment, configuration)
for every requested arch, by Triton's own compiler, into cubin and PTX. No GPU is needed: Triton compiles for
a named target (`GPUTarget("cuda", 90, 32)`), so this runs on CI.

The results are cached under <package build dir>/triton/ by a hash of everything that decides the machine
code (the kernel file, the function, its signature and constexprs, the options, the arch, Triton's version),
so a rebuild that changes nothing compiles nothing. ops/native/triton_launcher.py turns the compiled set into
the op's C++ launcher.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.util
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import lazy
from ..core.declaration import OpDecl, dtype_variants, variant_label
from ..core.errors import OpforgeError
from ..core.packages import package
from ..core.triton_launch import TRITON_TYPES, TritonConfig

DEFAULT_ARCHS = ("87", "90")  # Jetson Orin and Hopper; OPFORGE_TRITON_ARCHS adds more (e.g. 80,89,90)


def archs() -> tuple[str, ...]:
    """The archs every Triton kernel is compiled for: sm_87 and sm_90 always, plus OPFORGE_TRITON_ARCHS."""
    extra = [a.strip() for a in os.environ.get("OPFORGE_TRITON_ARCHS", "").replace(";", ",").split(",") if a.strip()]
    for a in extra:
        if not a.isdigit():
            raise OpforgeError(f"OPFORGE_TRITON_ARCHS: {a!r} is not an arch number like 90. Fix: e.g. 80,90")
    return tuple(sorted(set(DEFAULT_ARCHS) | set(extra), key=int))


@dataclass(frozen=True)
class Image:
    arch: int
    cubin: bytes
    ptx: str
    portable: bool  # PTX other GPUs' drivers can JIT (not an sm_90a-style arch-specific target)
    shared: int  # dynamic shared memory bytes a launch gives it
    param_count: int  # the declared parameters plus Triton's trailing scratch pointers


@dataclass(frozen=True)
class Compiled:
    """One (variant, alignment, config) for every arch."""

    variant: dict  # tensor name -> dtype
    aligned: bool
    config: TritonConfig
    function: str
    num_warps: int
    images: tuple[Image, ...]


@dataclass(frozen=True)
class AotResult:
    decl: OpDecl
    kernels: tuple[Compiled, ...]  # ordered: variant, then aligned (True first), then config
    variants: tuple[dict, ...]
    archs: tuple[int, ...]
    triton_version: str
    compiled: int  # how many were compiled now (the rest came from the cache)
    seconds: float

    def summary(self) -> str:
        t = self.decl.triton
        return (
            f"{self.decl.id}: Triton {t.kernel} AOT for sm_{', sm_'.join(map(str, self.archs))}: "
            f"{len(self.variants)} dtype variants x 2 alignments x {len(t.configs)} configs = "
            f"{len(self.kernels)} kernels ({self.compiled} compiled now, {self.seconds:.1f} s; Triton "
            f"{self.triton_version})"
        )


def kernel_module(decl: OpDecl):
    """The op's <name>_triton.py, imported by path (it is not part of any package)."""
    path = decl.kernel_files()["triton"]
    if not path.is_file():
        raise OpforgeError(
            f"{decl.id}: declares triton= but {path} is missing. Fix: write the @triton.jit kernel "
            f"{decl.triton.kernel!r} there"
        )
    lazy.require("triton")
    name = f"opforge_triton_{decl.namespace}_{decl.name}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Triton reads the function's module globals while compiling
    spec.loader.exec_module(module)
    return module


def jit_function(decl: OpDecl, name: str | None = None):
    """The @triton.jit function `name` (default: the declared kernel), checked against the launch description."""
    module = kernel_module(decl)
    t = decl.triton
    name = name or t.kernel
    fn = getattr(module, name, None)
    path = decl.kernel_files()["triton"]
    if fn is None or not hasattr(fn, "arg_names"):
        raise OpforgeError(f"{decl.id}: {path} has no @triton.jit function {name!r}. Fix: define it there")
    declared = [a.param for a in t.args] + list(t.meta_names)
    if sorted(fn.arg_names) != sorted(declared):
        missing = sorted(set(fn.arg_names) - set(declared))
        extra = sorted(set(declared) - set(fn.arg_names))
        raise OpforgeError(
            f"{decl.id}: the parameters of {name} ({', '.join(fn.arg_names)}) and the declaration's triton "
            f"args + config meta-parameters differ: not declared {missing}, not in the kernel {extra}. Fix: map "
            "every runtime parameter in args= and set every constexpr in each TritonConfig"
        )
    constexpr = [p.name for p in fn.params if p.is_constexpr]
    wrong = sorted(set(constexpr) ^ set(t.meta_names))
    if wrong:
        raise OpforgeError(
            f"{decl.id}: {name}'s tl.constexpr parameters {constexpr} must be exactly the configs' "
            f"meta-parameters {list(t.meta_names)} (differ: {wrong}). Fix: annotate them ': tl.constexpr'"
        )
    # The launcher passes the arguments in the order args= lists them: it must be the kernel's.
    runtime = [p.name for p in fn.params if not p.is_constexpr]
    if runtime != [a.param for a in t.args]:
        raise OpforgeError(
            f"{decl.id}: triton args= lists the parameters as {[a.param for a in t.args]}, {name} takes them as "
            f"{runtime}. Fix: list args= in the kernel's parameter order"
        )
    return fn


def signature(decl: OpDecl, fn, variant: dict) -> dict[str, str]:
    """Triton's signature of one dtype variant: pointer element types from the variant, scalars declared."""
    by_param = {a.param: a for a in decl.triton.args}
    sig = {}
    for name in fn.arg_names:
        a = by_param.get(name)
        if a is None:
            sig[name] = "constexpr"
        elif a.kind == "tensor":
            sig[name] = "*" + TRITON_TYPES[variant[a.source]]
        else:  # attributes, integers, scratch pointers: their declared type
            sig[name] = a.type
    return sig


def _param_count(ptx: str, function: str) -> int:
    m = re.search(r"\.entry\s+" + re.escape(function) + r"\s*\((.*?)\)", ptx, re.S)
    if m is None:
        raise OpforgeError(f"Triton's PTX has no entry {function!r}: cannot generate its launcher")
    return len(re.findall(r"\.param\s", m.group(1)))


@dataclass(frozen=True)
class _Job:
    """One compilation, in plain data so a worker process can run it (a JITFunction does not pickle: the
    worker imports the kernel file itself)."""

    path: str  # the <op>_triton.py
    module: str
    function: str
    signature: dict
    hinted: tuple[int, ...]
    meta: dict
    num_warps: int
    num_stages: int
    label: str
    arch: str
    cache_dir: str
    source_hash: str
    triton_version: str

    @property
    def directory(self) -> Path:
        key = json.dumps(
            [
                self.source_hash,
                self.function,
                self.signature,
                list(self.hinted),
                self.label,
                self.arch,
                self.triton_version,
            ],
            sort_keys=True,
        )
        return Path(self.cache_dir) / hashlib.sha256(key.encode()).hexdigest()[:24]


def _cached(job: _Job) -> dict | None:
    d = job.directory
    if not (d / "meta.json").is_file():
        return None
    meta = json.loads((d / "meta.json").read_text())
    return {**meta, "cubin": (d / "kernel.cubin").read_bytes(), "ptx": (d / "kernel.ptx").read_text()}


def _load_function(path: str, module: str, function: str):
    if module not in sys.modules:
        spec = importlib.util.spec_from_file_location(module, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[module] = mod  # Triton reads the function's module globals while compiling
        spec.loader.exec_module(mod)
    return getattr(sys.modules[module], function)


def _compile(job: _Job) -> None:
    """Compile one job into its cache directory (atomically: a concurrent build sees all of it or none)."""
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default, stated (3.9 warns otherwise)
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _load_function(job.path, job.module, job.function)
    src = ASTSource(
        fn=fn,
        signature=job.signature,
        constexprs=dict(job.meta),
        attrs={(i,): [["tt.divisibility", 16]] for i in job.hinted},
    )
    k = triton.compile(
        src,
        target=GPUTarget("cuda", int(job.arch), 32),
        options={"num_warps": job.num_warps, "num_stages": job.num_stages},
    )
    md = k.metadata
    if getattr(md, "num_ctas", 1) != 1 or getattr(md, "global_scratch_size", 0):
        raise OpforgeError(
            f"{job.function} (config {job.label}, sm_{job.arch}) needs thread-block clusters or global scratch "
            "memory, which opforge's AOT launcher does not provide. Fix: use num_ctas=1 and no on-device "
            "tensor descriptors"
        )
    ptx = k.asm["ptx"]
    target = re.search(r"\.target\s+(\S+)", ptx)
    meta = {
        "function": md.name,
        "num_warps": md.num_warps,
        "shared": md.shared,
        "param_count": _param_count(ptx, md.name),
        "portable": bool(target) and not target.group(1).rstrip(",").endswith("a"),
    }
    d = job.directory
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "kernel.cubin").write_bytes(k.asm["cubin"])
    (tmp / "kernel.ptx").write_text(ptx)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.replace(tmp, d)
    except OSError:  # another build put it there first: theirs is the same
        shutil.rmtree(tmp, ignore_errors=True)


def _compile_all(jobs: list[_Job]) -> None:
    """The uncached jobs, on every core (Triton's compile is CPU-bound and mostly single-threaded)."""
    workers = min(len(jobs) // 4, os.cpu_count() or 1)  # a worker imports torch: worth it for 8+ jobs
    if workers <= 1:
        for job in jobs:
            _compile(job)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's threads
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        for future in [pool.submit(_compile, job) for job in jobs]:
            future.result()


def compile_op(decl: OpDecl, log=None) -> AotResult:
    """Compile (or take from the cache) every kernel of the op's Triton launch for archs()."""
    if decl.triton is None:
        raise OpforgeError(f"{decl.id} has no Triton kernel (no triton= in its declaration)")
    triton = lazy.require("triton")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default, stated (3.9 warns otherwise)
    start = time.perf_counter()
    t = decl.triton
    path = decl.kernel_files()["triton"]
    source_hash = hashlib.sha256(path.read_bytes()).hexdigest()
    cache_dir = package(decl.package or "ops.library").build_dir / "triton" / f"{decl.namespace}_{decl.name}"
    variants = tuple(dtype_variants(decl))
    functions = {name: jit_function(decl, name) for name in {t.kernel_for(variant_label(decl, v)) for v in variants}}
    jobs = {}
    for variant in variants:
        fn = functions[t.kernel_for(variant_label(decl, variant))]
        # The aligned compilation's hints: every pointer 16-byte aligned (scratch always is), the `aligned=`
        # integers multiples of 16.
        hinted = [
            i
            for i, name in enumerate(fn.arg_names)
            if any(a.param == name and (a.kind in ("tensor", "scratch") or name in t.aligned) for a in t.args)
        ]
        sig = signature(decl, fn, variant)
        for aligned in (True, False):
            for config in t.configs:
                for arch in archs():
                    jobs[(tuple(variant.items()), aligned, config.label(), arch)] = _Job(
                        path=str(path),
                        module=f"opforge_triton_{decl.namespace}_{decl.name}",
                        function=fn.__name__,
                        signature=sig,
                        hinted=tuple(hinted) if aligned else (),
                        meta=dict(config.meta),
                        num_warps=config.num_warps,
                        num_stages=config.num_stages,
                        label=config.label(),
                        arch=arch,
                        cache_dir=str(cache_dir),
                        source_hash=source_hash,
                        triton_version=triton.__version__,
                    )
    todo = [job for job in jobs.values() if _cached(job) is None]
    _compile_all(todo)
    kernels = []
    for variant in variants:
        for aligned in (True, False):
            for config in t.configs:
                images = []
                for arch in archs():
                    meta = _cached(jobs[(tuple(variant.items()), aligned, config.label(), arch)])
                    images.append(
                        Image(
                            int(arch),
                            meta["cubin"],
                            meta["ptx"],
                            meta["portable"],
                            int(meta["shared"]),
                            meta["param_count"],
                        )
                    )
                kernels.append(
                    Compiled(
                        variant=variant,
                        aligned=aligned,
                        config=config,
                        function=meta["function"],
                        num_warps=meta["num_warps"],
                        images=tuple(images),
                    )
                )
    compiled = len(todo)
    result = AotResult(
        decl=decl,
        kernels=tuple(kernels),
        variants=variants,
        archs=tuple(int(a) for a in archs()),
        triton_version=triton.__version__,
        compiled=compiled,
        seconds=time.perf_counter() - start,
    )
    if log is not None:
        log(result.summary())
    return result
