"""FP16 without surprises: find the layers that overflow in half, and export a mixed-precision graph.

    python -m ops.precision examples.fp16_overflow:make --json-out report.json --plot ranges.png
    ops.export_onnx(model, args, "model.onnx", precision="mixed-float16")

- torch_eval.py:    runs an ONNX graph node by node with torch kernels at the graph's dtypes (any device)
- onnx_nodes.py:    per ONNX node: float32 range (ORT, every intermediate exposed), error of the node alone in half
- torch_modules.py: per torch module (forward hooks): range, error of the module alone in half
- node_types.py:    which tensors of a node may become half, from its ONNX schema / opforge declaration
- mixed.py:         the rewrite: half where allowed and not flagged, float32 behind explicit Casts elsewhere
- validate.py:      the strongly-typed check (every tensor typed, no type parameter bound to two types)
- planner.py:       analyze() and plan_mixed() (flagged -> float32; then measured sensitivity until the
                    end-to-end target * margin holds on every calibration input)
- report.py:        ranking, table, JSON, plot; flops.py: FLOPs per node
"""

from __future__ import annotations

from ..core import lazy
from ..onnx import export_onnx
from .planner import DEFAULT_BUDGET, DEFAULT_MARGIN, DEFAULT_TARGET, analyze, plan_mixed

__all__ = ["DEFAULT_BUDGET", "DEFAULT_MARGIN", "DEFAULT_TARGET", "analyze", "export_mixed", "plan_mixed"]


def export_mixed(
    model,
    args,
    path=None,
    *,
    dtype: str = "float16",
    calibration=None,
    opset: int = 17,
    budget: float = DEFAULT_BUDGET,
    target: float = DEFAULT_TARGET,
    margin: float = DEFAULT_MARGIN,
    dynamic=False,
    fallback=False,
):
    """Export float32, analyse, and write the mixed-precision graph. Returns (ModelProto, PrecisionReport)."""
    import json

    m32 = export_onnx(model, args, opset=opset, dynamic=dynamic, fallback=fallback)
    analysis = analyze(
        model, args, calibration=calibration, dtype=dtype, budget=budget, opset=opset, modules=False, onnx_model=m32
    )
    mixed = plan_mixed(analysis, target=target, margin=margin)
    summary = {k: v for k, v in analysis.report.mixed.items() if k != "kept_float32"}
    prop = mixed.metadata_props.add()
    prop.key, prop.value = (
        "opforge.precision",
        json.dumps({"dtype": dtype, **summary, "kept_float32": analysis.report.mixed["kept_float32"]}),
    )
    if path is not None:
        from pathlib import Path

        onnx = lazy.onnx()

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(mixed, str(path))
    return mixed, analysis.report
