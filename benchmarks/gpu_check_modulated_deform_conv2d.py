"""GPU check of opforge::modulated_deform_conv2d (and its backward op) on a CUDA machine.

    python -m ops.build && PYTHONPATH=. python benchmarks/gpu_check_modulated_deform_conv2d.py --out out.json

1. Correctness (forward and backward; float32/float16/bfloat16) on shapes with groups, deformable groups,
   stride, dilation, no mask, no bias and odd sizes, against torchvision.ops.deform_conv2d run in float32
   on the same (rounded) inputs, and against opforge's own CPU kernel. One line PASS/FAIL per case; a
   failing case does not stop the rest.
2. Benchmark at the example model's 1/4-resolution layer (x 4x64x90x160, 3x3, Cout 64, padding 1, with
   mask and bias): opforge vs torchvision (float32, float16) and cuDNN conv2d of the same shape, forward and
   forward+backward, medians of triton.testing.do_bench; written to --out as JSON."""

from __future__ import annotations

import argparse
import datetime
import json
import traceback

import torch
import torch.nn.functional as F

import ops  # noqa: F401  (registers torch.ops.opforge.*)

FWD = torch.ops.opforge.modulated_deform_conv2d
BWD = torch.ops.opforge.modulated_deform_conv2d_backward

# (name, B, Cin, H, W, Cout, kh, kw, stride, padding, dilation, groups, dg, mask, bias)
CASES = [
    ("base", 2, 8, 11, 13, 6, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, True, True),
    ("groups2", 2, 8, 10, 9, 6, 3, 3, (1, 1), (1, 1), (1, 1), 2, 1, True, True),
    ("dg2", 1, 8, 9, 12, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1, 2, True, False),
    ("groups2_dg4", 2, 16, 8, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1), 2, 4, True, True),
    ("stride2", 2, 6, 15, 14, 7, 3, 3, (2, 2), (1, 1), (1, 1), 1, 1, True, True),
    ("dilation2", 1, 5, 13, 11, 4, 3, 3, (1, 1), (2, 2), (2, 2), 1, 1, True, True),
    ("no_mask", 2, 8, 9, 10, 6, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, False, True),
    ("no_mask_no_bias", 1, 8, 9, 10, 6, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, False, False),
    ("odd_sizes", 3, 5, 7, 9, 7, 2, 3, (2, 1), (1, 2), (1, 2), 1, 5, True, True),
    ("many_channels", 1, 96, 17, 19, 80, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, True, True),
    ("dg8_fallback", 1, 16, 8, 8, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1, 8, True, True),
    ("layer_1_4", 1, 64, 90, 160, 64, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, True, True),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Error bound relative to max |reference| (inputs are rounded to the dtype first, so this measures the
# kernel's arithmetic: float32 accumulation everywhere, float16 products on tensor cores).
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}


