"""The example models (examples/segmentation.py, optical_flow.py, detection.py, deformable_detr.py,
two_stage_detection.py) convert end to end at
their small sizes: every step that can run here passes (torch, both ONNX exports, ORT at every batch, the
plugin harness on every opforge node); the steps that need TensorRT or a GPU say so instead of passing."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"opforge_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name", ["segmentation", "optical_flow", "detection", "deformable_detr", "two_stage_detection"]
)
def test_example_converts_end_to_end(name, tmp_path):
    steps = _load(name).convert(tmp_path, small=True, trt=True, progress=lambda line: None)
    by_name = {s.name: s for s in steps}
    failed = [f"{s.name}: {s.detail}" for s in steps if s.result == "FAIL"]
    assert not failed, failed
    for opset, exporter in ((17, "torchscript"), (20, "dynamo")):
        assert by_name[f"onnx.export[{exporter}-{opset}]"].result == "PASS"
        assert by_name[f"ort.cpu[opset {opset}]"].result == "PASS"
        plugins = by_name[f"trt.plugins[opset {opset}]"]
        assert plugins.result == "PASS" and plugins.metrics["nodes"] >= 1, plugins.detail
        engine = by_name[f"trt.engine[opset {opset}]"]
        assert engine.result == "PASS" or "trtexec --onnx=" in engine.detail, engine.detail
