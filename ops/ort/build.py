"""Building lib<package>_ort_ops.so, an op package's native ONNX Runtime custom-op library.

    python -m ops.ort.build                    # opforge's ops -> build/opforge/ops.library/ort/lib/libopforge_ort_ops.so
    python -m ops.ort.build --package mypkg.ops
    python -m ops.ort.build --list             # the ops and variants the built library registers
    python -m ops.ort.build --example          # also the C++ deployment example (examples/cpp)

The library holds, for every op of the package with compiled kernels and ONNX export, its generated glue
(ops/ort/codegen.py), its CPU kernel and, when nvcc is found (OPFORGE_ORT_CUDA=0 turns it off), its CUDA
kernel and CUDA execution-provider variants. It is compiled against ONNX Runtime's C API headers
(ops/ort/headers.py) and links nothing of onnxruntime: every call goes through the OrtApi table the
runtime hands to RegisterCustomOps, at the API version of the headers, so one build loads into that
runtime version and every newer one. Objects and the ninja file live beside the TensorRT plugin build,
under <build root>/opforge/<package>/ort/; the CUDA kernel objects are the plugin library's
(ops/native/cuda_kernels.py: compiled once for both).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import cli
from ..core import paths
from ..core.declaration import OpDecl
from ..core.discovery import import_package
from ..core.errors import BackendUnavailable, BuildError, OpforgeError
from ..core.packages import narrowed, partial_build
from ..core.packages import package as op_package
from ..core.registry import ops_in
from ..native import cuda_kernels, kernel_sources, ninja, prototypes
from . import codegen, headers

DEFAULT_PACKAGE = "ops.library"


@dataclass(frozen=True)
class OrtLibrary:
    library: Path
    build_dir: Path
    ops: tuple[str, ...]
    with_cuda: bool
    ort_include: Path
    api_version: int


def _package(name: str):
    return import_package(name)


def library_decls(package: str = DEFAULT_PACKAGE) -> list[OpDecl]:
    """The ops of an op package that go into its ORT library (compiled kernels, onnx=True; after a partial build
    of its torch extension, `ops.build --ops`, those of them it holds)."""
    name = _package(package).name
    return narrowed([op.decl for op in ops_in(name) if codegen.has_library_op(op.decl)], name)


def library_path(package: str = DEFAULT_PACKAGE) -> Path:
    """Where the op package's library is (it may not be built yet: see build())."""
    pkg = op_package(package)
    return pkg.build_dir / "ort" / "lib" / f"lib{pkg.ort_library}.so"


def cuda_wanted() -> Path | None:
    """The CUDA toolkit to build the CUDA-EP variants with, or None (no nvcc, or OPFORGE_ORT_CUDA=0)."""
    if os.environ.get("OPFORGE_ORT_CUDA") == "0":
        return None
    cuda = cuda_kernels.cuda_home()
    return cuda if cuda is not None and (cuda / "bin" / "nvcc").is_file() else None


