"""Stages for the declaration and the torch backend."""

from __future__ import annotations

import torch

from ..core import shape_rule as sr
from ..core.packages import left_out, package, partial_build
from ..torch.extension import load, status
from ..torch.register import output_shapes
from . import FAIL, PASS, REFERENCE, SKIP, StageResult, pending_note, stage
from .oracle import check_backend, reference_outputs, samples


@stage("declaration", order=0)
def declaration(op, ctx):
    """The declaration is valid (it registered) and its shape rules agree with the reference."""
    d = op.decl
    checked = 0
    for sample in samples(op, "cpu", d.dtypes[0]):
        inputs = dict(zip([i.name for i in d.inputs], sample.inputs))
        attrs = {a.name: sample.attrs.get(a.name, a.default) for a in d.attrs}
        expected = reference_outputs(op, sample)
        sizes = {o.name: int(t) for o, t in zip(d.outputs, expected) if o.is_size}
        for o, shape, ref in zip(d.outputs, output_shapes(d, inputs, attrs, sizes), expected):
            if o.is_size:
                continue
            if list(shape) != list(ref.shape):
                return StageResult(
                    "declaration",
                    FAIL,
                    f"shape rule of '{o.name}' ({sr.to_text(o.shape)}) gives "
                    f"{list(shape)} but the reference returns {list(ref.shape)}",
                )
        checked += 1
    summary = (
        f"{len(d.inputs)} inputs, {len(d.attrs)} attrs, {len(d.outputs)} outputs, devices {list(d.devices)}, "
        f"dtypes {list(d.dtypes)}; shape rules agree with the reference on {checked} samples"
    )
    return StageResult("declaration", PASS, summary, {"samples": checked})


@stage("build", order=10)
def build(op, ctx):
    if op.decl.kernel_dir is None:
        return StageResult("build", SKIP, "no compiled kernels declared: the reference is the implementation")
    pkg = package(op.decl.package)
    load(pkg, strict=False)
    s = status(pkg.name)
    if s["loaded"] and left_out(op.id, pkg.name):
        return StageResult("build", FAIL, left_out(op.id, pkg.name))
    if s["loaded"]:
        pending = (
            f"; kernels pending on {', '.join(op.decl.kernels_pending)}: compiled, not called (the reference "
            "runs there)"
            if op.decl.kernels_pending
            else ""
        )
        partial = partial_build(pkg.name)
        partial = f"; a partial build of {len(partial)} ops (python -m ops.build --ops)" if partial else ""
        return StageResult(
            "build",
            PASS,
            f"{pkg.extension} loaded ({'CPU+CUDA' if s['cuda'] else 'CPU only'} kernels){partial}{pending}",
            {"cuda_kernels": s["cuda"], "extension": pkg.extension, "kernels_pending": list(op.decl.kernels_pending)},
        )
    return StageResult("build", FAIL, s["error"])


def extension_problem(op) -> str | None:
    """Why compiled kernels cannot run, for stages to report in one line instead of per sample."""
    if op.decl.kernel_dir is None:
        return None
    if not status(op.decl.package)["loaded"]:
        return f"{package(op.decl.package).extension} is not usable (see the build row)"
    if left_out(op.id, op.decl.package):
        return f"not in this partial build of {package(op.decl.package).extension} (see the build row)"
    return None


def _device_rows(op, device: str):
    name = f"torch.{device}"
    if extension_problem(op):
        return [StageResult(name, FAIL, extension_problem(op))]
    if device not in op.decl.devices:
        return [StageResult(name, SKIP, f"the op does not declare device '{device}'")]
    if device == "cuda" and not torch.cuda.is_available():
        return [StageResult(name, SKIP, "no CUDA device on this machine")]
    rows = []
    for dtype in op.decl.dtypes:
        m = check_backend(op, device, dtype, lambda s: op(*s.inputs, **s.attrs))
        detail = (
            f"max_abs {m.get('max_abs', float('nan')):.3g}, rel_l2 {m.get('rel_l2', float('nan')):.3g} over "
            f"{m['cases']} outputs (rtol/atol {op.decl.tolerance(dtype)[0]:g}/{op.decl.tolerance(dtype)[1]:g})"
        )
        if "error" in m:
            detail += f"; {m['error']}"
        if not op.decl.runs_kernel(device) and op.decl.kernel_dir is not None:
            rows.append(
                StageResult(
                    f"{name}[{dtype}]",
                    REFERENCE if m["ok"] else FAIL,
                    f"{pending_note(op.decl, device)}; {detail}",
                    {**m, "reference": True},
                )
            )
            continue
        rows.append(StageResult(f"{name}[{dtype}]", PASS if m["ok"] else FAIL, detail, m))
    return rows


@stage("torch.cpu", order=20)
def torch_cpu(op, ctx):
    return _device_rows(op, "cpu")


@stage("torch.cuda", order=30)
def torch_cuda(op, ctx):
    return _device_rows(op, "cuda")


@stage("torch.opcheck", order=40)
def opcheck(op, ctx):
    """torch.library.opcheck with all its default tests, on every sample, per available device."""
    if extension_problem(op):
        return [StageResult("torch.opcheck", FAIL, extension_problem(op))]
    rows = []
    for device in op.decl.devices:
        if device == "cuda" and not torch.cuda.is_available():
            rows.append(StageResult(f"torch.opcheck[{device}]", SKIP, "no CUDA device on this machine"))
            continue
        count = 0
        for dtype in op.decl.dtypes[: 1 if ctx.quick else None]:
            for sample in samples(op, device, dtype):
                args = tuple(
                    t.requires_grad_() if t is not None and t.is_floating_point() and op.decl.backward else t
                    for t in sample.inputs
                )
                result = torch.library.opcheck(op.torch_op, args, op.schema_kwargs(sample.attrs), raise_exception=False)
                bad = {k: v for k, v in result.items() if v != "SUCCESS"}
                if bad:
                    return rows + [StageResult(f"torch.opcheck[{device}]", FAIL, f"{dtype} sample {count}: {bad}")]
                count += 1
        detail = (
            f"test_schema, test_autograd_registration, test_faketensor, test_aot_dispatch_dynamic on {count} samples"
        )
        if device in op.decl.kernels_pending:
            rows.append(
                StageResult(
                    f"torch.opcheck[{device}]",
                    REFERENCE,
                    f"{pending_note(op.decl, device)}; {detail}",
                    {"samples": count, "reference": True},
                )
            )
            continue
        rows.append(StageResult(f"torch.opcheck[{device}]", PASS, detail, {"samples": count}))
    return rows
