"""Lines a user writes for an op, and lines opforge writes for it instead.

    python benchmarks/count_lines.py opforge::rms_norm opforge::modulated_deform_conv2d [--readme] [--json]

How it counts (every number in README's table comes from this script):
- A line is a non-blank line that is not only a comment; docstrings are not counted.
- The declaration module is split with Python's AST: `samples` (the function given as samples=), `reference`
  (the decorated function's body and the backward= function), and `declaration` (everything else: imports,
  the @register_op(...) call, module-level constants such as a shape rule).
- `kernels` is every C/C++/CUDA file in the op's kernel directory (helpers and a hand-written header
  included).
- `generated` is what the build writes for the op in place of hand-written host code, counted the same
  way: the torch glue (schema, checks, allocation, autograd wiring), the ONNX Runtime kernel, the
  TensorRT plugin spec and the kernel prototypes. It needs the three builds (python -m ops.build,
  --trt, python -m ops.ort.build); a missing file is reported, not guessed. The Python-side pieces
  generated at import (fake kernel, autograd, both exporters' ONNX symbolics) and the shared IPluginV3
  adapter (plugins/) are not in it: they are the same code for every op.
`--readme` counts the README's example op from the README itself.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KERNEL_SUFFIXES = (".h", ".hpp", ".cuh", ".cpp", ".cc", ".cu")


def code_lines_cpp(text: str) -> int:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("//"))


def _docstring_lines(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                out.update(range(first.lineno, first.end_lineno + 1))
    return out


def split_declaration(source: str) -> dict[str, int]:
    """Code lines of a declaration module by part: declaration, reference, samples."""
    tree = ast.parse(source)
    lines = source.splitlines()
    skip = _docstring_lines(tree)
    part = {}
    samples_name = backward_name = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_op":
            for kw in node.keywords:
                if kw.arg == "samples" and isinstance(kw.value, ast.Name):
                    samples_name = kw.value.id
                if kw.arg == "backward" and isinstance(kw.value, ast.Name):
                    backward_name = kw.value.id
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        if node.name == samples_name:
            what = "samples"
        elif node.name == backward_name or any(
                isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register_op" for d in node.decorator_list):
            what = "reference"
        else:
            continue
        start = node.lineno if what != "reference" or node.name == backward_name else node.body[0].lineno
        for n in range(start, node.end_lineno + 1):
            part[n] = what
    counts = {"declaration": 0, "reference": 0, "samples": 0}
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#") or n in skip:
            continue
        counts[part.get(n, "declaration")] += 1
    return counts


def op_counts(op_id: str) -> dict:
    import ops
    from ops.packages import package
    from ops.prototypes import include_path, include_root

    decl = ops.get_op(op_id).decl
    module = Path(sys.modules[ops.get_op(op_id).reference.__module__].__file__)
    counts = split_declaration(module.read_text())
    counts["kernels"] = sum(code_lines_cpp(p.read_text()) for p in sorted(decl.kernel_dir.iterdir())
                            if p.suffix in KERNEL_SUFFIXES)
    bdir = package(decl.package).build_dir
    stem = f"{decl.namespace}_{decl.name}"
    generated = {"torch glue": bdir / "gen" / f"{stem}_torch.cpp", "ONNX Runtime kernel": bdir / "ort" / "gen" / f"{stem}_ort.cpp",
                 "TensorRT plugin spec": bdir / "trt" / "gen" / f"{stem}_trt.cpp",
                 "prototypes": include_root(bdir) / include_path(decl)}
    missing = [str(p) for p in generated.values() if not p.is_file()]
    counts["generated"] = {k: code_lines_cpp(p.read_text()) for k, p in generated.items() if p.is_file()}
    if missing:
        counts["generated_missing"] = missing
    counts["user_non_kernel"] = counts["declaration"] + counts["reference"] + counts["samples"]
    return counts


def readme_counts() -> dict:
    text = (ROOT / "README.md").read_text()
    files = dict(re.findall(r"^```\w+ file=(\S+)\n(.*?)^```$", text, flags=re.M | re.S))
    decl = next(v for k, v in files.items() if k.endswith(".py"))
    counts = split_declaration(decl)
    counts["kernels"] = sum(code_lines_cpp(v) for k, v in files.items() if k.endswith(KERNEL_SUFFIXES))
    counts["user_non_kernel"] = counts["declaration"] + counts["reference"] + counts["samples"]
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ops", nargs="*")
    parser.add_argument("--readme", action="store_true", help="count the README's example op")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = {}
    if args.readme:
        rows["README example (myops::scale_shift)"] = readme_counts()
    for op_id in args.ops:
        rows[op_id] = op_counts(op_id)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'op':40} {'decl':>5} {'ref':>5} {'samples':>7} {'non-kernel':>10} {'kernels':>7} {'generated':>9}")
    for name, c in rows.items():
        gen = sum(c.get("generated", {}).values()) if "generated" in c else "-"
        print(f"{name:40} {c['declaration']:>5} {c['reference']:>5} {c['samples']:>7} {c['user_non_kernel']:>10} "
              f"{c['kernels']:>7} {gen:>9}")
        for m in c.get("generated_missing", []):
            print(f"   not built, not counted: {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
