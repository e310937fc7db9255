"""GPU check and benchmark of opforge::modulated_deform_conv2d_backward: the tiled input gradients (OPFORGE_DCN_BACKWARD=tiled)
against the legacy kernel (the default until this script shows the tiled one correct and faster; read at each call, so both run in this one process)
and torchvision.ops.deform_conv2d.

    python3 -m ops.build && PYTHONPATH=. python3 benchmarks/gpu_bench_dcn_backward.py OUT.json
    # compute-sanitizer over each kernel once, small shapes (no timing, no torchvision):
    PYTHONPATH=. compute-sanitizer --tool memcheck --error-exitcode 9 python3 benchmarks/gpu_bench_dcn_backward.py --sanitize s.json
    PYTHONPATH=. compute-sanitizer --tool racecheck --error-exitcode 9 python3 benchmarks/gpu_bench_dcn_backward.py --sanitize s.json

1. Correctness, for each backward mode (tiled, legacy) and dtype (float32, float16, bfloat16), on the cases of
   gpu_check_modulated_deform_conv2d.py plus cases that exercise the tiled kernel's edges (several output
   channel steps, channel chunks that straddle deformable groups, a deformable group spanning convolution
   groups): the five gradients against opforge's CPU backward kernel (same rounded inputs, float32 inside)
   and torchvision's autograd in float32; and border / NaN / inf positions against the CPU kernel with NaNs
   required in the same places.
2. Benchmark at x 4x64x90x160, 3x3 -> 64, padding 1, mask and bias, float32 and float16: backward alone
   (opforge's backward op; torchvision's autograd backward of a recorded forward) and forward+backward,
   for tiled, legacy and torchvision; medians of CUDA-event timings; plus a per-kernel breakdown of one
   backward of each mode (torch.profiler).
One JSON file at the path argument. A failing case or timing is recorded and the rest still run."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import traceback
from pathlib import Path

if "--sanitize" in sys.argv:  # every tensor its own allocation, so memcheck sees accesses past a tensor's end
    os.environ.setdefault("PYTORCH_NO_CUDA_MEMORY_CACHING", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from gpu_check_modulated_deform_conv2d import CASES, make_inputs, rel_err, tv_forward

import ops  # noqa: F401  (registers torch.ops.opforge.*)

FWD = torch.ops.opforge.modulated_deform_conv2d
BWD = torch.ops.opforge.modulated_deform_conv2d_backward
MODES = ("tiled", "legacy")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
NAMES = ("grad_x", "grad_offset", "grad_weight", "grad_mask", "grad_bias")
# Relative to max |reference|. vs CPU: same rounded inputs, float32 arithmetic on both sides, only the output
# rounding differs (half types) and the summation order. vs torchvision (float32 on the rounded inputs):
# grad_offset multiplies pixel differences of x, so half precision outputs carry larger relative error.
TOL_CPU = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 2e-2}
TOL_TV = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}

# (name, B, Cin, H, W, Cout, kh, kw, stride, padding, dilation, groups, dg, mask, bias), as in CASES.
EXTRA_CASES = [
    # Cout/groups = 160: three output-channel steps of the tiled GEMM (grad_out tile reloaded per step).
    ("cout160", 1, 40, 12, 11, 160, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, True, True),
    # Cd = 24: a warp's 32 channels straddle two deformable groups (shared-atomic reduction path).
    ("dg2_cd24", 2, 48, 10, 13, 33, 3, 3, (1, 1), (1, 1), (1, 1), 1, 2, True, True),
    # One deformable group across two convolution groups of 32 channels.
    ("groups2_dg1_wide", 2, 64, 9, 14, 48, 3, 3, (1, 1), (1, 1), (1, 1), 2, 1, True, False),
    # Depthwise-like: Cg = 1.
    ("depthwise", 1, 8, 9, 9, 8, 3, 3, (1, 1), (1, 1), (1, 1), 8, 8, True, True),
    # 5x5 taps, stride 2, no mask, pixel count not a multiple of the 64-pixel tile.
    ("k5_s2_nomask", 3, 36, 17, 23, 20, 5, 5, (2, 2), (2, 2), (1, 1), 1, 3, False, True),
]
SMALL = [
    "base",
    "groups2",
    "dg2",
    "groups2_dg4",
    "odd_sizes",
    "dg8_fallback",
    "cout160",
    "dg2_cd24",
    "groups2_dg1_wide",
    "k5_s2_nomask",
]


def set_mode(mode: str) -> None:
    os.environ["OPFORGE_DCN_BACKWARD"] = mode


def bwd_call(inputs, grad, attrs):
    x, offset, weight, mask, _ = inputs
    return BWD(
        x,
        offset,
        weight,
        grad,
        mask,
        attrs["stride"],
        attrs["padding"],
        attrs["dilation"],
        attrs["groups"],
        attrs["deformable_groups"],
    )


def tv_grads(inputs, grad, attrs, shapes):
    """torchvision's autograd gradients in float32 (mask = 1 and bias = 0 where absent, as the op defines)."""
    leaves = [None if t is None else t.detach().float().clone().requires_grad_() for t in inputs]
    if leaves[3] is None:
        leaves[3] = torch.ones(shapes[3], device="cuda", requires_grad=True)
    if leaves[4] is None:
        leaves[4] = torch.zeros(shapes[4], device="cuda", requires_grad=True)
    tv_forward(*leaves, attrs).backward(grad.float())
    return [t.grad for t in leaves]


