"""CPU: opforge::modulated_deform_conv2d against torchvision.ops.deform_conv2d, forward and forward+backward.

    python -m ops.build && python benchmarks/bench_dcn_cpu.py --json out.json [--threads 1,4,16] [--quick]

Needs a torchvision whose compiled ops load with the installed torch (the GPU host's torchvision 0.26 with
torch 2.11 does; this project's CPU machine has none). Each case first checks that both compute the same
thing (max |diff| against torchvision, float32), then times them with the same alternating-rounds method
as bench_cpu.py (medians over rounds; ratio = opforge time / torchvision time, < 1 means opforge is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cpu import commit, cpu_model, paired

# (batch, in channels, height, width, out channels, kernel, deformable groups): DCNv2 layers as they occur
# in detection/segmentation necks, at sizes a CPU deployment runs.
CASES = [(1, 64, 64, 64, 64, 3, 1), (2, 128, 32, 32, 128, 3, 1), (1, 256, 40, 40, 256, 3, 4), (4, 32, 56, 56, 64, 3, 1)]


def inputs(b, cin, h, w, cout, k, dg, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, cin, h, w, generator=g)
    offset = torch.randn(b, 2 * dg * k * k, h, w, generator=g) * 2.0
    mask = torch.sigmoid(torch.randn(b, dg * k * k, h, w, generator=g))
    weight = torch.randn(cout, cin, k, k, generator=g) * (cin * k * k) ** -0.5
    bias = torch.randn(cout, generator=g)
    return [t.requires_grad_(requires_grad) for t in (x, offset, weight, mask, bias)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--threads", default="1,4")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    import torchvision.ops as tvo

    import ops  # noqa: F401  (loads opforge's compiled ops: torch.ops.opforge.*)

    dcn = torch.ops.opforge.modulated_deform_conv2d
    rounds = args.rounds or (6 if args.quick else 15)
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for case in CASES[:2] if args.quick else CASES:
            b, cin, h, w, cout, k, dg = case
            x, off, wt, m, bias = inputs(*case)
            pad = [k // 2, k // 2]
            ours = lambda: dcn(x, off, wt, m, bias, [1, 1], pad, [1, 1], 1, dg)  # noqa: E731
            theirs = lambda: tvo.deform_conv2d(x, off, wt, bias, padding=pad, mask=m)  # noqa: E731
            diff = (ours() - theirs()).abs().max().item()
            fwd = paired(ours, theirs, rounds, warmup=2)
            xg, offg, wtg, mg, biasg = inputs(*case, requires_grad=True)

            def ours_bwd():
                dcn(xg, offg, wtg, mg, biasg, [1, 1], pad, [1, 1], 1, dg).sum().backward()

            def theirs_bwd():
                tvo.deform_conv2d(xg, offg, wtg, biasg, padding=pad, mask=mg).sum().backward()

            both = paired(ours_bwd, theirs_bwd, max(3, rounds // 2), warmup=1)
            row = {
                "threads": threads,
                "case": dict(zip(("b", "cin", "h", "w", "cout", "k", "dg"), case)),
                "max_abs_diff_vs_torchvision": diff,
                "forward": fwd,
                "forward_backward": both,
            }
            rows.append(row)
            print(
                f"threads {threads:2d} {case}: diff {diff:.2e}  forward opforge {fwd['a_s'] * 1e3:8.2f} ms  "
                f"torchvision {fwd['b_s'] * 1e3:8.2f} ms  ratio {fwd['ratio']:.2f} | fwd+bwd ratio {both['ratio']:.2f} "
                f"({both['a_s'] * 1e3:.1f} / {both['b_s'] * 1e3:.1f} ms)",
                flush=True,
            )
    record = {
        "what": "opforge::modulated_deform_conv2d vs torchvision.ops.deform_conv2d on CPU, float32",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": __import__("torchvision").__version__,
        "commit": commit(),
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
