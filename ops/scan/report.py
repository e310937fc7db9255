"""The scan's facts as one dict (what --json prints) and as a table for people.

An operator *blocks* the model when one of its calls fails to export in a deciding column (see
ops.scan.columns), or when it becomes an ONNX op that TensorRT's table marks unsupported in a deciding
column. A restriction note alone is shown, not counted: whether it bites depends on attributes the table
cannot be checked against here. A whole-model export that fails in a deciding column although every
operator exports alone is a blocker of its own (row '(whole model)')."""

from __future__ import annotations

import re
from pathlib import Path

from ..core.packages import package
from ..core.registry import all_ops
from ..new.plan import SCHEMA_TYPES, declared_names
from . import tensorrt as trt
from .library import standing_in
from .trace import TensorSpec


def suggested_namespace(module: str | None) -> str:
    """The namespace ops.new suggestions use by default: the model module's last name ('examples.segmentation'
    -> 'segmentation'), or 'custom'."""
    name = re.sub(r"[^0-9a-zA-Z_]", "_", (module or "").rpartition(".")[2]).strip("_").lower()
    if not name or not name[0].isalpha() or name in {"aten", "prim", "prims", "torch", "onnx", "opforge", "main"}:
        return "custom"
    return name


# Operators torch (or an installed library ops.new imports itself) registers; any other namespace comes from
# the user's code, which ops.new must import to read the operator's schema.
KNOWN_NAMESPACES = ("aten", "prims", "torchvision")


