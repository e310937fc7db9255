"""CPU benchmark of the compiled torch ops against their aten equivalents, at the same thread count.

    python -m ops.build && python benchmarks/bench_cpu.py              # writes benchmarks/results/cpu-<host>-<date>.json
    python benchmarks/bench_cpu.py --quick --json out.json             # fewer shapes and repeats
    python benchmarks/render.py benchmarks/results/<file>.json         # the markdown table

Two parts, in one process:
  kernels   opforge::scaled_gelu vs torch.nn.functional.gelu (alpha = 1, so the two compute the same
            function) and opforge::rms_norm vs torch.nn.functional.rms_norm, for float32/float16/bfloat16,
            several shapes, torch.set_num_threads(1) and (2); each case first checked against the op's
            float32 reference.
  overhead  per-call host time on a tiny tensor (64x64 float32), where the kernel is negligible: the
            dispatcher, the generated glue's checks, and with requires_grad the autograd wrapper.

Timing is made for a noisy shared machine: opforge and aten alternate within each round (so both see
the same neighbours), a round times enough calls to last ~2 ms, and the reported times and the ratio are
medians over rounds (the ratio is the median of per-round ratios, not a ratio of medians). The load
average at start and end is recorded; read numbers taken under load with that in mind.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import ops
from ops.check.compare import compare
from ops.torch import extension

RESULTS = Path(__file__).resolve().parent / "results"
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
SHAPES = ((8, 64, 256), (64, 4096), (4096, 1024))
QUICK_SHAPES = ((8, 64, 256), (64, 4096))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command_line() -> str:
    """How this run was started, with OPFORGE_CPU_ISA when it is set (it changes what is measured)."""
    cap = os.environ.get("OPFORGE_CPU_ISA")
    return " ".join(([f"OPFORGE_CPU_ISA={cap}"] if cap else []) + [Path(sys.executable).name, *sys.argv])


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def calls_per_round(fn, target_s=2e-3) -> int:
    """Enough calls that one timed batch lasts ~target_s (timer resolution and loop overhead vanish)."""
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-7)
    return max(1, min(10000, int(target_s / once)))


def paired(fa, fb, rounds: int, warmup: int = 3) -> dict:
    """Per-call seconds of fa and fb, alternating batches; medians over rounds and of per-round ratios."""
    for _ in range(warmup):
        fa()
        fb()
    na, nb = calls_per_round(fa), calls_per_round(fb)
    ta, tb, ratios = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(na):
            fa()
        a = (time.perf_counter() - t) / na
        t = time.perf_counter()
        for _ in range(nb):
            fb()
        b = (time.perf_counter() - t) / nb
        ta.append(a)
        tb.append(b)
        ratios.append(a / b)
    return {
        "a_s": statistics.median(ta),
        "b_s": statistics.median(tb),
        "ratio": statistics.median(ratios),
        "ratio_q1": statistics.quantiles(ratios, n=4)[0],
        "ratio_q3": statistics.quantiles(ratios, n=4)[2],
    }


def kernel_cases(shapes):
    for dtype in DTYPES:
        for shape in shapes:

            def gelu_inputs(shape=shape, dtype=dtype):
                return (torch.randn(*shape) * 3).to(dtype)

            for approximate in ("none", "tanh"):
                yield (
                    "opforge::scaled_gelu",
                    dtype,
                    shape,
                    approximate,
                    gelu_inputs,
                    lambda x, a=approximate: torch.ops.opforge.scaled_gelu(x, 1.0, a),
                    lambda x, a=approximate: torch.nn.functional.gelu(x, approximate=a),
                    {"alpha": 1.0, "approximate": approximate},
                )

            def norm_inputs(shape=shape, dtype=dtype):
                return torch.randn(*shape).to(dtype), (1 + 0.1 * torch.randn(shape[-1])).to(dtype)

            yield (
                "opforge::rms_norm",
                dtype,
                shape,
                "",
                norm_inputs,
                lambda x, w: torch.ops.opforge.rms_norm(x, w, 1e-6),
                lambda x, w: torch.nn.functional.rms_norm(x, (x.shape[-1],), w, 1e-6),
                {"eps": 1e-6},
            )


def run_kernels(threads, shapes, rounds):
    results = []
    for op_id, dtype, shape, variant, make, ours, aten, attrs in kernel_cases(shapes):
        inputs = make()
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        op = ops.get_op(op_id)
        ref = op.reference(*[t.float() for t in inputs], **attrs)
        name = str(dtype).removeprefix("torch.")
        check = compare(ours(*inputs), ref, *op.decl.tolerance(name))
        numel = inputs[0].numel()
        for n in threads:
            torch.set_num_threads(n)
            r = paired(lambda: ours(*inputs), lambda: aten(*inputs), rounds if numel < 2**20 else max(5, rounds // 4))
            row = {
                "op": op_id,
                "variant": variant,
                "dtype": name,
                "shape": "x".join(map(str, shape)),
                "threads": n,
                "ok": check["ok"],
                "max_abs": check["max_abs"],
                "opforge_us": r["a_s"] * 1e6,
                "aten_us": r["b_s"] * 1e6,
                "ratio": r["ratio"],
                "ratio_q1": r["ratio_q1"],
                "ratio_q3": r["ratio_q3"],
            }
            results.append(row)
            print(
                f"{op_id:21s} {variant:4s} {name:8s} {row['shape']:>10s} threads={n} ok={check['ok']} "
                f"opforge {row['opforge_us']:9.1f} us  aten {row['aten_us']:9.1f} us  "
                f"ratio {r['ratio']:.2f} [{r['ratio_q1']:.2f}, {r['ratio_q3']:.2f}]",
                flush=True,
            )
    return results


def run_overhead(rounds):
    torch.set_num_threads(1)
    results = []
    for requires_grad in (False, True):
        x = torch.randn(64, 64, requires_grad=requires_grad)
        w = torch.randn(64, requires_grad=requires_grad)
        pairs = {
            "opforge::scaled_gelu": (
                lambda: torch.ops.opforge.scaled_gelu(x, 1.0, "none"),
                lambda: torch.nn.functional.gelu(x),
            ),
            "opforge::rms_norm": (
                lambda: torch.ops.opforge.rms_norm(x, w, 1e-6),
                lambda: torch.nn.functional.rms_norm(x, (64,), w, 1e-6),
            ),
        }
        for op_id, (ours, aten) in pairs.items():
            r = paired(ours, aten, rounds)
            row = {
                "op": op_id,
                "shape": "64x64",
                "dtype": "float32",
                "requires_grad": requires_grad,
                "opforge_us": r["a_s"] * 1e6,
                "aten_us": r["b_s"] * 1e6,
                "ratio": r["ratio"],
                "extra_us": (r["a_s"] - r["b_s"]) * 1e6,
            }
            results.append(row)
            print(
                f"overhead {op_id:21s} 64x64 requires_grad={requires_grad!s:5s} opforge {row['opforge_us']:7.2f} us  "
                f"aten {row['aten_us']:7.2f} us  ratio {r['ratio']:.2f}",
                flush=True,
            )
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="where to write the results (default benchmarks/results/cpu-<host>-<date>.json)")
    parser.add_argument("--quick", action="store_true", help="two shapes, fewer rounds")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per case (default 40, quick 12)")
    args = parser.parse_args(argv)
    ops.load_extension()
    threads = [int(t) for t in args.threads.split(",")]
    rounds = args.rounds or (12 if args.quick else 40)
    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    kernels = run_kernels(threads, QUICK_SHAPES if args.quick else SHAPES, rounds)
    overhead = run_overhead(rounds)
    report = {
        "kind": "cpu",
        "date": started.isoformat(timespec="seconds"),
        "command": command_line(),
        "commit": commit(),
        "machine": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "host": platform.node(),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "opforge_cpu_isa": extension.cpu_isa(),  # the kernels' own choice (OPFORGE_CPU_ISA applied)
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "torch": torch.__version__,
        "kernels": kernels,
        "overhead": overhead,
    }
    out = Path(args.json) if args.json else RESULTS / f"cpu-{platform.node() or 'host'}-{started:%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    worst = max(kernels, key=lambda r: r["ratio"])
    print(
        f"wrote {out}; worst kernel ratio {worst['ratio']:.2f} ({worst['op']} {worst['variant']} {worst['dtype']} "
        f"{worst['shape']} threads={worst['threads']}); load average {load_start[0]:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    return 0 if all(r["ok"] for r in kernels) else 1


if __name__ == "__main__":
    sys.exit(main())
