"""GPU check and benchmark of opforge::correlation (+ correlation_backward) on a CUDA machine.

    PYTHONPATH=. python benchmarks/gpu_check_correlation.py --out $OUT/correlation.json   # after python -m ops.build

1. Correctness: the CUDA kernels (forward, and backward through autograd -> opforge::correlation_backward)
   against the CPU kernels on the same inputs and against the float32 reference, float32/float16/bfloat16,
   shapes with odd sizes, padding, stride 2, dilation_patch 2, kernel 3, even patches, C not a multiple of the
   channel chunk, the large-patch FlowNet setting (21x21, dilation_patch 2). One line PASS/FAIL per case; a
   failing case does not stop the others.
2. Benchmark (triton.testing.do_bench, median): the forward against the eager reference, torch.compile of the
   reference and localcorr's Triton kernel (`localcorr.TritonSpatialCorrelationSampler`, localcorr 0.1.1: only
   kernel_size 1, stride 1, padding 0), re-run in this process; the backward against autograd through the eager
   reference and localcorr's backward. Written to --out as JSON with the card, date, shapes, us and ratios."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import traceback

import torch

import ops
from ops.library.correlation import correlation_float

RESULTS: dict = {"cases": [], "bench": []}

# (B, C, H, W), attrs
CHECKS = [
    ((2, 16, 17, 23), dict(patch_size=[3, 3])),
    ((2, 64, 30, 45), dict(patch_size=[9, 9])),  # PWC-Net setting, partial tiles in H and W
    ((1, 33, 19, 37), dict(patch_size=[5, 7], padding=[2, 1], dilation_patch=[2, 1])),
    ((2, 8, 21, 20), dict(patch_size=[9, 9], dilation_patch=[2, 2])),
    ((1, 12, 24, 40), dict(patch_size=[21, 21], dilation_patch=[2, 2])),  # FlowNetC: 3 column groups, split slots
    ((2, 5, 16, 18), dict(kernel_size=[3, 3], patch_size=[3, 3], stride=[2, 2], padding=[1, 1])),
    (
        (1, 7, 13, 15),
        dict(kernel_size=[2, 3], patch_size=[4, 2], stride=[1, 2], dilation=[2, 1], dilation_patch=[1, 2]),
    ),
    ((3, 4, 9, 9), dict()),  # patch 1
    ((1, 3, 5, 70), dict(patch_size=[1, 13], padding=[0, 3])),  # one displacement row, wide
    ((1, 2, 4, 4), dict(patch_size=[11, 11], dilation_patch=[3, 3])),  # every displacement outside at most
    ((0, 3, 8, 8), dict(patch_size=[3, 3])),  # empty
]
TOL = {torch.float32: (1e-4, 1e-4), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}


def attrs_list(attrs):
    d = {
        "kernel_size": [1, 1],
        "patch_size": [1, 1],
        "stride": [1, 1],
        "padding": [0, 0],
        "dilation": [1, 1],
        "dilation_patch": [1, 1],
    }
    d.update(attrs)
    return [d[k] for k in ("kernel_size", "patch_size", "stride", "padding", "dilation", "dilation_patch")]


def close(actual, expected, dtype, scale):
    """max |a - e| relative to the tensor's scale (the sums have C * k * k terms of magnitude ~1)."""
    rtol, atol = TOL[dtype]
    if actual.shape != expected.shape:
        return False, f"shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    if actual.numel() == 0:
        return True, "empty"
    err = (actual.double() - expected.double()).abs().max().item()
    bound = atol * scale + rtol * expected.double().abs().max().item()
    return err <= bound, f"max_abs {err:.3g} (bound {bound:.3g})"


