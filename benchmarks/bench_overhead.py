"""Per-call host overhead of opforge ops against the aten ops they resemble, on tiny tensors where the
kernel itself costs next to nothing, so what is measured is the path from the Python call to the kernel
(dispatcher, autograd kernel, argument checks, output allocation).

    python benchmarks/bench_overhead.py                       # CPU, and CUDA when available
    python benchmarks/bench_overhead.py --json                # also writes benchmarks/results/<host>-<date>-overhead.json
    python benchmarks/bench_overhead.py --device cuda --calls 20000

Pairs: opforge::scaled_gelu vs torch.nn.functional.gelu, opforge::rms_norm vs torch.nn.functional.rms_norm,
on 64x64 and 4x8 inputs (float32 on CPU, float16 on CUDA), each without and with requires_grad (the forward call
only: with requires_grad it records the autograd node). Every variant is timed in the same process, in
interleaved rounds (a round times `--batch` back-to-back calls of each variant), and the reported time per
call is the median over rounds, so drift (turbo, other processes) hits all variants alike. On CUDA the time
is host time: calls are enqueued without a synchronize inside a round (one after it), as a model's launch
loop would see it."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import ops

RESULTS = Path(__file__).resolve().parent / "results"


SHAPES = ((64, 64), (4, 8))  # the size, and one where the kernel is nothing but overhead


def variants(device: str):
    dtype = torch.float32 if device == "cpu" else torch.float16
    opf = torch.ops.opforge
    for rows, cols in SHAPES:
        x = torch.randn(rows, cols, device=device, dtype=dtype)
        w = torch.randn(cols, device=device, dtype=dtype)
        for grad in (False, True):
            xg = x.detach().clone().requires_grad_(grad)
            wg = w.detach().clone().requires_grad_(grad)
            tag = f" {rows}x{cols}" + (" requires_grad" if grad else "")
            yield (f"scaled_gelu{tag}", lambda xg=xg: opf.scaled_gelu(xg), lambda xg=xg: torch.nn.functional.gelu(xg))
            yield (
                f"rms_norm{tag}",
                lambda xg=xg, wg=wg: opf.rms_norm(xg, wg, 1e-6),
                lambda xg=xg, wg=wg, cols=cols: torch.nn.functional.rms_norm(xg, (cols,), wg, 1e-6),
            )


def time_rounds(fns: dict, rounds: int, batch: int, sync) -> dict:
    """Median seconds per call of each function, over interleaved rounds."""
    per_call = {name: [] for name in fns}
    for fn in fns.values():  # warm up: first-call lookups, allocator, lazy inits
        for _ in range(batch):
            fn()
    sync()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(batch):
                fn()
            sync()
            per_call[name].append((time.perf_counter() - start) / batch)
    return {name: statistics.median(v) for name, v in per_call.items()}


def measure(device: str, calls: int, batch: int) -> list[dict]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    fns = {}
    pairs = []
    for name, opforge_fn, aten_fn in variants(device):
        fns[f"opforge {name}"] = opforge_fn
        fns[f"aten {name}"] = aten_fn
        pairs.append(name)
    medians = time_rounds(fns, max(calls // batch, 5), batch, sync)
    for name in pairs:
        o, a = medians[f"opforge {name}"], medians[f"aten {name}"]
        rows.append({"device": device, "case": name, "opforge_us": o * 1e6, "aten_us": a * 1e6, "ratio": o / a})
    return rows


def machine(devices) -> dict:
    info = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "processor": platform.processor(),
    }
    if "cuda" in devices:
        info["gpu"] = torch.cuda.get_device_name()
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(ops.__file__).resolve().parent,
            check=True,
        ).stdout.strip()  # the code measured
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = None
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", action="append", choices=("cpu", "cuda"), help="default: cpu, and cuda when available"
    )
    parser.add_argument("--calls", type=int, default=20000, help="calls per variant (default 20000)")
    parser.add_argument("--batch", type=int, default=200, help="calls per timed round (default 200)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: a 64x64 op is serial anyway, and on a loaded machine "
        "an idle OpenMP team's barrier costs more than the op)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="",
        metavar="PATH",
        help="write the results as JSON (default path: benchmarks/results/<host>-<date>-overhead.json)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device on this machine")
    rows = [r for d in devices for r in measure(d, args.calls, args.batch)]
    print(f"{'device':6} {'case':34} {'opforge us':>11} {'aten us':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['device']:6} {r['case']:34} {r['opforge_us']:11.2f} {r['aten_us']:9.2f} {r['ratio']:6.2f}")
    if args.json is not None:
        date = datetime.date.today().isoformat()
        path = Path(args.json) if args.json else RESULTS / f"{platform.node() or 'host'}-{date}-overhead.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "date": date,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine(devices),
            "threads": args.threads,
            "calls": args.calls,
            "batch": args.batch,
            "results": rows,
        }
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
