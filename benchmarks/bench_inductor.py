"""The Inductor-written CUDA kernels of examples/inductor_ops against hand-written ones, eager torch and
torch.compile of the same reference, on a GPU, in one process.

    PYTHONPATH=.:examples/inductor_ops python3 benchmarks/bench_inductor.py --out benchmarks/results/<card>-<date>-inductor.json

The example package must be built on this machine first (`python -m ops.build --package indops` in it, or in a
copy, which PYTHONPATH then names): its
indops::scale_shift and indops::gated_rms_norm run the kernels the build captured from Inductor and compiled ahead
of time, through the generated launcher (no Python, no Inductor at run time). Compared with:
- scale_shift: indops::scale_shift_cuda (the README's hand-written CUDA kernel), eager, torch.compile of the
  reference, and the copy roofline (a torch copy of the same bytes: read x, write y);
- gated_rms_norm: opforge::rms_norm's hand-written CUDA kernel on x * gate (what one writes without a fused op:
  an eager multiply, then the library op), eager, torch.compile of the reference, and the copy roofline of its
  bytes (read x, gate, weight; write y).
Correctness first (each against the float32 reference), then CUDA-event medians (benchmarks/cuda_timing.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch._dynamo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import indops  # noqa: E402, F401
from cuda_timing import cuda_time_us, run_info  # noqa: E402

from ops.core.registry import get_op  # noqa: E402

# The plain-PyTorch references (register_op's decorated names are the ops themselves).
scale_shift_reference = get_op("indops::scale_shift").decl.reference
gated_reference = get_op("indops::gated_rms_norm").decl.reference

POINTWISE = (1 << 20, 1 << 24, 1 << 26, 1 << 28)
ROWS = ((16384, 4096), (65536, 1024), (4096, 8192), (262144, 128), (8192, 16384))
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _error(got, want) -> float:
    return float((got.float() - want.float()).abs().max())


def _roofline(nbytes_read: int, nbytes_written: int, device) -> float:
    """µs a torch copy takes for the same bytes (read + write): the memory-bound floor on this card."""
    src = torch.empty(max(nbytes_read, nbytes_written) // 4 + 1, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    per_byte = cuda_time_us(lambda: dst.copy_(src)) / (2 * src.numel() * 4)
    return per_byte * (nbytes_read + nbytes_written)


def _row(op: str, dtype, shape, fns: dict, want, read: int, written: int, hand: str) -> dict:
    """Error and time of each of `fns`, the copy roofline of `read` + `written` bytes, and the ratios."""
    row = {"op": op, "dtype": str(dtype).removeprefix("torch."), "shape": list(shape)}
    for name, fn in fns.items():
        row[f"{name}_max_err"] = _error(fn(), want)
        row[f"{name}_us"] = cuda_time_us(fn)
    row["copy_roofline_us"] = _roofline(read, written, want.device)
    for name in fns:
        row[f"{name}_of_roofline"] = row["copy_roofline_us"] / row[f"{name}_us"]
    for other in (hand, "torch_compile"):
        row[f"inductor_aot_vs_{other}"] = row[f"{other}_us"] / row["inductor_aot_us"]
    print(json.dumps(row), flush=True)
    return row


def bench_scale_shift(dtype) -> list[dict]:
    rows = []
    compiled = torch.compile(scale_shift_reference, dynamic=False)
    for n in POINTWISE:
        x = torch.randn(n, device="cuda").to(dtype)
        fns = {
            "inductor_aot": lambda: torch.ops.indops.scale_shift(x, 1.5, -0.25),
            "cuda_cpp": lambda: torch.ops.indops.scale_shift_cuda(x, 1.5, -0.25),
            "eager": lambda: scale_shift_reference(x, 1.5, -0.25),
            "torch_compile": lambda: compiled(x, 1.5, -0.25),
        }
        nbytes = x.numel() * x.element_size()
        want = scale_shift_reference(x.float(), 1.5, -0.25)
        rows.append(_row("scale_shift", dtype, x.shape, fns, want, nbytes, nbytes, hand="cuda_cpp"))
    return rows


def bench_gated(dtype) -> list[dict]:
    rows = []
    compiled = torch.compile(gated_reference, dynamic=False)
    for r, c in ROWS:
        x, gate = (torch.randn(r, c, device="cuda").to(dtype) for _ in range(2))
        w = torch.randn(c, device="cuda").to(dtype)
        fns = {
            "inductor_aot": lambda: torch.ops.indops.gated_rms_norm(x, gate, w, 1e-6),
            "mul_then_rms_norm_cuda": lambda: torch.ops.opforge.rms_norm(x * gate, w, 1e-6),
            "eager": lambda: gated_reference(x, gate, w, 1e-6),
            "torch_compile": lambda: compiled(x, gate, w, 1e-6),
        }
        size = x.element_size()
        want = gated_reference(x.float(), gate.float(), w.float(), 1e-6)
        read, written = (2 * x.numel() + c) * size, x.numel() * size
        rows.append(_row("gated_rms_norm", dtype, x.shape, fns, want, read, written, hand="mul_then_rms_norm_cuda"))
    return rows


def _allow_recompiles() -> None:
    """torch.compile(dynamic=False) compiles once per shape and dtype: 27 here, over Dynamo's default limit of 8
    (past it, the calls would silently run eager)."""
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 256)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_inductor needs a CUDA GPU", file=sys.stderr)
        return 2
    _allow_recompiles()
    rows = []
    for dtype in DTYPES:
        rows += bench_scale_shift(dtype)
        rows += bench_gated(dtype)
    result = {**run_info(script="benchmarks/bench_inductor.py"), "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
