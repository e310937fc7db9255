"""opforge as a user gets it: a wheel installed (not editable) into a fresh venv, used from an unrelated
directory, with the example user package (examples/user_package) built against it and checked, exported and
put into its own TensorRT plugin library.

Slow (a wheel build and a venv); it is the one test that proves the installed layout works. The venv gets
this interpreter's exact torch (the wheel's extension is built against it); with a CUDA torch the test skips
(see cuda_torch_here). ops.check in the venv must run and pass every stage this machine can run (MUST_PASS)."""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

# ~130 CPU-s with the venv (the library's ORT and TensorRT libraries built in it from the installed sources)
pytestmark = pytest.mark.slow(cpu_s=26)

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DEPS = [
    "numpy",
    "ninja",
    "setuptools>=77",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnx-graphsurgeon",
    "polygraphy==0.53.6",
]


def run(cmd, cwd, env, timeout=900):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"`{' '.join(map(str, cmd))}` exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


def torch_pin() -> str:
    """The torch the fresh venv installs: exactly this interpreter's (local label included, e.g. 2.13.0+cpu).
    The wheel's extension is compiled here, against this torch, and ops.torch.extension refuses to load an extension
    built for another torch version, so the venv must have this very build."""
    import torch

    return f"torch=={torch.__version__}"


def cuda_torch_here() -> str | None:
    """Why the test cannot run with this interpreter, or None. A CUDA torch (the GPU machine's 2.11+cu130) is
    the one case: the venv would need that same build, several GB with its nvidia-* wheels, which the test
    does not download (and the GPU machine reaches no package index)."""
    import torch

    if torch.version.cuda is not None:
        return (
            f"this interpreter's torch {torch.__version__} is a CUDA build: the wheel's extension is compiled "
            "against it, so the fresh venv would need that multi-GB CUDA torch too, which this test does not "
            "install (run it with a CPU torch, as CI does)"
        )
    return None


def trt_stages_run(env) -> bool:
    """The TensorRT plugin stages build and run here (host harness, no GPU needed) when TensorRT's headers are
    given to the venv and nvcc exists to compile the op's CUDA kernel into the plugin library."""
    from ops.native.cuda_kernels import cuda_home

    home = cuda_home()
    return "TRT_INCLUDE_DIR" in env and home is not None and (home / "bin" / "nvcc").is_file()


# The stages of `ops.check --quick` in the fresh venv (CPU torch, no GPU, no tensorrt package): these must run
# and pass; only those of MAY_SKIP may skip (with the TensorRT ones when trt_stages_run is false). A run in
# which a stage that must run skipped fails: "no FAIL" alone accepted a run in which everything skipped.
MUST_PASS = {
    "declaration",
    "build",
    "torch.cpu",
    "torch.opcheck[cpu]",
    "onnx.export",
    "ort.cpu",
    "ort.cpu.batch",
    "ort.fallback",
    "ort.polygraphy",
}
# CPU torch, no GPU, no tensorrt; triton.aot: the venv installs opforge without its [triton] extra (the stage then
# skips with the install command; tests/native and tests/examples/test_triton_ops.py cover it where triton is).
MAY_SKIP = {"torch.cuda", "torch.opcheck[cuda]", "trt.enqueue", "trt.engine", "triton.aot"}
TRT_STAGES = {"trt.plugin", "trt.harness"}


def stage_kind(stage: str) -> str:
    """'torch.cpu[float16]' -> 'torch.cpu'; opcheck keeps its device ('torch.opcheck[cpu]')."""
    return stage if stage.startswith("torch.opcheck[") else stage.split("[")[0]


