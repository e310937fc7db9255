"""examples/cpp: a C++ program (no Python at inference) loads a model exported here, registers
libopforge_ort_ops.so and checks its outputs against torch values written next to the model."""

import subprocess

import numpy as np
import torch

import ops
from ops.onnx import export_onnx
from ops.ort.build import build_example

ELEM = {torch.float32: 1, torch.float16: 10, torch.bfloat16: 16, torch.int64: 7}


def write_tensors(path, tensors):
    """The example's .bin format: int32 ONNX element type, int32 rank, int64 dims, raw data; per tensor."""
    with open(path, "wb") as f:
        for t in tensors:
            t = t.detach().contiguous()
            f.write(np.array([ELEM[t.dtype], t.dim()], np.int32).tobytes())
            f.write(np.array(t.shape, np.int64).tobytes())
            raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
            f.write(raw.numpy().tobytes())


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(32, 32)
        self.weight = torch.nn.Parameter(1 + 0.1 * torch.randn(32))

    def forward(self, x):
        h = ops.get_op("opforge::rms_norm")(self.proj(x), self.weight, eps=1e-5)
        return ops.get_op("opforge::scaled_gelu")(h, alpha=1.702, approximate="tanh")


def _run_example(tmp_path, library, model, x, dtype, rtol, atol):
    model = model.to(dtype).eval()
    x = x.to(dtype)
    path = tmp_path / "block.onnx"
    export_onnx(model, (x,), path, opset=17, dynamic={0: {0: "batch"}})
    with torch.inference_mode():
        want = model(x)
    write_tensors(tmp_path / "inputs.bin", [x])
    write_tensors(tmp_path / "expected.bin", [want])
    exe = build_example(tmp_path / "ort_run_model")
    return subprocess.run(
        [exe, path, library.library, tmp_path / "inputs.bin", tmp_path / "expected.bin", str(rtol), str(atol)],
        capture_output=True,
        text=True,
        timeout=120,
        env={},
    )


def test_the_cpp_example_runs_the_model_and_matches_torch(tmp_path, library):
    torch.manual_seed(0)
    done = _run_example(tmp_path, library, Block(), torch.randn(8, 5, 32), torch.float32, 1e-5, 1e-5)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MATCH" in done.stdout and "ONNX Runtime 1." in done.stdout, done.stdout


def test_the_cpp_example_in_float16(tmp_path, library):
    torch.manual_seed(1)
    done = _run_example(tmp_path, library, Block(), torch.randn(3, 5, 32), torch.float16, 1e-2, 1e-2)
    assert done.returncode == 0 and "MATCH" in done.stdout, done.stdout + done.stderr


def test_the_cpp_example_reports_a_mismatch(tmp_path, library):
    """The comparison is real: a wrong expected tensor fails with a non-zero exit status."""
    torch.manual_seed(0)
    model, x = Block(), torch.randn(2, 5, 32)
    done = _run_example(tmp_path, library, model, x, torch.float32, 1e-5, 1e-5)
    assert done.returncode == 0
    with torch.inference_mode():
        write_tensors(tmp_path / "expected.bin", [model(x) + 1e-3])
    bad = subprocess.run(
        [
            tmp_path / "ort_run_model",
            tmp_path / "block.onnx",
            library.library,
            tmp_path / "inputs.bin",
            tmp_path / "expected.bin",
            "1e-5",
            "1e-5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={},
    )
    assert bad.returncode == 1 and "MISMATCH" in bad.stdout, bad.stdout + bad.stderr