def build(
    package: str = DEFAULT_PACKAGE,
    verbose: bool = False,
    decls: list[OpDecl] | None = None,
    build_dir: Path | None = None,
    cuda: bool | None = None,
    compilers=None,
    cuda_dir: Path | None = None,
) -> OrtLibrary:
    """Build the op package's library (opforge's own: libopforge_ort_ops.so); incremental through ninja.
    `decls`/`build_dir` build a library for other declarations (tests); `cuda` forces the CUDA variants
    on or off (default: when nvcc is found). `compilers` (ops/native/compilers.py) and `cuda_dir` (the kernel
    objects, shared with the plugin library) build for another machine. After a partial build of the package's
    torch extension (ops.build --ops) the library holds those ops only, until a full build."""
    include = headers.require()
    if shutil.which("ninja") is None:
        raise BackendUnavailable("ninja is needed to build the ONNX Runtime op library. Fix: pip install ninja")
    pkg = _package(package) if decls is None else op_package(package)
    partial = partial_build(pkg.name) if decls is None else None  # for the message: what it narrowed to
    decls = library_decls(package) if decls is None else decls
    if not decls:
        raise OpforgeError(
            f"op package {pkg.name!r} has no op with compiled kernels and ONNX export"
            + (f" in its partial build ({', '.join(sorted(partial))})" if partial is not None else "")
            + ": nothing for "
            "a native ONNX Runtime library to hold (ops declared with kernels=None run in ORT only "
            "through a fallback body: export_onnx(..., fallback=True))"
        )
    cuda_root = cuda_wanted() if cuda is None or cuda else None
    if compilers is not None:
        cuda_root = compilers.cuda_include.parent if compilers.nvcc is not None and cuda is not False else None
    if cuda and cuda_root is None:
        raise BackendUnavailable(
            "CUDA variants were asked for but nvcc was not found. Fix: install the CUDA toolkit or set CUDA_HOME"
        )
    with_cuda = cuda_root is not None and any("cuda" in d.devices for d in decls)
    bdir = Path(build_dir) if build_dir else pkg.build_dir / "ort"
    gen = bdir / "gen"
    sources = [paths.write_if_changed(gen / f"{d.namespace}_{d.name}_ort.cpp", codegen.generate(d)) for d in decls]
    stem = pkg.ort_library
    sources.append(paths.write_if_changed(gen / "opforge_ort_ops.cpp", codegen.generate_index(decls, pkg.name, stem)))
    csrc = paths.csrc_dir()
    kernel_dirs = prototypes.kernel_include_dirs(decls, bdir)
    cxxflags = [
        "-std=c++20",
        "-O3",
        "-fPIC",
        "-fvisibility=hidden",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        f"-I{csrc}",
        *(f"-I{p}" for p in kernel_dirs),
        f"-I{include}",
    ]
    ldflags = ["-shared", "-Wl,--no-undefined"]  # no onnxruntime symbol: all calls go through the OrtApi table
    if with_cuda:
        cxxflags += ["-DOPFORGE_ORT_WITH_CUDA", f"-I{cuda_root / 'include'}"]
        cuda_lib = next(
            (p for p in (cuda_root / "lib64", cuda_root / "lib") if (p / "libcudart.so").exists()), cuda_root / "lib64"
        )
        ldflags += (
            [f"-L{cuda_lib}", "-lcudart", f"-Wl,-rpath,{cuda_lib}"] if compilers is None else compilers.cudart_ldflags()
        )
    q = lambda args: " ".join(shlex.quote(str(a)) for a in args)  # noqa: E731
    cxx = compilers.cxx if compilers is not None else "c++"
    lines = [
        f"cxxflags = {q(cxxflags)}",
        f"ldflags = {q(ldflags)}",
        "rule cxx",
        f"  command = {cxx} -MMD -MF $out.d $cxxflags -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = CXX $out",
        "rule link",
        f"  command = {cxx} -o $out $in $ldflags",
        "  description = LINK $out",
    ]
    objs = []
    for src in sources:
        obj = bdir / "obj" / (src.stem + ".o")
        lines.append(f"build {ninja.escape(obj)}: cxx {ninja.escape(src)}")
        objs.append(obj)
    for d in decls:
        files = d.kernel_files()
        if "cpu" in files:
            obj = bdir / "obj" / f"{d.namespace}_{d.name}_cpu.o"
            lines.append(f"build {ninja.escape(obj)}: cxx {ninja.escape(files['cpu'])}")
            objs.append(obj)
    if with_cuda:  # shared with the TensorRT plugin library (compiled by the first of the two to build)
        cuda_dir = cuda_dir or (Path(build_dir) if build_dir else pkg.build_dir) / "cuda"
        objs += cuda_kernels.build(
            [d for d in decls if kernel_sources.has_cuda_kernel(d)],
            cuda_dir,
            cuda_root / "bin" / "nvcc",
            verbose,
            compilers,
        )
    lib = bdir / "lib" / f"lib{stem}.so"
    lines.append(f"build {ninja.escape(lib)}: link {' '.join(ninja.escape(o) for o in objs)}")
    ninja.run(
        bdir,
        lines,
        "building the ONNX Runtime op library",
        verbose,
        rebuild=f"python -m ops.ort.build --package {pkg.name}",
    )
    api = headers.api_version(include)
    record = {
        "ort_include": str(include),
        "ort_api_version": api,
        "ops": [d.id for d in decls],
        "cuda": with_cuda,
        "generator": codegen.GENERATOR_VERSION,
    }
    paths.write_if_changed(bdir / "build.json", json.dumps(record, indent=2) + "\n")
    return OrtLibrary(lib, bdir, tuple(d.id for d in decls), with_cuda, include, api)


