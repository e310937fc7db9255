"""Stages for the ONNX and ONNX Runtime backend: export with both exporters at several opsets, the
checker with strict shape inference, ORT (the package's native custom-op library, calling the same CPU
kernels) against the reference at batch 1, 3 and 8 (of the op's declared batch dim, ops.core.batch) from one dynamic
export, the fallback body in plain
ORT, and Polygraphy's comparator."""

from __future__ import annotations

import importlib.util
import time

from ..core import lazy
from ..core.errors import BackendUnavailable, OpforgeError
from ..onnx import export_onnx, ort_session
from ..onnx.models import run_session, single_op_module
from ..onnx.polygraphy import compare_with_polygraphy
from ..onnx.schema import onnx_supported, output_dims
from ..ort.codegen import has_library_op
from ..ort.session import library_for
from . import FAIL, PASS, SKIP, StageResult, stage
from .batching import batch_plan
from .compare import compare, merge
from .oracle import check_backend, reference_outputs
from .torch_stages import extension_problem

EXPORTS = (
    ("dynamo", 18),
    ("dynamo", 20),
    ("dynamo", 23),
    ("torchscript", 11),
    ("torchscript", 13),
    ("torchscript", 17),
)
QUICK_EXPORTS = (("dynamo", 20), ("torchscript", 11), ("torchscript", 17))
BATCHES = (1, 3, 8)
NEEDED = ("onnx", "onnxscript", "onnxruntime", "onnx_graphsurgeon")


def _sizes_text(op, plan) -> str:
    """What the batch rows ran: '<batch dim> 1/3/8', or the sample's own shapes for an op without a batch."""
    if not plan.dims:
        return f"static shapes ({op.decl.batch.how})"
    b = op.decl.batch
    dim = f"{b.input}.shape[{b.dims[0][1]}]"
    return f"{b.name} ({dim}) {'/'.join(map(str, BATCHES))}"


def _missing() -> str | None:
    absent = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    return (
        f"not installed: {', '.join(absent)} (pip install {' '.join(m.replace('_', '-') for m in absent)})"
        if absent
        else None
    )


def _why_not(op) -> str | None:
    if not onnx_supported(op.decl):
        return "declared with onnx=False"
    return _missing()


def _dims(value_info_type):
    t = value_info_type.tensor_type
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def _dims_agree(got: list, want: list) -> bool:
    """Inferred output dims match the shape rules wherever the rules know the dim (None: data-dependent or
    computed from the batch, which ONNX inference leaves unnamed)."""
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if w is None:
            continue
        if len(g) != len(w) or any(b is not None and a != b for a, b in zip(g, w)):
            return False
    return True


def _blocked(op, name: str):
    """The row to return instead of running an ONNX stage: skip when the op declares no ONNX support or
    a package is missing, fail when the compiled kernels cannot run. None when the stage can run."""
    why = _why_not(op) or extension_problem(op)
    if not why:
        return None
    return [StageResult(name, SKIP if "onnx=False" in why or "installed" in why else FAIL, why)]


def _no_native_library(op, name: str):
    """The row to return instead of running a stage on the op's native ORT library: skip for an op without
    compiled kernels (nothing for the library to call) or when the library cannot be built here (no ORT
    headers), fail when it does not compile. None when the library is built (once per process and package)."""
    if op.decl.kernel_dir is not None and "cpu" in op.decl.kernels_pending:
        return [
            StageResult(
                name,
                SKIP,
                "kernel pending (cpu): the native ONNX Runtime library leaves the op out until "
                "its CPU kernel is written; nothing ran here",
            )
        ]
    if not has_library_op(op.decl):
        return [
            StageResult(
                name,
                SKIP,
                "no compiled kernels (kernels=None): nothing for a native ONNX Runtime op "
                "to call; ort.fallback runs the reference's ONNX body",
            )
        ]
    try:
        library_for(op.decl.package)
    except BackendUnavailable as e:
        return [StageResult(name, SKIP, f"native ORT library not buildable here: {e}")]
    except OpforgeError as e:
        return [StageResult(name, FAIL, f"native ORT library: {e}")]
    return None


