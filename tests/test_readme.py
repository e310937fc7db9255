"""The README's "Write your first op" section, executed: its files are written into a copy of the
project, which is built, checked, and run through the whole generated per-op suite. Proves that a new op
needs its declaration and kernels only."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```\w+ file=(\S+)\n(.*?)^```$", re.M | re.S)
SKIP_DIRS = {".git", ".venv", "build", ".hypothesis", ".pytest_cache", "__pycache__", ".whl"}


def readme_files() -> dict[str, str]:
    return {path: body for path, body in FENCE.findall((ROOT / "README.md").read_text())}


def test_readme_declares_a_complete_op():
    files = readme_files()
    # no header: the kernel prototypes are generated from the declaration
    assert set(files) == {"ops/library/scale_shift.py", "csrc/scale_shift/scale_shift_cpu.cpp",
                          "csrc/scale_shift/scale_shift_cuda.cu"}
    assert not any((ROOT / p).exists() for p in files), "the README op must be new to the project"


def _copy_project(dest: Path):
    def ignore(directory, names):
        return [n for n in names if n in SKIP_DIRS or n.startswith("_C.") or n.endswith(".so")]

    shutil.copytree(ROOT, dest, ignore=ignore)


def test_new_op_from_readme_builds_and_passes_check(tmp_path):
    project = tmp_path / "project"
    _copy_project(project)
    for path, body in readme_files().items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(body)
    path = os.pathsep.join(p for p in (str(project), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OPFORGE_TRT": "0"}
    headers = ROOT / "build" / "trt-headers" / "include"
    if headers.is_dir():
        env.setdefault("TRT_INCLUDE_DIR", str(headers))
    build = subprocess.run([sys.executable, "-m", "ops.build"], cwd=project, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    check = subprocess.run([sys.executable, "-m", "ops.check", "myops::scale_shift", "--quick", "--json"],
                           cwd=project, env=env, capture_output=True, text=True)
    report = json.loads(check.stdout)
    rows = report["ops"]["myops::scale_shift"]
    failed = [r for r in rows if r["status"] == "fail"]
    assert check.returncode == 0 and not failed, failed or check.stderr[-2000:]
    passed = {r["stage"].split("[")[0] for r in rows if r["status"] == "pass"}
    assert {"declaration", "build", "torch.cpu", "torch.opcheck", "onnx.export", "ort.cpu"} <= passed, passed
    if headers.is_dir():
        assert {"trt.plugin", "trt.harness"} <= passed, passed
    if _has_cuda():
        assert {"torch.cuda", "trt.enqueue"} <= passed, passed
    # ... and the whole generated per-op suite, restricted to the new op
    suite = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--op", "myops::scale_shift",
                            "tests/torch", "tests/onnx/test_onnx_fallback.py"], cwd=project, env=env,
                           capture_output=True, text=True)
    tail = suite.stdout[-3000:] + suite.stderr[-2000:]
    assert suite.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail, tail


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
