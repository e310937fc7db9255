"""GPU check of opforge::layer_norm on a CUDA machine, for whichever CUDA kernel the build linked: the hand-written
one (csrc/layer_norm/layer_norm_cuda.cu) or the Triton one (OPFORGE_CUDA_KERNELS=triton at build time; the
script reads which from the extension's Triton manifest symbol).

    python -m ops.build && PYTHONPATH=. python benchmarks/gpu_check_layer_norm.py --out cuda.json
    OPFORGE_CUDA_KERNELS=triton python -m ops.build && PYTHONPATH=. python benchmarks/gpu_check_layer_norm.py \
        --out triton.json

1. Correctness, float32/float16/bfloat16: every declared sample plus GPU cases (both CUDA paths: vectorised rows
   held in registers up to 2048 packs and the looping kernel past them; the Triton one-pass configs and the
   looping config past 16384 columns; misaligned views; cols not a multiple of 8; rows whose mean dwarfs their
   spread; many short rows; empty tensors), each with and without bias. The CUDA output against the float32
   reference on the same (rounded) inputs, against torch.nn.functional.layer_norm in float32, and against
   opforge's CPU kernel; the backward (autograd through the op) against autograd through
   torch.nn.functional.layer_norm in float32. One line PASS/FAIL per case; a failing case does not stop the rest.
2. Speed vs torch.nn.functional.layer_norm (same dtype, same weight/bias) at (4096, 1024/4096/8192),
   float16/bfloat16/float32, with and without bias: medians of CUDA-event timings (benchmarks/cuda_timing.py),
   the ratio torch time / opforge time and opforge's effective bandwidth. JSON to --out."""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import traceback

import torch
import torch.nn.functional as F
from cuda_timing import cuda_time_us, run_info

import ops

