"""GPU check of opforge::grid_sample3d (and its backward op) on a CUDA machine (the H100).

    python -m ops.build && PYTHONPATH=. python benchmarks/gpu_check_grid_sample3d.py --out out.json

1. Correctness, forward and backward, float32/float16/bfloat16, every mode x padding_mode x align_corners,
   grids partly outside the volume with points on voxel centres, half-way points and borders: against aten's
   F.grid_sample on CUDA in float32 on the same (rounded) inputs, and against opforge's own CPU kernels.
   Channel counts 1, 3, 37 (the CUDA kernels split channels over 8 lanes). Non-finite grid values against the
   CPU kernel (the op's defined semantics are aten's CPU ones; aten's CUDA kernel clamps a NaN to 0 under
   'border' where its CPU kernel clamps it to size - 1). Empty shapes. One line PASS/FAIL per case; a
   failing case does not stop the rest.
2. Speed against aten's F.grid_sample on 5-D input (one thread per output voxel looping over C): forward and
   forward+backward (autograd, grads for input and grid), float32 and float16, on a 64^3 volume with a 64^3
   grid (N=2, C=32), a stereo cost-volume-like size (N=1, C=32, 48x96x160) and a trilinear 4x upsampling
   (N=1, C=8, 32^3 -> 128^3); grids are an identity warp plus noise. Ratios are aten time / opforge time;
   targets: forward >= 1.5, forward+backward >= 1.0. Medians of CUDA-event timings. JSON to --out."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import traceback

import torch
import torch.nn.functional as F
from cuda_timing import cuda_time_us, run_info

import ops  # noqa: F401  (registers torch.ops.opforge.*)

FWD = torch.ops.opforge.grid_sample3d
BWD = torch.ops.opforge.grid_sample3d_backward
COMBOS = list(itertools.product(("bilinear", "nearest"), ("zeros", "border"), (False, True)))
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (name, N, C, D, H, W, Do, Ho, Wo)
CASES = [
    ("c3", 2, 3, 6, 7, 9, 5, 6, 7),
    ("c1", 1, 1, 5, 4, 6, 3, 4, 5),
    ("c37", 2, 37, 5, 6, 7, 4, 5, 6),
]
# Error bounds relative to max |reference|. Inputs are rounded to the dtype first, so this is the kernels'
# arithmetic: float32 inside, one rounding of the output; grad_input sums atomically in float32 (order varies);
# grad_grid multiplies corner differences by up to size / 2.
TOL_FWD = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
TOL_BWD = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}
TARGET_FWD, TARGET_FWD_BWD = 1.5, 1.0


def make_grid(n, do, ho, wo, gen):
    uniform = torch.rand(n, do, ho, wo, 3, generator=gen) * 2.6 - 1.3
    lattice = torch.randint(-12, 13, (n, do, ho, wo, 3), generator=gen).float() / 8
    pick = torch.rand(n, do, ho, wo, 1, generator=gen) < 0.5
    return torch.where(pick, uniform, lattice)


def rel_err(a, ref):
    a, ref = a.double(), ref.double()
    scale = ref.abs().max().item() if ref.numel() else 1.0
    return (a - ref).abs().max().item() / (scale or 1.0) if ref.numel() else 0.0


def aten_fwd_bwd(x, grid, grad, mode, padding_mode, align_corners):
    xs = x.detach().float().requires_grad_()
    gs = grid.detach().float().requires_grad_()
    out = F.grid_sample(xs, gs, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    gx, gg = torch.autograd.grad(out, (xs, gs), grad.float(), allow_unused=True)
    return out, (torch.zeros_like(xs) if gx is None else gx), (torch.zeros_like(gs) if gg is None else gg)


def check_case(case, combo, dtype, results, seed):
    name = f"{case[0]}[{'-'.join(map(str, combo))}, {str(dtype).split('.')[-1]}]"
    try:
        _, n, c, d, h, w, do, ho, wo = case
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, c, d, h, w, generator=gen).to("cuda", dtype)
        grid = make_grid(n, do, ho, wo, gen).to("cuda", dtype)
        grad = torch.randn(n, c, do, ho, wo, generator=gen).to("cuda", dtype)
        out = FWD(x, grid, *combo)
        gx, gg = BWD(x, grid, grad, *combo)
        torch.cuda.synchronize()
        ref, rgx, rgg = aten_fwd_bwd(x, grid, grad, *combo)
        cpu = FWD(x.cpu(), grid.cpu(), *combo)
        cgx, cgg = BWD(x.cpu(), grid.cpu(), grad.cpu(), *combo)
        errs = dict(
            fwd_vs_aten=rel_err(out, ref),
            fwd_vs_cpu=rel_err(out.cpu(), cpu),
            grad_input_vs_aten=rel_err(gx, rgx),
            grad_input_vs_cpu=rel_err(gx.cpu(), cgx),
            grad_grid_vs_aten=rel_err(gg, rgg),
            grad_grid_vs_cpu=rel_err(gg.cpu(), cgg),
        )
        ok = all(v <= (TOL_FWD if k.startswith("fwd") else TOL_BWD)[dtype] for k, v in errs.items())
        ok = ok and out.dtype == gx.dtype == gg.dtype == dtype
        print(f"{'PASS' if ok else 'FAIL'} {name}: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()), flush=True)
        results.append(dict(case=name, ok=ok, **errs))
    except Exception as e:  # one failing case must not stop the rest
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        results.append(dict(case=name, ok=False, error=f"{type(e).__name__}: {e}"))


def check_nonfinite(results):
    """NaN, +-inf and out-of-int-range grid values in each axis: CUDA == opforge's CPU kernel (aten's CPU
    semantics), forward and backward, every combination, float32."""
    vals = [float("nan"), float("inf"), float("-inf"), 1e30, -1e30, 3e9]
    pts = []
    for axis in range(3):
        for v in vals:
            p = [0.3, -0.2, 0.6]
            p[axis] = v
            pts.append(p)
    pts.append([float("nan")] * 3)
    gen = torch.Generator().manual_seed(7)
    grid = torch.tensor(pts).reshape(1, 1, 1, -1, 3)
    x = torch.randn(1, 3, 3, 4, 5, generator=gen)
    grad = torch.randn(1, 3, 1, 1, grid.shape[3], generator=gen)
    for combo in COMBOS:
        name = f"nonfinite[{'-'.join(map(str, combo))}]"
        try:
            out = FWD(x.cuda(), grid.cuda(), *combo).cpu()
            gx, gg = (t.cpu() for t in BWD(x.cuda(), grid.cuda(), grad.cuda(), *combo))
            want = FWD(x, grid, *combo)
            wgx, wgg = BWD(x, grid, grad, *combo)
            errs = dict(fwd=rel_err(out, want), grad_input=rel_err(gx, wgx), grad_grid=rel_err(gg, wgg))
            ok = all(v <= 1e-5 for v in errs.values()) and all(torch.isfinite(t).all() for t in (out, gx, gg))
            print(
                f"{'PASS' if ok else 'FAIL'} {name}: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()), flush=True
            )
            results.append(dict(case=name, ok=ok, **errs))
        except Exception as e:
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            results.append(dict(case=name, ok=False, error=f"{type(e).__name__}: {e}"))


def check_empty(results):
    try:
        x = torch.randn(2, 3, 4, 5, 6, device="cuda")
        grid = torch.rand(2, 3, 4, 5, 3, device="cuda") * 2 - 1
        grad = torch.randn(2, 3, 3, 4, 5, device="cuda")
        ok = FWD(x[:0], grid[:0], "bilinear", "zeros", False).shape == (0, 3, 3, 4, 5)
        gx, gg = BWD(x, grid[:, :0], grad[:, :, :0], "bilinear", "zeros", False)
        ok = ok and gx.shape == x.shape and not gx.any().item() and gg.shape == (2, 0, 4, 5, 3)
        gx, gg = BWD(x[:, :0], grid, grad[:, :0], "bilinear", "border", True)
        ok = ok and gg.shape == grid.shape and not gg.any().item()
        print(f"{'PASS' if ok else 'FAIL'} empty shapes", flush=True)
        results.append(dict(case="empty", ok=bool(ok)))
    except Exception as e:
        print(f"FAIL empty shapes: {type(e).__name__}: {e}", flush=True)
        results.append(dict(case="empty", ok=False, error=f"{type(e).__name__}: {e}"))


def time_us(fn, reps=40, warmup=8):
    """Median of `reps` CUDA-event timings of fn(), in microseconds."""
    return cuda_time_us(fn, warmup=warmup, repeats=reps)


# (name, N, C, D, H, W, Do, Ho, Wo, noise): identity grid over the output + uniform noise of +-noise
BENCH = [
    ("vol64_c32", 2, 32, 64, 64, 64, 64, 64, 64, 0.05),
    ("cost_volume_c32", 1, 32, 48, 96, 160, 48, 96, 160, 0.02),
    ("upsample4x_c8", 1, 8, 32, 32, 32, 128, 128, 128, 0.0),
]


def identity_grid(n, do, ho, wo, noise, gen):
    zs, ys, xs = (torch.linspace(-1, 1, s) for s in (do, ho, wo))
    g = torch.stack(torch.meshgrid(zs, ys, xs, indexing="ij")[::-1], -1)  # [do, ho, wo, (x, y, z)]
    g = g.expand(n, do, ho, wo, 3)
    return g + (torch.rand(n, do, ho, wo, 3, generator=gen) * 2 - 1) * noise


def bench(rows):
    for (name, n, c, d, h, w, do, ho, wo, noise), dtype in itertools.product(BENCH, (torch.float32, torch.float16)):
        row = dict(
            case=name,
            dtype=str(dtype),
            input=[n, c, d, h, w],
            grid=[n, do, ho, wo, 3],
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )
        try:
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(n, c, d, h, w, generator=gen).to("cuda", dtype)
            grid = identity_grid(n, do, ho, wo, noise, gen).to("cuda", dtype)
            grad = torch.randn(n, c, do, ho, wo, generator=gen).to("cuda", dtype)
            attrs = ("bilinear", "zeros", False)
            row["err_vs_aten"] = rel_err(
                FWD(x, grid, *attrs), F.grid_sample(x.float(), grid.float(), align_corners=False)
            )
            row["opforge_fwd_us"] = time_us(lambda: FWD(x, grid, *attrs))
            row["aten_fwd_us"] = time_us(lambda: F.grid_sample(x, grid, align_corners=False))
            row["opforge_bwd_op_us"] = time_us(lambda: BWD(x, grid, grad, *attrs))
            xl, gl = x.detach().clone().requires_grad_(), grid.detach().clone().requires_grad_()

            def ours():
                torch.autograd.grad(FWD(xl, gl, *attrs), (xl, gl), grad)

            def theirs():
                torch.autograd.grad(F.grid_sample(xl, gl, align_corners=False), (xl, gl), grad)

            row["opforge_fwd_bwd_us"] = time_us(ours, reps=20)
            row["aten_fwd_bwd_us"] = time_us(theirs, reps=20)
            row["fwd_ratio"] = row["aten_fwd_us"] / row["opforge_fwd_us"]
            row["fwd_bwd_ratio"] = row["aten_fwd_bwd_us"] / row["opforge_fwd_bwd_us"]
            row["fwd_target_met"] = row["fwd_ratio"] >= TARGET_FWD
            row["fwd_bwd_target_met"] = row["fwd_bwd_ratio"] >= TARGET_FWD_BWD
            # nearest forward, for the record
            row["opforge_fwd_nearest_us"] = time_us(lambda: FWD(x, grid, "nearest", "zeros", False))
            row["aten_fwd_nearest_us"] = time_us(lambda: F.grid_sample(x, grid, mode="nearest", align_corners=False))
            print(json.dumps(row), flush=True)
        except Exception as e:
            print(f"bench {name} {dtype} failed: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
            row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
        torch.cuda.empty_cache()


def forward_variants(out):
    """The bilinear forward under each launch setting the kernel lets the environment force: channels whose loads
    are issued together (OPFORGE_GRID_SAMPLE3D_CHUNK) and channel lanes per voxel (OPFORGE_GRID_SAMPLE3D_LANES)."""
    settings = [("CHUNK", v) for v in ("1", "2", "4", "8")] + [("LANES", v) for v in ("1", "2", "4", "8")]
    for (name, n, c, d, h, w, do, ho, wo, noise), dtype in itertools.product(BENCH, (torch.float32, torch.float16)):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n, c, d, h, w, generator=gen).to("cuda", dtype)
        grid = identity_grid(n, do, ho, wo, noise, gen).to("cuda", dtype)
        row = dict(
            case=name, dtype=str(dtype), aten_fwd_us=time_us(lambda: F.grid_sample(x, grid, align_corners=False))
        )
        want = FWD(x, grid, "bilinear", "zeros", False)
        for var, value in settings:
            os.environ[f"OPFORGE_GRID_SAMPLE3D_{var}"] = value
            got = FWD(x, grid, "bilinear", "zeros", False)
            same = bool(torch.equal(got, want))
            row[f"{var.lower()}{value}_us"] = time_us(lambda: FWD(x, grid, "bilinear", "zeros", False))
            row[f"{var.lower()}{value}_same_output"] = same
            del os.environ[f"OPFORGE_GRID_SAMPLE3D_{var}"]
        print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        out.append(row)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_check_grid_sample3d.json")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--variants", action="store_true", help="only time the forward under each forced launch setting")
    args = ap.parse_args()
    info = run_info(targets=dict(fwd_ratio=TARGET_FWD, fwd_bwd_ratio=TARGET_FWD_BWD))
    print(json.dumps(info), flush=True)
    results: list = []
    for seed, (case, combo, dtype) in enumerate(itertools.product(CASES, COMBOS, DTYPES)):
        check_case(case, combo, dtype, results, seed)
    check_nonfinite(results)
    check_empty(results)
    rows: list = []
    if args.variants:
        variants: list = []
        forward_variants(variants)
        with open(args.out, "w") as f:
            json.dump(dict(info=info, variants=variants), f, indent=1)
        return
    if not args.no_bench:
        bench(rows)
    passed = sum(r["ok"] for r in results)
    timed = [r for r in rows if "fwd_ratio" in r]
    summary = dict(
        correct=f"{passed}/{len(results)}",
        fwd_target_met=all(r["fwd_target_met"] for r in timed) if timed else None,
        fwd_bwd_target_met=all(r["fwd_bwd_target_met"] for r in timed) if timed else None,
        min_fwd_ratio=min((r["fwd_ratio"] for r in timed), default=None),
        min_fwd_bwd_ratio=min((r["fwd_bwd_ratio"] for r in timed), default=None),
    )
    print(json.dumps(summary), flush=True)
    with open(args.out, "w") as f:
        json.dump(dict(info=info, correctness=results, benchmark=rows, summary=summary), f, indent=1)


if __name__ == "__main__":
    main()