def importable_module(target: str | None) -> str | None:
    """The dotted module name of a scan target ('pkg.models:make' -> 'pkg.models'; 'pkg/sub/m.py:f' ->
    'pkg.sub.m' when that path is under the current directory), or None."""
    module = (target or "").rpartition(":")[0]
    if module.endswith(".py"):
        try:
            rel = Path(module).resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            return None
        module = ".".join(rel.with_suffix("").parts)
    return module if re.match(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", module) else None


def _recorded_call_flags(op) -> str:
    """--shapes and --attr flags for ops.new from the operator's first recorded call, so that ops.new runs the
    operator on inputs it accepts (guessed shapes rarely fit an operator with coupled inputs) with the attribute
    values the model uses."""
    schema = getattr(op.overload, "_schema", None)
    if schema is None or not op.calls:
        return ""
    call = op.calls[0]
    values = dict(zip([a.name for a in schema.arguments], call.args))
    values.update(call.kwargs)
    names = declared_names([a.name for a in schema.arguments])  # what ops.new calls each argument
    shapes, attrs = [], []
    for a in schema.arguments:
        v = values.get(a.name)
        if isinstance(v, TensorSpec):
            shapes.append(f"{names[a.name]}={'x'.join(map(str, v.shape)) or 'scalar'}")
            continue
        t = str(a.type)
        tname = SCHEMA_TYPES.get(t[len("Optional[") : -1] if t.startswith("Optional[") else t)
        if (
            v is None
            or tname is None
            or isinstance(v, (list, tuple))
            and not all(isinstance(e, (int, float)) for e in v)
        ):
            continue
        text = ",".join(str(e) for e in v) if isinstance(v, (list, tuple)) else str(v)
        attrs.append(f"--attr '{names[a.name]}:{tname}={text}'")
    return " ".join(([f"--shapes '{' '.join(shapes)}'"] if shapes else []) + attrs)


def fix_command(op, namespace: str, target: str | None = None, package: str | None = None) -> str:
    """The ops.new command that declares an op standing in for `op` (an Operator of the trace, named e.g.
    'aten::_upsample_bicubic2d_aa.vec'), with its recorded call's shapes and attribute values; an operator of
    the user's own code also gets `--import` of the scanned model's module, which registers it."""
    base = op.name.partition("::")[2].split(".")[0].lstrip("_")
    command = f"python -m ops.new {namespace}::{base} --like {op.name}"
    module = importable_module(target)
    if op.name.partition("::")[0] not in KNOWN_NAMESPACES and module:
        command += f" --import {module}"
    flags = _recorded_call_flags(op)
    return command + (" " + flags if flags else "") + (f" --package {package}" if package else "")


def _plugin_domains() -> dict:
    out = {}
    for op in all_ops():
        lib = f"lib{package(op.decl.package).plugin_library}.so" if op.decl.package else "its plugin library"
        out[(op.decl.namespace, op.decl.name)] = lib
    return out


def build_report(target: str | None, trace, results, table, namespace: str, package: str | None = None) -> dict:
    declared = {op.torch_op: op for op in all_ops()}
    plugins = _plugin_domains()
    columns = [r.column for r in results]
    deciding = [r for r in results if r.column.decides]
    operators = []
    for op in trace.operators:
        decl = declared.get(op.overload)
        kind = "opforge" if decl is not None else ("aten" if op.namespace in ("aten", "prims") else "custom")
        exports, onnx_ops = {}, []
        for r in results:
            o = r.operators[op.name]
            exports[r.column.name] = {
                "ok": o.ok,
                "reason": o.reason,
                "onnx_ops": [f"{d}::{t}" if d else t for d, t in o.onnx_ops],
                "failing_modules": sorted({c.module for c, _ in r.failing_calls[op.name]}),
            }
            for key in o.onnx_ops:
                if key not in onnx_ops:
                    onnx_ops.append(key)
        verdicts = {}
        for r in deciding:
            for d, t in r.operators[op.name].onnx_ops:
                v = trt.verdict(table, d, t, plugins)
                verdicts[v.onnx_op] = v
        trt_status = max(
            (v.status for v in verdicts.values()),
            key=[trt.SUPPORTED, trt.PLUGIN, trt.RESTRICTED, trt.UNSUPPORTED].index,
            default=None,
        )
        blocked_by = [r.column.name for r in deciding if not r.operators[op.name].ok]
        if trt_status == trt.UNSUPPORTED:
            blocked_by.append(f"tensorrt-{table.version}")
        entry = {
            "operator": op.name,
            "kind": kind,
            "calls": len(op.calls),
            "modules": op.modules,
            "exports": exports,
            "onnx_ops": [f"{d}::{t}" if d else t for d, t in onnx_ops],
            "tensorrt": {
                "status": trt_status,
                "onnx_ops": [{"op": v.onnx_op, "status": v.status, "note": v.note} for v in verdicts.values()],
            },
            "blocker": bool(blocked_by),
            "blocked_by": blocked_by,
        }
        if decl is not None:
            entry["declared_at"] = str(decl.decl.source)
        if blocked_by:
            if kind == "opforge":
                entry["fix"] = None
                entry["fix_note"] = (
                    f"{op.name} is declared at {decl.decl.source}; the failure is in its declaration "
                    "or export (see the reason)"
                )
            else:
                declared_ops = standing_in(op)
                if declared_ops:  # an opforge op already does what the operator does: use it
                    entry["library_ops"] = [{"op": d.id, "declared_at": str(d.decl.source)} for d in declared_ops]
                    entry["library_note"] = (
                        f"{' or '.join(d.id for d in declared_ops)} is declared already (its "
                        f"reference calls {op.name} on inputs of these ranks): call torch.ops."
                        f"{declared_ops[0].id.replace('::', '.')} where the model calls {op.name}"
                        "; otherwise declare a new op:"
                    )
                entry["fix"] = fix_command(op, namespace, target, package)
                new = entry["fix"].split()[3]
                entry["fix_note"] = (
                    f"then call torch.ops.{new.replace('::', '.')} where the model calls {op.name} "
                    f"(in {', '.join(m or '<model>' for m in op.modules)}), and build it "
                    "(python -m ops.build"
                    + (f" --package {package})" if package else ")")
                    + (
                        ""
                        if package
                        else "; outside the opforge repo add --package YOUR_OP_PACKAGE "
                        "(scan with --package to have it filled in) or --dir DIR"
                    )
                )
        operators.append(entry)
    model = {r.column.name: {"ok": r.model.ok, "reason": r.model.reason} for r in results}
    ops_blocking = [e for e in operators if e["blocker"]]
    model_blocked = [r.column.name for r in deciding if not r.model.ok] if not ops_blocking else []
    above = [c.opset for c in columns if table.opsets and c.opset > table.opsets[1]]
    return {
        "target": target,
        "columns": [{"name": c.name, "exporter": c.exporter, "opset": c.opset, "decides": c.decides} for c in columns],
        "tensorrt": {
            "requested": table.requested,
            "table": table.version,
            "source": table.source,
            "ref": table.ref,
            "commit": table.commit,
            "opsets": list(table.opsets),
            "note": (
                f"opsets {sorted(set(above))} are above the opsets this table documents "
                f"({table.opsets[0]}-{table.opsets[1]})"
            )
            if above
            else "",
        },
        "namespace": namespace,
        "model": model,
        "operators": operators,
        "not_scanned": trace.others,
        "blockers": [e["operator"] for e in ops_blocking] + (["(whole model)"] if model_blocked else []),
        "model_blocked_by": model_blocked,
    }


# ----------------------------------------------------------------------------------------------- text


def _cell(entry: dict) -> str:
    if entry["ok"]:
        return "ok"
    return "FAIL"


def _modules(mods: list[str], limit: int = 3) -> str:
    shown = [m or "<model>" for m in mods[:limit]]
    return ", ".join(shown) + (f" +{len(mods) - limit}" if len(mods) > limit else "")


def _trt_cell(entry: dict) -> str:
    status = entry["tensorrt"]["status"]
    if status is None:
        return "-"
    bad = [v["op"] for v in entry["tensorrt"]["onnx_ops"] if v["status"] == status]
    return status if status in (trt.SUPPORTED, trt.PLUGIN) else f"{status}: {' '.join(bad)}"


def _short(column: dict) -> str:
    return (
        f"{'ts' if column['exporter'] == 'torchscript' else 'dyn'}-{column['opset']}{'*' if column['decides'] else ''}"
    )


def render(report: dict) -> str:
    cols = report["columns"]
    t = report["tensorrt"]
    head = (
        ["operator", "calls", "module(s)"]
        + [_short(c) for c in cols]
        + ["ONNX ops", f"TensorRT {t['table']}", "blocker"]
    )
    rows = []
    for e in report["operators"]:
        rows.append(
            [e["operator"], str(e["calls"]), _modules(e["modules"])]
            + [_cell(e["exports"][c["name"]]) for c in cols]
            + [
                " ".join(e["onnx_ops"]) or ("(folded)" if all(x["ok"] for x in e["exports"].values()) else "-"),
                _trt_cell(e),
                "BLOCKER" if e["blocker"] else "-",
            ]
        )
    rows.append(
        ["(whole model)", "", ""]
        + [_cell(report["model"][c["name"]]) for c in cols]
        + ["", "", "BLOCKER" if report["model_blocked_by"] else "-"]
    )
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    widths[-3] = min(widths[-3], 40)
    lines = [
        f"ops.scan {report['target'] or ''}".rstrip(),
        "columns: ts = TorchScript exporter, dyn = dynamo exporter, -N = opset; * = the column that decides "
        "the opset (what ops.export_onnx uses)",
        f"TensorRT: {t['ref']} @ {t['commit'][:12]} (table {t['table']}, asked {t['requested']})"
        + (f"; {t['note']}" if t["note"] else ""),
        "",
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines.append(fmt.format(*head).rstrip())
    for r in rows:
        ops_cell = r[-3] if len(r[-3]) <= 40 else r[-3][:37] + "..."
        lines.append(fmt.format(*r[:-3], ops_cell, *r[-2:]).rstrip())
    details = []
    for e in report["operators"]:
        for c in cols:
            x = e["exports"][c["name"]]
            if not x["ok"]:
                where = f" (in {_modules(x['failing_modules'])})" if x["failing_modules"] else ""
                details.append(f"  {e['operator']} @ {c['name']}{where}: {x['reason']}")
        for v in e["tensorrt"]["onnx_ops"]:
            if v["status"] in (trt.UNSUPPORTED, trt.RESTRICTED):
                details.append(f"  {e['operator']} -> {v['op']} @ TensorRT {t['table']}: {v['status']}: {v['note']}")
    for c in cols:
        if not report["model"][c["name"]]["ok"]:
            details.append(f"  (whole model) @ {c['name']}: {report['model'][c['name']]['reason']}")
    if details:
        lines += ["", "why:"] + details
    if report["not_scanned"]:
        lines += ["", f"not scanned (higher-order operators): {', '.join(report['not_scanned'])}"]
    blockers = [e for e in report["operators"] if e["blocker"]]
    lines.append("")
    if blockers:
        lines.append(
            f"{len(blockers)} blocker(s). To declare each as an opforge op (it then exports as a custom "
            "node and runs as a TensorRT plugin):"
        )
        for e in blockers:
            lines.append(f"  {e['operator']} [{', '.join(e['blocked_by'])}]")
            if e.get("library_note"):
                lines.append(f"    {e['library_note']}")
            if e.get("fix"):
                lines.append(f"    {e['fix']}")
            lines.append(f"    {e['fix_note']}")
    elif report["model_blocked_by"]:
        lines.append(
            f"every operator exports alone, but the whole model fails at {', '.join(report['model_blocked_by'])}"
            " (see why above)"
        )
    else:
        lines.append(
            "no blocker: every operator exports in every deciding column, and TensorRT's table lists "
            "none of their ONNX ops as unsupported"
        )
    return "\n".join(lines)
