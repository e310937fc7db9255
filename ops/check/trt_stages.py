"""Stages for the TensorRT backend: plugin compile, plugin host harness (CPU), enqueue on a GPU through
the harness, and an engine build with TensorRT itself.

The harness stages prove the plugin honours TensorRT's plugin interfaces; only `trt.engine` (which
needs TensorRT installed) shows TensorRT accepting it. Each row says which it is."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from ..core.errors import BackendUnavailable, OpforgeError
from ..core.packages import left_out
from ..onnx import export_onnx
from ..onnx.models import single_op_module
from ..trt.build import build
from ..trt.codegen import has_plugin
from ..trt.engine import build_engine
from ..trt.harness import checks, host
from ..trt.harness.cases import has_gap
from ..trt.harness.enqueue import run_plugin
from ..trt.headers import version
from . import FAIL, PASS, SKIP, StageResult, preparer, stage
from .oracle import check_backend, samples

_cache: dict = {}
_prebuilt = threading.Event()  # clear while prebuild's thread builds; the stages below wait for it
_prebuilt.set()
STAGE_NAMES = ("trt.plugin", "trt.harness", "trt.enqueue", "trt.engine")


def _no_plugin(op) -> StageResult | None:
    if has_plugin(op.decl) and left_out(op.id, op.decl.package):  # so the plugin library leaves it out too
        return StageResult("trt.plugin", FAIL, "not in this partial build of the op package (see the build row)")
    if has_plugin(op.decl):
        return None
    if op.decl.kernel_dir is not None and "cuda" in op.decl.kernels_pending and op.decl.onnx:
        return StageResult(
            "trt.plugin",
            SKIP,
            "kernel pending (cuda): the TensorRT plugin library leaves the op out "
            "until its CUDA kernel is written; nothing ran here",
        )
    if not op.decl.onnx:
        return StageResult(
            "trt.plugin",
            SKIP,
            "declared onnx=False: no ONNX node, so TensorRT's parser never creates its plugin (none is built)",
        )
    return StageResult("trt.plugin", SKIP, "the op has no CUDA kernels: nothing for a TensorRT plugin to run")


def plugin_library(op, variant: str = "release"):
    """Build once per process and op package (the package's ops share one library); returns (build, None)
    or (None, (skip|fail, problem))."""
    key = (variant, op.decl.package)
    if key not in _cache:
        try:
            _cache[key] = (build(variant, package=op.decl.package), None)
        except BackendUnavailable as e:
            _cache[key] = (None, ("skip", str(e)))
        except OpforgeError as e:
            _cache[key] = (None, ("fail", str(e)))
    return _cache[key]


def plugin_host(result):
    key = ("host", str(result.library))
    if key not in _cache:
        _cache[key] = host.Host(result.library)
    return _cache[key]


@preparer
def prebuild(targets, only, quick):
    """What the TensorRT stages of a run will need, built on another thread from the start of the run: each op
    package's plugin library, its AddressSanitizer variant (unless quick) and the harness and fuzzer that drive
    them. The torch and ONNX stages before them are single-threaded Python, so on a 2-core machine the compilers
    take the idle core instead of running after those stages. The same cached results (errors included) reach the
    stages, which wait for the thread first; an error that is not cached is met again there and reported."""

    def runs(name):
        return not only or any(name.startswith(prefix) for prefix in only)

    if not any(runs(name) for name in STAGE_NAMES):
        return None
    firsts = {}  # one op per package: the library is the package's
    for op in targets:
        if has_plugin(op.decl) and not left_out(op.id, op.decl.package):
            firsts.setdefault(op.decl.package, op)
    if not firsts:
        return None
    harness = runs("trt.harness") or runs("trt.enqueue")
    fuzz = runs("trt.harness") and not quick

    def work():
        try:
            for op in firsts.values():
                if plugin_library(op)[1] is None and harness:
                    host.build_harness()
                if fuzz and plugin_library(op, "asan")[1] is None:
                    host.build_fuzzer()
        except Exception:  # not swallowed: the stage that needs it builds it again and reports the error
            pass
        finally:
            _prebuilt.set()

    _prebuilt.clear()
    thread = threading.Thread(target=work, name="opforge-trt-prebuild", daemon=True)
    thread.start()
    return thread


@stage("trt.plugin", order=70)
def plugin(op, ctx):
    _prebuilt.wait()
    if (row := _no_plugin(op)) is not None:
        return row
    result, problem = plugin_library(op)
    if problem:
        return StageResult("trt.plugin", SKIP if problem[0] == "skip" else FAIL, problem[1])
    if op.id not in result.ops:
        return StageResult("trt.plugin", FAIL, f"{op.id} is missing from {result.library.name}")
    return StageResult(
        "trt.plugin",
        PASS,
        f"{result.library.name} compiled against TensorRT "
        f"{'.'.join(map(str, version(result.trt_include)))} headers ({len(result.ops)} ops, CUDA "
        f"kernels linked)",
        {"library": str(result.library)},
    )


@stage("trt.harness", order=71)
def harness_cpu(op, ctx):
    _prebuilt.wait()
    if (row := _no_plugin(op)) is not None:
        return StageResult("trt.harness", row.status, row.detail)
    result, problem = plugin_library(op)
    if problem:
        return StageResult("trt.harness", SKIP if problem[0] == "skip" else FAIL, f"no plugin library: {problem[1]}")
    ok, detail, metrics = checks.cpu_checks(plugin_host(result), op)
    rows = [StageResult("trt.harness", PASS if ok else FAIL, detail, metrics)]
    if not ctx.quick:
        asan, problem = plugin_library(op, "asan")
        if problem:
            rows.append(
                StageResult("trt.harness.fuzz", SKIP if problem[0] == "skip" else FAIL, f"no ASan build: {problem[1]}")
            )
        elif ("fuzz", op.decl.package) not in _cache:
            rc, out = host.run_fuzzer(asan.library, cases=1000, seed=1)
            _cache[("fuzz", op.decl.package)] = (rc, out.strip().splitlines()[-1] if out.strip() else "")
        if not problem:
            rc, summary = _cache[("fuzz", op.decl.package)]
            rows.append(
                StageResult(
                    "trt.harness.fuzz",
                    PASS if rc == 0 else FAIL,
                    f"createPlugin fuzzed under AddressSanitizer (whole library): {summary}",
                )
            )
    return rows


@stage("trt.enqueue", order=72)
def enqueue(op, ctx):
    _prebuilt.wait()
    if (row := _no_plugin(op)) is not None:
        return StageResult("trt.enqueue", row.status, row.detail)
    if not torch.cuda.is_available():
        return StageResult("trt.enqueue", SKIP, "no CUDA device on this machine (enqueue needs a GPU)")
    result, problem = plugin_library(op)
    if problem:
        return StageResult("trt.enqueue", SKIP if problem[0] == "skip" else FAIL, f"no plugin library: {problem[1]}")
    h = plugin_host(result)
    rows = []
    for dtype in [t for t in ("float32", "float16") if t in op.decl.dtypes]:
        m = check_backend(op, "cuda", dtype, lambda s: run_plugin(h, op, s), keep=lambda s: not has_gap(s))
        rows.append(
            StageResult(
                f"trt.enqueue[{dtype}]",
                PASS if m["ok"] else FAIL,
                f"[plugin host harness on {torch.cuda.get_device_name()}] max_abs "
                f"{m.get('max_abs', float('nan')):.3g} over {m['cases']} outputs",
                m,
            )
        )
    return rows


@stage("trt.engine", order=73)
def engine(op, ctx):
    _prebuilt.wait()
    if (row := _no_plugin(op)) is not None:
        return StageResult("trt.engine", row.status, row.detail)
    try:
        import tensorrt
    except ImportError:
        return StageResult(
            "trt.engine",
            SKIP,
            "TensorRT is not installed (import tensorrt failed): no engine "
            "build; the harness rows above do not show TensorRT accepting the plugin",
        )
    if not torch.cuda.is_available():
        return StageResult("trt.engine", SKIP, "TensorRT is installed but there is no CUDA device")
    sample = next(s for s in samples(op, "cuda", op.decl.dtypes[0]) if all(t.numel() for t in s.inputs))
    path = Path(ctx.workdir) / f"{op.decl.name}.onnx"
    export_onnx(single_op_module(op, sample.attrs), sample.inputs, path, opset=17)
    shapes = {i.name: (tuple(t.shape),) * 3 for i, t in zip(op.decl.inputs, sample.inputs)}
    data = build_engine(path, shapes)
    return StageResult(
        "trt.engine",
        PASS,
        f"TensorRT {tensorrt.__version__} built a strongly typed engine "
        f"({len(data)} bytes) from the exported model with the plugin (not executed here)",
    )
