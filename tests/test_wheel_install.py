"""opforge as a user gets it: a wheel installed (not editable) into a fresh venv, used from an unrelated
directory, with the example user package (examples/user_package) built against it and checked, exported and
put into its own TensorRT plugin library.

Slow (a wheel build and a venv); it is the one test that proves the installed layout works."""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"  # the Makefile's pin: an unpinned torch would pull a multi-GB CUDA build
RUNTIME_DEPS = ["numpy", "ninja", "setuptools>=77", "onnx", "onnxscript", "onnxruntime", "onnx-graphsurgeon",
                "polygraphy==0.53.6"]


def run(cmd, cwd, env, timeout=900):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"`{' '.join(map(str, cmd))}` exited {done.returncode}:\n" \
                                 f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv with the opforge wheel installed, env, an unrelated working directory)."""
    import torch

    if torch.__version__.split("+")[0] != TORCH_PIN.split("==")[1]:
        pytest.skip(f"the fresh venv pins {TORCH_PIN} (this machine's CPU wheel); this interpreter has torch "
                    f"{torch.__version__}")
    tmp = tmp_path_factory.mktemp("wheel")
    # The venv's processes write the .pyc of what they import (see the --no-compile below)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
    env.update(XDG_CACHE_HOME=str(tmp / "cache"), OPFORGE_TRT="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    headers = ROOT / "build" / "trt-headers" / "include"
    if headers.is_dir():  # the headers CI fetched; an installed opforge would fetch its own into the cache
        env["TRT_INCLUDE_DIR"] = str(headers)
    ort_headers = ROOT / "build" / "ort-headers" / "include"
    if ort_headers.is_dir():  # likewise the ONNX Runtime headers (else fetched into the cache with apt-get)
        env["ORT_INCLUDE_DIR"] = str(ort_headers)
    run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", tmp / "dist", ROOT],
        ROOT, env)
    (wheel,) = (tmp / "dist").glob("opforge-*.whl")
    venv.create(tmp / "venv", with_pip=True)
    python = tmp / "venv" / "bin" / "python"
    # --no-compile: pip would byte-compile every module of torch and the ONNX packages, thousands never imported here
    run([python, "-m", "pip", "install", "-q", "--no-compile", TORCH_PIN, *RUNTIME_DEPS], tmp, env)
    run([python, "-m", "pip", "install", "-q", "--no-deps", wheel], tmp, env)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return python, env, elsewhere


def test_the_wheel_carries_sources_and_a_fresh_build(installed):
    python, env, elsewhere = installed
    out = run([python, "-c", "import ops, ops.paths as p, ops.extension as e; print(ops.__file__); "
               "print(p.csrc_dir()); print(p.plugins_dir()); print(e.status())"], elsewhere, env)
    where, csrc, plugins, status = out.strip().splitlines()
    site = Path(where).parent
    assert "site-packages" in where and Path(csrc) == site / "csrc" and Path(plugins) == site / "plugins"
    assert (site / "csrc" / "rms_norm" / "rms_norm_cuda.cu").is_file() and (site / "trt" / "harness" / "harness.cpp").is_file()
    assert "'loaded': True" in status, status


def test_console_scripts_are_installed(installed):
    python, env, elsewhere = installed
    for script in ("opforge-check", "opforge-build", "opforge-export"):
        assert "usage:" in run([python.parent / script, "--help"], elsewhere, env)


def test_check_from_an_unrelated_directory(installed):
    """Two library ops through every stage (the whole library is checked by the rest of the suite; here what
    is proved is the installed layout, which every op shares)."""
    python, env, elsewhere = installed
    out = run([python, "-m", "ops.check", "opforge::rms_norm", "opforge::scaled_gelu", "--quick"], elsewhere, env)
    assert "opforge::rms_norm" in out and "opforge::scaled_gelu" in out and "FAIL" not in out, out


def test_export_and_trt_build_from_the_installed_package(installed):
    python, env, elsewhere = installed
    out = run([python, "-m", "ops.export", "opforge::rms_norm", "-o", "r.onnx", "--opset", "17", "--check-ort"],
              elsewhere, env)
    assert "ONNX Runtime ran it" in out
    if "TRT_INCLUDE_DIR" in env:
        out = run([python, "-m", "ops.build", "--trt"], elsewhere, env)
        assert "libopforge_trt_plugins.so" in out and str(Path(env["XDG_CACHE_HOME"]) / "opforge") in out, out


def test_the_example_user_package(installed, tmp_path):
    """examples/user_package: its own pyproject/setup.py, op package mypkg.ops, kernels in mypkg/csrc. Built
    with the documented hook against the installed opforge, then used from elsewhere through its entry point."""
    python, env, elsewhere = installed
    project = tmp_path / "user_package"
    shutil.copytree(ROOT / "examples" / "user_package", project,
                    ignore=shutil.ignore_patterns("build", "*.so", "*.build.json", "__pycache__", "*.egg-info"))
    run([python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", project], project, env)
    out = run([python, "-m", "ops.check", "mypkg::softclip", "--quick", "--json"], elsewhere, env)
    import json

    report = json.loads(out)
    rows = report["ops"]["mypkg::softclip"]
    assert report["ok"], [r for op in report["ops"].values() for r in op if r["status"] == "fail"]
    passed = {r["stage"].split("[")[0] for r in rows if r["status"] == "pass"}
    assert {"declaration", "build", "torch.cpu", "torch.opcheck", "onnx.export", "ort.cpu"} <= passed, passed
    out = run([python, "-m", "ops.export", "mypkg::softclip", "-o", "s.onnx", "--opset", "20", "--check-ort"],
              elsewhere, env)
    assert "custom ops ['mypkg::softclip']" in out and "ONNX Runtime ran it" in out, out
    if "TRT_INCLUDE_DIR" in env:
        out = run([python, "-m", "ops.build", "--trt", "--package", "mypkg.ops"], elsewhere, env)
        assert "libmypkg_ops_trt_plugins.so" in out and "mypkg::softclip" in out, out
        assert "trt.harness" in passed, passed
