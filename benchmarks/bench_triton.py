"""Triton vs CUDA C++ vs aten for the library ops that have both kernels, in one process, on a GPU.

    PYTHONPATH=. python3 benchmarks/bench_triton.py --out benchmarks/results/<card>-<date>-triton.json

One process holds both kernels of an op: `opforge::<op>` from ops._C (built with the C++ CUDA kernel, the
default), and `tritonbench::<op>`, the same declaration (rebuilt field by field from the library op's, so the
two cannot drift) whose CUDA kernel is the library's Triton kernel, in an op package this script writes and
builds (its launcher compiled ahead of time like any Triton op's, a tuned table copied along when there is
one). Each is called through the torch dispatcher, so both pay the same host cost. Correctness first (each
against the float32 reference), then CUDA-event medians (benchmarks/cuda_timing.py), with the aten op and
torch.compile of the reference in the same process, and the fraction of the 1 GiB copy roofline.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cuda_timing import cuda_time_us, run_info  # noqa: E402

import ops  # noqa: E402
from ops.check.compare import compare  # noqa: E402
from ops.core import shape_rule as sr  # noqa: E402
from ops.core.declaration import REQUIRED  # noqa: E402

OPS = ("rms_norm", "layer_norm")
SHAPES = ((16384, 4096), (65536, 1024), (4096, 8192), (8192, 16384), (262144, 128))


def declaration_source(op) -> str:
    """A module declaring tritonbench::<op> with the library op's fields, its CUDA kernel the Triton one."""
    d = op.decl
    lib_module = op.decl.reference.__module__
    inputs = []
    for i in d.inputs:
        dtypes = f"like({i.dtype_like})" if i.dtype_like else tuple(i.dtypes)
        shape = None if i.shape is None else sr.to_text(i.shape)
        inputs.append(
            f"Input({i.name!r}, dtypes={dtypes!r}, optional={i.optional}, rank={i.rank}, min_rank={i.min_rank}, "
            f"shape={shape!r})"
        )
    outputs = [
        f"Output({o.name!r}, shape={sr.to_text(o.shape)!r}, dtype={(o.dtype or f'like({o.dtype_like})')!r})"
        for o in d.outputs
    ]
    attrs = [f"Attr({a.name!r}, {a.type}, {'REQUIRED' if a.default is REQUIRED else repr(a.default)})" for a in d.attrs]
    params = [i.name + ("=None" if i.optional else "") for i in d.inputs]
    params += [a.name + ("" if a.default is REQUIRED else f"={a.default!r}") for a in d.attrs]
    names = [i.name for i in d.inputs] + [a.name for a in d.attrs]
    return f"""import importlib

import ops
from ops import REQUIRED, Attr, Input, Output, register_op

lib = importlib.import_module({lib_module!r})
lib_op = ops.get_op({d.id!r})


@register_op(
    "tritonbench::{d.name}",
    inputs=[{", ".join(inputs)}],
    outputs=[{", ".join(outputs)}],
    attrs=[{", ".join(attrs)}],
    devices=("cuda",),
    kernels="csrc/{d.name}",
    samples=lib_op.decl.samples,
    tolerances=lib_op.decl.tolerances,
    triton=lib_op.decl.triton.spec,
)
def {d.name}({", ".join(params)}):
    return lib_op.decl.reference({", ".join(names)})
"""


def build_package(root: Path, names) -> None:
    pkg = root / "tritonbench"
    pkg.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "tritonbench"\nversion = "0"\n'
    )  # its build dir: root/build
    (pkg / "__init__.py").write_text("import ops\n\nops.op_package(__name__)\n")
    for name in names:
        op = ops.get_op(f"opforge::{name}")
        (pkg / f"{name}.py").write_text(declaration_source(op))
        kdir = pkg / "csrc" / name
        kdir.mkdir(parents=True)
        for f in (f"{name}_triton.py", f"{name}_triton_tuned.json"):
            if (op.decl.kernel_dir / f).is_file():
                shutil.copyfile(op.decl.kernel_dir / f, kdir / f)
    env = {"PYTHONPATH": f"{root}:{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-m", "ops.build", "--package", "tritonbench"],
        cwd=root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"building tritonbench failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    sys.path.insert(0, str(root))
    importlib.import_module("tritonbench")
    ops.load_extension("tritonbench")


