"""The precision report: findings per ONNX node (with the torch module each came from) and per module,
ranked by risk, as a table, as JSON, and as a plot."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..core.errors import BackendUnavailable

# "no-half": running the part in half failed (no half kernel): certain to break a half deployment, as
# overflow and non-finite outputs are, but it says nothing about the values, so it ranks below them.
FLAG_WEIGHT = {"overflow": 5, "non-finite": 4, "no-half": 3, "budget": 2, "underflow": 1}


def risk_key(f) -> tuple:
    """Sort key, highest risk first: worst flag, then error, then how close max |x| is to the limit."""
    worst = max((FLAG_WEIGHT[x] for x in f.flags), default=0)
    err = f.error if f.error is not None else -1.0
    return (-worst, -(err if not math.isinf(err) else 1e300), -f.max_abs)


@dataclass
class PrecisionReport:
    dtype: str
    limit: float
    budget: float
    underflow_limit: float
    nodes: list  # NodeFinding
    modules: list  # ModuleFinding
    onnx_opset: int
    mixed: dict = field(default_factory=dict)  # filled by plan_mixed: the export decision and its result

    def flagged_nodes(self) -> list:
        return [f for f in self.nodes if f.flags]

    def flagged_modules(self) -> list:
        return [f for f in self.modules if f.flags]

    def ranked_nodes(self) -> list:
        return sorted((f for f in self.nodes if f.flops or f.max_abs or f.flags), key=risk_key)

    def to_json(self) -> dict:
        """Every finding as it is: an error of inf (a half run produced inf/NaN) stays inf (JSON's Infinity),
        distinct from None (not run in half)."""
        return {
            "dtype": self.dtype,
            "limit": self.limit,
            "budget": self.budget,
            "underflow_limit": self.underflow_limit,
            "onnx_opset": self.onnx_opset,
            "summary": {
                "nodes": len(self.nodes),
                "flagged_nodes": len(self.flagged_nodes()),
                "modules": len(self.modules),
                "flagged_modules": len(self.flagged_modules()),
            },
            "nodes": [asdict(f) for f in sorted(self.nodes, key=risk_key)],
            "modules": [asdict(f) for f in sorted(self.modules, key=risk_key)],
            "mixed": self.mixed,
        }

    def table(self, rows: int = 25) -> str:
        lines = [
            f"{self.dtype} precision report: limit {self.limit:g}, error budget rel_l2 {self.budget:g} per node, "
            f"underflow flagged above {self.underflow_limit:.0%} of nonzero values",
            f"{len(self.flagged_nodes())} of {len(self.nodes)} ONNX nodes flagged, "
            f"{len(self.flagged_modules())} of {len(self.modules)} modules flagged",
            "",
        ]
        head = f"{'risk':<18} {'module':<28} {'ONNX node':<34} {'op':<18} {'max |x|':>10} {'half err':>9} {'uflow':>6}"
        lines += ["ONNX nodes (ranked by risk)", head, "-" * len(head)]
        for f in self.ranked_nodes()[:rows]:
            lines.append(
                f"{','.join(f.flags) or '-':<18} {_cut(f.module or '(model)', 28):<28} {_cut(f.node, 34):<34} "
                f"{_cut(f.op_type, 18):<18} {_num(f.max_abs):>10} {_err(f.error):>9} {f.underflow:>6.1%}"
                + (f"  {f.note}" if f.note else "")
            )
        lines += [
            "",
            "torch modules (ranked by risk)",
            f"{'risk':<18} {'module':<40} {'type':<24} {'max |x|':>10} {'half err':>9}",
            "-" * 105,
        ]
        for f in sorted(self.modules, key=risk_key)[:rows]:
            lines.append(
                f"{','.join(f.flags) or '-':<18} {_cut(f.module or '(model)', 40):<40} {_cut(f.kind, 24):<24} "
                f"{_num(f.max_abs):>10} {_err(f.error):>9}" + (f"  {f.note}" if f.note else "")
            )
        if self.mixed:
            mx = self.mixed
            lines += [
                "",
                f"mixed-{self.dtype} export: {mx['float32_nodes']} nodes kept float32 "
                f"({mx['flagged']} flagged, {mx['added_for_budget']} added to meet the end-to-end target, "
                f"{mx['no_half_kernel']} without a half type), "
                f"{mx['half_flop_fraction']:.1%} of FLOPs in {self.dtype}, "
                f"end-to-end rel_l2 {_err(mx['rel_l2'])} worst over {mx.get('calibration_samples', 1)} "
                f"calibration input(s) (target {mx['target']:g} x margin {mx.get('margin', 1):g})",
            ]
        return "\n".join(lines)


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else "…" + s[-(n - 1) :]


def _num(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.4g}"


def _err(x) -> str:
    if x is None:
        return "n/a"
    return "inf/nan" if math.isinf(x) else f"{x:.2e}"


def plot(report: PrecisionReport, path) -> None:
    """Per-layer max |activation| (ONNX nodes in graph order) against the half limit, log scale."""
    try:
        import matplotlib
    except ImportError as e:
        raise BackendUnavailable(f"--plot needs matplotlib ({e}). Install it: pip install matplotlib") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = [f for f in report.nodes if f.out_max_abs > 0]
    xs = list(range(len(nodes)))
    ys = [min(f.out_max_abs, 1e38) for f in nodes]
    colors = ["tab:red" if "overflow" in f.flags else "tab:orange" if f.flags else "tab:blue" for f in nodes]
    fig, ax = plt.subplots(figsize=(max(8, len(nodes) * 0.12), 4.5))
    ax.bar(xs, ys, color=colors, width=0.8)
    ax.axhline(report.limit, color="black", linestyle="--", label=f"{report.dtype} max {report.limit:g}")
    ax.set_yscale("log")
    ax.set_xlabel("ONNX node (graph order)")
    ax.set_ylabel("max |activation| (float32 run)")
    ax.set_title(f"activation range per node vs {report.dtype} limit (red: overflow, orange: other flag)")
    step = max(1, len(nodes) // 40)
    ax.set_xticks(xs[::step], [f.node[-18:] for f in nodes][::step], rotation=90, fontsize=6)
    ax.legend()
    fig.tight_layout()
    fig.savefig(str(path), dpi=120)
    plt.close(fig)
