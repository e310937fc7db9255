"""Issue 9's deployment targets side by side, in one process, with one JSON record.

    python benchmarks/bench_deploy.py                  # writes benchmarks/results/deploy-<host>-<date>.json
    python benchmarks/bench_deploy.py --quick          # fewer shapes and rounds: seconds, not minutes
    python benchmarks/bench_deploy.py --device cpu --json out.json

Three parts, each the measurement of an existing script, called as a function:
  ort       bench_ort_cpu.measure: conv1d -> rms_norm -> scaled_gelu in ONNX Runtime with the opforge nodes
            on the native library vs the same graph in standard ONNX ops; target native / standard <= 1.3x
            (median over runs). Both graphs' outputs must be within the ops' float32 tolerance of torch's.
  kernels   bench_cpu.run_kernels: each CPU kernel vs its aten equivalent at the same thread count;
            target opforge / aten <= 1.25x (median of per-round ratios).
  overhead  bench_overhead.measure: per-call host cost on tiny tensors vs aten, on CPU and, when present,
            CUDA; target opforge / aten <= 1.3x.

The record holds the machine (cpu, cores, torch, GPU, commit, load average), the date, the command, per part
its rows with ratio, target and met (and ok, max_abs for the correctness of the ort and kernels rows), and a
summary of every missed target and by how much and of every incorrect row. Exit status 1 when a kernel or an
ORT graph disagrees with its reference (as bench_cpu.py); a missed speed target is reported, not an error,
since on a shared machine the ratios move with the neighbours' load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `ops`, without PYTHONPATH

import bench_cpu
import bench_ort_cpu
import bench_overhead
import torch

import ops
from ops.torch import extension

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"ort": 1.3, "kernels": 1.25, "overhead": 1.3}  # issue 9
# Keyword arguments of each part. FULL is what the three scripts do by default.
FULL = {
    "ort": {"shape": (8, 64, 256), "warmup": 50, "repeat": 500},
    "kernels": {"shapes": bench_cpu.SHAPES, "rounds": 40},
    "overhead": {"calls": 20000, "batch": 200},
}
QUICK = {
    "ort": {"shape": (8, 64, 256), "warmup": 20, "repeat": 300},
    "kernels": {"shapes": bench_cpu.QUICK_SHAPES, "rounds": 25},
    "overhead": {"calls": 10000, "batch": 200},
}


def ort_rows(threads: int, shape, warmup: int, repeat: int) -> list[dict]:
    m = bench_ort_cpu.measure(tuple(shape), threads, "none", warmup, repeat)
    shape_s = "x".join(map(str, shape))
    graphs = m["results"]
    return [
        {
            "case": f"conv1d->rms_norm->scaled_gelu {shape_s} threads={threads}",
            "shape": shape_s,
            "threads": threads,
            "ratio": m["native_over_standard_median"],
            "ratio_p10": m["native_over_standard_p10"],
            "graphs": graphs,
            "ok": m["ok"],
            "max_abs": max(g["max_abs_vs_torch"] for g in graphs.values()),
        }
    ]


def kernel_rows(threads: list[int], shapes, rounds: int) -> list[dict]:
    rows = bench_cpu.run_kernels(threads, shapes, rounds)
    for r in rows:
        op = r["op"].removeprefix("opforge::")
        variant = f" {r['variant']}" if r["variant"] else ""
        r["case"] = f"{op}{variant} {r['dtype']} {r['shape']} threads={r['threads']}"
    return rows


def overhead_rows(devices: list[str], calls: int, batch: int) -> list[dict]:
    # One thread, as bench_overhead.py's default: a 64x64 op is serial, and an idle OpenMP team's barrier
    # on a loaded machine would cost more than the op.
    torch.set_num_threads(1)
    rows = [r for d in devices for r in bench_overhead.measure(d, calls, batch)]
    for r in rows:
        r["case"] = f"{r['device']} {r['case']}"
    return rows


def judged(rows: list[dict], target: float) -> dict:
    for r in rows:
        r["target"] = target
        r["met"] = r["ratio"] <= target
    return {"target": target, "rows": rows}


def summary(parts: dict) -> dict:
    rows = [(name, r) for name, part in parts.items() for r in part["rows"]]
    missed = [
        {
            "part": name,
            "case": r["case"],
            "ratio": r["ratio"],
            "target": r["target"],
            "over_by": r["ratio"] - r["target"],
            "over_by_pct": 100 * (r["ratio"] / r["target"] - 1),
        }
        for name, r in rows
        if not r["met"]
    ]
    incorrect = [{"part": name, "case": r["case"], "max_abs": r["max_abs"]} for name, r in rows if r.get("ok") is False]
    return {"rows": len(rows), "met": len(rows) - len(missed), "missed": missed, "incorrect": incorrect}


def machine(devices: list[str]) -> dict:
    import onnxruntime as ort

    return {
        "cpu": bench_cpu.cpu_model(),
        "cores": os.cpu_count(),
        "host": platform.node(),
        "platform": platform.platform(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "opforge_cpu_isa": extension.cpu_isa(),  # the form the loaded kernels take (OPFORGE_CPU_ISA applied)
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "gpu": torch.cuda.get_device_name() if "cuda" in devices else None,
        "commit": bench_cpu.commit(),
        "load_average_start": os.getloadavg(),
    }


def run(settings: dict, threads: list[int], devices: list[str], command: str) -> dict:
    """The whole record. ORT runs at the largest kernel thread count, so both compare at the same width."""
    started = datetime.datetime.now(datetime.timezone.utc)
    info = machine(devices)
    torch_threads = torch.get_num_threads()
    try:  # the parts set torch's thread count; a caller (a test session) gets its own back
        parts = {
            "ort": judged(ort_rows(max(threads), **settings["ort"]), TARGETS["ort"]),
            "kernels": judged(kernel_rows(threads, **settings["kernels"]), TARGETS["kernels"]),
            "overhead": judged(overhead_rows(devices, **settings["overhead"]), TARGETS["overhead"]),
        }
    finally:
        torch.set_num_threads(torch_threads)
    info["load_average_end"] = os.getloadavg()
    return {
        "benchmark": "deploy (issue 9): ORT graph, CPU kernels, per-call overhead",
        "date": started.isoformat(timespec="seconds"),
        "command": command,
        "machine": info,
        "settings": {"threads": threads, "devices": devices, **settings},
        "parts": parts,
        "summary": summary(parts),
    }


def table(record: dict) -> str:
    lines = [f"{'part':8} {'case':52} {'ratio':>6} {'target':>6}  met"]
    for name, part in record["parts"].items():
        lines += [
            f"{name:8} {r['case']:52} {r['ratio']:6.2f} {r['target']:6.2f}  {'yes' if r['met'] else 'NO'}"
            for r in part["rows"]
        ]
    s = record["summary"]
    lines.append(
        f"{s['met']}/{s['rows']} met; missed: "
        + (", ".join(f"{m['part']} {m['case']} by {m['over_by_pct']:.0f}%" for m in s["missed"]) or "none")
        + "; incorrect: "
        + (", ".join(f"{m['part']} {m['case']}" for m in s["incorrect"]) or "none")
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer shapes and rounds (11 s against 70 s on a 2-core VM)"
    )
    parser.add_argument(
        "--device",
        action="append",
        choices=("cpu", "cuda"),
        help="overhead part's devices (repeatable; default: cpu, and cuda when available)",
    )
    parser.add_argument(
        "--threads", default="1,2", help="CPU thread counts of the kernel part (default 1,2); ORT uses the largest"
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="where to write the record (default benchmarks/results/deploy-<host>-<date>.json)",
    )
    args = parser.parse_args(argv)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device on this machine")
    ops.load_extension()
    cap = os.environ.get("OPFORGE_CPU_ISA")  # changes what the kernel part measures
    command = shlex.join(
        ([f"OPFORGE_CPU_ISA={cap}"] if cap else [])
        + [Path(sys.executable).name, sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    )
    record = run(QUICK if args.quick else FULL, [int(t) for t in args.threads.split(",")], devices, command)
    out = Path(args.json) if args.json else RESULTS / f"deploy-{platform.node() or 'host'}-{record['date'][:10]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))
    print(f"wrote {out}")
    return 1 if record["summary"]["incorrect"] else 0


if __name__ == "__main__":
    sys.exit(main())
