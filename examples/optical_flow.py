"""Example (b): a small optical-flow network (PWC-Net style cost volume with opforge::correlation), converted
end to end: torch -> ONNX (opset 17, opset 20; dynamic batch) -> ONNX Runtime -> TensorRT step.

    python examples/optical_flow.py            # two 3x192x256 frames, batch 1/2/4
    python examples/optical_flow.py --small    # two 3x64x96 frames (what the test suite runs)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ops.deploy import Converter, example_main

PATCH = 9  # displacements -4..4 in each direction at 1/4 resolution


class FlowNet(torch.nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        self.encoder = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, stride=2, padding=1),
            torch.nn.LeakyReLU(0.1),
            torch.nn.Conv2d(width, width, 3, stride=2, padding=1),
            torch.nn.LeakyReLU(0.1),
        )
        self.decoder = torch.nn.Sequential(
            torch.nn.Conv2d(PATCH * PATCH + width, 64, 3, padding=1),
            torch.nn.LeakyReLU(0.1),
            torch.nn.Conv2d(64, 2, 3, padding=1),
        )

    def forward(self, frame1, frame2):
        f1, f2 = self.encoder(frame1), self.encoder(frame2)
        cost = torch.ops.opforge.correlation(f1, f2, [1, 1], [PATCH, PATCH], [1, 1], [0, 0], [1, 1], [1, 1])
        b, _, _, h, w = cost.shape
        cost = torch.nn.functional.leaky_relu(cost.reshape(b, PATCH * PATCH, h, w) / f1.shape[1], 0.1)
        flow = self.decoder(torch.cat([cost, f1], dim=1))
        return torch.nn.functional.interpolate(flow, scale_factor=4.0, mode="bilinear", align_corners=False) * 4.0


def make(small: bool = False):
    torch.manual_seed(0)
    height, width = (64, 96) if small else (192, 256)
    model = FlowNet(width=16 if small else 32).eval()

    def inputs(batch):
        frame1 = torch.randn(batch, 3, height, width)
        return frame1, torch.roll(frame1, shifts=(2, 3), dims=(2, 3)) + 0.05 * torch.randn_like(frame1)

    return model, inputs


def example():
    """(model, example args) at the small size, batch 1: python -m ops.scan examples.optical_flow:example (or ops.export)."""
    model, inputs = make(small=True)
    return model, inputs(1)


def convert(workdir: Path, small: bool = False, trt: bool = True, progress=print):
    model, inputs = make(small)
    return Converter(
        model,
        inputs,
        name="optical_flow",
        workdir=workdir,
        batches=(1, 2, 4),
        tolerance=(1e-3, 1e-3),
        progress=progress,
    ).run(trt=trt)


def main(argv=None) -> int:
    return example_main(
        __doc__, "optical flow (correlation cost volume), torch -> ONNX -> ORT -> TensorRT", convert, argv
    )


if __name__ == "__main__":
    sys.exit(main())