def check_case(shape, attrs, dtype):
    al = attrs_list(attrs)
    name = f"{dtype} {shape} {attrs}"
    try:
        gen = torch.Generator().manual_seed(0)
        f1c = torch.randn(*shape, generator=gen).to(dtype)
        f2c = torch.randn(*shape, generator=gen).to(dtype)
        scale = max(1.0, (shape[1] * al[0][0] * al[0][1]) ** 0.5)
        f1g, f2g = f1c.cuda().requires_grad_(), f2c.cuda().requires_grad_()
        out_g = torch.ops.opforge.correlation(f1g, f2g, *al)
        torch.cuda.synchronize()
        out_c = torch.ops.opforge.correlation(f1c, f2c, *al)
        ref = correlation_float(f1c, f2c, *al)
        ok1, d1 = close(out_g.cpu(), out_c, dtype, scale)
        ok2, d2 = close(out_g.cpu().float(), ref, dtype, scale)
        g = torch.randn(out_g.shape, generator=gen).to(dtype)
        if out_g.numel():
            gf1, gf2 = torch.autograd.grad(out_g, (f1g, f2g), g.cuda())
        else:
            gf1, gf2 = torch.zeros_like(f1g), torch.zeros_like(f2g)
        cf1, cf2 = torch.ops.opforge.correlation_backward(f1c, f2c, g, *al)
        rf1, rf2 = ops.get_op("opforge::correlation_backward").decl.reference(f1c.float(), f2c.float(), g.float(), *al)
        bscale = max(1.0, (al[1][0] * al[1][1] * al[0][0] * al[0][1]) ** 0.5)
        ok3, d3 = close(gf1.cpu(), cf1, dtype, bscale)
        ok4, d4 = close(gf2.cpu(), cf2, dtype, bscale)
        ok5, d5 = close(gf1.cpu().float(), rf1, dtype, bscale)
        ok6, d6 = close(gf2.cpu().float(), rf2, dtype, bscale)
        ok = all((ok1, ok2, ok3, ok4, ok5, ok6))
        detail = (
            f"fwd vs cpu {d1}; fwd vs ref {d2}; grad_f1 vs cpu {d3}; grad_f2 vs cpu {d4}; "
            f"grad_f1 vs ref {d5}; grad_f2 vs ref {d6}"
        )
    except Exception as e:  # one failing case must not stop the rest
        ok, detail = False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
    RESULTS["cases"].append({"case": name, "ok": ok, "detail": detail})


def bench_ms(fn):
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=25, rep=200, return_mode="median"))


def localcorr_sampler(patch, dilation_patch):
    try:
        import localcorr
    except Exception as e:
        return None, f"localcorr not importable: {type(e).__name__}: {e}"
    cls = getattr(localcorr, "TritonSpatialCorrelationSampler", None)
    if cls is None:
        return None, "localcorr has no TritonSpatialCorrelationSampler (triton missing?)"
    return cls(
        kernel_size=1, patch_size=patch, stride=1, padding=0, dilation=1, dilation_patch=dilation_patch
    ), f"localcorr {getattr(localcorr, '__version__', '?')} TritonSpatialCorrelationSampler"


