"""The README's "Write your first op" section, executed: its files are written into an empty directory (the op
package `myops` of a user's own, as the README lays it out), built with the README's commands, checked, and run
through the whole generated per-op suite. Proves that a new op needs its declaration and kernels only.

Only the new op is compiled, as for a user: the built-in ops are built and tested by the rest of the suite.
(It used to build a copy of the whole project: every built-in op compiled again for torch, ONNX Runtime and
TensorRT, most of its 5½ minutes on the 2-core CI machine.)"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ops

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```\w+ file=(\S+)\n(.*?)^```$", re.M | re.S)
PACKAGE = "myops"
OP = "myops::scale_shift"
BUILD = [["ops.build", "--package", PACKAGE], ["ops.build", "--trt", "--package", PACKAGE]]  # README step 3
CHECK = ["ops.check", OP, "--package", PACKAGE]


def readme_files() -> dict[str, str]:
    return {path: body for path, body in FENCE.findall(readme())}


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_declares_a_complete_op():
    files = readme_files()
    # no header: the kernel prototypes are generated from the declaration
    assert set(files) == {
        "myops/__init__.py",
        "myops/scale_shift.py",
        "myops/csrc/scale_shift/scale_shift_cpu.cpp",
        "myops/csrc/scale_shift/scale_shift_cuda.cu",
    }
    assert OP not in {op.id for op in ops.all_ops()}, "the README op must be new to opforge"
    for argv in [*BUILD, CHECK]:  # the commands this file runs are the ones the README shows
        assert f"python -m {' '.join(argv)}" in readme(), argv


def _write_readme_files(project: Path):
    for path, body in readme_files().items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(body)


def _env(tmp_path: Path, project: Path) -> dict:
    """opforge from this checkout, the op package from `project`. A directory without a pyproject.toml builds
    into the user cache, which is pointed into tmp_path to leave the machine's own cache alone."""
    path = os.pathsep.join(p for p in (str(project), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "XDG_CACHE_HOME": str(tmp_path / "cache")}


def _trt_headers() -> bool:
    from ops.trt import headers

    return headers.find() is not None


@pytest.mark.slow(cpu_s=55)
def test_new_op_from_readme_builds_and_passes_check(tmp_path):
    project = tmp_path / "project"
    _write_readme_files(project)
    env = _env(tmp_path, project)

    def run(argv, cwd=project):
        return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=env, capture_output=True, text=True)

    for argv in BUILD:
        if "--trt" in argv and not _trt_headers():
            continue  # ops.check then skips the TensorRT stages, saying why
        build = run(argv)
        assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    check = run([*CHECK, "--quick", "--json"])
    report = json.loads(check.stdout)
    rows = report["ops"][OP]
    failed = [r for r in rows if r["status"] == "fail"]
    assert check.returncode == 0 and not failed, failed or check.stderr[-2000:]
    passed = {r["stage"].split("[")[0] for r in rows if r["status"] == "pass"}
    assert {"declaration", "build", "torch.cpu", "torch.opcheck", "onnx.export", "ort.cpu"} <= passed, passed
    if _trt_headers():
        assert {"trt.plugin", "trt.harness"} <= passed, passed
    if _has_cuda():
        assert {"torch.cuda", "trt.enqueue"} <= passed, passed
    # ... and the whole generated per-op suite for the new op: -k keeps the tests whose id names it (the
    # generated ones; the others test the built-in ops, as the rest of this suite does)
    suite = run(
        [
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--package",
            PACKAGE,
            "--op",
            OP,
            "-k",
            OP,
            "tests/torch",
            "tests/onnx/test_onnx_fallback.py",
        ],
        cwd=ROOT,
    )
    tail = suite.stdout[-3000:] + suite.stderr[-2000:]
    assert suite.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail, tail


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
