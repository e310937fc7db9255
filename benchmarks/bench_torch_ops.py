"""GPU benchmark of the compiled torch ops against PyTorch eager (the op's reference), torch.compile
of the reference, and the memory-bandwidth roofline measured on the same card.

    python3 benchmarks/bench_torch_ops.py --json out.json   # on a CUDA machine, after python -m ops.build

Each case is also checked against the reference (fresh random inputs, float32 oracle) before timing.
Times are medians of CUDA-event timings (triton.testing.do_bench when available) over rotating input
buffers, so L2 residency does not flatter the small cases."""

from __future__ import annotations

import argparse
import itertools
import json
import platform

import torch

import ops
from ops.check.compare import compare

ROTATE = 4  # distinct input sets, cycled, each larger than L2 at the benchmark sizes


def median_ms(fn, reps=50) -> float:
    try:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=200, return_mode="median"))
    except ImportError:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(10):
            fn()
        times = []
        for _ in range(reps):
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[len(times) // 2]


def copy_bandwidth() -> float:
    """Device-to-device copy of 1 GiB: bytes read + written per second (the roofline we compare to)."""
    src = torch.empty(2**28, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    return 2 * src.numel() * 4 / (ms * 1e-3)


def cases():
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for rows, cols in ((16384, 4096), (65536, 1024), (4096, 8192)):

            def make(rows=rows, cols=cols, dtype=dtype):
                return (
                    torch.randn(rows, cols, device="cuda", dtype=dtype),
                    (1 + 0.1 * torch.randn(cols, device="cuda")).to(dtype),
                )

            yield "opforge::rms_norm", dtype, f"{rows}x{cols}", make, {"eps": 1e-6}, lambda r, c: 2 * r * c + c
        for n, approximate in itertools.product((2**26, 2**24), ("tanh", "none")):

            def make(n=n, dtype=dtype):
                return (torch.randn(n, device="cuda", dtype=dtype) * 3,)

            shape = f"{n}" + (" (erf)" if approximate == "none" else "")
            yield "opforge::scaled_gelu", dtype, shape, make, {"alpha": 1.702, "approximate": approximate}, None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    ops.load_extension()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA device"
    bw = copy_bandwidth()
    results = []
    for op_id, dtype, shape, make, attrs, _ in cases():
        op = ops.get_op(op_id)
        sets = [make() for _ in range(ROTATE)]
        # correctness at benchmark size first: float32 oracle on upcast inputs
        out = op(*sets[0], **attrs)
        ref = op.reference(*[t.float() for t in sets[0]], **attrs)
        name = str(dtype).removeprefix("torch.")
        m = compare(out, ref, *op.decl.tolerance(name))
        compiled = torch.compile(op.reference)
        it = {"i": 0}

        def rotating(fn):
            def call():
                it["i"] = (it["i"] + 1) % ROTATE
                return fn(*sets[it["i"]], **attrs)

            return call

        t_op = median_ms(rotating(op))
        # The same bytes through torch's copy kernel: at tens of MB even a copy stays below the 1 GiB roofline
        # (launch and the last wave are not amortised), so this is the attainable speed at this size.
        copies = [torch.empty_like(s[0]) for s in sets]
        t_copy = median_ms(rotating(lambda *ts, **_: copies[it["i"]].copy_(ts[0])))
        t_eager = median_ms(rotating(op.reference))
        t_compile = median_ms(rotating(compiled))
        moved = sum(t.numel() * t.element_size() for t in sets[0]) + out.numel() * out.element_size()
        row = {
            "op": op_id,
            "dtype": name,
            "shape": shape,
            "ok": m["ok"],
            "rel_l2": m["rel_l2"],
            "max_abs": m["max_abs"],
            "opforge_ms": t_op,
            "eager_ms": t_eager,
            "compile_ms": t_compile,
            "opforge_GBps": moved / (t_op * 1e-3) / 1e9,
            "roofline_fraction": moved / (t_op * 1e-3) / bw,
            "same_size_copy_ms": t_copy,
            "same_size_copy_fraction": t_copy / t_op,
            "speedup_vs_eager": t_eager / t_op,
            "speedup_vs_compile": t_compile / t_op,
        }
        results.append(row)
        print(
            f"{op_id:22s} {name:9s} {shape:>11s} ok={m['ok']} rel_l2={m['rel_l2']:.2e} "
            f"opforge {t_op * 1e3:8.1f} us ({row['opforge_GBps']:6.0f} GB/s, {row['roofline_fraction']:.0%} of copy, "
            f"{row['same_size_copy_fraction']:.0%} of a same-size copy) "
            f"eager x{row['speedup_vs_eager']:.2f} compile x{row['speedup_vs_compile']:.2f}",
            flush=True,
        )
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "host": platform.node(),
        "copy_GBps": bw / 1e9,
        "results": results,
    }
    print(f"copy bandwidth (read+write): {bw / 1e9:.0f} GB/s on {report['device']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
