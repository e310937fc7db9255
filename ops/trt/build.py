"""Building libopforge_trt_plugins.so, and emitting a standalone CMake project for it.

    python -m ops.build --trt                 # generate the per-op specs and build the plugin library
    python -m ops.build --trt-cmake DIR       # write a CMake project (no Python, no torch) into DIR

The in-tree build writes <build root>/opforge/<package>/trt/{gen,obj,lib} and a ninja file (incremental, parallel). Kernels
are compiled with nvcc for OPFORGE_TRT_CUDA_ARCHS (default "75": sm_75 code + compute_75 PTX, which the
driver JITs on newer GPUs), once for this library and the ONNX Runtime one (ops/native/cuda_kernels.py).
`variant="asan"` builds the same library without CUDA kernels, with AddressSanitizer, for the fuzzing
harness (enqueue then fails with a message; every other path is the same code).
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..core import paths
from ..core.declaration import OpDecl
from ..core.discovery import import_package
from ..core.errors import BackendUnavailable, OpforgeError
from ..core.packages import narrowed, partial_build
from ..core.packages import package as op_package
from ..core.registry import ops_in
from ..native import cuda_kernels, kernel_sources, ninja, prototypes
from ..native.cuda_kernels import cuda_archs, cuda_home
from . import codegen, headers

ADAPTER_SOURCES = ("opforge_trt_plugin.cpp", "opforge_trt_creator.cpp", "opforge_trt_entry.cpp")
DEFAULT_PACKAGE = "ops.library"


@dataclass(frozen=True)
class PluginBuild:
    library: Path
    static_shim: Path
    build_dir: Path
    ops: tuple[str, ...]
    with_kernels: bool
    trt_include: Path


def _package(name: str):
    return import_package(name)


def plugin_decls(package: str = DEFAULT_PACKAGE) -> list[OpDecl]:
    """The ops of an op package that get a TensorRT plugin (those with CUDA kernels; after a partial build of its
    torch extension, `ops.build --ops`, those of them it holds)."""
    name = _package(package).name
    return narrowed([op.decl for op in ops_in(name) if codegen.has_plugin(op.decl)], name)


def generate_sources(gen_dir: Path, decls: list[OpDecl]) -> list[Path]:
    out = [paths.write_if_changed(gen_dir / f"{d.namespace}_{d.name}_trt.cpp", codegen.generate(d)) for d in decls]
    out.append(paths.write_if_changed(gen_dir / "opforge_trt_ops.cpp", codegen.generate_index(decls)))
    return out


VARIANT_DIRS = {"release": "trt", "asan": "trt_asan", "host": "trt_host"}


def build(
    variant: str = "release",
    verbose: bool = False,
    decls: list[OpDecl] | None = None,
    build_dir: Path | None = None,
    package: str = DEFAULT_PACKAGE,
    compilers=None,
    trt_include: Path | None = None,
    cuda_dir: Path | None = None,
) -> PluginBuild:
    """Build an op package's plugin library, lib<stem>.so (opforge's own: libopforge_trt_plugins.so).
    variant: 'release' (with CUDA kernels), 'asan' (no kernels, AddressSanitizer) or 'host' (no kernels:
    every interface path but enqueue). `decls`/`build_dir` build a library for other declarations (the
    codegen tests). `compilers` (ops/native/compilers.py), `trt_include` and `cuda_dir` (the kernel objects, shared with the ONNX
    Runtime library) build for another machine (ops/cross);
    release builds also archive the objects as lib<stem>.a. After a partial build of the package's torch
    extension (ops.build --ops) the library holds those ops only, until a full build."""
    if variant not in VARIANT_DIRS:
        raise OpforgeError(f"unknown plugin build variant {variant!r}: use one of {sorted(VARIANT_DIRS)}")
    trt_include = Path(trt_include) if trt_include else headers.require()
    cuda = cuda_home() if compilers is None else compilers.cuda_include.parent
    if cuda is None:
        raise BackendUnavailable(
            "the TensorRT plugin needs the CUDA toolkit headers (cuda_runtime_api.h). Fix: "
            "install the CUDA toolkit or set CUDA_HOME"
        )
    with_kernels = variant == "release"
    nvcc = cuda / "bin" / "nvcc" if compilers is None else compilers.nvcc
    if with_kernels and not nvcc.is_file():
        raise BackendUnavailable(
            f"nvcc not found at {nvcc}: the plugin's CUDA kernels cannot be compiled. "
            "Fix: install the CUDA toolkit or set CUDA_HOME"
        )
    if shutil.which("ninja") is None:
        raise BackendUnavailable("ninja is needed to build the plugin library. Fix: pip install ninja")
    pkg = _package(package) if decls is None else op_package(package)
    partial = partial_build(pkg.name) if decls is None else None  # for the message: what it narrowed to
    decls = plugin_decls(package) if decls is None else decls
    if not decls:
        raise OpforgeError(
            f"op package {pkg.name!r} has no op with CUDA kernels"
            + (f" in its partial build ({', '.join(sorted(partial))})" if partial is not None else "")
            + ": nothing for a TensorRT plugin library to hold"
        )
    bdir = Path(build_dir) if build_dir else pkg.build_dir / VARIANT_DIRS[variant]
    csrc = paths.csrc_dir()
    plugins = paths.plugins_dir()
    gen = generate_sources(bdir / "gen", decls)
    lib_dir = bdir / "lib"
    cuda_lib = next((p for p in (cuda / "lib64", cuda / "lib") if (p / "libcudart.so").exists()), cuda / "lib64")
    kernel_includes = prototypes.kernel_include_dirs(decls, bdir)
    includes = [
        plugins,
        csrc,
        *kernel_includes,
        bdir / "gen",
        trt_include,
        cuda / "include" if compilers is None else compilers.cuda_include,
    ]
    cxxflags = [
        "-std=c++17",
        "-fPIC",
        "-fvisibility=hidden",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Wno-deprecated-declarations",
    ] + [f"-I{p}" for p in includes]
    ldflags = ["-shared", "-Wl,--no-undefined", "-ldl"]  # --no-undefined: proves no libnvinfer symbol is needed
    if with_kernels:
        cxxflags += ["-O2", "-DOPFORGE_TRT_WITH_KERNELS"]
        ldflags += (
            [f"-L{cuda_lib}", "-lcudart", f"-Wl,-rpath,{cuda_lib}"] if compilers is None else compilers.cudart_ldflags()
        )
    elif variant == "asan":
        cxxflags += ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]
        ldflags += ["-fsanitize=address"]
    else:
        cxxflags += ["-O1", "-g"]

    q = lambda args: " ".join(shlex.quote(str(a)) for a in args)  # noqa: E731
    cxx, ar = (compilers.cxx, compilers.ar) if compilers is not None else ("c++", "ar")
    lines = [
        f"cxxflags = {q(cxxflags)}",
        f"ldflags = {q(ldflags)}",
        "rule ar",
        f"  command = rm -f $out && {ar} rcs $out $in",
        "  description = AR $out",
        "rule cxx",
        f"  command = {cxx} -MMD -MF $out.d $cxxflags -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = CXX $out",
        "rule link",
        f"  command = {cxx} -o $out $in $ldflags $extra",
        "  description = LINK $out",
    ]
    objs = []
    sources = [plugins / s for s in ADAPTER_SOURCES] + gen
    for src in sources:
        obj = bdir / "obj" / (src.stem + ".o")
        lines.append(f"build {ninja.escape(obj)}: cxx {ninja.escape(src)}")
        objs.append(obj)
    if with_kernels:  # shared with the ONNX Runtime library's CUDA variants (compiled by the first to build)
        objs += cuda_kernels.build(
            decls, cuda_dir or (Path(build_dir) if build_dir else pkg.build_dir) / "cuda", nvcc, verbose, compilers
        )
    lib = lib_dir / f"lib{pkg.plugin_library}.so"
    shim = lib_dir / f"lib{pkg.plugin_library}_static.so"
    shim_obj = bdir / "obj" / "opforge_trt_static.o"
    lines.append(f"build {ninja.escape(shim_obj)}: cxx {ninja.escape(plugins / 'opforge_trt_static.cpp')}")
    lines.append(f"build {ninja.escape(lib)}: link {' '.join(ninja.escape(o) for o in objs)}")
    lines.append(f"build {ninja.escape(shim)}: link {ninja.escape(shim_obj)} | {ninja.escape(lib)}")
    lines.append(f"  extra = -L{ninja.escape(lib_dir)} -l{pkg.plugin_library} -Wl,-rpath,'$$ORIGIN'")
    if with_kernels:  # the same objects for an application that links the plugins in (libcudart, libdl)
        lines.append(
            f"build {ninja.escape(lib_dir / f'lib{pkg.plugin_library}.a')}: ar "
            + " ".join(ninja.escape(o) for o in objs)
        )
    ninja.run(
        bdir,
        lines,
        "building the TensorRT plugin library",
        verbose,
        rebuild=f"python -m ops.build --trt --package {pkg.name}",
    )
    record = {
        "trt_headers": ".".join(map(str, headers.version(trt_include))),
        "trt_include": str(trt_include),
        "variant": variant,
        "ops": [d.id for d in decls],
        "cuda_archs": (list(compilers.cuda_archs) if compilers else cuda_archs()) if with_kernels else [],
    }
    paths.write_if_changed(bdir / "build.json", json.dumps(record, indent=2) + "\n")
    return PluginBuild(lib, shim, bdir, tuple(d.id for d in decls), with_kernels, trt_include)


def library_path(variant: str = "release", package: str = DEFAULT_PACKAGE) -> Path:
    """Where the op package's built library is (it may not exist yet: see build())."""
    pkg = op_package(package)
    return pkg.build_dir / VARIANT_DIRS[variant] / "lib" / f"lib{pkg.plugin_library}.so"


