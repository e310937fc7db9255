"""The reference implementation as the oracle for every backend: run samples through a backend and
compare each output with the reference evaluated in float32 on the same (upcast) inputs."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.dtypes import torch_dtype
from .compare import compare, merge


def reference_outputs(op, sample) -> tuple:
    """The oracle: the reference on float32 copies of floating inputs (exact upcasts of fp16/bf16)."""
    up = [t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in sample.inputs]
    out = op.reference(*up, **sample.attrs)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


DEFAULT_SEED = 20240611


def seed() -> int:
    """The seed samples are drawn with: env OPFORGE_SEED when set, else DEFAULT_SEED."""
    import os

    text = os.environ.get("OPFORGE_SEED", "").strip()
    if not text:
        return DEFAULT_SEED
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"OPFORGE_SEED must be an integer, got {text!r}") from None


def seed_note() -> str:
    """For failure messages: how to draw the same samples again."""
    return f"samples drawn with seed {seed()} (reproduce with OPFORGE_SEED={seed()})"


def samples(op, device: str, dtype: str) -> list:
    """The declaration's samples, drawn with torch's RNG seeded by `seed()`: the same call gives the same
    tensors in every run (and in another process), so a failure can be reproduced. The caller's RNG state
    is left as it was."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed())
        return list(op.decl.samples(device, torch_dtype(dtype)))


def check_backend(op, device: str, dtype: str, run: Callable, keep: Callable = lambda sample: True) -> dict:
    """run(sample) -> outputs of the backend under test, for every sample `keep` accepts. Returns merged
    metrics over those samples, with the dtype's tolerance; an output of the wrong dtype fails."""
    rtol, atol = op.decl.tolerance(dtype)
    results = []
    for sample in filter(keep, samples(op, device, dtype)):
        actual = as_tuple(run(sample))
        expected = reference_outputs(op, sample)
        if len(actual) != len(expected):
            results.append({"ok": False, "error": f"{len(actual)} outputs, expected {len(expected)}"})
            continue
        for a, e, decl_out in zip(actual, expected, op.decl.outputs):
            m = compare(a, e, rtol, atol)
            want = (
                torch.int64
                if decl_out.is_size
                else (
                    torch_dtype(decl_out.dtype)
                    if decl_out.dtype
                    else dict(zip([i.name for i in op.decl.inputs], sample.inputs))[decl_out.dtype_like].dtype
                )
            )
            if a.dtype != want:
                m = {**m, "ok": False, "error": f"output '{decl_out.name}' has dtype {a.dtype}, expected {want}"}
            results.append(m)
    return merge(results)
