"""Example (c): a detection head whose post-processing is opforge::batched_nms (class-aware NMS with a
data-dependent number of detections), converted end to end: torch -> ONNX (opset 17, opset 20) -> ONNX
Runtime -> TensorRT step. One image per call (NMS output length is per image).

    python examples/detection.py            # a 3x256x320 image, 16x20 grid x 3 anchors x 80 classes
    python examples/detection.py --small    # a 3x128x160 image (what the test suite runs)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ops.deploy import Converter, example_main

CLASSES, ANCHORS, STRIDE = 80, 3, 16


class Detector(torch.nn.Module):
    def __init__(self, width: int = 64, iou_threshold: float = 0.5, max_output: int = 100):
        super().__init__()
        self.backbone = torch.nn.Sequential(
            *[
                m
                for k in range(4)
                for m in (torch.nn.Conv2d(3 if k == 0 else width, width, 3, stride=2, padding=1), torch.nn.ReLU())
            ]
        )
        self.box = torch.nn.Conv2d(width, ANCHORS * 4, 1)
        self.cls = torch.nn.Conv2d(width, ANCHORS * CLASSES, 1)
        self.iou_threshold, self.max_output = iou_threshold, max_output

    def forward(self, image):
        h = self.backbone(image)
        n, _, gh, gw = h.shape
        ys = (torch.arange(gh, dtype=image.dtype) + 0.5) * STRIDE
        xs = (torch.arange(gw, dtype=image.dtype) + 0.5) * STRIDE
        cy, cx = ys.view(1, gh, 1, 1).expand(1, gh, gw, ANCHORS), xs.view(1, 1, gw, 1).expand(1, gh, gw, ANCHORS)
        d = self.box(h).view(n, ANCHORS, 4, gh, gw).permute(0, 3, 4, 1, 2)  # [n, gh, gw, A, 4]
        size = STRIDE * 2 * torch.exp(d[..., 2:].clamp(max=4.0))
        centre_x, centre_y = cx + d[..., 0] * STRIDE, cy + d[..., 1] * STRIDE
        boxes = torch.stack(
            [
                centre_x - size[..., 0] / 2,
                centre_y - size[..., 1] / 2,
                centre_x + size[..., 0] / 2,
                centre_y + size[..., 1] / 2,
            ],
            dim=-1,
        ).reshape(-1, 4)
        probs = torch.sigmoid(self.cls(h).view(n, ANCHORS, CLASSES, gh, gw).permute(0, 3, 4, 1, 2)).reshape(-1, CLASSES)
        scores, labels = probs.max(dim=1)
        keep, count = torch.ops.opforge.batched_nms(boxes, scores, labels, self.iou_threshold, self.max_output)
        return boxes[keep], scores[keep], labels[keep]


def make(small: bool = False):
    torch.manual_seed(0)
    height, width = (128, 160) if small else (256, 320)
    model = Detector(width=32 if small else 64).eval()
    return model, lambda batch: (torch.randn(batch, 3, height, width),)


def example():
    """(model, example args) at the small size, batch 1: python -m ops.scan examples.detection:example (or ops.export)."""
    model, inputs = make(small=True)
    return model, inputs(1)


def convert(workdir: Path, small: bool = False, trt: bool = True, progress=print):
    model, inputs = make(small)
    return Converter(
        model, inputs, name="detection", workdir=workdir, batches=(1,), tolerance=(1e-4, 1e-4), progress=progress
    ).run(trt=trt)


def main(argv=None) -> int:
    return example_main(__doc__, "detection head with batched_nms, torch -> ONNX -> ORT -> TensorRT", convert, argv)


if __name__ == "__main__":
    sys.exit(main())
