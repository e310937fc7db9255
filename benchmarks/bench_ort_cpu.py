"""ONNX Runtime on CPU: conv1d -> rms_norm -> scaled_gelu with the opforge nodes on the native custom-op
library, vs the same graph in standard ONNX ops (the fallback export, whose functions ORT inlines into
plain Conv/ReduceMean/Erf/... nodes). Same weights, same input, same thread count.

    python benchmarks/bench_ort_cpu.py --threads 2 --json benchmarks/results/<machine>-<date>-ort-cpu.json

Times are medians (and p10 / min) over --repeat runs of session.run after --warmup runs (wall clock, one
input set). On a shared machine the median follows the load of other processes; the record keeps the load
average, and p10 / min are the better comparison there."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import ops


class ConvNormGelu(torch.nn.Module):
    def __init__(self, channels: int, length: int):
        super().__init__()
        self.conv = torch.nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.weight = torch.nn.Parameter(1 + 0.1 * torch.randn(length))

    def forward(self, x):
        h = self.conv(x)
        h = torch.ops.opforge.rms_norm(h, self.weight, 1e-6)
        return torch.ops.opforge.scaled_gelu(h, 1.702, self.approximate)


def _time(session, feed, warmup, repeat) -> list[float]:
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return times


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


GRAPH_OPS = ("opforge::rms_norm", "opforge::scaled_gelu")


def graph_tolerance() -> tuple[float, float]:
    """(rtol, atol) an ORT output must meet against torch: the loosest float32 tolerance its opforge ops
    declare (the Conv before them is float32 in both, and adds far less)."""
    tols = [ops.get_op(op_id).decl.tolerance("float32") for op_id in GRAPH_OPS]
    return max(t[0] for t in tols), max(t[1] for t in tols)


def measure(shape=(8, 64, 256), threads=2, approximate="none", warmup=50, repeat=500) -> dict:
    """Both sessions timed on one model and input: per-graph times, max_abs vs torch and whether the output
    is within graph_tolerance() of torch's ("ok"), and the two ratios. "ok" at the top: both graphs are.
    Callable on its own so benchmarks/bench_deploy.py runs the same measurement in its process."""
    import onnxruntime as ort

    from ops.check.compare import compare

    b, c, n = shape
    torch.manual_seed(0)
    model = ConvNormGelu(c, n).eval()
    model.approximate = approximate
    x = torch.randn(b, c, n)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        native, standard = Path(tmp) / "native.onnx", Path(tmp) / "standard.onnx"
        ops.export_onnx(model, (x,), native, opset=17)
        ops.export_onnx(model, (x,), standard, opset=17, fallback=True)
        sessions = {}
        for name, path, bind in (("opforge native ops", native, True), ("standard ONNX ops", standard, False)):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            sessions[name] = ops.onnx.ort_session(path, session_options=options, bind_ops=bind)
        feed = {sessions["opforge native ops"].get_inputs()[0].name: x.numpy()}
        outs = {k: s.run(None, feed)[0] for k, s in sessions.items()}
        with torch.inference_mode():
            want = model(x)
        rtol, atol = graph_tolerance()
        checks = {k: compare(torch.from_numpy(v), want, rtol, atol) for k, v in outs.items()}
        for _ in range(3):  # interleave rounds so drift in machine load hits both sides alike
            for name, session in sessions.items():
                rows.setdefault(name, []).extend(_time(session, feed, warmup, repeat // 3))
    result = {
        name: {
            "median_us": statistics.median(t) * 1e6,
            "min_us": min(t) * 1e6,
            "p10_us": float(np.percentile(t, 10)) * 1e6,
            "p90_us": float(np.percentile(t, 90)) * 1e6,
            "max_abs_vs_torch": checks[name]["max_abs"],
            "ok": checks[name]["ok"],
            "rtol": rtol,
            "atol": atol,
        }
        for name, t in rows.items()
    }
    native, standard = result["opforge native ops"], result["standard ONNX ops"]
    return {
        "results": result,
        "ok": native["ok"] and standard["ok"],
        "native_over_standard_median": native["median_us"] / standard["median_us"],
        "native_over_standard_p10": native["p10_us"] / standard["p10_us"],
    }


def main(argv=None) -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8x64x256", help="batch x channels x length (default 8x64x256)")
    parser.add_argument("--threads", type=int, default=2, help="ORT intra-op threads (default 2)")
    parser.add_argument("--approximate", default="none", choices=("none", "tanh"))
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=500)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    b, c, n = map(int, args.shape.split("x"))
    measured = measure((b, c, n), args.threads, args.approximate, args.warmup, args.repeat)
    ratio, ratio_p10 = measured["native_over_standard_median"], measured["native_over_standard_p10"]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    record = {
        "benchmark": "ORT CPU: conv1d -> rms_norm -> scaled_gelu",
        "shape": [b, c, n],
        "approximate": args.approximate,
        "threads": args.threads,
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "command": "python benchmarks/bench_ort_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1_5_15": list(os.getloadavg()),
        },  # a shared machine: p10/min are the steadier
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        **measured,
    }
    for name, r in measured["results"].items():
        print(
            f"{name:>20}: median {r['median_us']:8.1f} us  (p10 {r['p10_us']:.1f}, p90 {r['p90_us']:.1f}); "
            f"max_abs vs torch {r['max_abs_vs_torch']:.2e} ({'ok' if r['ok'] else 'WRONG'}, rtol {r['rtol']:g} "
            f"atol {r['atol']:g})"
        )
    print(
        f"native / standard = {ratio:.2f}x median, {ratio_p10:.2f}x p10  ({args.threads} threads, {args.shape}, {_cpu_name()})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0 if measured["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
