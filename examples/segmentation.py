"""Example (a): a small segmentation network with DCNv2, RMSNorm and scaled GELU, converted end to end.

    python examples/segmentation.py                  # 3x360x640, batch 1/4/8 (TensorRT profile min 1, opt 4, max 8)
    python examples/segmentation.py --small          # 3x96x160, quick (what the test suite runs)

torch -> ONNX (opset 17 TorchScript, opset 20 dynamo, dynamic batch) -> ONNX Runtime at every batch ->
TensorRT (engine where installed; the trtexec command and the plugin harness on every opforge node, with a
GPU enqueue where CUDA exists). Ends with a summary table; exit status 1 if any step failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ops.deploy import Converter, example_main


class DeformBlock(torch.nn.Module):
    """DCNv2 (offsets and a sigmoid mask predicted from the input) -> RMSNorm over channels -> scaled GELU."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        taps = kernel * kernel
        self.offset_mask = torch.nn.Conv2d(channels, 3 * taps, kernel, padding=kernel // 2)
        torch.nn.init.normal_(self.offset_mask.weight, std=0.01)  # offsets of a few pixels, as after training
        torch.nn.init.zeros_(self.offset_mask.bias)
        self.weight = torch.nn.Parameter(torch.randn(channels, channels, kernel, kernel) / (channels * taps) ** 0.5)
        self.bias = torch.nn.Parameter(torch.zeros(channels))
        self.norm = torch.nn.Parameter(1 + 0.1 * torch.randn(channels))
        self.taps, self.pad = taps, kernel // 2

    def forward(self, x):
        om = self.offset_mask(x)
        offset, mask = om[:, : 2 * self.taps], torch.sigmoid(om[:, 2 * self.taps :])
        y = torch.ops.opforge.modulated_deform_conv2d(
            x, offset, self.weight, mask, self.bias, [1, 1], [self.pad, self.pad], [1, 1], 1, 1
        )
        y = torch.ops.opforge.rms_norm(y.permute(0, 2, 3, 1), self.norm, 1e-6).permute(0, 3, 1, 2)
        return torch.ops.opforge.scaled_gelu(y, 1.0, "tanh") + x


class SegNet(torch.nn.Module):
    def __init__(self, classes: int = 19, width: int = 64):
        super().__init__()
        self.stem1 = torch.nn.Conv2d(3, width // 2, 3, stride=2, padding=1)
        self.stem2 = torch.nn.Conv2d(width // 2, width, 3, stride=2, padding=1)  # 1/4 resolution
        self.block1 = DeformBlock(width)
        self.block2 = DeformBlock(width)
        self.head = torch.nn.Conv2d(width, classes, 1)

    def forward(self, image):
        h = torch.ops.opforge.scaled_gelu(self.stem1(image), 1.0, "none")
        h = self.block2(self.block1(self.stem2(h)))
        logits = self.head(h)
        return torch.nn.functional.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)


def make(small: bool = False):
    torch.manual_seed(0)
    height, width = (96, 160) if small else (360, 640)
    model = SegNet(width=32 if small else 64).eval()
    return model, lambda batch: (torch.randn(batch, 3, height, width),)


def example():
    """(model, example args) at the small size, batch 1: python -m ops.scan examples.segmentation:example (or ops.export)."""
    model, inputs = make(small=True)
    return model, inputs(1)


def convert(workdir: Path, small: bool = False, trt: bool = True, progress=print):
    model, inputs = make(small)
    converter = Converter(
        model,
        inputs,
        name="segmentation",
        workdir=workdir,
        batches=(1, 4, 8),
        tolerance=(1e-3, 1e-3),
        progress=progress,
    )
    return converter.run(trt=trt)


def main(argv=None) -> int:
    return example_main(
        __doc__, "segmentation (DCNv2 + rms_norm + scaled_gelu), torch -> ONNX -> ORT -> TensorRT", convert, argv
    )


if __name__ == "__main__":
    sys.exit(main())
