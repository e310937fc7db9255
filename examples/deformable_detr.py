"""Example (e): a Deformable-DETR encoder layer and decoder cross-attention on opforge::multi_scale_deformable_attn,
converted end to end: torch -> ONNX (opset 17, opset 20; dynamic batch) -> ONNX Runtime -> TensorRT step.

    python examples/deformable_detr.py          # 3x512x512 image: 4 levels 64x64..8x8 (5440 tokens), d=256, 300 queries
    python examples/deformable_detr.py --small  # 3x128x128 image, d=64, 50 queries (what the test suite runs)

The attention follows Deformable DETR's MSDeformAttn (Zhu et al. 2021): value projection, sampling offsets
and attention weights predicted from the query, normalised sampling locations around reference points, the
multi-scale deformable sampling (the opforge op; the official code calls its CUDA extension there), output
projection. The spatial shapes are an int64 tensor that the op reads on the device, as in the original.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ops.deploy import Converter, example_main

LEVELS, HEADS, POINTS = 4, 8, 4


class MSDeformAttn(torch.nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.sampling_offsets = torch.nn.Linear(d_model, HEADS * LEVELS * POINTS * 2)
        self.attention_weights = torch.nn.Linear(d_model, HEADS * LEVELS * POINTS)
        self.value_proj = torch.nn.Linear(d_model, d_model)
        self.output_proj = torch.nn.Linear(d_model, d_model)
        # The original initialisation: each head samples along its own direction, a few points out.
        torch.nn.init.zeros_(self.sampling_offsets.weight)
        angle = torch.arange(HEADS, dtype=torch.float32) * (2 * torch.pi / HEADS)
        grid = torch.stack([angle.cos(), angle.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(HEADS, 1, 1, 2).repeat(1, LEVELS, POINTS, 1)
        grid = grid * torch.arange(1, POINTS + 1, dtype=torch.float32).view(1, 1, POINTS, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))

    def forward(self, query, reference_points, value, spatial_shapes, level_start_index):
        n, lq, d = query.shape
        v = self.value_proj(value).view(n, value.shape[1], HEADS, d // HEADS)
        offsets = self.sampling_offsets(query).view(n, lq, HEADS, LEVELS, POINTS, 2)
        weights = F.softmax(self.attention_weights(query).view(n, lq, HEADS, LEVELS * POINTS), -1)
        weights = weights.view(n, lq, HEADS, LEVELS, POINTS)
        normaliser = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(query.dtype)  # (W, H)
        locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        out = torch.ops.opforge.multi_scale_deformable_attn(v, spatial_shapes, level_start_index, locations, weights)
        return self.output_proj(out)


class EncoderLayer(torch.nn.Module):
    def __init__(self, d_model: int, ffn: int):
        super().__init__()
        self.attn = MSDeformAttn(d_model)
        self.norm1, self.norm2 = torch.nn.LayerNorm(d_model), torch.nn.LayerNorm(d_model)
        self.ffn = torch.nn.Sequential(torch.nn.Linear(d_model, ffn), torch.nn.ReLU(), torch.nn.Linear(ffn, d_model))

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index):
        src = self.norm1(src + self.attn(src + pos, reference_points, src, spatial_shapes, level_start_index))
        return self.norm2(src + self.ffn(src))


class DeformableDETRCore(torch.nn.Module):
    """Backbone -> 4 levels (strides 8..64) -> one encoder layer over all tokens -> one decoder cross-attention
    from `queries` learned queries -> class logits and boxes."""

    def __init__(self, d_model: int = 256, queries: int = 300, classes: int = 91, width: int = 64):
        super().__init__()
        chans = [width, width * 2, width * 4, width * 8]
        stem = [torch.nn.Conv2d(3, width, 3, stride=2, padding=1), torch.nn.ReLU()]
        stem += [torch.nn.Conv2d(width, width, 3, stride=2, padding=1), torch.nn.ReLU()]
        stem += [torch.nn.Conv2d(width, width, 3, stride=2, padding=1), torch.nn.ReLU()]  # stride 8
        self.stem = torch.nn.Sequential(*stem)
        self.downs = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Conv2d(chans[k], chans[k + 1], 3, stride=2, padding=1), torch.nn.ReLU())
            for k in range(LEVELS - 1)
        )
        self.input_proj = torch.nn.ModuleList(torch.nn.Conv2d(c, d_model, 1) for c in chans)
        self.level_embed = torch.nn.Parameter(torch.randn(LEVELS, d_model) * 0.02)
        self.encoder = EncoderLayer(d_model, 4 * d_model)
        self.query_embed = torch.nn.Parameter(torch.randn(queries, 2 * d_model) * 0.02)
        self.reference = torch.nn.Linear(d_model, 2)
        self.cross = MSDeformAttn(d_model)
        self.norm = torch.nn.LayerNorm(d_model)
        self.class_head = torch.nn.Linear(d_model, classes)
        self.box_head = torch.nn.Linear(d_model, 4)
        self.d_model = d_model

    @staticmethod
    def _position(h: int, w: int, d: int, dtype):
        """Sine position embedding of a level's pixel centres (as in DETR), [h*w, d]."""
        ys = (torch.arange(h, dtype=dtype) + 0.5) / h
        xs = (torch.arange(w, dtype=dtype) + 0.5) / w
        freq = 10000 ** (torch.arange(d // 4, dtype=dtype) * 4 / d)
        y, x = ys.view(h, 1, 1) / freq, xs.view(1, w, 1) / freq
        emb = torch.cat(
            [y.sin().expand(h, w, -1), y.cos().expand(h, w, -1), x.sin().expand(h, w, -1), x.cos().expand(h, w, -1)], -1
        )
        return emb.reshape(h * w, d)

    def forward(self, image):
        feats = [self.stem(image)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        n = image.shape[0]
        tokens, positions, shapes, centres = [], [], [], []
        for lvl, (f, proj) in enumerate(zip(feats, self.input_proj)):
            h, w = f.shape[-2:]
            tokens.append(proj(f).flatten(2).transpose(1, 2))
            positions.append(self._position(h, w, self.d_model, image.dtype) + self.level_embed[lvl])
            ys, xs = torch.meshgrid(
                (torch.arange(h, dtype=image.dtype) + 0.5) / h,
                (torch.arange(w, dtype=image.dtype) + 0.5) / w,
                indexing="ij",
            )
            centres.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], -1))
            shapes.append((h, w))
        src = torch.cat(tokens, 1)
        pos = torch.cat(positions, 0).unsqueeze(0)
        spatial_shapes = torch.tensor(shapes, dtype=torch.int64)
        sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
        level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
        reference = torch.cat(centres, 0)[None, :, None, :].expand(n, -1, LEVELS, -1)
        memory = self.encoder(src, pos, reference, spatial_shapes, level_start_index)
        query_pos, query = self.query_embed.split(self.d_model, 1)
        query, query_pos = query.unsqueeze(0).expand(n, -1, -1), query_pos.unsqueeze(0).expand(n, -1, -1)
        ref = torch.sigmoid(self.reference(query_pos))[:, :, None, :].expand(-1, -1, LEVELS, -1)
        hs = self.norm(query + self.cross(query + query_pos, ref, memory, spatial_shapes, level_start_index))
        return self.class_head(hs), torch.sigmoid(self.box_head(hs))


def make(small: bool = False):
    torch.manual_seed(0)
    if small:
        model, size = DeformableDETRCore(d_model=64, queries=50, width=16), 128
    else:
        model, size = DeformableDETRCore(), 512
    return model.eval(), lambda batch: (torch.randn(batch, 3, size, size),)


def example():
    """(model, example args) at the small size, batch 1: python -m ops.scan examples.deformable_detr:example."""
    model, inputs = make(small=True)
    return model, inputs(1)


def convert(workdir: Path, small: bool = False, trt: bool = True, progress=print):
    model, inputs = make(small)
    return Converter(
        model,
        inputs,
        name="deformable_detr",
        workdir=workdir,
        batches=(1, 2, 4) if small else (1, 2),
        tolerance=(1e-3, 1e-3),
        progress=progress,
    ).run(trt=trt)


def main(argv=None) -> int:
    return example_main(
        __doc__, "Deformable-DETR encoder + decoder attention, torch -> ONNX -> ORT -> TensorRT", convert, argv
    )


if __name__ == "__main__":
    sys.exit(main())
