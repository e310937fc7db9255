"""trtexec command, engine builder (needs TensorRT), header discovery, and the standalone CMake project."""

import shutil
import subprocess

import pytest

from ops.core.errors import BackendUnavailable, OpforgeError
from ops.trt import headers
from ops.trt.trtexec import command, main, parse_shapes


def test_trtexec_command(capsys):
    assert (
        main(
            [
                "model.onnx",
                "--shapes",
                "x:1x8,4x8,16x8",
                "--shapes",
                "w:8,8,8",
                "--save",
                "m.engine",
                "--plugins",
                "/opt/lib/libopforge_trt_plugins.so",
            ]
        )
        == 0
    )
    line = capsys.readouterr().out.strip()
    assert line == (
        "trtexec --onnx=model.onnx --dynamicPlugins=/opt/lib/libopforge_trt_plugins.so --stronglyTyped "
        "--minShapes=x:1x8,w:8 --optShapes=x:4x8,w:8 --maxShapes=x:16x8,w:8 --saveEngine=m.engine"
    )


@pytest.mark.parametrize("bad", ["x:1x8,4x8", "1x8,4x8,16x8", "x:1x8,4xa,16x8", "x:,,"])
def test_trtexec_rejects_bad_shapes(bad):
    with pytest.raises(OpforgeError, match="NAME:MIN,OPT,MAX"):
        parse_shapes([bad])


def test_trtexec_without_shapes_has_no_profile_flags():
    assert command("m.onnx", {}, "lib.so") == ["trtexec", "--onnx=m.onnx", "--dynamicPlugins=lib.so", "--stronglyTyped"]


def test_build_engine_without_tensorrt_says_so(tmp_path, monkeypatch):
    """The error path, checked everywhere: with `import tensorrt` failing (as on this machine; forced where
    TensorRT is installed), build_engine raises BackendUnavailable saying what is missing and how to fix it."""
    import sys

    from ops.trt import build_engine

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(BackendUnavailable) as e:
        build_engine(tmp_path / "m.onnx", {"x": ((1, 8), (4, 8), (16, 8))})
    assert "TensorRT's Python package is not installed" in str(e.value)
    assert "pip install tensorrt" in str(e.value)
    assert not (tmp_path / "m.engine").exists()


def _tensorrt_or_skip():
    try:
        import tensorrt
    except ImportError:
        pytest.skip("TensorRT library not installed")
    return tensorrt


def test_engine_builds_with_tensorrt(tmp_path):
    trt = _tensorrt_or_skip()
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    import ops
    from ops.onnx import export_onnx
    from ops.onnx.models import single_op_module
    from ops.trt import build_engine

    op = ops.get_op("opforge::scaled_gelu")
    x = torch.randn(4, 8, device="cuda", dtype=torch.float16)
    export_onnx(single_op_module(op, {"alpha": 2.0}), (x,), tmp_path / "m.onnx", opset=17, dynamic=True)
    data = build_engine(tmp_path / "m.onnx", {"x": ((1, 8), (4, 8), (16, 8))}, tmp_path / "m.engine")
    assert len(data) > 0 and (tmp_path / "m.engine").exists(), trt.__version__


def test_engine_shapes_are_validated():
    from ops.trt.engine import _profiles

    with pytest.raises(OpforgeError, match="min <= opt <= max"):
        _profiles({"x": ((4, 8), (1, 8), (16, 8))})
    assert len(_profiles([{"x": ((1,), (2,), (3,))}, {"x": ((4,), (5,), (6,))}])) == 2


def test_headers_env_override(tmp_path, monkeypatch):
    found = headers.find()
    if found is None:
        pytest.skip("no TensorRT headers here (run python -m ops.trt.headers)")
    monkeypatch.setenv("TRT_INCLUDE_DIR", str(found))
    assert headers.find() == found
    assert headers.version(found)[0] >= 10
    monkeypatch.setenv("TRT_INCLUDE_DIR", str(tmp_path))  # no headers there: falls through to the next
    assert headers.find() != tmp_path


@pytest.mark.slow(cpu_s=30)
@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("nvcc") is None, reason="needs cmake and nvcc")
def test_cmake_project_configures_and_builds(tmp_path):
    """The emitted project builds against the headers alone (no TensorRT libraries, no Python)."""
    from ops.trt.build import cuda_home, emit_cmake

    include = headers.find()
    if include is None:
        pytest.skip("no TensorRT headers here (run python -m ops.trt.headers)")
    src = emit_cmake(tmp_path / "proj", archs="75").parent  # CI speed; Jetson Orin: 87 (the default)
    text = (src / "CMakeLists.txt").read_text()
    assert "find_package(Python" not in text and "Torch" not in text and "nvinfer" not in text.replace("nvinfer1", "")
    cfg = subprocess.run(
        [
            "cmake",
            "-S",
            str(src),
            "-B",
            str(tmp_path / "b"),
            f"-DTRT_INCLUDE_DIR={include}",
            f"-DCMAKE_CUDA_COMPILER={cuda_home() / 'bin' / 'nvcc'}",
        ],
        capture_output=True,
        text=True,
    )
    assert cfg.returncode == 0, cfg.stdout[-3000:] + cfg.stderr[-3000:]
    done = subprocess.run(["cmake", "--build", str(tmp_path / "b"), "-j2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lib = tmp_path / "b" / "libopforge_trt_plugins.so"
    needed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
    assert "libnvinfer" not in needed and (tmp_path / "b" / "libopforge_trt_plugins_static.so").exists()
