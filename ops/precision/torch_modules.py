"""Per-module precision findings, in terms of the torch model: forward hooks on every submodule record the
activation range of its inputs and outputs in float32; then each module runs alone in half (a half copy,
fed its recorded float32 inputs rounded to half) and its output is compared with the float32 one."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from .formats import HalfFormat, rel_l2, risk_flags


@dataclass
class ModuleFinding:
    module: str  # dotted path ('' = the whole model)
    kind: str  # class name
    max_abs: float = 0.0  # over float inputs and outputs
    out_max_abs: float = 0.0
    underflow: float = 0.0
    error: float | None = None  # rel_l2 of the module's output run alone in half
    flags: list = field(default_factory=list)  # overflow | non-finite | budget | underflow | no-half
    no_half: str = ""  # why it could not run in half ('' = it ran)
    note: str = ""


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:100] if str(e) else type(e).__name__


def _tensors(x):
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors(v)]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    return []


def _cast(x, dtype):
    if isinstance(x, torch.Tensor):
        return x.to(dtype) if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(_cast(v, dtype) for v in x)
    if isinstance(x, dict):
        return {k: _cast(v, dtype) for k, v in x.items()}
    return x


def record_calls(model, samples) -> dict:
    """{module path: [(args, kwargs, output)]} of every float32 call, detached copies."""
    calls: dict = {}
    handles = []

    def hook(path):
        def save(module, args, kwargs, output):
            keep = lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
            calls.setdefault(path, []).append(
                (
                    torch.utils._pytree.tree_map(keep, args),
                    torch.utils._pytree.tree_map(keep, kwargs),
                    torch.utils._pytree.tree_map(keep, output),
                )
            )

        return save

    for path, module in model.named_modules():
        handles.append(module.register_forward_hook(hook(path), with_kwargs=True))
    try:
        with torch.inference_mode():
            for sample in samples:
                model(*sample)
    finally:
        for h in handles:
            h.remove()
    return calls


def _stats(tensors, fmt):
    top, flushed = 0.0, 0.0
    for t in tensors:
        if not t.is_floating_point() or t.numel() == 0:
            continue
        a = t.float().abs()
        fin = torch.isfinite(a)
        top = max(top, float("inf") if not bool(fin.all()) else float(a.max()))
        nz = a[fin & (a > 0)]
        if nz.numel():
            flushed = max(flushed, float((nz < fmt.tiny / 2).sum()) / nz.numel())
    return top, flushed


def analyze_modules(
    model, samples, fmt: HalfFormat, budget: float, underflow_limit: float, device: str = "cpu"
) -> list[ModuleFinding]:
    calls = record_calls(model, samples)
    modules = dict(model.named_modules())
    findings = []
    for path, entries in calls.items():
        module = modules[path]
        f = ModuleFinding(path, type(module).__name__)
        try:
            half = copy.deepcopy(module).to(device=device, dtype=fmt.torch_dtype())
        except Exception as e:
            half, f.no_half = None, f"cannot be copied to half: {_first_line(e)}"
        for args, kwargs, output in entries:
            in_top, _ = _stats(_tensors((args, kwargs)), fmt)
            out_top, flushed = _stats(_tensors(output), fmt)
            f.max_abs = max(f.max_abs, in_top, out_top)
            f.out_max_abs, f.underflow = max(f.out_max_abs, out_top), max(f.underflow, flushed)
            if half is None:
                continue
            try:
                to_device = lambda v: v.to(device) if isinstance(v, torch.Tensor) else v  # noqa: E731
                half_args = _cast(torch.utils._pytree.tree_map(to_device, args), fmt.torch_dtype())
                half_kwargs = _cast(torch.utils._pytree.tree_map(to_device, kwargs), fmt.torch_dtype())
                with torch.inference_mode():
                    got = half(*half_args, **half_kwargs)
            except Exception as e:
                f.no_half = f"not run in half: {_first_line(e)}"
                half = None
                continue
            want = [t for t in _tensors(output) if t.is_floating_point()]
            have = [t for t in _tensors(got) if t.is_floating_point()]
            errs = [rel_l2(g, w) for g, w in zip(have, want)]
            if errs:
                f.error = max(errs + ([f.error] if f.error is not None else []))
        f.flags += risk_flags(f, fmt, budget, underflow_limit)
        f.note = f.no_half
        findings.append(f)
    return findings
