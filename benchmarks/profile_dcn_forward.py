"""Times (and, under ncu, profiles) opforge::modulated_deform_conv2d's CUDA forward at the example model's
1/4-resolution layer (x 4x64x90x160, 3x3, Cout 64, mask, bias) against torchvision.ops.deform_conv2d.

    PYTHONPATH=. python3 benchmarks/profile_dcn_forward.py            # medians, both dtypes
    ncu --kernel-name regex:forward_kernel python3 benchmarks/profile_dcn_forward.py --once"""

from __future__ import annotations

import argparse

import torch

import ops  # noqa: F401


def inputs(dtype, b=4, c=64, h=90, w=160, cout=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, h, w, generator=g)
    offset = torch.randn(b, 18, h, w, generator=g) * 2.0
    weight = torch.randn(cout, c, 3, 3, generator=g) * (c * 9) ** -0.5
    mask = torch.rand(b, 9, h, w, generator=g)
    bias = torch.randn(cout, generator=g)
    return [t.to("cuda", dtype) for t in (x, offset, weight, mask, bias)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--once", action="store_true", help="one call per dtype (for ncu)")
    args = parser.parse_args()
    for dtype in (torch.float32, torch.float16):
        x, offset, weight, mask, bias = inputs(dtype)

        def call(x=x, offset=offset, weight=weight, mask=mask, bias=bias):
            return torch.ops.opforge.modulated_deform_conv2d(
                x, offset, weight, mask, bias, [1, 1], [1, 1], [1, 1], 1, 1
            )

        if args.once:
            call()
            torch.cuda.synchronize()
            continue
        import torchvision
        import triton.testing

        def tv(x=x, offset=offset, weight=weight, mask=mask, bias=bias):
            return torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=(1, 1), mask=mask)

        ref = torchvision.ops.deform_conv2d(
            x.float(), offset.float(), weight.float(), bias.float(), padding=(1, 1), mask=mask.float()
        )
        err = float((call().float() - ref).abs().max() / ref.abs().max())
        t_op = 1e3 * triton.testing.do_bench(call, warmup=50, rep=300)
        t_tv = 1e3 * triton.testing.do_bench(tv, warmup=50, rep=300)
        print(
            f"{dtype}: opforge {t_op:.1f} us, torchvision {t_tv:.1f} us, ratio {t_tv / t_op:.2f}x, "
            f"max err/max|ref| {err:.2e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
