"""GPU check of opforge::roi_align (and its backward op) on a CUDA machine.

    python -m ops.build && PYTHONPATH=. python benchmarks/gpu_check_roi_align.py --out out.json

1. Correctness, forward and backward, float32/float16/bfloat16, on both CUDA paths (OPFORGE_ROI_ALIGN_CUDA=direct
   and =channels_last), against torchvision.ops.roi_align run in float32 on the same (rounded) inputs (forward,
   and its autograd for the backward), against opforge's declared reference and against opforge's CPU kernels.
   Cases: N > 1 with rois spread over the images, rois partly outside, reversed and zero-size boxes,
   sampling_ratio -1/0/2/3, aligned both ways, non-square pooled sizes, channel counts that are not a multiple of
   the 16-byte pack or span several chunks, a 14x14 pooled size (outputs not staged in shared memory); then an
   invalid batch index and non-finite coordinates (CUDA: zeros for that roi, nothing read out of bounds) and
   K = 0. One line PASS/FAIL per case; a failing case does not stop the rest.
2. Speed vs torchvision.ops.roi_align at 1000 rois (random boxes within a 1216x800 image, spatial_scale 1/4,
   batch indices spread over 4 images), features 4x256x200x304, 7x7 output, aligned=True, sampling_ratio 2 and
   -1: forward and forward+backward, float32 and float16, each opforge path; medians of CUDA-event timings;
   ratios are torchvision time / opforge time (targets: 1.5 forward, 1.0 forward+backward). JSON to --out."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import traceback

import torch
from cuda_timing import cuda_time_us, run_info

import ops
from ops.library.roi_align import random_rois

FWD = torch.ops.opforge.roi_align
BWD = torch.ops.opforge.roi_align_backward
PATHS = ("direct", "channels_last")

# (name, N, C, H, W, K, ph, pw, spatial_scale, sampling_ratio, aligned, overhang, degenerate boxes)
CASES = [
    ("base", 2, 16, 20, 24, 30, 7, 7, 0.5, 2, True, 0.1, 2),
    ("legacy_adaptive", 3, 8, 17, 23, 25, 3, 5, 1.0, -1, False, 0.3, 3),
    ("sr0_nonsquare", 2, 12, 15, 11, 20, 2, 4, 0.25, 0, True, 0.5, 2),
    ("sr3_one_image", 1, 5, 9, 13, 12, 4, 2, 1.0, 3, False, 0.2, 1),
    ("channels_70", 2, 70, 12, 10, 9, 3, 3, 1.0, 2, True, 0.1, 0),
    ("channels_256", 4, 256, 25, 38, 40, 7, 7, 0.125, 2, True, 0.0, 0),
    ("pooled_14", 2, 130, 16, 16, 6, 14, 14, 1.0, 2, True, 0.2, 0),
    ("h1", 2, 9, 1, 12, 10, 2, 2, 1.0, -1, False, 0.2, 0),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Error bound relative to max |reference| (inputs rounded to the dtype first): float32 arithmetic everywhere,
# so float32 differs from torchvision only by its FMA-contracted positions; the half types by the output rounding.
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@contextlib.contextmanager
def path(name):
    old = os.environ.get("OPFORGE_ROI_ALIGN_CUDA")
    os.environ["OPFORGE_ROI_ALIGN_CUDA"] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OPFORGE_ROI_ALIGN_CUDA", None)
        else:
            os.environ["OPFORGE_ROI_ALIGN_CUDA"] = old


def make_inputs(case, dtype, device="cuda", seed=0):
    _, n, c, h, w, k, ph, pw, scale, sr, aligned, outside, degenerate = case
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, c, h, w, generator=g)
    rois = random_rois(k, n, h, w, spatial_scale=scale, outside=outside, degenerate=degenerate, generator=g)
    attrs = dict(pooled_height=ph, pooled_width=pw, spatial_scale=scale, sampling_ratio=sr, aligned=aligned)
    return feats.to(device=device, dtype=dtype), rois.to(device=device, dtype=dtype), attrs


def tv(feats, rois, attrs):
    import torchvision

    return torchvision.ops.roi_align(
        feats,
        rois,
        (attrs["pooled_height"], attrs["pooled_width"]),
        attrs["spatial_scale"],
        attrs["sampling_ratio"],
        attrs["aligned"],
    )


def rel_err(a, ref):
    a, ref = a.double().cpu(), ref.double().cpu()
    if ref.numel() == 0:
        return 0.0
    scale = ref.abs().max().item() or 1.0
    return (a - ref).abs().max().item() / scale


def check_case(case, dtype, results):
    name = f"{case[0]}[{str(dtype).split('.')[-1]}]"
    try:
        feats, rois, attrs = make_inputs(case, dtype)
        f32, r32 = feats.float(), rois.float()
        ref_tv = tv(f32, r32, attrs)
        ref = ops.get_op("opforge::roi_align").reference(f32.cpu(), r32.cpu(), **attrs)
        cpu = FWD(feats.cpu(), rois.cpu(), **attrs)
        grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1)).to(device="cuda", dtype=dtype)
        leaf = f32.detach().clone().requires_grad_()
        (g_tv,) = torch.autograd.grad(tv(leaf, r32, attrs), (leaf,), grad.float())
        g_ref = ops.get_op("opforge::roi_align_backward").reference(grad.float().cpu(), r32.cpu(), f32.cpu(), **attrs)
        g_cpu = BWD(grad.cpu(), rois.cpu(), feats.cpu(), **attrs)
        row = dict(case=case[0], dtype=str(dtype))
        ok = True
        for p in PATHS:
            with path(p):
                out = FWD(feats, rois, **attrs)
                torch.cuda.synchronize()
            errs = dict(vs_torchvision=rel_err(out, ref_tv), vs_reference=rel_err(out, ref), vs_cpu=rel_err(out, cpu))
            if dtype == torch.float32:
                errs["bitwise_equal_cpu"] = bool(torch.equal(out.cpu(), cpu))
            row[f"fwd_{p}"] = errs
            ok &= all(v <= TOL[dtype] for key, v in errs.items() if key.startswith("vs_"))
        gcuda = BWD(grad, rois, feats, **attrs)
        torch.cuda.synchronize()
        # autograd through the forward reaches the same backward op
        fl = feats.detach().clone().requires_grad_()
        (g_auto,) = torch.autograd.grad(FWD(fl, rois, **attrs), (fl,), grad)
        row["bwd"] = dict(
            vs_torchvision=rel_err(gcuda, g_tv),
            vs_reference=rel_err(gcuda, g_ref),
            vs_cpu=rel_err(gcuda, g_cpu),
            autograd_vs_op=rel_err(g_auto, gcuda),
        )
        ok &= all(v <= TOL[dtype] for v in row["bwd"].values())
        row["ok"] = bool(ok)
        print(
            f"{'PASS' if ok else 'FAIL'} {name}: "
            + "; ".join(
                f"{k} " + ", ".join(f"{n} {v:.1e}" if isinstance(v, float) else f"{n} {v}" for n, v in d.items())
                for k, d in row.items()
                if isinstance(d, dict)
            ),
            flush=True,
        )
        results.append(row)
    except Exception as e:  # one failing case must not stop the rest
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        results.append(dict(case=case[0], dtype=str(dtype), ok=False, error=f"{type(e).__name__}: {e}"))


def check_bad_rois(results):
    """CUDA cannot raise from the device: a roi with an invalid batch index gives zeros and no gradient, a roi
    with a non-finite coordinate gives zeros (as on the CPU, where the invalid index is an error instead)."""
    for p in PATHS:
        try:
            feats, rois, attrs = make_inputs(CASES[0], torch.float32)
            rois = rois.clone()
            bad = {0: 2.0, 1: -1.0, 2: 0.5, 3: float("nan"), 4: 1e9}  # N = 2
            for r, v in bad.items():
                rois[r, 0] = v
            rois[5, 1] = float("inf")
            rois[6, 2] = float("nan")
            with path(p):
                out = FWD(feats, rois, **attrs)
                g = BWD(torch.ones_like(out), rois, feats, **attrs)
                torch.cuda.synchronize()
            zeros = bool(torch.equal(out[:7], torch.zeros_like(out[:7])))
            good = rois[7:].clone()
            ref = FWD(feats.cpu(), good.cpu(), **attrs)
            g_ref = BWD(torch.ones(ref.shape), good.cpu(), feats.cpu(), **attrs)
            e = rel_err(out[7:], ref)
            eg = rel_err(g, g_ref)
            ok = zeros and e <= TOL[torch.float32] and eg <= TOL[torch.float32]
            print(
                f"{'PASS' if ok else 'FAIL'} bad rois [{p}]: zeros for invalid/non-finite rois {zeros}, others vs cpu "
                f"{e:.1e}, grad (bad rois contribute nothing) {eg:.1e}",
                flush=True,
            )
            results.append(dict(case=f"bad_rois_{p}", ok=bool(ok), zeros=zeros, others=e, grad=eg))
        except Exception as e:
            print(f"FAIL bad rois [{p}]: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
            results.append(dict(case=f"bad_rois_{p}", ok=False, error=str(e)))
    try:
        feats, rois, attrs = make_inputs(CASES[0], torch.float16)
        out = FWD(feats, rois[:0], **attrs)
        g = BWD(out, rois[:0], feats, **attrs)
        fl = feats.clone().requires_grad_()
        (ga,) = torch.autograd.grad(FWD(fl, rois[:0], **attrs).sum(), (fl,))
        torch.cuda.synchronize()
        ok = out.shape[0] == 0 and bool((g == 0).all()) and bool((ga == 0).all())
        print(f"{'PASS' if ok else 'FAIL'} no rois: {list(out.shape)}, zero gradients", flush=True)
        results.append(dict(case="empty", ok=bool(ok)))
    except Exception as e:
        print(f"FAIL no rois: {type(e).__name__}: {e}", flush=True)
        results.append(dict(case="empty", ok=False, error=str(e)))


def median_ms(fn, warmup=5, reps=30):
    return cuda_time_us(fn, warmup=warmup, repeats=reps) / 1e3


def bench(rows):
    n, c, h, w, k = 4, 256, 200, 304, 1000
    scale = 0.25
    g = torch.Generator().manual_seed(0)
    rois32 = random_rois(k, n, h, w, spatial_scale=scale, generator=g)
    feats32 = torch.randn(n, c, h, w, generator=g)
    for dtype in (torch.float32, torch.float16):
        for sr in (2, -1):
            row = dict(
                dtype=str(dtype),
                sampling_ratio=sr,
                features=[n, c, h, w],
                rois=k,
                output=[7, 7],
                spatial_scale=scale,
                aligned=True,
            )
            try:
                feats = feats32.to(device="cuda", dtype=dtype)
                rois = rois32.to(device="cuda", dtype=dtype)
                attrs = dict(pooled_height=7, pooled_width=7, spatial_scale=scale, sampling_ratio=sr, aligned=True)
                grad = torch.randn(k, c, 7, 7, device="cuda", dtype=dtype)
                leaf = feats.detach().clone().requires_grad_()
                try:
                    row["torchvision_fwd_ms"] = median_ms(lambda: tv(feats, rois, attrs))
                    row["torchvision_fwd_bwd_ms"] = median_ms(
                        lambda: torch.autograd.grad(tv(leaf, rois, attrs), (leaf,), grad)
                    )
                except Exception as e:
                    row["torchvision_error"] = f"{type(e).__name__}: {e}"[:200]
                for p in ("auto",) + PATHS:
                    ctx = contextlib.nullcontext() if p == "auto" else path(p)
                    with ctx:
                        row[f"opforge_{p}_fwd_ms"] = median_ms(lambda: FWD(feats, rois, **attrs))
                        row[f"opforge_{p}_fwd_bwd_ms"] = median_ms(
                            lambda: torch.autograd.grad(FWD(leaf, rois, **attrs), (leaf,), grad)
                        )
                        if "torchvision_fwd_ms" in row:
                            row[f"fwd_ratio_{p}"] = row["torchvision_fwd_ms"] / row[f"opforge_{p}_fwd_ms"]
                            row[f"fwd_bwd_ratio_{p}"] = row["torchvision_fwd_bwd_ms"] / row[f"opforge_{p}_fwd_bwd_ms"]
                row["opforge_bwd_op_ms"] = median_ms(lambda: BWD(grad, rois, feats, **attrs))
                if "torchvision_fwd_ms" in row:
                    row["targets_met"] = dict(
                        fwd_1_5x=row["fwd_ratio_auto"] >= 1.5, fwd_bwd_1x=row["fwd_bwd_ratio_auto"] >= 1.0
                    )
                    row["rel_err_vs_torchvision_fp32"] = rel_err(
                        FWD(feats, rois, **attrs), tv(feats.float(), rois.float(), attrs)
                    )
                print(json.dumps(row), flush=True)
            except Exception as e:
                print(f"bench {dtype} sr={sr} failed: {type(e).__name__}: {e}", flush=True)
                traceback.print_exc()
                row["error"] = f"{type(e).__name__}: {e}"
            rows.append(row)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_check_roi_align.json")
    ap.add_argument("--no-bench", action="store_true")
    args = ap.parse_args()
    ops.load_extension()
    try:
        import torchvision

        tv_version = torchvision.__version__
    except Exception as e:  # the correctness rows then fail with the reason; the rest still runs
        tv_version = f"unavailable: {e}"
    info = run_info(torchvision=tv_version)
    print(json.dumps(info), flush=True)
    results: list = []
    for case in CASES:
        for dtype in DTYPES:
            check_case(case, dtype, results)
    check_bad_rois(results)
    bench_rows: list = []
    if not args.no_bench:
        bench(bench_rows)
    passed = sum(bool(r.get("ok")) for r in results)
    print(f"{passed}/{len(results)} correctness cases passed", flush=True)
    with open(args.out, "w") as f:
        json.dump(dict(info=info, correctness=results, benchmark=bench_rows), f, indent=1)


if __name__ == "__main__":
    main()