# The framework-free headers the adapter and the kernels include; opforge/torch/ and opforge/ort/ stay out.
KERNEL_API_HEADERS = ("kernel_api.h", "cpu_isa.h", "kernel_cuda.cuh", "host.h", "triton_launch.h")


def emit_cmake(dest, archs: str = "87", package: str = DEFAULT_PACKAGE) -> Path:
    """Write a standalone CMake project for an op package's plugin library into `dest`: the adapter, the
    generated per-op specs and the ops' CUDA kernels (no Python, no torch). Returns the CMakeLists.txt path."""
    dest = Path(dest)
    decls = plugin_decls(package)
    stem = _package(package).plugin_library
    csrc, plugins = paths.csrc_dir(), paths.plugins_dir()
    if not decls:
        raise OpforgeError("no op has CUDA kernels: there is nothing for a TensorRT plugin library to hold")
    for sub in ("plugins", "gen", "csrc"):
        shutil.rmtree(dest / sub, ignore_errors=True)
    for name in (*ADAPTER_SOURCES, "opforge_trt_static.cpp", "opforge_trt_plugin.h", "opforge_trt_codegen_support.h"):
        _copy(plugins / name, dest / "plugins" / name)
    generate_sources(dest / "gen", decls)
    prototypes.write_headers(decls, dest)  # dest/gen/include: CMakeLists.txt.in puts it on the include path
    for header in KERNEL_API_HEADERS:
        _copy(csrc / "opforge" / header, dest / "csrc" / "opforge" / header)
    kernels = []
    for d in decls:
        for what in ("header", "cuda"):
            if what == "header" and what not in d.kernel_files():  # the hand-written header is optional
                continue
            rel_dir = Path("csrc") / d.kernel_dir.name
            if what == "header":
                src = d.kernel_files()[what]
            else:  # a Triton launcher .incbin's its images by this path, found through the project's -Wa,-I
                blob = (rel_dir / f"{d.namespace}_{d.name}_triton.bin").as_posix()
                src = kernel_sources.cuda_source(d, dest, blob_name=blob)
                if src.with_suffix(".bin").is_file():
                    _copy(src.with_suffix(".bin"), dest / blob)
            # A Triton launcher is host-only C++: built as CXX, whose -Wa,-I finds its .incbin (nvcc would split
            # that flag at the comma).
            rel = rel_dir / (src.stem + ".cpp" if src.with_suffix(".bin").is_file() else src.name)
            _copy(src, dest / rel)
            if what == "cuda":
                kernels.append(rel.as_posix())
        for extra in [*d.kernel_dir.glob("*.cuh"), *d.kernel_dir.glob("*.h")]:  # headers beside its own
            _copy(extra, dest / "csrc" / d.kernel_dir.name / extra.name)
    shutil.rmtree(dest / "gen" / "triton", ignore_errors=True)  # the launchers' build copies, now under csrc/
    text = (plugins / "CMakeLists.txt.in").read_text().replace("opforge_trt_plugins", stem)
    text = (
        text.replace("@ARCHS@", archs)
        .replace("@KERNELS@", " ".join(kernels))
        .replace("@OPS@", ", ".join(d.id for d in decls))
    )
    return paths.write_if_changed(dest / "CMakeLists.txt", text)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
