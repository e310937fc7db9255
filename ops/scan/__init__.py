"""Find what blocks a model from ONNX and TensorRT, every operator in one run.

    from ops.scan import scan
    report = scan(model, args, opsets=(17, 20))     # the dict `python -m ops.scan --json` prints
    report["blockers"]                              # e.g. ['aten::rms_norm', 'mymodels::deform_sample']

The model is traced once (torch.export); each operator it calls is tried with each exporter at each
opset (ops.scan.trials), its ONNX ops are looked up in onnx-tensorrt's recorded operator table
(ops.scan.tensorrt), and each blocker gets the `python -m ops.new` command that declares it as an op."""

from __future__ import annotations

from .columns import DEFAULT_OPSETS, plan_columns
from .report import build_report
from .tensorrt import table_for
from .trace import trace_model
from .trials import scan_column


def scan(
    model,
    args,
    *,
    opsets=None,
    exporter: str = "both",
    trt_version: str | None = None,
    namespace: str = "custom",
    target: str | None = None,
    package: str | None = None,
) -> dict:
    columns = plan_columns(opsets or DEFAULT_OPSETS, exporter)
    table = table_for(trt_version)
    args = tuple(args) if isinstance(args, (list, tuple)) else (args,)
    trace = trace_model(model, args)
    results = [scan_column(trace, column, model, args) for column in columns]
    return build_report(target, trace, results, table, namespace, package)
