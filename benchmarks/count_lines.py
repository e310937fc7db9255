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
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                out.update(range(first.lineno, first.end_lineno + 1))
    return out


def _calls(node: ast.AST) -> set[str]:
    return {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def split_declaration(source: str) -> dict[str, int]:
    """Code lines of a declaration module by part: samples (the samples= functions and the module functions
    only they call), reference (the decorated functions' bodies, backward= functions and what they call) and
    declaration (the rest: imports, @register_op(...), shape-rule constants)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    skip = _docstring_lines(tree)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    roots = {"samples": set(), "reference": set()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_op":
            for kw in node.keywords:
                if isinstance(kw.value, ast.Name) and kw.arg in ("samples", "backward"):
                    roots["samples" if kw.arg == "samples" else "reference"].add(kw.value.id)
    for f in funcs.values():
        if any(isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register_op" for d in f.decorator_list):
            roots["reference"].add(f.name)
    owner: dict[str, str] = {}
    for what in ("reference", "samples"):  # a helper both use counts once, as reference
        todo = list(roots[what])
        while todo:
            name = todo.pop()
            if name in owner or name not in funcs:
                continue
            owner[name] = what
            todo += sorted(_calls(funcs[name]) & funcs.keys())
    part = {}
    for name, what in owner.items():
        f = funcs[name]
        decorated = bool(f.decorator_list) and what == "reference" and name not in roots["samples"]
        start = f.body[0].lineno if decorated else f.lineno  # the decorator and def line are declaration
        for n in range(start, f.end_lineno + 1):
            part[n] = what
    counts = {"declaration": 0, "reference": 0, "samples": 0}
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#") or n in skip:
            continue
        counts[part.get(n, "declaration")] += 1
    return counts


def module_counts(module_path: Path) -> dict:
    """The counts of a declaration module and every op it declares (kernels and generated code summed)."""
    from ops.core.packages import package
    from ops.core.registry import all_ops
    from ops.native.prototypes import include_path, include_root

    counts = split_declaration(module_path.read_text())
    decls = [op.decl for op in all_ops() if Path(sys.modules[op.reference.__module__].__file__) == module_path]
    counts["ops"] = [d.id for d in decls]
    counts["kernels"] = 0
    counts["generated"] = {}
    missing = []
    for decl in decls:
        if decl.kernel_dir is None:
            continue
        counts["kernels"] += sum(
            code_lines_cpp(p.read_text()) for p in sorted(decl.kernel_dir.iterdir()) if p.suffix in KERNEL_SUFFIXES
        )
        bdir = package(decl.package).build_dir
        stem = f"{decl.namespace}_{decl.name}"
        generated = {
            "torch glue": bdir / "gen" / f"{stem}_torch.cpp",
            "prototypes": include_root(bdir) / include_path(decl),
        }
        if decl.onnx:  # no ONNX export: no ORT kernel, no plugin
            generated["ONNX Runtime kernel"] = bdir / "ort" / "gen" / f"{stem}_ort.cpp"
            if "cuda" in decl.devices:
                generated["TensorRT plugin spec"] = bdir / "trt" / "gen" / f"{stem}_trt.cpp"
        for k, p in generated.items():
            if p.is_file():
                counts["generated"][k] = counts["generated"].get(k, 0) + code_lines_cpp(p.read_text())
            else:
                missing.append(str(p))
    if missing:
        counts["generated_missing"] = missing
    counts["user_non_kernel"] = counts["declaration"] + counts["reference"] + counts["samples"]
    return counts


def op_counts(op_id: str) -> dict:
    import ops

    return module_counts(Path(sys.modules[ops.get_op(op_id).reference.__module__].__file__))


def readme_counts() -> dict:
    text = (ROOT / "README.md").read_text()
    files = dict(re.findall(r"^```\w+ file=(\S+)\n(.*?)^```$", text, flags=re.M | re.S))
    # the module declaring the op (not the op package's two-line __init__.py, written once per package)
    decl = next(v for k, v in files.items() if k.endswith(".py") and "@register_op(" in v)
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
    print(f"{'op':56} {'decl':>5} {'ref':>5} {'samples':>7} {'non-kernel':>10} {'kernels':>7} {'generated':>9}")
    for name, c in rows.items():
        gen = sum(c.get("generated", {}).values()) if "generated" in c else "-"
        name = f"{name} (+{len(c['ops']) - 1} more ops in its module)" if len(c.get("ops", [])) > 1 else name
        print(
            f"{name:56} {c['declaration']:>5} {c['reference']:>5} {c['samples']:>7} {c['user_non_kernel']:>10} "
            f"{c['kernels']:>7} {gen:>9}"
        )
        for m in c.get("generated_missing", []):
            print(f"   not built, not counted: {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
