"""Render a benchmark JSON (from bench_torch_ops.py) as the markdown table in benchmarks/README.md.

    python benchmarks/render.py benchmarks/results/<file>.json"""

import json
import sys


def render(report: dict) -> str:
    lines = [
        f"{report['device']}, torch {report['torch']}; measured copy bandwidth (read + write) "
        f"{report['copy_GBps']:.0f} GB/s is the roofline.",
        "",
        "| op | dtype | shape | opforge µs | GB/s | of roofline | vs eager | vs torch.compile | rel_l2 vs fp32 ref |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['op']} | {r['dtype']} | {r['shape']} | {r['opforge_ms'] * 1e3:.1f} | {r['opforge_GBps']:.0f} | "
            f"{r['roofline_fraction']:.0%} | {r['speedup_vs_eager']:.2f}x | {r['speedup_vs_compile']:.2f}x | "
            f"{r['rel_l2']:.2e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.load(open(sys.argv[1]))))
