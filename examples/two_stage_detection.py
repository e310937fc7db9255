"""Example (f): the second stage of a two-stage detector: RoIAlign over FPN levels (opforge::roi_align), a box
head, box decoding, then class-aware NMS (opforge::batched_nms), converted end to end: torch -> ONNX (opset 17,
opset 20) -> ONNX Runtime -> TensorRT step.

    python examples/two_stage_detection.py          # 3x512x640 image, 4 FPN levels, 1000/300/100 proposals
    python examples/two_stage_detection.py --small  # 3x128x160 image, 100/40/10 proposals (the test suite's size)

The model takes the image and the proposals ([K, 5]: image index, x1, y1, x2, y2) from a first stage that
runs elsewhere, as deployments split it. Its batch is K, the number of proposals, not the image: the
conversion exports K dynamic (`Converter(batch_dims={1: 0})`) and runs ONNX Runtime at three proposal counts,
the way opforge::roi_align's own declaration varies its rois. Each proposal is pooled from the FPN level its
size selects (Mask R-CNN's rule: level = floor(4 + log2(sqrt(area) / 224)), clamped to P2..P5).

ONNX Runtime's detections are compared with torch's as a set (`match_detections`): NMS keeps the same boxes
from both, but two boxes whose scores differ by less than the backends' rounding (1e-6 here; ORT's MatMul and
torch's round differently) may come out in either order. Each detection must find a partner of the same class
within the tolerance; counts must agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ops.deploy import Converter, example_main

CLASSES, POOL, STRIDES = 20, 7, (4, 8, 16, 32)


class FPN(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        chans = [width, width * 2, width * 4, width * 8]
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 3, stride=2, padding=1),
            torch.nn.ReLU(),
        )
        self.downs = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Conv2d(chans[k], chans[k + 1], 3, stride=2, padding=1), torch.nn.ReLU())
            for k in range(3)
        )
        self.lateral = torch.nn.ModuleList(torch.nn.Conv2d(c, width, 1) for c in chans)
        self.smooth = torch.nn.ModuleList(torch.nn.Conv2d(width, width, 3, padding=1) for _ in chans)

    def forward(self, image):
        c = [self.stem(image)]
        for down in self.downs:
            c.append(down(c[-1]))
        p = [self.lateral[3](c[3])]
        for k in (2, 1, 0):
            up = torch.nn.functional.interpolate(p[0], size=c[k].shape[-2:], mode="nearest")
            p.insert(0, self.lateral[k](c[k]) + up)
        return [s(x) for s, x in zip(self.smooth, p)]  # P2..P5, strides 4..32


class SecondStage(torch.nn.Module):
    def __init__(self, width: int = 64, hidden: int = 256, iou_threshold: float = 0.5, max_output: int = 100):
        super().__init__()
        self.fpn = FPN(width)
        self.fc = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(width * POOL * POOL, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(),
        )
        self.cls = torch.nn.Linear(hidden, CLASSES + 1)
        self.deltas = torch.nn.Linear(hidden, 4)
        torch.nn.init.normal_(self.deltas.weight, std=0.001)
        torch.nn.init.zeros_(self.deltas.bias)
        self.iou_threshold, self.max_output = iou_threshold, max_output

    def pool(self, levels, proposals):
        """MultiScaleRoIAlign: every proposal pooled from its own level (computed on all levels and selected, so
        the graph has static shapes besides K)."""
        x1, y1, x2, y2 = proposals[:, 1], proposals[:, 2], proposals[:, 3], proposals[:, 4]
        size = torch.sqrt(((x2 - x1) * (y2 - y1)).clamp(min=1e-6))
        level = torch.floor(4 + torch.log2(size / 224 + 1e-6)).clamp(2, 5) - 2  # 0..3 for P2..P5
        pooled = None
        for k, (feature, stride) in enumerate(zip(levels, STRIDES)):
            y = torch.ops.opforge.roi_align(feature, proposals, POOL, POOL, 1.0 / stride, 2, True)
            y = y * (level == k).to(y.dtype).view(-1, 1, 1, 1)
            pooled = y if pooled is None else pooled + y
        return pooled

    def forward(self, image, proposals):
        h = self.fc(self.pool(self.fpn(image), proposals))
        probs = torch.softmax(self.cls(h), -1)[:, 1:]  # class 0 is background
        scores, labels = probs.max(-1)
        d = self.deltas(h)
        x1, y1, x2, y2 = proposals[:, 1], proposals[:, 2], proposals[:, 3], proposals[:, 4]
        w, hh = x2 - x1, y2 - y1
        cx, cy = x1 + 0.5 * w + d[:, 0] * w, y1 + 0.5 * hh + d[:, 1] * hh
        w, hh = w * torch.exp(d[:, 2].clamp(max=4.0)), hh * torch.exp(d[:, 3].clamp(max=4.0))
        boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * hh, cx + 0.5 * w, cy + 0.5 * hh], -1)
        keep, count = torch.ops.opforge.batched_nms(boxes, scores, labels, self.iou_threshold, self.max_output)
        return boxes[keep], scores[keep], labels[keep]


def match_detections(got, want, rtol: float, atol: float) -> tuple[bool, float]:
    """(ok, worst |diff|) of two (boxes [K, 4], scores [K], labels [K]) results as sets: each wanted detection is
    paired with the closest unpaired one of the same label; every pair must agree within atol + rtol * |want|."""
    boxes_g, scores_g, labels_g = (torch.as_tensor(t).cpu() for t in got)
    boxes_w, scores_w, labels_w = (torch.as_tensor(t).cpu() for t in want)
    if boxes_g.shape != boxes_w.shape:
        return False, float("inf")
    rows_g = torch.cat([boxes_g.float(), scores_g.float()[:, None]], 1)
    rows_w = torch.cat([boxes_w.float(), scores_w.float()[:, None]], 1)
    free, worst = torch.ones(len(rows_g), dtype=torch.bool), 0.0
    for k in range(len(rows_w)):
        candidates = free & (labels_g == labels_w[k])
        if not candidates.any():
            return False, float("inf")
        dist = (rows_g - rows_w[k]).abs().amax(1).masked_fill(~candidates, float("inf"))
        j = int(dist.argmin())
        if not bool(((rows_g[j] - rows_w[k]).abs() <= atol + rtol * rows_w[k].abs()).all()):
            return False, float(dist[j])
        free[j], worst = False, max(worst, float(dist[j]))
    return True, worst


def proposals(k: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    """[k, 5] proposals of image 0 with sizes spread over all four levels (16 to 400 pixels)."""
    g = torch.Generator().manual_seed(seed)
    size = torch.exp(torch.empty(k, 2).uniform_(2.8, 6.0, generator=g)).clamp(max=min(height, width) - 1)
    x1 = torch.rand(k, generator=g) * (width - size[:, 0])
    y1 = torch.rand(k, generator=g) * (height - size[:, 1])
    return torch.stack([torch.zeros(k), x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1)


def make(small: bool = False):
    torch.manual_seed(0)
    height, width = (128, 160) if small else (512, 640)
    model = SecondStage(width=16 if small else 64, hidden=64 if small else 256).eval()
    image = torch.randn(1, 3, height, width)
    return model, lambda k: (image, proposals(k, height, width))


def example():
    """(model, example args) at the small size: python -m ops.scan examples.two_stage_detection:example."""
    model, inputs = make(small=True)
    return model, inputs(40)


def convert(workdir: Path, small: bool = False, trt: bool = True, progress=print):
    model, inputs = make(small)
    return Converter(
        model,
        inputs,
        name="two_stage_detection",
        workdir=workdir,
        batches=(10, 40, 100) if small else (100, 300, 1000),
        batch_dims={1: 0},
        tolerance=(1e-4, 1e-4),
        compare=match_detections,
        progress=progress,
    ).run(trt=trt)


def main(argv=None) -> int:
    return example_main(
        __doc__,
        "two-stage detection head: RoIAlign over FPN + batched_nms, torch -> ONNX -> ORT -> TensorRT",
        convert,
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