OP_ID = "opforge::layer_norm"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Elementwise bound |got - want| <= atol + rtol |want| against the float32 reference on the same rounded inputs:
# float32 math in both, so float32 differs by summation order; the half types by the output rounding.
TOL = {torch.float32: (5e-5, 5e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}
GRAD_TOL = {torch.float32: (1e-4, 1e-4), torch.float16: (1e-2, 1e-2), torch.bfloat16: (6e-2, 6e-2)}
EPS = 1e-5

# (name, shape, scale, shift, misalign): misalign > 0 puts x, weight and bias `misalign` elements into their
# storage on the GPU, so none of them is 16-byte aligned.
CASES = [
    ("short_rows", (1000, 64), 1.0, 0.0, 0),
    ("warp_rows_4_packs", (300, 1024), 1.0, 0.0, 0),  # float16: 128 packs, 4 per lane
    ("block_rows", (64, 4096), 300.0, 0.0, 0),  # float16 sums and squares overflow
    ("register_limit_fp16", (16, 16384), 1.0, 0.0, 0),  # float16/bfloat16: 2048 packs; float32: looping
    ("looping", (8, 20000), 1.0, 0.0, 0),  # past every register config and Triton's one-pass configs
    ("cols_4095", (33, 4095), 2.0, -1.0, 0),  # not a multiple of any pack
    ("cols_1003_misaligned", (17, 1003), 1.0, 0.0, 1),
    ("cols_1024_misaligned", (17, 1024), 1.0, 0.0, 3),  # a multiple of 8, but misaligned pointers
    ("shift_1000", (16, 4096), 1.0, 1000.0, 0),  # float32: E[x^2] - E[x]^2 would cancel
    ("rank3", (2, 3, 1000), 1.0, 0.0, 0),
    ("rank1", (129,), 1.0, 0.0, 0),
    ("one_col", (37, 1), 1.0, 0.0, 0),  # variance 0: y = bias
    ("many_short_rows", (300000, 8), 1.0, 0.0, 0),
    ("empty_rows", (0, 64), 1.0, 0.0, 0),
    ("empty_cols", (5, 0), 1.0, 0.0, 0),
]
BENCH_SHAPES = [(4096, 1024), (4096, 4096), (4096, 8192)]


def cuda_kernel_language() -> str:
    """'triton' when the loaded extension embeds layer_norm's Triton kernels (its manifest symbol), else 'cuda'."""
    spec = importlib.util.find_spec("ops._C")
    if spec is None or spec.origin is None:
        return "unknown"
    lib = ctypes.CDLL(spec.origin)
    try:
        manifest = lib.opforge_triton_manifest_opforge__layer_norm
    except AttributeError:
        return "cuda"
    manifest.restype = ctypes.c_char_p
    return "triton " + json.loads(manifest())["triton"]


def offset_view(t: torch.Tensor, k: int) -> torch.Tensor:
    """t's values in a tensor whose data starts k elements into its storage (k = 0: t itself)."""
    if k == 0:
        return t
    flat = torch.empty(t.numel() + k, dtype=t.dtype, device=t.device)
    out = flat[k:].view(t.shape)
    out.copy_(t)
    return out


def make_inputs(shape, scale, shift, misalign, dtype, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = shape[-1]
    x = (torch.randn(*shape, generator=g) * scale + shift).to(dtype)
    w = (1 + 0.1 * torch.randn(n, generator=g)).to(dtype)
    b = (0.1 * torch.randn(n, generator=g)).to(dtype) if bias else None
    cuda = [offset_view(t.cuda(), misalign) if t is not None else None for t in (x, w, b)]
    return (x, w, b), tuple(cuda)


def worst(got: torch.Tensor, want: torch.Tensor, tol) -> float:
    """max |got - want| / (atol + rtol |want|): <= 1 passes."""
    if got.shape != want.shape:
        return float("inf")
    if want.numel() == 0:
        return 0.0
    rtol, atol = tol
    g, w = got.double().cpu(), want.double().cpu()
    return ((g - w).abs() / (atol + rtol * w.abs())).max().item()


def call(x, w, b):
    op = ops.get_op(OP_ID)
    return op(x, w, b, eps=EPS) if b is not None else op(x, w, eps=EPS)


def torch_ln(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, EPS)


def check(name, shape, scale, shift, misalign, dtype, bias, results):
    label = f"{name}[{str(dtype).split('.')[-1]}, {'bias' if bias else 'no bias'}]"
    try:
        (x, w, b), (xc, wc, bc) = make_inputs(shape, scale, shift, misalign, dtype, bias)
        ref = ops.get_op(OP_ID).reference(x.float(), w.float(), None if b is None else b.float(), EPS)
        f32 = torch_ln(x.float(), w.float(), None if b is None else b.float())
        cpu = call(x, w, b)
        got = call(xc, wc, bc)
        torch.cuda.synchronize()
        tol = TOL[dtype]
        # float32: the rounding of a mean of magnitude |shift| relative to the spread (any float32 kernel has it).
        shift_term = 4 * abs(shift) * 2**-24 / scale
        tol = (tol[0], tol[1] + shift_term)
        row = dict(case=name, dtype=str(dtype), bias=bias, shape=list(shape), misalign=misalign)
        row["vs_reference"] = worst(got, ref, tol)
        row["vs_torch_fp32"] = worst(got, f32, tol)
        row["vs_cpu"] = worst(got, cpu, tol)
        row["finite"] = bool(torch.isfinite(got).all())
        ok = row["finite"] and max(row["vs_reference"], row["vs_torch_fp32"], row["vs_cpu"]) <= 1.0
        if x.numel() > 0 and x.numel() <= 1 << 22:
            leaves = [t.detach().clone().requires_grad_() for t in (xc, wc, bc) if t is not None]
            grad = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(device="cuda", dtype=dtype)
            gots = torch.autograd.grad(call(leaves[0], leaves[1], leaves[2] if bias else None), leaves, grad)
            ref_leaves = [t.detach().float().clone().requires_grad_() for t in (xc, wc, bc) if t is not None]
            want = torch.autograd.grad(
                torch_ln(ref_leaves[0], ref_leaves[1], ref_leaves[2] if bias else None), ref_leaves, grad.float()
            )
            # Sums over rows (weight, bias) grow with the row count: scale the bound by sqrt(rows).
            rows = x.numel() // max(shape[-1], 1)
            row["grad"] = {}
            for gname, g, r in zip(("x", "weight", "bias"), gots, want):
                gt = (GRAD_TOL[dtype][0], GRAD_TOL[dtype][1] + shift_term)
                if gname != "x":
                    gt = (gt[0], gt[1] * rows**0.5)
                row["grad"][gname] = worst(g, r, gt)
            ok &= max(row["grad"].values()) <= 1.0
        row["ok"] = bool(ok)
        grads = ", ".join(f"d{k} {v:.2f}" for k, v in row.get("grad", {}).items())
        print(
            f"{'PASS' if ok else 'FAIL'} {label}: error/bound vs reference {row['vs_reference']:.2f}, vs torch fp32 "
            f"{row['vs_torch_fp32']:.2f}, vs cpu {row['vs_cpu']:.2f}" + (f"; grads {grads}" if grads else ""),
            flush=True,
        )
        results.append(row)
    except Exception as e:  # one failing case must not stop the rest
        print(f"FAIL {label}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        results.append(dict(case=name, dtype=str(dtype), bias=bias, ok=False, error=f"{type(e).__name__}: {e}"))


def check_samples(results):
    """The declaration's own samples on CUDA against the reference."""
    decl = ops.get_op(OP_ID).decl
    for dtype in DTYPES:
        for i, s in enumerate(decl.samples("cuda", dtype)):
            label = f"sample {i}[{str(dtype).split('.')[-1]}]"
            try:
                got = ops.get_op(OP_ID)(*s.inputs, **s.attrs)
                up = [t.float().cpu() for t in s.inputs]
                ref = ops.get_op(OP_ID).reference(*up, **s.attrs)
                e = worst(got, ref, TOL[dtype] if dtype != torch.float32 else (5e-5, 5e-5))
                ok = e <= 1.0 and bool(torch.isfinite(got).all())
                print(f"{'PASS' if ok else 'FAIL'} {label} {list(s.inputs[0].shape)}: error/bound {e:.2f}", flush=True)
                results.append(dict(case=f"sample_{i}", dtype=str(dtype), ok=bool(ok), error_over_bound=e))
            except Exception as e:
                print(f"FAIL {label}: {type(e).__name__}: {e}", flush=True)
                results.append(dict(case=f"sample_{i}", dtype=str(dtype), ok=False, error=f"{type(e).__name__}: {e}"))


def bench(rows):
    for rows_n, cols in BENCH_SHAPES:
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            for bias in (True, False):
                row = dict(shape=[rows_n, cols], dtype=str(dtype), bias=bias)
                try:
                    _, (x, w, b) = make_inputs((rows_n, cols), 1.0, 0.0, 0, dtype, bias)
                    row["torch_us"] = cuda_time_us(lambda: torch_ln(x, w, b))
                    row["opforge_us"] = cuda_time_us(lambda: call(x, w, b))
                    row["ratio_torch_over_opforge"] = row["torch_us"] / row["opforge_us"]
                    moved = (2 * x.numel() + w.numel() + (b.numel() if b is not None else 0)) * x.element_size()
                    row["opforge_GBps"] = moved / row["opforge_us"] / 1e3
                    row["torch_GBps"] = moved / row["torch_us"] / 1e3
                    print(json.dumps(row), flush=True)
                except Exception as e:
                    print(f"bench {row} failed: {type(e).__name__}: {e}", flush=True)
                    traceback.print_exc()
                    row["error"] = f"{type(e).__name__}: {e}"
                rows.append(row)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_check_layer_norm.json")
    ap.add_argument("--no-bench", action="store_true")
    args = ap.parse_args()
    ops.load_extension()
    info = run_info(
        cuda_kernel=cuda_kernel_language(), OPFORGE_CUDA_KERNELS=os.environ.get("OPFORGE_CUDA_KERNELS", "cuda")
    )
    print(json.dumps(info), flush=True)
    results: list = []
    check_samples(results)
    for name, shape, scale, shift, misalign in CASES:
        for dtype in DTYPES:
            for bias in (True, False):
                check(name, shape, scale, shift, misalign, dtype, bias, results)
    bench_rows: list = []
    if not args.no_bench:
        bench(bench_rows)
    passed = sum(bool(r.get("ok")) for r in results)
    print(f"{passed}/{len(results)} correctness cases passed", flush=True)
    with open(args.out, "w") as f:
        json.dump(dict(info=info, correctness=results, benchmark=bench_rows), f, indent=1)


if __name__ == "__main__":
    main()
