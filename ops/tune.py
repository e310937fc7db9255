"""Tune an op's Triton kernel on a GPU: time every configuration valid for each input, keep the fastest per dtype
variant and key bucket, and write the table the next build embeds in the launcher.

    python -m ops.tune opforge::rms_norm                 # on a GPU, the op's torch extension built with Triton
    python -m ops.tune myops::op --package myops --dtypes float16

What runs is the launcher itself, in the torch extension, with one configuration forced at a time (its
`opforge_triton_force_config_<ns>__<op>`), timed with CUDA events (median of --iters after warm-up). The inputs
are the declaration's `Triton(tune=...)` samples, else the op's samples. The table,
`<kernel dir>/<op>_triton_tuned.json`, is source: commit it; ops.build embeds it, and without it the launcher
takes the documented default (the tightest valid config: ops/core/triton_launch.py).
"""

from __future__ import annotations

import ctypes
import datetime
import importlib
import json
import statistics

import torch

from . import cli
from .core import shape_rule as sr
from .core.declaration import variant_label
from .core.dtypes import torch_dtype
from .core.errors import OpforgeError
from .core.packages import package
from .core.registry import get_op
from .core.triton_launch import bucket
from .native import inductor_capture
from .native.triton_launcher import tuned_table_path
from .torch import extension


class LaunchInts(sr.IntAlgebra):
    """Launch expressions over a sample's tensors (ops.core.triton_launch adds numel/present to the shape language)."""

    def __init__(self, tensors: dict, attrs: dict):
        shapes = {k: list(v.shape) for k, v in tensors.items() if v is not None}
        super().__init__(shapes, attrs)
        self.tensors = tensors

    def call(self, fn, input):
        t = self.tensors.get(input)
        return int(t is not None) if fn == "present" else t.numel()


def _time(fn, iters: int) -> float:
    """Median microseconds of `fn` over `iters` runs, each timed with CUDA events, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0)
    return statistics.median(times)


def force_function(op):
    """The launcher's config override in the op's loaded torch extension."""
    pkg = package(op.decl.package)
    extension.load(pkg, strict=True)
    record = json.loads(pkg.build_record.read_text())
    if record.get("cuda_kernels", {}).get(op.id) != "triton":
        raise OpforgeError(
            f"{op.id}: its torch extension was not built with the Triton kernel (build record: "
            f"{record.get('cuda_kernels', {}).get(op.id, 'no CUDA kernels')}). Fix: python -m ops.build "
            f"--cuda-kernels {op.id}{'' if pkg.name == 'ops.library' else ' --package ' + pkg.name}, on this GPU machine"
        )
    lib = ctypes.CDLL(importlib.import_module(pkg.extension).__file__)
    fn = getattr(lib, f"opforge_triton_force_config_{op.decl.namespace}__{op.decl.name}")
    fn.restype = ctypes.c_int
    return fn


def tune(op, dtypes, iters: int = 50, log=print) -> dict:
    decl = inductor_capture.concrete(op.decl)  # Inductor's launch, where it writes the kernel
    t = decl.triton
    force = force_function(op)
    inputs_of = t.tune or decl.samples
    names = [i.name for i in decl.inputs]
    results: dict[tuple[str, int], dict[str, float]] = {}
    try:
        for dtype in dtypes:
            for sample in inputs_of("cuda", torch_dtype(dtype)):
                tensors = dict(zip(names, sample.inputs))
                attrs = {a.name: sample.attrs.get(a.name, a.default) for a in decl.attrs}
                key = 0 if t.key is None else sr.evaluate(t.key, LaunchInts(tensors, attrs))
                label = variant_label(
                    decl, {n: dtype if v is None else str(v.dtype).removeprefix("torch.") for n, v in tensors.items()}
                )
                times = results.setdefault((label, bucket(key)), {})
                for index, config in enumerate(t.configs):
                    if config.max_key is not None and key > config.max_key:
                        continue
                    if force(index) != 0:
                        raise OpforgeError(f"{op.id}: the launcher refused config {index}")
                    us = _time(lambda s=sample: op(*s.inputs, **s.attrs), iters)
                    times[config.label()] = times.get(config.label(), 0.0) + us
                log(
                    f"{label} key {key} (bucket {bucket(key)}): "
                    + ", ".join(f"{c} {u:.1f} us" for c, u in times.items())
                )
    finally:
        force(-1)
    entries = [
        {
            "variant": label,
            "bucket": b,
            "config": min(times, key=times.get),
            "us": {c: round(u, 2) for c, u in times.items()},
        }
        for (label, b), times in sorted(results.items())
        if times
    ]
    return {
        "op": op.id,
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "iters": iters,
        "entries": entries,
    }


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.tune",
        __doc__.splitlines()[0] + " Exit status: 0 written, 2 a usage error (no GPU, not built with Triton).",
        packages=cli.PACKAGE_HELP,
        json=True,
    )
    parser.add_argument("op", help="the op id, e.g. opforge::rms_norm")
    parser.add_argument("--dtypes", help="comma-separated dtypes (default: every dtype the op declares)")
    parser.add_argument("--iters", type=int, default=50, help="timed runs per config and input (default 50)")
    parser.add_argument("--dry-run", action="store_true", help="print the table, do not write it")
    return cli.main(parser, run, argv)


def run(args) -> cli.Report:
    cli.load_packages(args)
    op = get_op(args.op)
    if op.decl.triton is None:
        raise OpforgeError(f"{op.id} has no Triton kernel (no triton= in its declaration): nothing to tune")
    if not torch.cuda.is_available():
        raise OpforgeError("ops.tune times kernels on a GPU, and torch sees none here. Fix: run it on a GPU machine")
    dtypes = args.dtypes.split(",") if args.dtypes else list(op.decl.dtypes)
    table = tune(op, dtypes, args.iters)
    path = tuned_table_path(op.decl)
    if not args.dry_run:
        path.write_text(json.dumps(table, indent=1) + "\n")
        if not args.json:
            print(f"wrote {path} ({len(table['entries'])} entries); rebuild to embed it")
    return cli.Report(table)


if __name__ == "__main__":
    raise SystemExit(main())
