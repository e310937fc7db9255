"""A small model mixing standard and opforge ops: conv -> rms_norm -> scaled_gelu -> linear.

python examples/mixed_model.py --opset 17          # export, check, run in ORT at batch 1/3/8
python examples/mixed_model.py --opset 17 --trt    # ... then the TensorRT step (engine where installed)
python -m ops.export examples.mixed_model:make -o mixed.onnx --opset 20 --dynamic --check-ort
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import ops


class MixedModel(torch.nn.Module):
    def __init__(self, channels: int = 8, length: int = 16, eps: float = 1.2345678e-7, alpha: float = 1.23456789):
        super().__init__()
        self.conv = torch.nn.Conv1d(3, channels, kernel_size=3, padding=1)
        self.norm_weight = torch.nn.Parameter(1 + 0.1 * torch.randn(length))
        self.head = torch.nn.Linear(length, 4)
        self.eps, self.alpha = eps, alpha

    def forward(self, x):
        h = self.conv(x)  # [batch, channels, length]
        h = torch.ops.opforge.rms_norm(h, self.norm_weight, self.eps)
        h = torch.ops.opforge.scaled_gelu(h, self.alpha, "tanh")
        return self.head(h)


def make():
    """(model, example args) for python -m ops.export examples.mixed_model:make."""
    torch.manual_seed(0)
    return MixedModel().eval(), (torch.randn(2, 3, 16),)


def export_and_run(opset: int, path: Path, batches=(1, 3, 8), fallback: bool = False) -> dict:
    """Export at `opset` with a dynamic batch, check it, run it in ORT at each batch size against torch
    eager. Returns {batch: max abs difference}."""
    import onnx

    model, args = make()
    ops.export_onnx(model, args, path, opset=opset, dynamic=True, fallback=fallback)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    onnx.shape_inference.infer_shapes(m, strict_mode=True)
    session = ops.onnx.ort_session(path)
    diffs = {}
    for b in batches:
        x = torch.randn(b, 3, 16)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.inference_mode():
            want = model(x).numpy()
        diffs[b] = float(abs(got - want).max())
    return diffs


TRT_SHAPES = {"x": ((1, 3, 16), (3, 3, 16), (8, 3, 16))}  # min, opt, max: the batch sizes run above


def tensorrt_step(path: Path) -> str:
    """The TensorRT leg: build an engine with the plugin library where TensorRT is installed; everywhere
    print the equivalent trtexec command. Never reports an engine that was not built."""
    from ops.core.errors import BackendUnavailable
    from ops.trt.build import library_path
    from ops.trt.trtexec import command

    shapes = {n: tuple("x".join(map(str, s)) for s in dims) for n, dims in TRT_SHAPES.items()}
    cmd = " ".join(command(path, shapes, library_path().resolve()))
    try:
        engine = ops.build_engine(path, shapes=TRT_SHAPES)
    except BackendUnavailable as e:
        return f"TensorRT engine: skipped ({e}).\nOn a machine with TensorRT: {cmd}"
    return f"TensorRT engine built: {engine}\n(trtexec equivalent: {cmd})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opset", type=int, default=20)
    parser.add_argument("--fallback", action="store_true")
    parser.add_argument("--trt", action="store_true", help="also the TensorRT step")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mixed.onnx"
        diffs = export_and_run(args.opset, path, fallback=args.fallback)
        print(f"opset {args.opset}: ORT vs torch eager max |diff| per batch: {diffs}")
        if args.trt:
            print(tensorrt_step(path))
    return 0 if all(d < 1e-5 for d in diffs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
