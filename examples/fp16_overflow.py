"""Two models whose naive float16 conversion breaks, for ops.precision and the mixed-precision export.

make():             a token mixer with a large residual stream (|x| ~ 400, like the "massive activations" of
                    LLMs) and a hand-written RMSNorm, x * rsqrt(mean(x^2)): x^2 passes 65504 and the norm
                    returns 0 in half. Its second norm is opforge::rms_norm (float32 accumulator, takes half)
                    and its MLP uses opforge::scaled_gelu.
make_transformer(): not designed for this: torch's stock nn.TransformerEncoder (2 post-norm layers) and a
                    linear head, fed patches of a raw depth map in millimetres (a uint16 depth sensor, 0-10 m,
                    no input normalisation): its first attention's logits pass 65504.

    python -m ops.precision examples.fp16_overflow:make --plot ranges.png
    python -m ops.export examples.fp16_overflow:make -o mixed.onnx --opset 17 --precision mixed-float16
    python examples/fp16_overflow.py            # report, mixed export, ORT run, comparison with onnxconverter-common
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import ops  # noqa: F401  (registers the opforge ops)


class PlainRMSNorm(torch.nn.Module):
    """RMSNorm as commonly written: correct in float32, x.pow(2) overflows in float16 once |x| > 256."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class MixerBlock(torch.nn.Module):
    """Pre-norm MLP block; `plain` picks the hand-written norm, else opforge::rms_norm, which accumulates in
    float32 whatever the input dtype, so half inputs are safe for it."""

    def __init__(self, dim: int, hidden: int, plain: bool):
        super().__init__()
        self.norm = PlainRMSNorm(dim) if plain else None
        self.norm_weight = torch.nn.Parameter(torch.ones(dim))
        self.up = torch.nn.Linear(dim, hidden)
        self.down = torch.nn.Linear(hidden, dim)

    def forward(self, x):
        h = self.norm(x) if self.norm is not None else torch.ops.opforge.rms_norm(x, self.norm_weight, 1e-6)
        h = torch.ops.opforge.scaled_gelu(self.up(h), 1.0, "tanh")
        return x + self.down(h)


class LargeActivationMixer(torch.nn.Module):
    """A residual stream with a large offset channel pattern (the scale real LLM residuals reach)."""

    def __init__(self, dim: int = 256, hidden: int = 1024, blocks: int = 2, out: int = 16):
        super().__init__()
        self.embed = torch.nn.Linear(32, dim)
        self.offset = torch.nn.Parameter(torch.zeros(dim))
        self.blocks = torch.nn.ModuleList(MixerBlock(dim, hidden, plain=k % 2 == 0) for k in range(blocks))
        self.final_norm = PlainRMSNorm(dim)
        self.head = torch.nn.Linear(dim, out)

    def forward(self, x):
        x = self.embed(x) + self.offset
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))


def make(seed: int = 0, tokens: int = 64):
    """(model, example args): float32 weights, residual stream |x| ~ 400."""
    torch.manual_seed(seed)
    model = LargeActivationMixer().eval()
    with torch.no_grad():
        model.offset.copy_(400.0 * torch.sign(torch.randn(model.offset.shape)))
    return model, (torch.randn(1, tokens, 32),)


def make_transformer(seed: int = 0, patches: int = 64):
    """(model, example args): torch's nn.TransformerEncoder (2 post-norm layers) on raw depth patches (mm)."""
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(d_model=64, nhead=4, dropout=0.0, batch_first=True)
    model = torch.nn.Sequential(
        torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False), torch.nn.Linear(64, 10)
    ).eval()
    return model, (depth_patches(torch.Generator().manual_seed(seed), patches),)


def depth_patches(gen, patches: int = 64):
    """8x8 patches of a depth map in millimetres: a smooth scene 0.5-10 m plus sensor noise."""
    base = 500 + 9500 * torch.rand(1, patches, 1, generator=gen)
    return (base + 30 * torch.randn(1, patches, 64, generator=gen)).clamp(0, 10000)


def calibration(maker, count: int = 2, seed: int = 123, **kw):
    """More inputs like the example's, for --data / calibration (planning)."""
    model, (x,) = maker(**kw)
    gen = torch.Generator().manual_seed(seed)
    if maker is make_transformer:
        return [(depth_patches(gen, x.shape[1]),) for _ in range(count)]
    return [(torch.randn(x.shape, generator=gen),) for _ in range(count)]


HELD_OUT_SEEDS = (2001, 2002, 2003)  # never used for planning nor for developing the planner


def held_out(maker, seeds=HELD_OUT_SEEDS, **kw):
    """Inputs like the example's from other seeds: one per seed, for checking a plan on inputs it was not
    made on."""
    return [calibration(maker, 1, seed, **kw)[0] for seed in seeds]


if __name__ == "__main__":
    from benchmarks.fp16_comparison import main

    sys.exit(main())
