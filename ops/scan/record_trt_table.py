"""Record onnx-tensorrt's documented ONNX operator support (docs/operators.md) as data for ops.scan.

    python -m ops.scan.record_trt_table GIT_DIR REF [REF ...] [-o ops/scan/trt_onnx_support.json]

GIT_DIR is a clone of https://github.com/onnx/onnx-tensorrt (a bare one works: the file is read with
`git show REF:docs/operators.md`); each REF is a release tag such as `release/10.1-GA`. The version recorded
for a REF is the one in the tag's name; the commit it resolves to is recorded beside it, so the table can
be traced back to exactly the text it came from. Tables already in the output file for other versions are
kept."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from .. import cli

SOURCE_URL = "https://github.com/onnx/onnx-tensorrt/blob/{commit}/docs/operators.md"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "trt_onnx_support.json"
_ROW = re.compile(r"^\|\s*([A-Za-z][A-Za-z0-9]*)\s*\|\s*(Y|N)\b([^|]*)\|?(.*)$")
_OPSET_RANGE = re.compile(r"opset (\d+) to opset (\d+)|up to opset (\d+)", re.IGNORECASE)


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True, text=True).stdout


def _clean(text: str) -> str:
    """Markdown cell text as plain text: <br /> as '; ', no backticks, no stray pipes or spaces."""
    text = re.sub(r"<br\s*/?>", "; ", text).replace("`", "").replace("\\.", ".")
    return re.sub(r"\s+", " ", text).strip(" |;")


def parse_operators_md(text: str) -> dict:
    """{'operators': {op_type: {'supported': bool, 'types': [...], 'restrictions': str}}, 'opsets': [lo, hi]}
    from the markdown of docs/operators.md. A row is `| Op | Y or N | types | restrictions` (the trailing
    pipe is often missing, and 'Y [EXPERIMENTAL]' appears in older tables: kept as a restriction)."""
    operators = {}
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if not m:
            continue
        name, flag, extra, rest = m.groups()
        cells = [c for c in rest.split("|")]
        types = _clean(cells[0]) if cells else ""
        restrictions = _clean(" ".join(cells[1:])) if len(cells) > 1 else ""
        if extra.strip():  # e.g. 'Y [EXPERIMENTAL]'
            restrictions = _clean(f"{extra.strip()} {restrictions}")
        operators[name] = {
            "supported": flag == "Y",
            "types": [t.strip() for t in types.split(",") if t.strip()],
            "restrictions": restrictions,
        }
    if not operators:
        raise ValueError("no operator rows found: is this onnx-tensorrt's docs/operators.md?")
    opsets = None
    m = _OPSET_RANGE.search(text)
    if m:
        opsets = [int(m.group(1)), int(m.group(2))] if m.group(1) else [1, int(m.group(3))]
    header = next((line.strip() for line in text.splitlines() if "supports operators" in line), "")
    return {"operators": dict(sorted(operators.items())), "opsets": opsets, "header": header}


def version_of(ref: str) -> str:
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", ref)
    if not m:
        raise ValueError(f"cannot read a TensorRT version from ref {ref!r}; name a tag such as release/10.1-GA")
    return m.group(1)


def record(git_dir: str, ref: str) -> dict:
    commit = _git(git_dir, "rev-parse", f"{ref}^{{commit}}").strip()
    text = _git(git_dir, "show", f"{commit}:docs/operators.md")
    table = parse_operators_md(text)
    table.update(
        {"tensorrt": version_of(ref), "ref": ref, "commit": commit, "source": SOURCE_URL.format(commit=commit)}
    )
    return table


def main(argv=None) -> int:
    parser = cli.parser("python -m ops.scan.record_trt_table", __doc__.split("\n\n")[0])
    parser.add_argument("git_dir", help="a clone of onnx/onnx-tensorrt (its .git directory, or a bare repository)")
    parser.add_argument("refs", nargs="+", help="release tags to record, e.g. release/10.1-GA")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    return cli.main(parser, run, argv)


def run(args) -> int:
    data = json.loads(args.output.read_text()) if args.output.exists() else {"tables": {}}
    for ref in args.refs:
        table = record(args.git_dir, ref)
        data["tables"][table["tensorrt"]] = table
        print(f"TensorRT {table['tensorrt']}: {len(table['operators'])} operators from {ref} ({table['commit'][:12]})")
    data["tables"] = dict(sorted(data["tables"].items(), key=lambda kv: tuple(int(p) for p in kv[0].split("."))))
    data["about"] = (
        "onnx-tensorrt's documented ONNX operator support (docs/operators.md), one table per TensorRT "
        "version, written by python -m ops.scan.record_trt_table"
    )
    args.output.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
