"""examples/inductor_ops: an op package whose CUDA kernels nobody wrote (README, "CUDA kernels from the reference:
Inductor"). Built here without a GPU: the build lowers each reference with Inductor, compiles the Triton kernel it
writes ahead of time for sm_87 and sm_90, and links the launcher into the ONNX Runtime library's CUDA variant and
the TensorRT plugin library (the torch extension here is CPU-only; on a CUDA torch the launcher is its CUDA
kernel, VERIFICATION.md). ops.check passes every stage that runs here, its Triton AOT stage included, with no
warning lines. The kernels' numbers are tests/native/test_inductor_capture.py's (Triton's interpreter)."""

import ctypes
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from triton_packages import built_copy

from ops.check import FAIL, PASS
from ops.trt import headers

pytest.importorskip("triton", reason="triton is not installed (pip install 'opforge[triton]')")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "inductor_ops"
OPS = ("indops::scale_shift", "indops::gated_rms_norm", "indops::softmax")
pytestmark = pytest.mark.slow(cpu_s=120)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the example (the tree stays clean), its three native libraries built."""
    return built_copy(tmp_path_factory, "inductor_ops", "indops")


def _manifest(library: Path, op: str) -> dict:
    fn = getattr(ctypes.CDLL(str(library)), f"opforge_triton_manifest_{op.replace('::', '__')}")
    fn.restype = ctypes.c_char_p
    return json.loads(fn())


def test_the_build_captures_inductors_kernels_and_links_them_into_the_ort_and_trt_libraries(project):
    root, _ = project
    capture = json.loads(
        (root / "build" / "opforge" / "indops" / "inductor" / "indops_gated_rms_norm" / "capture.json").read_text()
    )
    assert capture["args"]["r0_numel"] == "x.shape[-1]" and capture["int64"] == ["ks0"]
    softmax = json.loads(
        (root / "build" / "opforge" / "indops" / "inductor" / "indops_softmax" / "capture.json").read_text()
    )
    assert {"scratch": "numel(x)", "dtype": "float32"} in softmax["args"].values()  # Inductor's float32 buffer
    libs = {p.name: p for p in (root / "build").rglob("lib*.so")}
    wanted = ["libindops_ort_ops.so"] + (["libindops_trt_plugins.so"] if headers.find() else [])
    for name in wanted:
        for op, configs in (("indops::scale_shift", 3), ("indops::gated_rms_norm", 5), ("indops::softmax", 5)):
            held = _manifest(libs[name], op)
            assert held["archs"] == [87, 90] and held["kernel"].endswith("_inductor_0"), (name, held)
            assert held["kernels"] == 3 * 2 * configs, held  # dtype variants x aligned/generic x configs


def test_ops_check_passes_the_cpu_stages_and_the_aot_stage_without_warnings(project):
    root, env = project
    done = subprocess.run(
        [sys.executable, "-m", "ops.check", *OPS, "--package", "indops", "--quick", "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    report = json.loads(done.stdout)["ops"]
    for op in OPS:
        rows = {r["stage"]: r for r in report[op]}
        failed = [f"{s}: {r['detail'][:300]}" for s, r in rows.items() if r["status"] == FAIL]
        assert not failed, (op, failed)
        for needed in ("torch.cpu[float32]", "ort.cpu[float16]", "onnx.export[dynamo-20]", "triton.aot"):
            assert rows[needed]["status"] == PASS, (op, needed, rows.get(needed))
        assert rows["triton.aot"]["detail"].startswith("Inductor's kernel for the reference")
        if headers.find() is not None:
            assert rows["triton.linked"]["status"] == PASS, rows["triton.linked"]
    assert done.returncode == 0
    noise = [line for line in done.stderr.splitlines() if "Warning" in line or "warn(" in line or "leaked" in line]
    assert not noise, noise


def test_the_readme_shows_the_example_as_it_is():
    blocks = re.findall(r"^```\w+ example=(\S+)\n(.*?)^```$", (ROOT / "README.md").read_text(), re.M | re.S)
    blocks = [(path, body) for path, body in blocks if path.startswith("examples/inductor_ops/")]
    assert [path for path, _ in blocks] == ["examples/inductor_ops/indops/gated_rms_norm.py"]
    for path, body in blocks:
        assert (ROOT / path).read_text() == body, path