def assert_stages_ran(rows: list[dict], env) -> None:
    must = MUST_PASS | (TRT_STAGES if trt_stages_run(env) else set())
    may_skip = MAY_SKIP | (set() if trt_stages_run(env) else TRT_STAGES)
    by_kind: dict[str, set] = {}
    for r in rows:
        by_kind.setdefault(stage_kind(r["stage"]), set()).add(r["status"])
    assert not [r for r in rows if r["status"] == "fail"], [r for r in rows if r["status"] == "fail"]
    assert {k for k in must if by_kind.get(k) != {"pass"}} == set(), by_kind
    unexpected = [
        (r["stage"], r["detail"]) for r in rows if r["status"] != "pass" and stage_kind(r["stage"]) not in may_skip
    ]
    assert not unexpected, unexpected


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv with the opforge wheel installed, env, an unrelated working directory)."""
    why = cuda_torch_here()
    if why is not None:
        pytest.skip(why)
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
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", tmp / "dist", ROOT], ROOT, env
    )
    (wheel,) = (tmp / "dist").glob("opforge-*.whl")
    venv.create(tmp / "venv", with_pip=True)
    python = tmp / "venv" / "bin" / "python"
    # --no-compile: pip would byte-compile every module of torch and the ONNX packages, thousands never imported here
    run([python, "-m", "pip", "install", "-q", "--no-compile", torch_pin(), *RUNTIME_DEPS], tmp, env)
    venv_torch = run([python, "-c", "import torch; print(torch.__version__)"], tmp, env).strip()
    assert f"torch=={venv_torch}" == torch_pin(), (venv_torch, torch_pin())
    run([python, "-m", "pip", "install", "-q", "--no-deps", wheel], tmp, env)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return python, env, elsewhere


def test_the_wheel_carries_sources_and_a_fresh_build(installed):
    python, env, elsewhere = installed
    out = run(
        [
            python,
            "-c",
            "import ops, ops.core.paths as p, ops.torch.extension as e; print(ops.__file__); "
            "print(p.csrc_dir()); print(p.plugins_dir()); print(e.status())",
        ],
        elsewhere,
        env,
    )
    where, csrc, plugins, status = out.strip().splitlines()
    site = Path(where).parent
    assert "site-packages" in where and Path(csrc) == site / "csrc" and Path(plugins) == site / "plugins"
    assert (site / "csrc" / "rms_norm" / "rms_norm_cuda.cu").is_file() and (
        site / "trt" / "harness" / "harness.cpp"
    ).is_file()
    assert "'loaded': True" in status, status


def test_console_scripts_are_installed(installed):
    python, env, elsewhere = installed
    for script in ("opforge-check", "opforge-build", "opforge-export", "opforge-new", "opforge-precision"):
        assert "usage:" in run([python.parent / script, "--help"], elsewhere, env)


def test_check_from_an_unrelated_directory(installed):
    """Two library ops through every stage (the whole library is checked by the rest of the suite; here what
    is proved is the installed layout, which every op shares)."""
    import json

    python, env, elsewhere = installed
    out = run(
        [python, "-m", "ops.check", "opforge::rms_norm", "opforge::scaled_gelu", "--quick", "--json"], elsewhere, env
    )
    report = json.loads(out)
    assert set(report["ops"]) == {"opforge::rms_norm", "opforge::scaled_gelu"} and report["ok"]
    for rows in report["ops"].values():
        assert_stages_ran(rows, env)


def test_export_and_trt_build_from_the_installed_package(installed):
    python, env, elsewhere = installed
    out = run(
        [python, "-m", "ops.export", "opforge::rms_norm", "-o", "r.onnx", "--opset", "17", "--check-ort"],
        elsewhere,
        env,
    )
    assert "ONNX Runtime ran it" in out
    if "TRT_INCLUDE_DIR" in env:
        out = run([python, "-m", "ops.build", "--trt"], elsewhere, env)
        assert "libopforge_trt_plugins.so" in out and str(Path(env["XDG_CACHE_HOME"]) / "opforge") in out, out


def test_the_example_user_package(installed, tmp_path):
    """examples/user_package: its own pyproject/setup.py, op package mypkg.ops, kernels in mypkg/csrc. Built
    with the documented hook against the installed opforge, then used from elsewhere through its entry point."""
    python, env, elsewhere = installed
    project = tmp_path / "user_package"
    shutil.copytree(
        ROOT / "examples" / "user_package",
        project,
        ignore=shutil.ignore_patterns("build", "*.so", "*.build.json", "__pycache__", "*.egg-info"),
    )
    run([python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", project], project, env)
    out = run([python, "-m", "ops.check", "mypkg::softclip", "--quick", "--json"], elsewhere, env)
    import json

    report = json.loads(out)
    rows = report["ops"]["mypkg::softclip"]
    assert report["ok"], [r for op in report["ops"].values() for r in op if r["status"] == "fail"]
    assert_stages_ran(rows, env)  # the user's op goes through the same stages as the library's
    out = run(
        [python, "-m", "ops.export", "mypkg::softclip", "-o", "s.onnx", "--opset", "20", "--check-ort"], elsewhere, env
    )
    assert "custom ops ['mypkg::softclip']" in out and "ONNX Runtime ran it" in out, out
    if "TRT_INCLUDE_DIR" in env:
        out = run([python, "-m", "ops.build", "--trt", "--package", "mypkg.ops"], elsewhere, env)
        assert "libmypkg_ops_trt_plugins.so" in out and "mypkg::softclip" in out, out