def check_case(case, dtype, results, with_tv=True):
    name = f"{case[0]}[{str(dtype).split('.')[-1]}]"
    try:
        inputs, attrs = make_inputs(case, dtype, seed=sum(map(ord, case[0])))
        out = torch.ops.opforge.modulated_deform_conv2d(
            *inputs, attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"], attrs["deformable_groups"]
        )
        grad = torch.randn(out.shape, device="cuda").to(dtype)
        cpu = bwd_call([None if t is None else t.cpu() for t in inputs], grad.cpu(), attrs)
        tv = tv_grads(inputs, grad, attrs, [g.shape for g in cpu]) if with_tv else None
        for mode in MODES:
            set_mode(mode)
            try:
                got = [g.clone() for g in bwd_call(inputs, grad, attrs)]
                torch.cuda.synchronize()
                errs = {}
                for k, n in enumerate(NAMES):
                    errs[n] = dict(vs_cpu=rel_err(got[k].cpu(), cpu[k]))
                    if tv is not None:
                        errs[n]["vs_torchvision"] = rel_err(got[k], tv[k])
                ok = all(
                    e["vs_cpu"] <= TOL_CPU[dtype] and e.get("vs_torchvision", 0.0) <= TOL_TV[dtype]
                    for e in errs.values()
                )
                print(
                    f"{'PASS' if ok else 'FAIL'} {name} {mode}: "
                    + ", ".join(
                        f"{n} {e['vs_cpu']:.1e}" + (f"/{e['vs_torchvision']:.1e}" if "vs_torchvision" in e else "")
                        for n, e in errs.items()
                    ),
                    flush=True,
                )
                results.append(dict(case=case[0], dtype=str(dtype), mode=mode, ok=ok, errors=errs))
            except Exception as e:
                print(f"FAIL {name} {mode}: {type(e).__name__}: {e}", flush=True)
                traceback.print_exc()
                results.append(
                    dict(case=case[0], dtype=str(dtype), mode=mode, ok=False, error=f"{type(e).__name__}: {e}")
                )
    except Exception as e:
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        results.append(dict(case=case[0], dtype=str(dtype), ok=False, error=f"{type(e).__name__}: {e}"))


def check_borders(dtype, results):
    """Offsets putting positions exactly on the lines -1 and H / W, on pixels, beyond, at +-inf and NaN.
    Against the CPU kernel: finite values within tolerance, non-finite values in the same places."""
    name = f"borders[{str(dtype).split('.')[-1]}]"
    try:
        case = ("borders", 2, 40, 5, 6, 7, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, True, True)
        inputs, attrs = make_inputs(case, dtype, seed=7)
        off = inputs[1].float()
        g = torch.Generator().manual_seed(3)
        choices = torch.tensor(
            [-1.0, 0.0, 1.0, -2.0, 2.0, 5.0, 6.0, -7.0, 100.0, float("inf"), -float("inf"), float("nan"), 0.5, -0.5]
        )
        pick = torch.randint(0, len(choices), off.shape, generator=g)
        sel = torch.rand(off.shape, generator=g) < 0.6
        off = torch.where(sel.cuda(), choices[pick].cuda(), off.round())  # integer offsets: exact border lines
        inputs[1] = off.to(dtype)
        out_shape = (2, 7, 5, 6)
        grad = torch.randn(out_shape, device="cuda").to(dtype)
        cpu = bwd_call([None if t is None else t.cpu() for t in inputs], grad.cpu(), attrs)
        for mode in MODES:
            set_mode(mode)
            got = [t.cpu() for t in bwd_call(inputs, grad, attrs)]
            errs, ok = {}, True
            for k, n in enumerate(NAMES):
                a, b = got[k].double(), cpu[k].double()
                same_nonfinite = bool(
                    torch.equal(torch.isnan(a), torch.isnan(b))
                    and torch.equal(torch.isinf(a), torch.isinf(b))
                    and torch.equal(a[torch.isinf(a)], b[torch.isinf(b)])
                )
                fin = torch.isfinite(a) & torch.isfinite(b)
                e = rel_err(a[fin], b[fin]) if fin.any() else 0.0
                errs[n] = dict(vs_cpu=e, same_nonfinite=same_nonfinite, n_nan=int(torch.isnan(b).sum()))
                ok = ok and same_nonfinite and e <= TOL_CPU[dtype]
            print(
                f"{'PASS' if ok else 'FAIL'} {name} {mode}: "
                + ", ".join(
                    f"{n} {e['vs_cpu']:.1e} nonfinite {'same' if e['same_nonfinite'] else 'DIFFER'} ({e['n_nan']} NaN)"
                    for n, e in errs.items()
                ),
                flush=True,
            )
            results.append(dict(case="borders", dtype=str(dtype), mode=mode, ok=ok, errors=errs))
    except Exception as e:
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        results.append(dict(case="borders", dtype=str(dtype), ok=False, error=f"{type(e).__name__}: {e}"))


