"""What the tests of the Triton example packages share (examples/triton_ops, examples/inductor_ops): a copy of the
example with its three native libraries built, so the tree stays clean."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.native.cuda_kernels import cuda_home
from ops.trt import headers

ROOT = Path(__file__).resolve().parents[2]


def built_copy(tmp_path_factory, example: str, package: str) -> tuple[Path, dict]:
    """examples/<example> copied and built (torch extension, ORT library, and the TensorRT plugin library where
    the headers are): the copy and the environment that imports it."""
    if cuda_home() is None:
        pytest.skip("nvcc is not installed: the Triton launcher is compiled by it")
    project = tmp_path_factory.mktemp(example) / example
    ignore = shutil.ignore_patterns("build", "*.so", "_C.build.json", "__pycache__")
    shutil.copytree(ROOT / "examples" / example, project, ignore=ignore)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(project)])}
    builds = [["ops.build", "--package", package], ["ops.ort.build", "--package", package]]
    if headers.find() is not None:
        builds.append(["ops.build", "--trt", "--package", package])
    for argv in builds:
        done = subprocess.run([sys.executable, "-m", *argv], cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (argv, done.stdout[-3000:] + done.stderr[-3000:])
    return project, env