def bench_case(shape, patch, dilation_patch, dtype):
    entry = {"shape": list(shape), "patch": patch, "dilation_patch": dilation_patch, "dtype": str(dtype)}
    al = attrs_list({"patch_size": [patch, patch], "dilation_patch": [dilation_patch, dilation_patch]})
    f1 = torch.randn(*shape, device="cuda", dtype=dtype)
    f2 = torch.randn(*shape, device="cuda", dtype=dtype)
    out_bytes = shape[0] * patch * patch * shape[2] * shape[3] * f1.element_size()
    entry["bytes_moved"] = 2 * f1.numel() * f1.element_size() + out_bytes
    ref = ops.get_op("opforge::correlation").decl.reference
    timings = {}

    def timed(label, fn):
        try:
            fn()
            torch.cuda.synchronize()
            timings[label] = bench_ms(fn) * 1e3
        except Exception as e:
            timings[label] = None
            entry.setdefault("errors", {})[label] = f"{type(e).__name__}: {e}"

    timed("opforge", lambda: torch.ops.opforge.correlation(f1, f2, *al))
    timed("eager_reference", lambda: ref(f1, f2, *al))
    if patch <= 9:
        compiled = torch.compile(lambda a, b: ref(a, b, *al))
        timed("compile_reference", lambda: compiled(f1, f2))
    else:  # 441 displacement slices: inductor's compile time runs to many minutes
        entry["compile_reference"] = "skipped: patch > 9"
    sampler, note = localcorr_sampler(patch, dilation_patch)
    entry["localcorr"] = note
    if sampler is not None:
        timed("localcorr", lambda: sampler(f1, f2))
        try:
            lc = sampler(f1, f2).float()
            ours = torch.ops.opforge.correlation(f1, f2, *al).float()
            entry["localcorr_max_abs_diff"] = (lc - ours).abs().max().item()
        except Exception as e:
            entry["localcorr_max_abs_diff"] = f"{type(e).__name__}: {e}"

    # backward: grad of sum(out * g)
    g = torch.randn(shape[0], patch, patch, shape[2], shape[3], device="cuda", dtype=dtype)
    a = f1.clone().requires_grad_()
    b = f2.clone().requires_grad_()

    def bwd(fn):
        def run():
            out = fn(a, b)
            return torch.autograd.grad(out, (a, b), g)

        return run

    timed("opforge_fwd_bwd", bwd(lambda x, y: torch.ops.opforge.correlation(x, y, *al)))
    timed("opforge_backward_only", lambda: torch.ops.opforge.correlation_backward(f1, f2, g, *al))
    timed("eager_reference_fwd_bwd", bwd(lambda x, y: ref(x, y, *al)))
    if sampler is not None:
        timed("localcorr_fwd_bwd", bwd(lambda x, y: sampler(x, y)))

    entry["us"] = timings
    ours = timings.get("opforge")
    fastest = min(
        (v for k, v in timings.items() if k in ("eager_reference", "compile_reference", "localcorr") and v is not None),
        default=None,
    )
    if ours and fastest:
        entry["speedup_vs_fastest_other"] = fastest / ours
    for k in ("eager_reference", "compile_reference", "localcorr"):
        if ours and timings.get(k):
            entry[f"speedup_vs_{k}"] = timings[k] / ours
    if ours:
        entry["effective_GBps"] = entry["bytes_moved"] / (ours * 1e-6) / 1e9
    if timings.get("opforge_fwd_bwd") and timings.get("eager_reference_fwd_bwd"):
        entry["fwd_bwd_speedup_vs_eager"] = timings["eager_reference_fwd_bwd"] / timings["opforge_fwd_bwd"]
    if timings.get("opforge_fwd_bwd") and timings.get("localcorr_fwd_bwd"):
        entry["fwd_bwd_speedup_vs_localcorr"] = timings["localcorr_fwd_bwd"] / timings["opforge_fwd_bwd"]
    print(json.dumps(entry), flush=True)
    RESULTS["bench"].append(entry)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="correlation_gpu.json")
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    ops.load_extension()
    RESULTS.update(
        card=torch.cuda.get_device_name(),
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        torch=torch.__version__,
        host=platform.node(),
    )
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for shape, attrs in CHECKS:
            check_case(shape, attrs, dtype)
    if not args.skip_bench:
        for shape, patch, dp, dtype in (
            ((4, 64, 90, 160), 9, 1, torch.float32),
            ((4, 64, 90, 160), 9, 1, torch.float16),
            ((4, 64, 90, 160), 9, 1, torch.bfloat16),
            ((8, 196, 24, 40), 9, 1, torch.float32),  # PWC-Net coarse level
            ((4, 256, 48, 64), 21, 2, torch.float32),
        ):  # FlowNetC
            try:
                bench_case(shape, patch, dp, dtype)
            except Exception as e:
                print(f"bench {shape} patch {patch} {dtype} failed: {type(e).__name__}: {e}", flush=True)
                RESULTS["bench"].append({"shape": list(shape), "patch": patch, "error": f"{type(e).__name__}: {e}"})
    failed = [c["case"] for c in RESULTS["cases"] if not c["ok"]]
    RESULTS["summary"] = {"cases": len(RESULTS["cases"]), "failed": failed}
    with open(args.out, "w") as f:
        json.dump(RESULTS, f, indent=1)
    print(f"{len(RESULTS['cases']) - len(failed)}/{len(RESULTS['cases'])} checks passed; wrote {args.out}")


if __name__ == "__main__":
    main()
