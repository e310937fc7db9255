"""Building an op package's torch extension: generate its glue, compile it against the installed torch.

    python -m ops.build                          # opforge's own ops -> ops._C, in place (ninja; no-op in seconds)
    python -m ops.build --package mypkg.ops      # a user's op package -> mypkg/ops/_C*.so, in place
    python -m ops.build --ops opforge::rms_norm,...  # a partial build: only these ops (what make demo runs); the
                                                 # package's TensorRT and ORT libraries then hold only these too
    python -m ops.build --print [--package P]    # list the generated files and the sources of the extension
    python -m ops.build --trt [--package P]      # build the package's TensorRT plugin library (ops/trt/build.py)
    python -m ops.build --trt-cmake DIR [--cuda-archs 87] [--package P]   # emit its standalone CMake project
    python -m ops.build --target jetson-orin [--package P] [--jetpack 6,7]  # cross-build every native artefact
                                                                            # for a Jetson (ops/cross/build.py)
    python -m ops.build --cuda-kernels triton    # ops with a C++ and a Triton CUDA kernel take the Triton one

The same machinery is the build hook for a user's setup.py (see README, "Ops in your own package"):

    from setuptools import setup
    from ops.build import BuildExtension, extension
    setup(..., ext_modules=[extension("mypkg.ops")], cmdclass={"build_ext": BuildExtension})

Build it with `pip install --no-build-isolation .`: the kernels must be compiled against the torch that is
installed, never one pip would resolve into an isolated build environment.
"""

from __future__ import annotations

import json
import os

from . import cli
from .cross.build import main as cross_main
from .native import kernel_sources
from .torch import build as torch_build
from .torch.build import DEFAULT_PACKAGE, build_package, cuda_enabled, generate_sources, select_ops
from .trt.build import build, emit_cmake

# A user's setup.py (README, "Ops in your own package"): `from ops.build import BuildExtension, extension`.
extension = torch_build.extension


def __getattr__(name):  # a user's setup.py: `from ops.build import BuildExtension, extension` (README)
    if name == "BuildExtension":
        return torch_build.BuildExtension
    raise AttributeError(name)


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.build",
        __doc__.splitlines()[0] + " Exit status: 0 built, 1 the build failed, 2 a usage error.",
        packages=f"the op package to build (import name; repeatable; default {DEFAULT_PACKAGE})",
    )
    parser.add_argument("--print", action="store_true", help="print the sources of the extension and exit")
    parser.add_argument("--trt", action="store_true", help="build the TensorRT plugin library instead")
    parser.add_argument("--trt-cmake", metavar="DIR", help="write a standalone CMake project for the plugin library")
    parser.add_argument(
        "--cuda-archs",
        default="87",
        help="CMAKE_CUDA_ARCHITECTURES for --trt-cmake, CUDA archs for --target (default 87)",
    )
    parser.add_argument("--target", help="cross-build for jetson-orin or aarch64-linux (ops/cross/build.py)")
    parser.add_argument(
        "--jetpack", default="6", help="with --target: JetPack generations, 6 (CUDA 12), 7 (CUDA 13) or 6,7 (default 6)"
    )
    parser.add_argument(
        "--ops",
        help="only these ops (comma-separated ids): a partial build of the torch extension, whose TensorRT and ONNX "
        "Runtime libraries then hold the same ops until a full build; with --target, only these ops there",
    )
    parser.add_argument(
        "--cuda-kernels",
        metavar="CHOICE",
        help="for ops with both a C++ and a Triton CUDA kernel: 'cuda' (default), 'triton', or op ids to build with "
        f"Triton (sets {kernel_sources.ENV} for this build; see README, 'CUDA kernels in Triton')",
    )
    return cli.main(parser, run, argv)


def run(args) -> int:
    names = args.package or [DEFAULT_PACKAGE]
    if args.cuda_kernels is not None:
        os.environ[kernel_sources.ENV] = args.cuda_kernels
    if args.target:
        return cross_main(args, names)
    only = [o.strip() for o in (args.ops or "").split(",") if o.strip()] or None
    if only and (args.trt or args.trt_cmake):
        raise cli.UsageError(
            "--ops chooses the ops of the torch extension's build (the TensorRT and ONNX Runtime libraries built "
            "after it hold the same ops) or of a --target build. Fix: python -m ops.build --ops ..., then "
            "python -m ops.build --trt"
        )
    for name in names:
        if args.trt or args.trt_cmake:
            if args.trt_cmake:
                print(f"wrote {emit_cmake(args.trt_cmake, args.cuda_archs, package=name)}")
            if args.trt:
                result = build(package=name, verbose=args.verbose)
                print(f"built {result.library} ({', '.join(result.ops)}; TensorRT headers {result.trt_include})")
        elif args.print:
            sources, includes, record = generate_sources(name, cuda_enabled(), only)
            print("\n".join(sources))
            print(json.dumps({"include_dirs": includes, **record}, indent=2))
        else:
            built = build_package(name, verbose=args.verbose, only=only)
            chosen = [op.id for op in select_ops(name, only)] if only else []
            print(f"built {built}" + (f" (a partial build of {len(chosen)} ops: {', '.join(chosen)})" if only else ""))
    return 0


if __name__ == "__main__":
    cli.end_process(main())
