"""Dependencies point one way: the package never imports its tests, and no two modules of `ops` depend on
each other, not even through an import deferred into a function.

How it is checked: every `import`/`from ... import` statement anywhere in a module (module level and inside
functions) is resolved to the module it loads; `from pkg import name` counts as an import of `pkg.name`
when that is a module. A module importing its own parent package (or a package its submodule) is how
Python packages work and is not counted. The graph that remains must have no cycle."""

import ast
from pathlib import Path

import ops

PACKAGE_DIR = Path(ops.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE_DIR.rglob("*.py") if "csrc" not in p.parts}


def resolve(module: str, node, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    target = (f"{base}.{node.module}" if base else node.module) if node.level else node.module
    if node.module is None:
        target = base
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]


def imports(module: str, path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update(resolve(module, node, path.name == "__init__.py"))
    return out


def dependency_graph() -> dict[str, set[str]]:
    def related(a, b):
        return a == b or a.startswith(b + ".") or b.startswith(a + ".")

    return {m: {i for i in imports(m, p) if i in MODULES and not related(i, m)} for m, p in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_never_imports_its_tests():
    offenders = {
        m: sorted(i for i in imports(m, p) if i == "tests" or i.startswith("tests.")) for m, p in MODULES.items()
    }
    assert not {m: i for m, i in offenders.items() if i}


def test_no_import_cycle_in_the_package():
    assert not cycles(dependency_graph())


def test_the_checker_sees_a_cycle():
    """The detector itself: a function-level export <-> fallback pair, as there once was, is found."""
    assert resolve("ops.onnx.fallback", ast.parse("from .export import x").body[0], False) == ["ops.onnx.export"]
    assert resolve("ops.onnx", ast.parse("from . import export").body[0], True) == ["ops.onnx.export"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
