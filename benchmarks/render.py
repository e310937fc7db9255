"""Render a benchmark JSON (from bench_torch_ops.py or bench_cpu.py) as the markdown tables in
benchmarks/README.md.

    python benchmarks/render.py benchmarks/results/<file>.json"""

import json
import sys


def same_size(row: dict) -> str:
    """The row's time against torch's copy of the same bytes (recorded since 2026-11-26)."""
    return f"{row['same_size_copy_fraction']:.0%}" if "same_size_copy_fraction" in row else "—"


def render(report: dict) -> str:
    if report.get("kind") == "cpu":
        return render_cpu(report)
    lines = [
        f"{report['device']}, torch {report['torch']}; measured copy bandwidth (read + write) "
        f"{report['copy_GBps']:.0f} GB/s is the roofline.",
        "",
        "| op | dtype | shape | opforge µs | GB/s | of roofline | of same-size copy | vs eager | vs torch.compile "
        "| rel_l2 vs fp32 ref |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['op']} | {r['dtype']} | {r['shape']} | {r['opforge_ms'] * 1e3:.1f} | {r['opforge_GBps']:.0f} | "
            f"{r['roofline_fraction']:.0%} | {same_size(r)} | {r['speedup_vs_eager']:.2f}x | "
            f"{r['speedup_vs_compile']:.2f}x | "
            f"{r['rel_l2']:.2e} |"
        )
    return "\n".join(lines)


def render_cpu(report: dict) -> str:
    m = report["machine"]
    load = f"load average {m['load_average_start'][0]:.1f} at start, {m['load_average_end'][0]:.1f} at end"
    lines = [
        f"{m['cpu']} ({m['logical_cpus']} logical CPUs, aten CPU capability {m['aten_cpu_capability']}"
        f"{', opforge ' + m['opforge_cpu_isa'] if 'opforge_cpu_isa' in m else ''}), "
        f"torch {report['torch']}, commit {report['commit']}, {report['date']}; {load}.",
        f"Command: `{report['command']}`. Ratio = opforge time / aten time (median of per-round ratios; "
        "below 1 is faster than aten); q1-q3 its interquartile range.",
        "",
        "| op | variant | dtype | shape | threads | opforge µs | aten µs | ratio | q1-q3 | ok |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in report["kernels"]:
        lines.append(
            f"| {r['op']} | {r['variant'] or '-'} | {r['dtype']} | {r['shape']} | {r['threads']} | "
            f"{r['opforge_us']:.1f} | {r['aten_us']:.1f} | {r['ratio']:.2f} | {r['ratio_q1']:.2f}-{r['ratio_q3']:.2f} | "
            f"{'yes' if r['ok'] else 'NO'} |"
        )
    lines += [
        "",
        "Per-call host overhead (64x64 float32, 1 thread):",
        "",
        "| op | requires_grad | opforge µs | aten µs | ratio | extra µs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in report["overhead"]:
        lines.append(
            f"| {r['op']} | {r['requires_grad']} | {r['opforge_us']:.2f} | {r['aten_us']:.2f} | "
            f"{r['ratio']:.2f} | {r['extra_us']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.load(open(sys.argv[1]))))
