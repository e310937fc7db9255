"""Small models for the ops.scan tests: each function returns (model, example_args), as ops.scan expects.

two_blockers: torch.nn.RMSNorm (aten::rms_norm: no TorchScript symbolic before opset 23) and a custom op
declared with torch.library but not with opforge (scan_fixture::deform_sample, standing in for
torchvision::deform_conv2d, which this machine's torch has no torchvision for): both fail at opset 17.
volumetric: 3-D grid sampling (aten::grid_sampler on 5-D input) and antialiased bicubic resizing
(aten::_upsample_bicubic2d_aa): real aten operators the TorchScript exporter refuses at opset 17.
planar_warp: 2-D grid sampling (aten::grid_sampler on 4-D input), which opforge::grid_sample3d does not stand in for."""

import torch


@torch.library.custom_op("scan_fixture::deform_sample", mutates_args=())
def deform_sample(x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Sample x at each pixel moved by offset ([N, 2, H, W], in pixels), bilinearly: a small deformable op."""
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
    gx = (xs + offset[:, 0]) / max(w - 1, 1) * 2 - 1
    gy = (ys + offset[:, 1]) / max(h - 1, 1) * 2 - 1
    return torch.nn.functional.grid_sample(x, torch.stack([gx, gy], dim=-1), align_corners=True)


@deform_sample.register_fake
def _(x, offset):
    return torch.empty_like(x)


class TwoBlockers(torch.nn.Module):
    def __init__(self, channels: int = 8):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.offset = torch.nn.Conv2d(channels, 2, 3, padding=1)
        self.norm = torch.nn.RMSNorm(channels)
        self.head = torch.nn.Conv2d(channels, 4, 1)

    def forward(self, image):
        h = torch.relu(self.stem(image))
        h = torch.ops.scan_fixture.deform_sample(h, self.offset(h))
        h = self.norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(h)


def two_blockers():
    torch.manual_seed(0)
    return TwoBlockers().eval(), (torch.randn(1, 3, 16, 16),)


class Volumetric(torch.nn.Module):
    def forward(self, volume, grid, image):
        sampled = torch.nn.functional.grid_sample(volume, grid, align_corners=False)
        small = torch.nn.functional.interpolate(image, scale_factor=0.5, mode="bicubic", antialias=True)
        return sampled.mean() + small.mean()


def volumetric():
    torch.manual_seed(0)
    return Volumetric().eval(), (
        torch.randn(1, 2, 4, 4, 4),
        torch.rand(1, 3, 3, 3, 3) * 2 - 1,
        torch.randn(1, 3, 16, 16),
    )


class PlanarWarp(torch.nn.Module):
    def forward(self, image, grid):
        return torch.nn.functional.grid_sample(image, grid, align_corners=True)


def planar_warp():
    torch.manual_seed(0)
    return PlanarWarp().eval(), (torch.randn(1, 2, 6, 7), torch.rand(1, 4, 5, 2) * 2 - 1)


def not_a_pair():
    return torch.nn.Identity()


class TorchvisionBlockers(torch.nn.Module):
    """torchvision.ops.DeformConv2d (with a mask: DCNv2) and torch.nn.RMSNorm in one network: the issue's
    example. Needs torchvision with compiled ops (the GPU host has it; this project's CPU machine does not)."""

    def __init__(self, channels: int = 8):
        super().__init__()
        import torchvision

        self.stem = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.offset = torch.nn.Conv2d(channels, 3 * 9, 3, padding=1)
        self.dcn = torchvision.ops.DeformConv2d(channels, channels, 3, padding=1)
        self.norm = torch.nn.RMSNorm(channels)

    def forward(self, image):
        h = torch.relu(self.stem(image))
        o = self.offset(h)
        h = self.dcn(h, o[:, :18], torch.sigmoid(o[:, 18:]))
        return self.norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def torchvision_blockers():
    torch.manual_seed(0)
    return TorchvisionBlockers().eval(), (torch.randn(1, 3, 16, 16),)