@stage("onnx.export", order=50)
def onnx_export(op, ctx):
    """Export with each exporter/opset (the declared batch dim dynamic), checker full_check + strict shape
    inference, the custom node's output shape inferred with the symbolic batch dim."""
    blocked = _blocked(op, "onnx.export")
    if blocked:
        return blocked
    onnx = lazy.onnx()

    plan = batch_plan(op)
    if plan is None:
        return [
            StageResult(
                "onnx.export",
                FAIL,
                "no float32 sample to export: add one to the op's samples whose "
                f"batch input ({op.decl.batch.input if op.decl.batch.dims else 'any'})"
                " is present and not empty",
            )
        ]
    sample = plan.sample
    module = single_op_module(op, sample.attrs)
    # What the custom node's outputs must be inferred as: the shape rules over the symbolic batch.
    want = output_dims(
        op.decl, plan.dim_names(op.decl), {a.name: sample.attrs.get(a.name, a.default) for a in op.decl.attrs}
    )
    rows, models = [], ctx.artifacts.setdefault("onnx", {})
    for exporter, opset in QUICK_EXPORTS if ctx.quick else EXPORTS:
        name = f"onnx.export[{exporter}-{opset}]"
        start = time.perf_counter()
        path = ctx.workdir / f"{op.decl.name}_{exporter}_{opset}.onnx"
        try:
            m = export_onnx(module, sample.inputs, path, opset=opset, dynamic=plan.dynamic)
            inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
            onnx.checker.check_model(inferred, full_check=True)
        except Exception as e:
            rows.append(StageResult(name, FAIL, f"{type(e).__name__}: {e}"))
            continue
        nodes = [n for n in m.graph.node if (n.domain, n.op_type) == (op.decl.namespace, op.decl.name)]
        infos = {v.name: v.type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        out_dims = [_dims(infos[o]) for n in nodes for o in n.output if o in infos]
        written = next(o.version for o in m.opset_import if o.domain == "")
        trt = all({a.name for a in n.attribute} >= {"plugin_version", "plugin_namespace"} for n in nodes)
        problems = []
        if len(nodes) != 1:
            problems.append(f"{len(nodes)} {op.id} nodes")
        if written != opset:
            problems.append(f"opset {written} written")
        if not _dims_agree(out_dims, want):
            problems.append(f"output dims {out_dims} (the shape rules give {want})")
        if not trt:
            problems.append("TensorRT attributes missing")
        models[(exporter, opset)] = path
        detail = (
            f"opset {written}, node {op.decl.namespace}::{op.decl.name} v{op.decl.version}, output dims "
            f"{out_dims[0] if out_dims else '?'}; checker(full) + strict inference ok; "
            f"{time.perf_counter() - start:.1f}s"
        )
        rows.append(
            StageResult(
                name,
                FAIL if problems else PASS,
                "; ".join(problems) or detail,
                {"opset": written, "output_dims": out_dims},
            )
        )
    return rows


@stage("ort.cpu", order=60)
def ort_cpu(op, ctx):
    """ORT with the op package's native library vs the reference: every sample per dtype (float16 and
    bfloat16 computed natively; TorchScript export at opset 17, one model per sample), and batch 1/3/8
    through each dynamic export of onnx.export."""
    blocked = _blocked(op, "ort.cpu") or _no_native_library(op, "ort.cpu")
    if blocked:
        return blocked
    rows = []
    for dtype in op.decl.dtypes:
        name = f"ort.cpu[{dtype}]"
        counter = iter(range(10**6))

        def run(sample, counter=counter):
            path = ctx.workdir / f"{op.decl.name}_sample{next(counter)}.onnx"
            export_onnx(single_op_module(op, sample.attrs), sample.inputs, path, opset=17)
            return run_session(ort_session(path), sample.inputs)

        m = check_backend(op, "cpu", dtype, run)
        rtol, atol = op.decl.tolerance(dtype)
        detail = (
            f"max_abs {m.get('max_abs', float('nan')):.3g}, rel_l2 {m.get('rel_l2', float('nan')):.3g} over "
            f"{m['cases']} outputs (rtol/atol {rtol:g}/{atol:g})" + (f"; {m['error']}" if "error" in m else "")
        )
        rows.append(StageResult(name, PASS if m["ok"] else FAIL, detail, m))
    plan = batch_plan(op)
    sample = plan.sample if plan else None
    rtol, atol = op.decl.tolerance("float32")
    for (exporter, opset), path in sorted(ctx.artifacts.get("onnx", {}).items()):
        session = ort_session(path)
        results = []
        for b in plan.sizes(BATCHES):
            inputs = plan.inputs(b)
            expected = reference_outputs(op, type(sample)(*inputs, **sample.attrs))
            actual = run_session(session, inputs)
            results += [compare(a, e, rtol, atol) for a, e in zip(actual, expected)]
        m = merge(results)
        rows.append(
            StageResult(
                f"ort.cpu.batch[{exporter}-{opset}]",
                PASS if m["ok"] else FAIL,
                f"{_sizes_text(op, plan)} from one dynamic export: max_abs "
                f"{m.get('max_abs', float('nan')):.3g}" + (f"; {m['error']}" if "error" in m else ""),
                m,
            )
        )
    if not ctx.artifacts.get("onnx"):
        rows.append(StageResult("ort.cpu.batch", SKIP, "no dynamic export from onnx.export to run"))
    return rows


@stage("ort.fallback", order=61)
def ort_fallback(op, ctx):
    """A graph exported with fallback=True runs in plain ORT (no custom-op library) on the reference's ONNX body."""
    blocked = _blocked(op, "ort.fallback")
    if blocked:
        return blocked
    if not op.decl.onnx_fallback:
        return [
            StageResult(
                "ort.fallback",
                SKIP,
                "declared onnx_fallback=False: the reference has no standard-ONNX "
                "body (export_onnx(fallback=True) refuses the op)",
            )
        ]
    plan = batch_plan(op)
    if plan is None:
        return [StageResult("ort.fallback", FAIL, "no float32 sample to export")]
    sample = plan.sample
    rows = []
    rtol, atol = op.decl.tolerance("float32")
    for opset in (17,) if ctx.quick else (11, 17, 20):
        path = ctx.workdir / f"{op.decl.name}_fallback_{opset}.onnx"
        try:
            m = export_onnx(
                single_op_module(op, sample.attrs),
                sample.inputs,
                path,
                opset=opset,
                dynamic=plan.dynamic,
                fallback=True,
            )
        except Exception as e:
            rows.append(StageResult(f"ort.fallback[{opset}]", FAIL, f"{type(e).__name__}: {e}"))
            continue
        session = ort_session(path, bind_ops=False)
        results = []
        for b in plan.sizes(BATCHES):
            inputs = plan.inputs(b)
            expected = reference_outputs(op, type(sample)(*inputs, **sample.attrs))
            results += [compare(a, e, rtol, atol) for a, e in zip(run_session(session, inputs), expected)]
        mm = merge(results)
        fn = next(f for f in m.functions if (f.domain, f.name) == (op.decl.namespace, op.decl.name))
        rows.append(
            StageResult(
                f"ort.fallback[{opset}]",
                PASS if mm["ok"] else FAIL,
                f"plain ORT, no custom-op library: function {fn.domain}.{fn.name} ({len(fn.node)} nodes, "
                f"attributes {list(fn.attribute)}), {_sizes_text(op, plan)} max_abs "
                f"{mm.get('max_abs', float('nan')):.3g}" + (f"; {mm['error']}" if "error" in mm else ""),
                mm,
            )
        )
    return rows


@stage("ort.polygraphy", order=62)
def ort_polygraphy(op, ctx):
    """Polygraphy's Comparator: ORT (native library) vs torch eager on the dynamic export, batch 1/3/8 (of the
    declared batch dim)."""
    blocked = _blocked(op, "ort.polygraphy") or _no_native_library(op, "ort.polygraphy")
    if blocked:
        return blocked
    if importlib.util.find_spec("polygraphy") is None:
        return [StageResult("ort.polygraphy", SKIP, "polygraphy not installed (pip install polygraphy)")]
    models = ctx.artifacts.get("onnx", {})
    if not models:
        return [StageResult("ort.polygraphy", SKIP, "no export from onnx.export")]
    key = ("dynamo", 20) if ("dynamo", 20) in models else sorted(models)[0]
    plan = batch_plan(op)
    ok, detail = compare_with_polygraphy(op, models[key], plan, plan.sizes(BATCHES))
    return [StageResult(f"ort.polygraphy[{key[0]}-{key[1]}]", PASS if ok else FAIL, detail)]
