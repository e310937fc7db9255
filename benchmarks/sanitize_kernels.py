"""Run every CUDA kernel of every library op once per sample and dtype, for compute-sanitizer.

    compute-sanitizer --tool memcheck python3 benchmarks/sanitize_kernels.py   # access errors (see gpu_verify.sh on leaks)
    compute-sanitizer --tool racecheck python3 benchmarks/sanitize_kernels.py --small

The op's own samples are the cases: they hold its edge shapes (empty, odd sizes, a single row, optional
inputs present and absent). PyTorch's caching allocator is switched off (PYTORCH_NO_CUDA_MEMORY_CACHING=1,
set below before torch loads) so every tensor is its own allocation and memcheck sees an out-of-bounds
access past a tensor's end instead of landing in a cached neighbour. Declared backward ops are library
ops too, so their kernels run here as well. Results are checked against the CPU reference, so a kernel that
reads garbage without faulting still fails."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("PYTORCH_NO_CUDA_MEMORY_CACHING", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from ops.check.compare import compare
from ops.check.oracle import reference_outputs, samples
from ops.core.registry import library_ops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--small", action="store_true", help="the first three samples per op and dtype (racecheck is slow)"
    )
    parser.add_argument("--op", action="append", help="only these op ids")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 2
    failures, runs = [], 0
    for op in library_ops():
        if "cuda" not in op.decl.devices or op.decl.kernel_dir is None or (args.op and op.id not in args.op):
            continue
        for dtype in op.decl.dtypes:
            cases = samples(op, "cuda", dtype)
            for k, sample in enumerate(cases[:3] if args.small else cases):
                try:
                    got = op(*sample.inputs, **sample.attrs)
                    torch.cuda.synchronize()
                    got = got if isinstance(got, (tuple, list)) else (got,)
                    rtol, atol = op.decl.tolerance(dtype)
                    for g, e in zip(got, reference_outputs(op, sample)):
                        m = compare(g.cpu(), e.cpu(), rtol, atol)
                        if not m["ok"]:
                            failures.append(f"{op.id} {dtype} sample {k}: {m}")
                except Exception as e:  # keep going: the sanitizer report covers every kernel
                    failures.append(f"{op.id} {dtype} sample {k}: {type(e).__name__}: {str(e)[:200]}")
                runs += 1
        print(f"{op.id}: ran", flush=True)
    print(f"{runs} kernel runs, {len(failures)} failures")
    for f in failures:
        print("  FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
