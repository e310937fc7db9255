"""python -m ops.check [OP ...] [--all] [--json] [--only STAGE] [--quick]"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import ops

from ..core.discovery import add_package_option, load_for_cli
from ..core.errors import OpforgeError
from . import FAIL, PASS, REFERENCE, SKIP, check_op

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
    parser = argparse.ArgumentParser(
        prog="python -m ops.check", description="Verify ops on every backend against their reference."
    )
    parser.add_argument("ops", nargs="*", help="op ids ('ns::name') or unambiguous names")
    parser.add_argument("--all", action="store_true", help="check every declared op")
    parser.add_argument("--json", action="store_true", help="print a JSON report instead of tables")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="STAGE",
        help="run only stages whose name starts with STAGE (repeatable)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer dtypes in the slow stages")
    add_package_option(
        parser,
        "import this op package (its ops join --all; installed op packages with an "
        "opforge.ops entry point are always loaded)",
    )
    args = parser.parse_args(argv)

    try:
        load_for_cli(args.package)
        targets = ops.all_ops() if args.all else [ops.get_op(name) for name in args.ops]
    except OpforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not targets:
        parser.error("name an op, or pass --all")
    report, failed, pending = {}, False, {}
    with _stdout_to_stderr() if args.json else contextlib.nullcontext():
        for op in targets:
            rows = check_op(op, only=args.only, quick=args.quick)
            failed = failed or any(r.status == FAIL for r in rows)
            report[op.id] = [r.to_json() for r in rows]
            if op.decl.kernels_pending:
                pending[op.id] = list(op.decl.kernels_pending)
            if not args.json:
                print(render(op.id, rows, op.decl.kernels_pending), flush=True)
    if args.json:
        print(json.dumps({"ok": not failed, "ops": report, "kernels_pending": pending}, indent=2))
    return 1 if failed else 0


@contextlib.contextmanager
def _stdout_to_stderr():
    """With --json, stdout holds the report alone: whatever a library prints while the stages run (exporters,
    compilers) goes to stderr, down to the file descriptor, so the report always parses."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


if __name__ == "__main__":
    sys.exit(main())