def make_inputs(case, dtype, device="cuda", seed=0):
    _, b, c, h, w, cout, kh, kw, stride, padding, dilation, groups, dg, has_mask, has_bias = case
    g = torch.Generator().manual_seed(seed)
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    x = torch.randn(b, c, h, w, generator=g)
    offset = torch.randn(b, 2 * dg * kh * kw, oh, ow, generator=g) * 2.0
    weight = torch.randn(cout, c // groups, kh, kw, generator=g) * (c // groups * kh * kw) ** -0.5
    mask = torch.rand(b, dg * kh * kw, oh, ow, generator=g) if has_mask else None
    bias = torch.randn(cout, generator=g) if has_bias else None
    attrs = dict(
        stride=list(stride), padding=list(padding), dilation=list(dilation), groups=groups, deformable_groups=dg
    )
    cast = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
    return [cast(t) for t in (x, offset, weight, mask, bias)], attrs


def tv_forward(x, offset, weight, mask, bias, attrs):
    import torchvision

    return torchvision.ops.deform_conv2d(
        x,
        offset,
        weight,
        bias,
        stride=tuple(attrs["stride"]),
        padding=tuple(attrs["padding"]),
        dilation=tuple(attrs["dilation"]),
        mask=mask,
    )


def call(fn_inputs, attrs):
    x, offset, weight, mask, bias = fn_inputs
    return FWD(
        x,
        offset,
        weight,
        mask,
        bias,
        attrs["stride"],
        attrs["padding"],
        attrs["dilation"],
        attrs["groups"],
        attrs["deformable_groups"],
    )


def rel_err(a, ref):
    a, ref = a.double(), ref.double()
    scale = ref.abs().max().item() or 1.0
    return (a - ref).abs().max().item() / scale


def check_case(case, dtype, results):
    name = f"{case[0]}[{str(dtype).split('.')[-1]}]"
    try:
        inputs, attrs = make_inputs(case, dtype)
        f32 = [None if t is None else t.float() for t in inputs]
        ref = tv_forward(*f32, attrs)  # torchvision infers groups and offset groups from the shapes
        ref_name = "torchvision"
        out = call(inputs, attrs)
        torch.cuda.synchronize()
        e_tv = rel_err(out, ref)
        out_cpu = call([None if t is None else t.cpu() for t in inputs], attrs)
        e_cpu = rel_err(out.cpu(), out_cpu)
        ok = e_tv <= TOL[dtype] and e_cpu <= TOL[dtype]
        # Backward vs torchvision autograd (float32) and vs the CPU backward kernel.
        grad = torch.randn(out.shape, device="cuda").to(dtype)
        x, offset, weight, mask, bias = inputs
        gcuda = BWD(
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
        torch.cuda.synchronize()
        gcpu = BWD(
            x.cpu(),
            offset.cpu(),
            weight.cpu(),
            grad.cpu(),
            None if mask is None else mask.cpu(),
            attrs["stride"],
            attrs["padding"],
            attrs["dilation"],
            attrs["groups"],
            attrs["deformable_groups"],
        )
        leaves = [None if t is None else t.detach().clone().requires_grad_() for t in f32]
        if leaves[3] is None:
            leaves[3] = torch.ones(gcuda[3].shape, device="cuda", requires_grad=True)
        if leaves[4] is None:
            leaves[4] = torch.zeros(gcuda[4].shape, device="cuda", requires_grad=True)
        tv_forward(*leaves, attrs).backward(grad.float())
        names = ("grad_x", "grad_offset", "grad_weight", "grad_mask", "grad_bias")
        # Backward tolerances: grad_offset multiplies pixel differences of x, so its relative error in half
        # precision is larger; the CPU kernel is the tight comparison (same inputs, float32 inside).
        btol = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]
        b_errs = {}
        for n, gc, gp, leaf in zip(names, gcuda, gcpu, leaves):
            b_errs[n] = (rel_err(gc, leaf.grad), rel_err(gc.cpu(), gp))
        b_ok = all(a <= btol and c <= btol for a, c in b_errs.values())
        status = "PASS" if ok and b_ok else "FAIL"
        print(
            f"{status} {name}: fwd err vs {ref_name} {e_tv:.2e}, vs cpu {e_cpu:.2e}; bwd "
            + ", ".join(f"{n} {a:.1e}/{c:.1e}" for n, (a, c) in b_errs.items()),
            flush=True,
        )
        results.append(
            dict(
                case=case[0],
                dtype=str(dtype),
                ok=status == "PASS",
                fwd_vs_torchvision=e_tv,
                fwd_vs_cpu=e_cpu,
                bwd={n: dict(vs_torchvision=a, vs_cpu=c) for n, (a, c) in b_errs.items()},
            )
        )
    except Exception as e:  # one failing case must not stop the rest
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        results.append(dict(case=case[0], dtype=str(dtype), ok=False, error=f"{type(e).__name__}: {e}"))


def check_empty(results):
    try:
        inputs, attrs = make_inputs(CASES[0], torch.float32)
        inputs = [t if t is None or k in (2, 4) else t[:0] for k, t in enumerate(inputs)]  # not weight/bias
        out = call(inputs, attrs)
        ok = out.shape[0] == 0
        print(f"{'PASS' if ok else 'FAIL'} empty batch: {list(out.shape)}", flush=True)
        results.append(dict(case="empty", ok=ok))
    except Exception as e:
        print(f"FAIL empty batch: {type(e).__name__}: {e}", flush=True)
        results.append(dict(case="empty", ok=False, error=str(e)))


def bench(results_bench):
    import triton.testing

    b, c, h, w, cout = 4, 64, 90, 160, 64
    shape = dict(x=[b, c, h, w], weight=[cout, c, 3, 3], padding=[1, 1], mask=True, bias=True)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        try:
            case = ("bench", b, c, h, w, cout, 3, 3, (1, 1), (1, 1), (1, 1), 1, 1, True, True)
            inputs, attrs = make_inputs(case, dtype)
            x, offset, weight, mask, bias = inputs
            offset = offset / 2  # offsets ~ N(0, 1)
            inputs[1] = offset
            row = dict(dtype=str(dtype), shape=shape)
            row["opforge_fwd_us"] = 1e3 * triton.testing.do_bench(lambda: call(inputs, attrs), warmup=50, rep=300)
            row["cudnn_conv2d_us"] = 1e3 * triton.testing.do_bench(
                lambda: F.conv2d(x, weight, bias, padding=1), warmup=50, rep=300
            )
            try:
                row["torchvision_fwd_us"] = 1e3 * triton.testing.do_bench(
                    lambda: tv_forward(x, offset, weight, mask, bias, attrs), warmup=50, rep=300
                )
            except Exception as e:  # torchvision has no bfloat16 kernel in some versions
                row["torchvision_error"] = f"{type(e).__name__}: {e}"[:200]
            grad = torch.randn(b, cout, h, w, device="cuda", dtype=dtype)
            row["opforge_bwd_us"] = 1e3 * triton.testing.do_bench(
                lambda: BWD(x, offset, weight, grad, mask, attrs["stride"], attrs["padding"], attrs["dilation"], 1, 1),
                warmup=20,
                rep=200,
            )
            if "torchvision_fwd_us" in row:
                leaves = [t.detach().clone().requires_grad_() for t in (x, offset, weight, mask, bias)]

                def tv_fwd_bwd():
                    out = tv_forward(*leaves, attrs)
                    torch.autograd.grad(out, leaves, grad)

                row["torchvision_fwd_bwd_us"] = 1e3 * triton.testing.do_bench(tv_fwd_bwd, warmup=20, rep=200)
                row["fwd_speedup_vs_torchvision"] = row["torchvision_fwd_us"] / row["opforge_fwd_us"]
            row["fwd_vs_cudnn"] = row["opforge_fwd_us"] / row["cudnn_conv2d_us"]
            # Accuracy at the benchmark size, vs torchvision in float32.
            ref = tv_forward(*[t.float() for t in (x, offset, weight, mask, bias)], attrs)
            row["rel_err_vs_torchvision_fp32"] = rel_err(call(inputs, attrs), ref)
            print(json.dumps(row), flush=True)
            results_bench.append(row)
        except Exception as e:
            print(f"bench {dtype} failed: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
            results_bench.append(dict(dtype=str(dtype), error=f"{type(e).__name__}: {e}"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_check_modulated_deform_conv2d.json")
    ap.add_argument("--no-bench", action="store_true")
    args = ap.parse_args()
    import torchvision

    info = dict(
        card=torch.cuda.get_device_name(),
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        cuda=torch.version.cuda,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
    )
    print(json.dumps(info), flush=True)
    results: list = []
    for case in CASES:
        for dtype in DTYPES:
            check_case(case, dtype, results)
    check_empty(results)
    bench_rows: list = []
    if not args.no_bench:
        bench(bench_rows)
    passed = sum(r["ok"] for r in results)
    print(f"{passed}/{len(results)} correctness cases passed", flush=True)
    with open(args.out, "w") as f:
        json.dump(dict(info=info, correctness=results, benchmark=bench_rows), f, indent=1)


if __name__ == "__main__":
    main()
