"""examples/triton_ops: an op package whose CUDA kernel is a Triton kernel (README, "CUDA kernels in Triton").
Built here without a GPU: Triton compiles the kernel ahead of time for sm_87 and sm_90, and the generated launcher
is linked into the ONNX Runtime library's CUDA variant and the TensorRT plugin library (the torch extension here
is built against a CPU-only torch, so it has no CUDA kernels at all: on a CUDA torch the same launcher is its CUDA
kernel). ops.check passes every stage that runs here, its Triton AOT stage included, with no warning lines."""

import ctypes
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from triton_packages import built_copy

from ops.check import FAIL, PASS
from ops.native.cuda_kernels import cuda_home
from ops.trt import headers

pytest.importorskip("triton", reason="triton is not installed (pip install 'opforge[triton]')")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "triton_ops"
OP = "tritonops::scale_shift"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the example (the tree stays clean), its three native libraries built."""
    return built_copy(tmp_path_factory, "triton_ops", "tritonops")


def _manifest(library: Path) -> dict:
    fn = ctypes.CDLL(str(library)).opforge_triton_manifest_tritonops__scale_shift
    fn.restype = ctypes.c_char_p
    return json.loads(fn())


def test_the_ort_and_trt_libraries_hold_the_aot_kernels_for_sm87_and_sm90(project):
    root, _ = project
    libs = {p.name: p for p in (root / "build").rglob("lib*.so")}
    wanted = ["libtritonops_ort_ops.so"] + (["libtritonops_trt_plugins.so"] if headers.find() else [])
    for name in wanted:
        held = _manifest(libs[name])
        assert held["archs"] == [87, 90] and held["kernel"] == "scale_shift_kernel", (name, held)
        assert held["kernels"] == 3 * 2 * 2, held  # 3 dtypes x aligned/generic x 2 configs
        assert held["configs"] == ["BLOCK=1024,w4,s3", "BLOCK=4096,w8,s3"]


def test_ops_check_passes_the_cpu_stages_and_the_aot_stage_without_warnings(project):
    root, env = project
    done = subprocess.run(
        [sys.executable, "-m", "ops.check", OP, "--package", "tritonops", "--quick", "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    rows = {r["stage"]: r for r in json.loads(done.stdout)["ops"][OP]}
    failed = [f"{s}: {r['detail'][:300]}" for s, r in rows.items() if r["status"] == FAIL]
    assert done.returncode == 0 and not failed, failed
    for needed in ("torch.cpu[float32]", "ort.cpu[float16]", "onnx.export[dynamo-20]", "triton.aot"):
        assert rows[needed]["status"] == PASS, (needed, rows.get(needed))
    assert rows["triton.aot"]["metrics"]["archs"] == [87, 90]
    if headers.find() is not None:
        assert rows["triton.linked"]["status"] == PASS, rows["triton.linked"]
    noise = [line for line in done.stderr.splitlines() if "Warning" in line or "warn(" in line]
    assert not noise, noise


def test_the_cmake_export_carries_the_launcher_and_its_images(project, tmp_path):
    root, env = project
    if headers.find() is None:
        pytest.skip("no TensorRT headers: the CMake export is not written")
    dest = tmp_path / "cmake"
    done = subprocess.run(
        [sys.executable, "-m", "ops.build", "--trt-cmake", str(dest), "--package", "tritonops"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    launcher = dest / "csrc" / "scale_shift" / "tritonops_scale_shift_triton.cpp"  # host C++: CMake builds it as CXX
    blob = launcher.with_suffix(".bin")
    assert launcher.is_file() and blob.stat().st_size > 0
    assert '.incbin \\"csrc/scale_shift/tritonops_scale_shift_triton.bin\\"' in launcher.read_text()
    cmake = (dest / "CMakeLists.txt").read_text()
    assert "csrc/scale_shift/tritonops_scale_shift_triton.cpp" in cmake and "-Wa,-I${CMAKE_CURRENT_SOURCE_DIR}" in cmake
    assert (dest / "csrc" / "opforge" / "triton_launch.h").is_file() and not (dest / "gen" / "triton").exists()
    if shutil.which("cmake") is None:
        return  # the files are checked above; building them needs cmake
    cfg = subprocess.run(
        ["cmake", "-S", str(dest), "-B", str(tmp_path / "b"), f"-DTRT_INCLUDE_DIR={headers.find()}"]
        + [f"-DCMAKE_CUDA_COMPILER={cuda_home() / 'bin' / 'nvcc'}", "-DCMAKE_CUDA_ARCHITECTURES=90"],
        capture_output=True,
        text=True,
    )
    assert cfg.returncode == 0, cfg.stdout[-3000:] + cfg.stderr[-3000:]
    done = subprocess.run(["cmake", "--build", str(tmp_path / "b"), "-j2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _manifest(tmp_path / "b" / "libtritonops_trt_plugins.so")["archs"] == [87, 90]


def test_the_readme_shows_the_example_as_it_is():
    blocks = re.findall(r"^```\w+ example=(\S+)\n(.*?)^```$", (ROOT / "README.md").read_text(), re.M | re.S)
    blocks = [(path, body) for path, body in blocks if path.startswith("examples/triton_ops/")]
    assert {path for path, _ in blocks} == {
        "examples/triton_ops/tritonops/scale_shift.py",
        "examples/triton_ops/tritonops/csrc/scale_shift/scale_shift_triton.py",
    }
    for path, body in blocks:
        assert (ROOT / path).read_text() == body, path