def check_empty(results):
    for mode in MODES:
        try:
            set_mode(mode)
            inputs, attrs = make_inputs(CASES[0], torch.float32)
            inputs = [t if t is None or k in (2, 4) else t[:0] for k, t in enumerate(inputs)]
            grad = torch.zeros(0, 6, 11, 13, device="cuda")
            got = bwd_call(inputs, grad, attrs)
            ok = got[0].shape[0] == 0 and bool((got[2] == 0).all()) and bool((got[4] == 0).all())
            print(f"{'PASS' if ok else 'FAIL'} empty batch {mode}", flush=True)
            results.append(dict(case="empty", mode=mode, ok=ok))
        except Exception as e:
            print(f"FAIL empty batch {mode}: {type(e).__name__}: {e}", flush=True)
            results.append(dict(case="empty", mode=mode, ok=False, error=str(e)))


def median_ms(fn, warmup=5, reps=25):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def kernel_breakdown(fn):
    """{kernel name (shortened): total CUDA time in us} over one call of fn."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    rows = {}
    for ev in prof.key_averages():
        if not str(getattr(ev, "device_type", "")).endswith("CUDA"):
            continue  # CPU-side op events also carry their kernels' device time
        t = getattr(ev, "self_device_time_total", None) or getattr(ev, "device_time_total", 0)
        if t > 0:
            key = ev.key.split("(")[0].split("<")[0].split("::")[-1][:60] + (
                "" if "<" not in ev.key else "<" + ev.key.split("<")[1].split(">")[0][:30] + ">"
            )
            rows[key] = rows.get(key, 0.0) + t
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]))


def bench(rows):
    b, c, h, w, cout = 4, 64, 90, 160, 64
    case = ("bench", b, c, h, w, cout, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, True, True)
    for dtype in (torch.float32, torch.float16):
        row = dict(
            dtype=str(dtype),
            shape=dict(x=[b, c, h, w], weight=[cout, c, 3, 3], padding=[1, 1], mask=True, bias=True),
            unit="ms",
        )
        rows.append(row)
        try:
            inputs, attrs = make_inputs(case, dtype)
            inputs[1] = inputs[1] / 2  # offsets ~ N(0, 1), as gpu_check_modulated_deform_conv2d.py
            grad = torch.randn(b, cout, h, w, device="cuda", dtype=dtype)
            leaves = [t.detach().clone().requires_grad_() for t in inputs]

            def op_fwd_bwd():
                out = FWD(*leaves, attrs["stride"], attrs["padding"], attrs["dilation"], 1, 1)
                torch.autograd.grad(out, leaves, grad)

            for mode in MODES:
                set_mode(mode)
                try:
                    row[f"{mode}_bwd"] = median_ms(lambda: bwd_call(inputs, grad, attrs))
                    row[f"{mode}_fwd_bwd"] = median_ms(op_fwd_bwd)
                    row[f"{mode}_bwd_kernels_us"] = kernel_breakdown(lambda: bwd_call(inputs, grad, attrs))
                except Exception as e:
                    row[f"{mode}_error"] = f"{type(e).__name__}: {e}"[:300]
            set_mode("tiled")
            try:
                row["opforge_fwd"] = median_ms(
                    lambda: FWD(*inputs, attrs["stride"], attrs["padding"], attrs["dilation"], 1, 1)
                )
                row["torchvision_fwd"] = median_ms(lambda: tv_forward(*inputs, attrs))
                tv_leaves = [t.detach().clone().requires_grad_() for t in inputs]
                tv_out = tv_forward(*tv_leaves, attrs)
                row["torchvision_bwd"] = median_ms(
                    lambda: torch.autograd.grad(tv_out, tv_leaves, grad, retain_graph=True)
                )

                def tv_fwd_bwd():
                    out = tv_forward(*tv_leaves, attrs)
                    torch.autograd.grad(out, tv_leaves, grad)

                row["torchvision_fwd_bwd"] = median_ms(tv_fwd_bwd)
                for mode in MODES:
                    if f"{mode}_fwd_bwd" in row:
                        row[f"{mode}_fwd_bwd_speedup_vs_torchvision"] = (
                            row["torchvision_fwd_bwd"] / row[f"{mode}_fwd_bwd"]
                        )
                        row[f"{mode}_bwd_speedup_vs_torchvision"] = row["torchvision_bwd"] / row[f"{mode}_bwd"]
            except Exception as e:
                row["torchvision_error"] = f"{type(e).__name__}: {e}"[:300]
            # Accuracy at the benchmark size: tiled vs legacy and vs torchvision float32 gradients.
            try:
                set_mode("tiled")
                got = [g.clone() for g in bwd_call(inputs, grad, attrs)]
                set_mode("legacy")
                leg = bwd_call(inputs, grad, attrs)
                tv = tv_grads(inputs, grad, attrs, [g.shape for g in got])
                row["tiled_rel_err_vs_legacy"] = {n: rel_err(got[k], leg[k]) for k, n in enumerate(NAMES)}
                row["tiled_rel_err_vs_torchvision_fp32"] = {n: rel_err(got[k], tv[k]) for k, n in enumerate(NAMES)}
            except Exception as e:
                row["accuracy_error"] = f"{type(e).__name__}: {e}"[:300]
            set_mode("tiled")
        except Exception as e:
            row["error"] = f"{type(e).__name__}: {e}"[:300]
            traceback.print_exc()
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("_kernels_us")}), flush=True)
        for mode in MODES:
            if f"{mode}_bwd_kernels_us" in row:
                print(
                    f"  {mode} backward kernels (us): "
                    + ", ".join(f"{k} {v:.0f}" for k, v in list(row[f"{mode}_bwd_kernels_us"].items())[:8]),
                    flush=True,
                )


def main():
    global MODES
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="gpu_bench_dcn_backward.json")
    ap.add_argument("--sanitize", action="store_true", help="each kernel once on small shapes, no timing")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--modes", default="tiled,legacy", help="backward modes to check (comma-separated)")
    args = ap.parse_args()
    MODES = tuple(m for m in args.modes.split(",") if m)
    info = dict(
        card=torch.cuda.get_device_name(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        sanitize=args.sanitize,
    )
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except Exception as e:
        info["torchvision_error"] = str(e)
    print(json.dumps(info), flush=True)
    torch.manual_seed(0)
    results: list = []
    bench_rows: list = []
    all_cases = CASES + EXTRA_CASES
    if args.sanitize:
        for case in all_cases:
            if case[0] in SMALL:
                for dtype in DTYPES:
                    check_case(case, dtype, results, with_tv=False)
        check_borders(torch.float32, results)
        check_empty(results)
    else:
        for case in all_cases:
            for dtype in DTYPES:
                check_case(case, dtype, results)
        for dtype in DTYPES:
            check_borders(dtype, results)
        check_empty(results)
        if not args.no_bench:
            bench(bench_rows)
    passed = sum(bool(r.get("ok")) for r in results)
    print(f"{passed}/{len(results)} correctness checks passed", flush=True)
    for r in bench_rows:
        dt = r["dtype"].split(".")[-1]
        fmt = lambda k: f"{r[k]:.3f}" if isinstance(r.get(k), float) else "-"  # noqa: E731
        print(
            f"{dt}: bwd tiled {fmt('tiled_bwd')} legacy {fmt('legacy_bwd')} torchvision {fmt('torchvision_bwd')} ms; "
            f"fwd+bwd tiled {fmt('tiled_fwd_bwd')} legacy {fmt('legacy_fwd_bwd')} torchvision "
            f"{fmt('torchvision_fwd_bwd')} ms; fwd opforge {fmt('opforge_fwd')} torchvision {fmt('torchvision_fwd')}",
            flush=True,
        )
    with open(args.out, "w") as f:
        json.dump(dict(info=info, correctness=results, benchmark=bench_rows), f, indent=1)
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
