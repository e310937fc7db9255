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


def test_detections_are_compared_as_a_set():
    """two_stage_detection.match_detections: the same detections in another order match; a moved box, another
    label or a missing detection does not."""
    import torch

    match = _load("two_stage_detection").match_detections
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0], [30.0, 30.0, 40.0, 50.0]])
    scores, labels = torch.tensor([0.9, 0.9000001, 0.5]), torch.tensor([3, 3, 7])
    want = (boxes, scores, labels)
    order = torch.tensor([1, 0, 2])
    assert match((boxes[order], scores[order], labels[order]), want, 1e-4, 1e-4) == (True, 0.0)
    moved = boxes.clone()
    moved[2, 0] += 1.0
    assert not match((moved, scores, labels), want, 1e-4, 1e-4)[0]
    assert not match((boxes, scores, torch.tensor([3, 3, 8])), want, 1e-4, 1e-4)[0]
    assert match((boxes[:2], scores[:2], labels[:2]), want, 1e-4, 1e-4) == (False, float("inf"))
