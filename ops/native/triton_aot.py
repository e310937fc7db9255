"""Ahead-of-time compilation of an op's Triton kernel: every (dtype variant, pointer alignment, configuration)
for every requested arch, by Triton's own compiler, into cubin and PTX. No GPU is needed: Triton compiles for
a named target (`GPUTarget("cuda", 90, 32)`), so this runs on CI.

The results are cached under <package build dir>/triton/ by a hash of everything that decides the machine
code (the kernel file, the function, its signature and constexprs, the options, the arch, Triton's version),
so a rebuild that changes nothing compiles nothing. ops/native/triton_launcher.py turns the compiled set into
the op's C++ launcher.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..core import lazy
from ..core.declaration import OpDecl, dtype_variants
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


def jit_function(decl: OpDecl):
    module = kernel_module(decl)
    t = decl.triton
    fn = getattr(module, t.kernel, None)
    path = decl.kernel_files()["triton"]
    if fn is None or not hasattr(fn, "arg_names"):
        raise OpforgeError(f"{decl.id}: {path} has no @triton.jit function {t.kernel!r}. Fix: define it there")
    declared = [a.param for a in t.args] + list(t.meta_names)
    if sorted(fn.arg_names) != sorted(declared):
        missing = sorted(set(fn.arg_names) - set(declared))
        extra = sorted(set(declared) - set(fn.arg_names))
        raise OpforgeError(
            f"{decl.id}: the parameters of {t.kernel} ({', '.join(fn.arg_names)}) and the declaration's triton "
            f"args + config meta-parameters differ: not declared {missing}, not in the kernel {extra}. Fix: map "
            "every runtime parameter in args= and set every constexpr in each TritonConfig"
        )
    constexpr = [p.name for p in fn.params if p.is_constexpr]
    wrong = sorted(set(constexpr) ^ set(t.meta_names))
    if wrong:
        raise OpforgeError(
            f"{decl.id}: {t.kernel}'s tl.constexpr parameters {constexpr} must be exactly the configs' "
            f"meta-parameters {list(t.meta_names)} (differ: {wrong}). Fix: annotate them ': tl.constexpr'"
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
        else:
            sig[name] = a.type
    return sig


def _param_count(ptx: str, function: str) -> int:
    m = re.search(r"\.entry\s+" + re.escape(function) + r"\s*\((.*?)\)", ptx, re.S)
    if m is None:
        raise OpforgeError(f"Triton's PTX has no entry {function!r}: cannot generate its launcher")
    return len(re.findall(r"\.param\s", m.group(1)))


def _compile_one(triton, fn, sig, attrs, config, arch, cache_dir: Path, source_hash: str) -> dict:
    key = json.dumps(
        [source_hash, fn.__name__, sig, sorted(attrs), config.label(), arch, triton.__version__], sort_keys=True
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    d = cache_dir / digest
    if (d / "meta.json").is_file():
        meta = json.loads((d / "meta.json").read_text())
        meta["cubin"] = (d / "kernel.cubin").read_bytes()
        meta["ptx"] = (d / "kernel.ptx").read_text()
        meta["cached"] = True
        return meta
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    constexprs = {k: v for k, v in config.meta.items()}
    src = ASTSource(
        fn=fn,
        signature=sig,
        constexprs=constexprs,
        attrs={(i,): [["tt.divisibility", 16]] for i in attrs},
    )
    k = triton.compile(
        src,
        target=GPUTarget("cuda", int(arch), 32),
        options={"num_warps": config.num_warps, "num_stages": config.num_stages},
    )
    md = k.metadata
    if (
        getattr(md, "num_ctas", 1) != 1
        or getattr(md, "global_scratch_size", 0)
        or getattr(md, "cluster_dims", None)
        not in (
            None,
            (1, 1, 1),
        )
    ):
        raise OpforgeError(
            f"{fn.__name__} (config {config.label()}, sm_{arch}) needs thread-block clusters or global scratch "
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
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "kernel.cubin").write_bytes(k.asm["cubin"])
    (tmp / "kernel.ptx").write_text(ptx)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, d) if not d.exists() else None
    return {**meta, "cubin": k.asm["cubin"], "ptx": ptx, "cached": False}


def compile_op(decl: OpDecl, log=None) -> AotResult:
    """Compile (or take from the cache) every kernel of the op's Triton launch for archs()."""
    if decl.triton is None:
        raise OpforgeError(f"{decl.id} has no Triton kernel (no triton= in its declaration)")
    triton = lazy.require("triton")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default, stated (3.9 warns otherwise)
    start = time.perf_counter()
    fn = jit_function(decl)
    t = decl.triton
    path = decl.kernel_files()["triton"]
    source_hash = hashlib.sha256(path.read_bytes()).hexdigest()
    cache_dir = package(decl.package or "ops.library").build_dir / "triton" / f"{decl.namespace}_{decl.name}"
    pointer_params = [
        i for i, name in enumerate(fn.arg_names) if any(a.param == name and a.kind == "tensor" for a in t.args)
    ]
    variants = tuple(dtype_variants(decl))
    kernels = []
    compiled = 0
    for variant in variants:
        sig = signature(decl, fn, variant)
        for aligned in (True, False):
            attrs = pointer_params if aligned else []
            for config in t.configs:
                per_arch = []
                meta = None
                for arch in archs():
                    meta = _compile_one(triton, fn, sig, attrs, config, arch, cache_dir, source_hash)
                    compiled += not meta["cached"]
                    per_arch.append(
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
                        images=tuple(per_arch),
                    )
                )
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
