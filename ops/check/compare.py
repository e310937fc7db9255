"""Comparing an output with the reference oracle: the numbers every stage reports."""

from __future__ import annotations

import torch


def compare(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> dict:
    """Elementwise |a - e| <= atol + rtol * |e| (NaN never passes), plus the numbers behind it:
    max_abs, max_rel (elementwise, over |e| > atol) and rel_l2 = ||a - e|| / ||e||."""
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if a.shape != e.shape:
        return {"ok": False, "error": f"shape {list(a.shape)} != expected {list(e.shape)}"}
    if a.numel() == 0:
        return {"ok": True, "max_abs": 0.0, "max_rel": 0.0, "rel_l2": 0.0, "numel": 0}
    diff = (a - e).abs()
    both_nan = torch.isnan(a) & torch.isnan(e)
    ok = bool(((diff <= atol + rtol * e.abs()) | (a == e) | both_nan).all())  # a == e: equal infinities
    big = e.abs() > atol
    max_rel = float((diff[big] / e.abs()[big]).max()) if bool(big.any()) else 0.0
    norm = float(e.norm())
    return {
        "ok": ok,
        "max_abs": float(torch.nan_to_num(diff, nan=float("inf")).max()),
        "max_rel": max_rel,
        "rel_l2": float((a - e).norm()) / norm if norm > 0 else float((a - e).norm()),
        "numel": a.numel(),
        "rtol": rtol,
        "atol": atol,
    }


def merge(metrics: list[dict]) -> dict:
    """The worst case over several comparisons."""
    out = {"ok": all(m["ok"] for m in metrics), "cases": len(metrics)}
    for key in ("max_abs", "max_rel", "rel_l2"):
        values = [m[key] for m in metrics if key in m]
        if values:
            out[key] = max(values)
    errors = [m["error"] for m in metrics if "error" in m]
    if errors:
        out["error"] = errors[0]
    return out
