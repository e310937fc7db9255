"""Builds ops._C (opforge's own op package, `ops.library`) against the torch that is installed: CPU kernels
always, CUDA kernels when torch has CUDA and nvcc is found. The glue is generated from the declarations
first. It uses the same build hook a user's op package uses (ops.build.extension + BuildExtension).

`pip install .` / `pip wheel .` / `pip install -e .` (pyproject.toml points pip at an in-tree backend that
sees the installed torch), or with `--no-build-isolation`; `python -m ops.build` rebuilds in place.

A wheel carries the kernel API, the built-in kernels and the TensorRT adapter as package data (`ops/csrc`,
`ops/plugins`), so ops.build, ops.check and `ops.build --trt` work from an installed opforge too."""

import shutil
import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

try:
    import torch  # noqa: F401
except ImportError:
    sys.exit(
        "opforge builds its kernels against the torch that is installed, and none is.\n"
        "Install torch first (here: pip install torch==2.13.0), then: pip install --no-build-isolation -e ."
    )

from ops.torch.build import BuildExtension, extension, object_dir  # noqa: E402

DATA_TREES = {"csrc": "ops/csrc", "plugins": "ops/plugins"}  # checkout dir -> place in the wheel
# .py and .json: an op's Triton kernel (<op>_triton.py) and its tuned table (<op>_triton_tuned.json).
SOURCE_SUFFIXES = {".h", ".hpp", ".cuh", ".c", ".cc", ".cpp", ".cu", ".in", ".py", ".json"}


class BuildPyWithSources(build_py):
    """Copies csrc/ and plugins/ into the package (build_lib/ops/...), for wheels and plain installs."""

    def run(self):
        super().run()
        for src, dest in DATA_TREES.items():
            for path in sorted((ROOT / src).rglob("*")):
                if path.is_file() and path.suffix in SOURCE_SUFFIXES:
                    target = Path(self.build_lib) / dest / path.relative_to(ROOT / src)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)


class BuildOpforge(BuildExtension):
    """ops._C, then the TensorRT plugin library when TensorRT headers are found (OPFORGE_TRT=0 skips it)."""

    def finalize_options(self):
        super().finalize_options()
        # Compile where `python -m ops.build` does, not in a directory of pip's: ninja then reuses the objects
        # of whichever built first, so `pip install -e .` followed by `ops.build` (what make build runs), or a
        # wheel built after them, compiles only what changed instead of every kernel again.
        self.build_temp = str(object_dir("ops.library"))

    def run(self):
        super().run()
        build_trt_plugins()


def build_trt_plugins():
    import os

    from ops.trt import headers

    if os.environ.get("OPFORGE_TRT") == "0" or headers.find() is None:
        return
    from ops.trt.build import build

    print(f"opforge: built {build().library}")


setup(
    packages=find_packages(include=["ops", "ops.*"]),
    package_data={"ops.trt.harness": ["*.cpp"], "ops.scan": ["*.json"]},
    ext_modules=[extension("ops.library")],
    cmdclass={"build_ext": BuildOpforge, "build_py": BuildPyWithSources},
)
