"""The half formats ops.precision checks against: the largest finite value and the smallest subnormal."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.errors import OpforgeError


@dataclass(frozen=True)
class HalfFormat:
    name: str  # float16 | bfloat16
    max: float  # largest finite value: anything larger rounds to inf
    tiny: float  # smallest positive subnormal: anything below half of it rounds to 0
    onnx_type: int  # TensorProto element type

    def torch_dtype(self):
        return getattr(torch, self.name)


FORMATS = {
    "float16": HalfFormat("float16", 65504.0, 2.0**-24, 10),
    "bfloat16": HalfFormat("bfloat16", 3.3895313892515355e38, 2.0**-133, 16),
}


def half_format(name: str) -> HalfFormat:
    if name not in FORMATS:
        raise OpforgeError(
            f"--dtype must be one of {sorted(FORMATS)}, got {name!r}. Fix: pick float16 (TensorRT's half) or bfloat16."
        )
    return FORMATS[name]


def rel_l2(got, want) -> float:
    """||got - want|| / ||want|| in float64; inf when got has a non-finite value that want has not."""
    g, w = got.detach().double().cpu(), want.detach().double().cpu()
    if g.shape != w.shape:
        return float("inf")
    bad = ~torch.isfinite(g) & torch.isfinite(w)
    if bool(bad.any()):
        return float("inf")
    finite = torch.isfinite(w)
    g, w = g[finite], w[finite]
    denom = float(w.norm())
    diff = float((g - w).norm())
    if denom == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / denom


def risk_flags(finding, fmt: HalfFormat, budget: float, underflow_limit: float) -> list[str]:
    """What is wrong with running one part (an ONNX node, a torch module) in half, from its float32 range
    (max_abs), the error of running it alone in half (error: None when it was not measured), the fraction of
    its nonzero outputs that round to zero (underflow), and whether running it in half failed (no_half: the
    reason, e.g. no half kernel on this device): such a part cannot be deployed in half, so it is flagged
    like any other risk and the mixed export keeps it float32."""
    flags = []
    if finding.max_abs > fmt.max:
        flags.append("overflow")
    if finding.error == float("inf") and "overflow" not in flags:
        flags.append("non-finite")
    if finding.error is not None and budget < finding.error < float("inf"):
        flags.append("budget")
    if finding.underflow > underflow_limit:
        flags.append("underflow")
    if finding.no_half:
        flags.append("no-half")
    return flags
