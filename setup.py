"""Builds ops._C against the torch that is installed: CPU kernels always, CUDA kernels when torch has
CUDA and nvcc is found. The glue is generated from the op declarations into build/opforge_gen first.

Use `pip install -e .` (pyproject.toml points pip at an in-tree backend that sees the installed torch)
or `pip install --no-build-isolation -e .`; `python -m ops.build` rebuilds in place."""

import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

try:
    import torch  # noqa: F401
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
except ImportError:
    sys.exit(
        "opforge builds its kernels against the torch that is installed, and none is.\n"
        "Install torch first (here: pip install torch==2.13.0), then: pip install --no-build-isolation -e ."
    )

from ops.build import cuda_enabled, generate_sources, write_build_record  # noqa: E402

WITH_CUDA = cuda_enabled()
SOURCES, RECORD = generate_sources(WITH_CUDA)


class BuildOpforge(BuildExtension):
    """Records what was built (torch version, CUDA, per-op fingerprints) so a stale build is detected."""

    def run(self):
        super().run()
        write_build_record(RECORD)
        build_trt_plugins()


def build_trt_plugins():
    """The TensorRT plugin library, when TensorRT headers are found (TRT_INCLUDE_DIR, TENSORRT_ROOT, system
    paths, or build/trt-headers from `python -m ops.trt.headers`). OPFORGE_TRT=0 skips it."""
    import os

    from ops.trt import headers

    if os.environ.get("OPFORGE_TRT") == "0" or headers.find() is None:
        return
    from ops.trt.build import build

    print(f"opforge: built {build().library}")


def extension():
    common = dict(
        name="ops._C",
        sources=[str(Path(s).relative_to(ROOT)) if Path(s).is_relative_to(ROOT) else s for s in SOURCES],
        include_dirs=[str(ROOT / "csrc")],
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3"]},  # the C++ standard is torch's choice
    )
    if WITH_CUDA:
        common["define_macros"] = [("OPFORGE_WITH_CUDA", "1")]
        return CUDAExtension(**common)
    common["extra_compile_args"] = common["extra_compile_args"]["cxx"]
    return CppExtension(**common)


setup(
    packages=find_packages(include=["ops", "ops.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildOpforge.with_options(use_ninja=True)},
)