def copy_bandwidth() -> float:
    src = torch.empty(2**28, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / (cuda_time_us(lambda: dst.copy_(src)) * 1e-6)


def inputs(name, rows, cols, dtype):
    x = torch.randn(rows, cols, device="cuda", dtype=dtype)
    w = (1 + 0.1 * torch.randn(cols, device="cuda")).to(dtype)
    if name == "rms_norm":
        return (x, w), {"eps": 1e-6}, lambda: torch.nn.functional.rms_norm(x, (cols,), w, 1e-6)
    b = (0.1 * torch.randn(cols, device="cuda")).to(dtype)
    return (x, w, b), {"eps": 1e-5}, lambda: torch.nn.functional.layer_norm(x, (cols,), w, b, 1e-5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="write the JSON here")
    parser.add_argument("--ops", default=",".join(OPS))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the reference")
    parser.add_argument(
        "--package-dir",
        help="write and build the tritonbench package here and keep it (for `python -m ops.tune tritonbench::<op>`); "
        "default: a temporary directory",
    )
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA device"
    names = [n for n in args.ops.split(",") if ops.get_op(f"opforge::{n}").decl.triton is not None]
    ops.load_extension()
    record = json.loads(ops.op_package_named("ops.library").build_record.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(args.package_dir) if args.package_dir else Path(tmp)
        if where.exists() and args.package_dir:
            shutil.rmtree(where)
        build_package(where, names)
        bench_record = json.loads(ops.op_package_named("tritonbench").build_record.read_text())
        bw = copy_bandwidth()
        rows = []
        for name in names:
            cuda_op, triton_op = ops.get_op(f"opforge::{name}"), ops.get_op(f"tritonbench::{name}")
            assert record.get("cuda_kernels", {}).get(cuda_op.id) == "cuda", "ops._C must hold the C++ kernel"
            assert bench_record["cuda_kernels"][triton_op.id] == "triton"
            for dtype in (torch.bfloat16, torch.float16, torch.float32):
                for r, c in SHAPES:
                    ins, attrs, aten = inputs(name, r, c, dtype)
                    want = cuda_op.decl.reference(*[t.float() for t in ins], **attrs)
                    tol = cuda_op.decl.tolerance(str(dtype).removeprefix("torch."))
                    ok = {
                        k: compare(op(*ins, **attrs), want, *tol)["ok"]
                        for k, op in (("cuda", cuda_op), ("triton", triton_op))
                    }
                    compiled = torch.compile(cuda_op.decl.reference) if args.compile else None
                    t = {
                        "cuda_cpp": cuda_time_us(lambda: cuda_op(*ins, **attrs)),
                        "triton": cuda_time_us(lambda: triton_op(*ins, **attrs)),
                        "aten": cuda_time_us(aten),
                    }
                    if compiled is not None:
                        t["compile"] = cuda_time_us(lambda: compiled(*ins, **attrs))
                    moved = sum(x.numel() * x.element_size() for x in ins) + ins[0].numel() * ins[0].element_size()
                    row = {
                        "op": name,
                        "dtype": str(dtype).removeprefix("torch."),
                        "shape": f"{r}x{c}",
                        "ok": ok,
                        "us": t,
                        "triton_vs_cuda": t["cuda_cpp"] / t["triton"],
                        "roofline": {k: moved / (v * 1e-6) / bw for k, v in t.items()},
                    }
                    rows.append(row)
                    print(
                        f"{name:10s} {row['dtype']:8s} {row['shape']:>11s} ok={ok} "
                        + " ".join(f"{k} {v:7.1f}us ({row['roofline'][k]:.0%})" for k, v in t.items())
                        + f"  triton/cuda speed {row['triton_vs_cuda']:.2f}",
                        flush=True,
                    )
    report = run_info(copy_GBps=bw / 1e9, triton=__import__("triton").__version__, rows=rows)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
