"""python -m ops.check [OP ...] [--all] [--package PKG] [--json] [--only STAGE] [--quick] [-v | -q]"""

from __future__ import annotations

import sys

import ops

from .. import cli
from . import FAIL, PASS, REFERENCE, SKIP, check_op, prepare, settle

MARK = {PASS: "PASS", FAIL: "FAIL", SKIP: "skip", REFERENCE: "REF"}


def render(op_id: str, rows, pending=()) -> str:
    width = max([len(r.stage) for r in rows] + [5])
    lines = [f"{op_id}", f"  {'stage'.ljust(width)}  result  detail"]
    for r in rows:
        lines.append(f"  {r.stage.ljust(width)}  {MARK[r.status]:<6}  {r.detail}")
    counts = {s: sum(r.status == s for r in rows) for s in (PASS, FAIL, SKIP, REFERENCE)}
    ref = f", {counts[REFERENCE]} ran the reference instead of the kernel (REF)" if counts[REFERENCE] else ""
    lines.append(f"  -> {counts[PASS]} passed{ref}, {counts[FAIL]} failed, {counts[SKIP]} skipped")
    if pending:
        lines.append(
            f"  kernels pending on {', '.join(pending)}: the op runs its reference there until the kernel "
            "bodies are written and kernels_pending is removed from its declaration"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.check",
        "Verify ops on every backend against their reference. Exit status: 0 every stage passed, 1 a stage "
        "failed, 2 a usage error (an unknown op, a bad option).",
        packages="import this op package (its ops join --all; installed op packages with an "
        "opforge.ops entry point are always loaded)",
        json="print a JSON report instead of tables (stdout holds it alone; everything else goes to stderr)",
    )
    parser.add_argument("ops", nargs="*", help="op ids ('ns::name') or unambiguous names")
    parser.add_argument("--all", action="store_true", help="check every declared op")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="STAGE",
        help="run only stages whose name starts with STAGE (repeatable)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer dtypes in the slow stages")
    return cli.main(parser, run, argv)


def run(args) -> cli.Report:
    cli.load_packages(args)
    targets = ops.all_ops() if args.all else [ops.get_op(name) for name in args.ops]
    if not targets:
        raise cli.UsageError("no op to check. Fix: name an op (ns::name), or pass --all")
    report, failed, pending = {}, False, {}
    prepare(targets, only=args.only, quick=args.quick)  # e.g. the TensorRT libraries, built while torch is checked
    for op in targets:
        rows = check_op(op, only=args.only, quick=args.quick)
        settle()
        op_failed = any(r.status == FAIL for r in rows)
        failed = failed or op_failed
        report[op.id] = [r.to_json() for r in rows]
        if op.decl.kernels_pending:
            pending[op.id] = list(op.decl.kernels_pending)
        if not args.json and (op_failed or not args.quiet):
            print(render(op.id, rows, op.decl.kernels_pending), flush=True)
    return cli.Report({"ok": not failed, "ops": report, "kernels_pending": pending}, cli.PROBLEMS if failed else cli.OK)


if __name__ == "__main__":
    sys.exit(main())
