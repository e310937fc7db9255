"""GPU check of opforge::multi_scale_deformable_attn (and its backward op) on a CUDA machine (the H100).

    TORCH_CUDA_ARCH_LIST=9.0 python -m ops.build && \\
        PYTHONPATH=. python benchmarks/gpu_check_multi_scale_deformable_attn.py --out msda.json \\
        [--peer .peer/deformable_detr/models/ops/src]

1. Builds the official Deformable-DETR extension (MultiScaleDeformableAttention) with torch's JIT loader from a
   copy of --peer in a temporary directory, patching there what torch 2.x refuses (`.type()`, `.data<T>()`,
   THC, AT_ASSERTM/AT_ERROR). Nothing of it is kept. If it cannot be built, the rest still runs without it.
2. Correctness, one PASS/FAIL line per case (a failure does not stop the rest): our CUDA forward and backward
   vs the grid_sample core (ms_deform_attn_core_pytorch's computation, float64 on the same rounded inputs) and
   vs the official kernels (float32; the official extension has no float16/bfloat16 kernels, so half-precision
   results are compared with its float32 run on the same rounded inputs; whether it refuses float16 is recorded).
3. Timing at Deformable DETR's sizes for a 512x512 image (levels 64x64, 32x32, 16x16, 8x8 from strides 8..64,
   S = 5440; M = 8, D = 32, P = 4), N = 2 and 4, encoder (Lq = S) and decoder (Lq = 300): forward and
   forward+backward (autograd over value, sampling_locations and attention_weights), float32 and float16, ours vs
   the official extension (im2col_step 64, its default in MSDeformAttn; float32 only, so our float16 is compared
   with its float32 and the JSON says so) and vs the grid_sample core. Targets: forward >= 1.5x the official,
   forward+backward >= 1x. Medians of CUDA-event timings; JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from cuda_timing import cuda_time_us, run_info

import ops  # noqa: F401  (registers torch.ops.opforge.*)
from ops.library.multi_scale_deformable_attn import make_sample

FWD = torch.ops.opforge.multi_scale_deformable_attn
BWD = torch.ops.opforge.multi_scale_deformable_attn_backward
REALISTIC_LEVELS = [(64, 64), (32, 32), (16, 16), (8, 8)]
FWD_TARGET, FWD_BWD_TARGET = 1.5, 1.0


# ---- the official extension ------------------------------------------------------------------------------------


def _patch(text: str) -> str:
    """What torch 2.x no longer accepts in the 2020 sources (applied to a temporary copy only)."""
    text = re.sub(r"(\w+)\.type\(\)\.is_cuda\(\)", r"\1.is_cuda()", text)
    text = re.sub(r"\.type\(\)", ".scalar_type()", text)
    text = re.sub(r"\.data<(\w+)>\(\)", r".data_ptr<\1>()", text)
    text = text.replace("#include <THC/THCAtomics.cuh>", "")
    text = text.replace("AT_ASSERTM(", "TORCH_CHECK(")
    text = re.sub(r"AT_ERROR\(", "TORCH_CHECK(false, ", text)
    return text


def build_official(src: Path):
    from torch.utils.cpp_extension import load

    tmp = Path(tempfile.mkdtemp(prefix="msda_official_"))
    shutil.copytree(src, tmp / "src")
    for f in (tmp / "src").rglob("*"):
        if f.suffix in (".h", ".cuh", ".cpp", ".cu"):
            f.write_text(_patch(f.read_text()))
    s = tmp / "src"
    sources = [s / "vision.cpp", *sorted((s / "cpu").glob("*.cpp")), *sorted((s / "cuda").glob("*.cu"))]
    t0 = time.time()
    mod = load(
        name="MultiScaleDeformableAttention_peer",
        sources=[str(p) for p in sources],
        extra_include_paths=[str(s)],
        extra_cflags=["-O3", "-DWITH_CUDA"],
        extra_cuda_cflags=[
            "-O3",
            "-DWITH_CUDA",
            "-DCUDA_HAS_FP16=1",
            "-D__CUDA_NO_HALF_OPERATORS__",
            "-D__CUDA_NO_HALF_CONVERSIONS__",
            "-D__CUDA_NO_HALF2_OPERATORS__",
        ],
        build_directory=str(tmp),
        verbose=False,
    )
    return mod, time.time() - t0


class OfficialFunction(torch.autograd.Function):
    """The official forward/backward under autograd (what MSDeformAttnFunction does)."""

    @staticmethod
    def forward(ctx, ext, value, shapes, start, loc, attn, step):
        ctx.ext, ctx.step = ext, step
        ctx.save_for_backward(value, shapes, start, loc, attn)
        return ext.ms_deform_attn_forward(value, shapes, start, loc, attn, step)

    @staticmethod
    def backward(ctx, grad):
        value, shapes, start, loc, attn = ctx.saved_tensors
        gv, gl, ga = ctx.ext.ms_deform_attn_backward(value, shapes, start, loc, attn, grad.contiguous(), ctx.step)
        return None, gv, None, None, gl, ga, None


# ---- the grid_sample core (ms_deform_attn_core_pytorch's computation) --------------------------------------------


def grid_sample_core(value, spatial_shapes, sampling_locations, attention_weights, levels):
    n, _, m, d = value.shape
    _, lq, _, nl, p, _ = sampling_locations.shape
    per_level = value.split([h * w for h, w in levels], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for lid, (h, w) in enumerate(levels):
        v = per_level[lid].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        g = grids[:, :, :, lid].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    a = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, nl * p)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * a).sum(-1).view(n, m * d, lq)
    return out.transpose(1, 2).contiguous()


def inputs(n, levels, m, d, lq, p, dtype, loc_range=(-0.05, 1.05), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        t.cuda() for t in make_sample("cpu", dtype, n, levels, m, d, lq, p, loc_range, grad=True, generator=g).inputs
    ]


def rel_err(a, ref):
    a, ref = a.double(), ref.double()
    return ((a - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item() if ref.numel() else 0.0


# ---- correctness ------------------------------------------------------------------------------------------------

CASES = [  # name, N, levels, M, D, Lq, P, location range
    ("ddetr_small", 2, [(16, 16), (8, 8), (4, 4), (2, 2)], 8, 32, 100, 4, (-0.05, 1.05)),
    ("non_square", 3, [(9, 13), (5, 7), (3, 2)], 4, 32, 57, 3, (-0.2, 1.2)),
    ("odd_D", 2, [(7, 5), (3, 3)], 3, 7, 33, 2, (-0.1, 1.1)),  # VEC 1
    ("D_2", 1, [(6, 6), (3, 3)], 5, 2, 20, 4, (0.0, 1.0)),  # VEC 2
    ("D_96", 2, [(8, 11), (4, 6)], 2, 96, 17, 2, (-0.1, 1.1)),  # G 32 with VEC 1..4: several channel passes
    ("D_264", 1, [(5, 4)], 1, 264, 9, 3, (-0.1, 1.1)),  # more than one 32-lane pass for every VEC
    ("far_outside", 2, [(10, 6), (4, 3)], 2, 16, 40, 4, (-2.0, 3.0)),
    ("one_level_P1", 4, [(12, 12)], 1, 8, 64, 1, (0.0, 1.0)),
    ("realistic_decoder", 2, REALISTIC_LEVELS, 8, 32, 300, 4, (-0.05, 1.05)),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Error bound relative to max |reference| (inputs rounded to the dtype first: this measures the kernels' arithmetic).
FWD_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
BWD_TOL = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}
NAMES = ("grad_value", "grad_sampling_locations", "grad_attention_weights")


# Channels per lane: the launcher's choice, then each width forced (OPFORGE_MSDA_VEC; a width that does not fit
# the dtype, D or alignment falls back to the launcher's choice). The small cases here would otherwise only run
# the narrow widths the launcher picks for few rows.
VEC_MODES = ("auto", "1", "2", "4", "8")


def set_vec(mode: str) -> None:
    if mode == "auto":
        os.environ.pop("OPFORGE_MSDA_VEC", None)
    else:
        os.environ["OPFORGE_MSDA_VEC"] = mode


def check_case(case, dtype, official, results, vec="auto"):
    name, n, levels, m, d, lq, p, rng = case
    label = f"{name}[{str(dtype).split('.')[-1]}, vec {vec}]"
    set_vec(vec)
    try:
        value, shapes, start, loc, attn, grad = inputs(n, levels, m, d, lq, p, dtype, rng)
        f64 = [t.double() if t.is_floating_point() else t for t in (value, shapes, start, loc, attn, grad)]
        leaves = [f64[0].clone().requires_grad_(), f64[3].clone().requires_grad_(), f64[4].clone().requires_grad_()]
        ref = grid_sample_core(leaves[0], shapes, leaves[1], leaves[2], levels)
        ref_grads = torch.autograd.grad(ref, leaves, f64[5])
        out = FWD(value, shapes, start, loc, attn)
        grads = BWD(value, shapes, start, loc, attn, grad)
        torch.cuda.synchronize()
        row = dict(
            case=name,
            dtype=str(dtype),
            vec=vec,
            fwd_vs_core=rel_err(out, ref),
            bwd_vs_core={k: rel_err(a, b) for k, a, b in zip(NAMES, grads, ref_grads)},
        )
        ok = row["fwd_vs_core"] <= FWD_TOL[dtype] and all(e <= BWD_TOL[dtype] for e in row["bwd_vs_core"].values())
        if official is not None:
            f32 = [t.float() if t.is_floating_point() else t for t in (value, shapes, start, loc, attn, grad)]
            o_out = official.ms_deform_attn_forward(*f32[:5], 64)
            o_grads = official.ms_deform_attn_backward(*f32, 64)
            torch.cuda.synchronize()
            row["fwd_vs_official_fp32"] = rel_err(out, o_out)
            row["bwd_vs_official_fp32"] = {k: rel_err(a, b) for k, a, b in zip(NAMES, grads, o_grads)}
            ok = (
                ok
                and row["fwd_vs_official_fp32"] <= FWD_TOL[dtype]
                and all(e <= BWD_TOL[dtype] for e in row["bwd_vs_official_fp32"].values())
            )
        # The CPU kernels on the same inputs (they share the point arithmetic).
        cpu_out = FWD(*[t.cpu() for t in (value, shapes, start, loc, attn)])
        row["fwd_vs_cpu_kernel"] = rel_err(out.cpu(), cpu_out)
        ok = ok and row["fwd_vs_cpu_kernel"] <= FWD_TOL[dtype]
        row["ok"] = ok
        print(
            f"{'PASS' if ok else 'FAIL'} {label}: fwd vs core {row['fwd_vs_core']:.1e}"
            + (f", vs official {row['fwd_vs_official_fp32']:.1e}" if official is not None else "")
            + f", vs cpu {row['fwd_vs_cpu_kernel']:.1e}; bwd vs core "
            + ", ".join(f"{k[5:]} {e:.1e}" for k, e in row["bwd_vs_core"].items())
            + (
                "; vs official " + ", ".join(f"{k[5:]} {e:.1e}" for k, e in row["bwd_vs_official_fp32"].items())
                if official is not None
                else ""
            ),
            flush=True,
        )
        results.append(row)
    except Exception as e:  # one failing case must not stop the rest
        print(f"FAIL {label}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        results.append(dict(case=name, dtype=str(dtype), vec=vec, ok=False, error=f"{type(e).__name__}: {e}"[:400]))
    set_vec("auto")


def check_edges(results):
    """Empty inputs, NaN locations, and level tensors inconsistent with S (must not fault: compute-sanitizer)."""

    def run(label, fn):
        try:
            detail = fn()
            print(f"PASS {label}: {detail}", flush=True)
            results.append(dict(case=label, ok=True, detail=detail))
        except Exception as e:
            print(f"FAIL {label}: {type(e).__name__}: {e}", flush=True)
            results.append(dict(case=label, ok=False, error=f"{type(e).__name__}: {e}"[:400]))

    def empty():
        v, sh, st, lc, a, g = inputs(2, [(3, 4), (2, 3)], 2, 8, 0, 2, torch.float32)
        out = FWD(v, sh, st, lc, a)
        gv, gl, ga = BWD(v, sh, st, lc, a, g)
        assert out.shape == (2, 0, 16) and gv.shape == v.shape and bool((gv == 0).all())
        v, sh, st, lc, a, g = inputs(0, [(3, 4), (2, 3)], 2, 8, 5, 2, torch.float16)
        assert FWD(v, sh, st, lc, a).shape == (0, 5, 16)
        return "Lq = 0 and N = 0"

    def nan_point():
        v, sh, st, lc, a, g = inputs(2, [(3, 4), (2, 3)], 2, 8, 4, 2, torch.float32)
        lc[0, 1, 0, 0, 0, 0] = float("nan")
        out = FWD(v, sh, st, lc, a)
        gv, gl, ga = BWD(v, sh, st, lc, a, g)
        assert torch.isnan(out[0, 1, :8]).all() and int((~torch.isfinite(out)).sum()) == 8
        assert torch.isnan(ga[0, 1, 0, 0, 0]) and int((~torch.isfinite(ga)).sum()) == 1
        assert bool((gl[0, 1, 0, 0, 0] == 0).all()) and bool(torch.isfinite(gv).all())
        return "NaN location: NaN sample, NaN attention-weight gradient, no location/value gradient"

    def inconsistent():
        v, sh, st, lc, a, g = inputs(2, [(3, 4), (2, 3)], 2, 8, 6, 3, torch.float32)
        bad = [
            (torch.tensor([[30, 40], [2, 3]]), st.cpu()),
            (sh.cpu(), torch.tensor([-5, 17])),
            (torch.tensor([[1 << 40, 1 << 40], [-1, 3]]), torch.tensor([1 << 62, 12])),
        ]
        for bsh, bst in bad:
            FWD(v, bsh.cuda(), bst.cuda(), lc, a)
            BWD(v, bsh.cuda(), bst.cuda(), lc, a, g)
        torch.cuda.synchronize()
        return "3 inconsistent level tensors ran without a fault (run under compute-sanitizer to prove no OOB)"

    run("empty", empty)
    run("nan_location", nan_point)
    run("inconsistent_levels", inconsistent)


# ---- timing ------------------------------------------------------------------------------------------------------


def time_us(fn, warmup=10, iters=20, repeats=7):
    return cuda_time_us(fn, warmup=warmup, repeats=repeats, calls=iters)


def graph_us(fn, iters=20, repeats=7):
    """Device time per call without the host: `iters` calls captured in one CUDA graph, replays timed. At the
    decoder's sizes the kernels take ~10-30 us and eager timings measure the host's launch path as much as the
    GPU; this column is the kernels alone."""
    fn()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()  # allocator warm-up on the capture stream
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(iters):
            fn()
    return time_us(graph.replay, warmup=3, iters=1, repeats=repeats) / iters


def kernel_time(row, key, fn):
    try:
        row[key] = graph_us(fn)
    except Exception as e:  # a capture the op does not allow is recorded, not hidden
        row[key] = None
        row[key + "_error"] = f"{type(e).__name__}: {e}"[:200]


def bench(official, rows, where=("encoder", "decoder")):
    s = sum(h * w for h, w in REALISTIC_LEVELS)
    for n in (2, 4):
        for lq, place in ((s, "encoder"), (300, "decoder")):
            if place not in where:
                continue
            for dtype in (torch.float32, torch.float16):
                row = dict(N=n, Lq=lq, where=place, S=s, M=8, D=32, L=4, P=4, dtype=str(dtype))
                try:
                    value, shapes, start, loc, attn, grad = inputs(n, REALISTIC_LEVELS, 8, 32, lq, 4, dtype)
                    leaves = [t.clone().requires_grad_() for t in (value, loc, attn)]

                    def ours_fwd_bwd():
                        out = FWD(leaves[0], shapes, start, leaves[1], leaves[2])
                        torch.autograd.grad(out, leaves, grad)

                    row["ours_fwd_us"] = time_us(lambda: FWD(value, shapes, start, loc, attn))
                    row["ours_bwd_op_us"] = time_us(lambda: BWD(value, shapes, start, loc, attn, grad))
                    row["ours_fwd_bwd_us"] = time_us(ours_fwd_bwd)
                    kernel_time(row, "ours_fwd_kernel_us", lambda: FWD(value, shapes, start, loc, attn))
                    kernel_time(row, "ours_bwd_op_kernel_us", lambda: BWD(value, shapes, start, loc, attn, grad))

                    core_leaves = [t.clone().requires_grad_() for t in (value, loc, attn)]

                    def core_fwd_bwd():
                        out = grid_sample_core(core_leaves[0], shapes, core_leaves[1], core_leaves[2], REALISTIC_LEVELS)
                        torch.autograd.grad(out, core_leaves, grad)

                    row["core_fwd_us"] = time_us(
                        lambda: grid_sample_core(value, shapes, loc, attn, REALISTIC_LEVELS), iters=5
                    )
                    row["core_fwd_bwd_us"] = time_us(core_fwd_bwd, iters=5)
                    row["fwd_speedup_vs_core"] = row["core_fwd_us"] / row["ours_fwd_us"]
                    row["fwd_bwd_speedup_vs_core"] = row["core_fwd_bwd_us"] / row["ours_fwd_bwd_us"]
                    if official is not None:
                        # The official kernels are float32/float64 only: a float16 row compares with its float32.
                        f32 = [
                            t.float() if t.is_floating_point() else t for t in (value, shapes, start, loc, attn, grad)
                        ]
                        o_leaves = [
                            f32[0].clone().requires_grad_(),
                            f32[3].clone().requires_grad_(),
                            f32[4].clone().requires_grad_(),
                        ]

                        def official_fwd_bwd():
                            out = OfficialFunction.apply(
                                official, o_leaves[0], shapes, start, o_leaves[1], o_leaves[2], 64
                            )
                            torch.autograd.grad(out, o_leaves, f32[5])

                        row["official_dtype"] = "float32"
                        row["official_fwd_us"] = time_us(lambda: official.ms_deform_attn_forward(*f32[:5], 64))
                        row["official_bwd_op_us"] = time_us(lambda: official.ms_deform_attn_backward(*f32, 64))
                        row["official_fwd_bwd_us"] = time_us(official_fwd_bwd)
                        kernel_time(
                            row, "official_fwd_kernel_us", lambda: official.ms_deform_attn_forward(*f32[:5], 64)
                        )
                        kernel_time(
                            row, "official_bwd_op_kernel_us", lambda: official.ms_deform_attn_backward(*f32, 64)
                        )
                        if row["ours_fwd_kernel_us"] and row["official_fwd_kernel_us"]:
                            row["fwd_kernel_speedup_vs_official"] = (
                                row["official_fwd_kernel_us"] / row["ours_fwd_kernel_us"]
                            )
                        if row["ours_bwd_op_kernel_us"] and row["official_bwd_op_kernel_us"]:
                            row["bwd_op_kernel_speedup_vs_official"] = (
                                row["official_bwd_op_kernel_us"] / row["ours_bwd_op_kernel_us"]
                            )
                        row["fwd_speedup_vs_official"] = row["official_fwd_us"] / row["ours_fwd_us"]
                        row["bwd_op_speedup_vs_official"] = row["official_bwd_op_us"] / row["ours_bwd_op_us"]
                        row["fwd_bwd_speedup_vs_official"] = row["official_fwd_bwd_us"] / row["ours_fwd_bwd_us"]
                        row["fwd_target_met"] = row["fwd_speedup_vs_official"] >= FWD_TARGET
                        row["fwd_bwd_target_met"] = row["fwd_bwd_speedup_vs_official"] >= FWD_BWD_TARGET
                        row["rel_err_vs_official_fp32"] = rel_err(
                            FWD(value, shapes, start, loc, attn), official.ms_deform_attn_forward(*f32[:5], 64)
                        )
                    print(
                        json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}),
                        flush=True,
                    )
                except Exception as e:
                    print(f"bench N={n} Lq={lq} {dtype} failed: {type(e).__name__}: {e}", flush=True)
                    traceback.print_exc()
                    row["error"] = f"{type(e).__name__}: {e}"[:400]
                rows.append(row)
                torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_check_multi_scale_deformable_attn.json")
    ap.add_argument(
        "--peer",
        default=".peer/deformable_detr/models/ops/src",
        help="the official extension's src directory (copied and patched in a temporary directory)",
    )
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--where", default="encoder,decoder", help="benchmark rows: encoder, decoder or both")
    args = ap.parse_args()
    info = run_info(targets=dict(fwd_vs_official=FWD_TARGET, fwd_bwd_vs_official=FWD_BWD_TARGET))
    print(json.dumps(info), flush=True)
    official = None
    try:
        official, secs = build_official(Path(args.peer))
        info["official_build_s"] = round(secs, 1)
        print(f"built the official extension from {args.peer} in {secs:.0f} s", flush=True)
        try:  # record whether it has a float16 kernel
            v, sh, st, lc, a, _ = inputs(1, [(4, 4)], 1, 8, 3, 1, torch.float16)
            official.ms_deform_attn_forward(v, sh, st, lc, a, 64)
            info["official_float16"] = "ran"
        except Exception as e:
            info["official_float16"] = f"refused: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        print(f"official float16: {info['official_float16']}", flush=True)
    except Exception as e:
        info["official_error"] = f"{type(e).__name__}: {e}"[-2000:]
        print(f"FAIL building the official extension: {info['official_error']}", flush=True)
    results: list = []
    for vec in VEC_MODES:
        for case in CASES:
            for dtype in DTYPES:
                check_case(case, dtype, official, results, vec)
    check_edges(results)
    rows: list = []
    if not args.no_bench:
        bench(official, rows, tuple(args.where.split(",")))
    passed = sum(r["ok"] for r in results)
    print(f"{passed}/{len(results)} correctness cases passed", flush=True)
    with open(args.out, "w") as f:
        json.dump(dict(info=info, correctness=results, benchmark=rows), f, indent=1)


if __name__ == "__main__":
    main()