def library_info(library: Path) -> list[str]:
    """The variants a built library registers (its OpforgeOrtLibraryInfo), one line each; first line 'api N'."""
    import ctypes

    handle = ctypes.CDLL(str(library))
    handle.OpforgeOrtLibraryInfo.restype = ctypes.c_char_p
    return handle.OpforgeOrtLibraryInfo().decode().splitlines()


# ---- the C++ deployment example -------------------------------------------------------------------


def onnxruntime_library() -> Path:
    """The installed onnxruntime wheel's shared library (capi/libonnxruntime.so.<version>)."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("onnxruntime is not installed. Fix: pip install onnxruntime")
    capi = Path(next(iter(spec.submodule_search_locations))) / "capi"
    found = sorted(capi.glob("libonnxruntime.so.*"))
    if not found:
        raise BackendUnavailable(f"no libonnxruntime.so.* in {capi}. Fix: reinstall onnxruntime")
    return found[-1]


def example_source() -> Path:
    for root in (paths.PACKAGE_DIR.parent, paths.PACKAGE_DIR):
        if (root / "examples" / "cpp" / "run_model.cpp").is_file():
            return root / "examples" / "cpp" / "run_model.cpp"
    raise OpforgeError("examples/cpp/run_model.cpp not found: the C++ example ships with a source checkout only")


def build_example(output: Path | None = None, compilers=None, runtime: Path | None = None) -> Path:
    """Compile examples/cpp/run_model.cpp with g++ against the ORT headers, linked to the wheel's
    libonnxruntime.so (rpath set, so it runs without LD_LIBRARY_PATH). No CMake, no Python at run time.
    `compilers` and `runtime` (that machine's libonnxruntime.so.<version>) build it for another machine."""
    include = headers.require()
    runtime = Path(runtime) if runtime else onnxruntime_library()
    src = example_source()
    out = Path(output) if output else paths.build_root() / "opforge" / "examples" / "ort_run_model"
    out.parent.mkdir(parents=True, exist_ok=True)
    # The wheel ships libonnxruntime.so.<version> only, while its SONAME (what the executable asks the loader
    # for) is libonnxruntime.so.1: link the file by path and put a libonnxruntime.so.1 link beside the
    # executable, found through an $ORIGIN rpath, so it runs without LD_LIBRARY_PATH.
    soname = out.parent / "libonnxruntime.so.1"
    if not soname.is_symlink() or soname.resolve() != runtime.resolve():
        soname.unlink(missing_ok=True)
        soname.symlink_to(runtime)
    cmd = [
        compilers.cxx if compilers is not None else "c++",
        "-std=c++17",
        "-O2",
        "-Wall",
        "-Wextra",
        f"-I{include}",
        str(src),
        "-o",
        str(out),
        str(runtime),
        "-Wl,-rpath,$ORIGIN",
    ]
    if not out.exists() or out.stat().st_mtime < max(src.stat().st_mtime, runtime.stat().st_mtime):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"building the C++ example failed (`{' '.join(cmd)}`):\n{done.stderr[-4000:]}")
    return out


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.ort.build",
        __doc__.splitlines()[0] + " Exit status: 0 built, 1 the build failed, 2 a usage error.",
        packages=f"the op package to build (import name; repeatable; default {DEFAULT_PACKAGE})",
    )
    parser.add_argument("--list", action="store_true", help="print the variants the library registers")
    parser.add_argument("--example", action="store_true", help="also build the C++ example (examples/cpp)")
    return cli.main(parser, run, argv)


def run(args) -> int:
    for name in args.package or [DEFAULT_PACKAGE]:
        result = build(name, verbose=args.verbose)
        print(
            f"built {result.library} ({', '.join(result.ops)}; ORT API version {result.api_version}; CUDA "
            f"variants {'compiled' if result.with_cuda else 'not compiled (no nvcc)'})"
        )
        if args.list:
            print("\n".join(library_info(result.library)))
    if args.example:
        print(f"built {build_example()}")
    return 0


if __name__ == "__main__":
    cli.end_process(main())
