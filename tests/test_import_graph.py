"""The layers of the package, read from its folders and enforced on every import.

    core      ops/core/                      declaration, validation, shape rules, registry, op packages
    native    ops/native/                    what the native hosts share: prototypes, compilers, ninja, ...
              and the modules LAYER_OF places there (ops/cli.py, the command line every tool shares)
    backend   ops/torch, onnx, ort, trt, cross
    library   ops/library/                   opforge's own op package (a user of the public API)
    tool      everything else: ops (the public API, ops/__init__.py) and the `python -m ops.X` tools

Rules: no import cycle; core imports core only; native imports core and native; a backend imports core,
native and itself, another backend only where BACKEND_ALLOWANCES says why; the library imports core and the
public API; tools may import anything below them, another tool only where TOOL_ALLOWANCES says why. Nothing
but a tool imports a tool. The package never imports its tests.

How imports are read: every `import`/`from ... import` statement anywhere in a module (module level, inside
functions, under `if TYPE_CHECKING`) is resolved to the module it loads; `from pkg import name` is an import of
`pkg.name` when that is a module, else of `pkg`. A package importing its own submodules counts. A module
importing one of its own ancestor packages (`from .. import x` in a subpackage, `import ops`) is an edge for the
layer rules (a core module may not import the public API `ops`) but not for cycles: Python initialises a
package before its submodules, so that import never runs first."""

import ast
import shutil
from pathlib import Path

import ops

PACKAGE_DIR = Path(ops.__file__).resolve().parent
BACKENDS = ("ops.torch", "ops.onnx", "ops.ort", "ops.trt", "ops.cross")

# module -> (the layer it is held to, why): a module outside its layer's folder.
LAYER_OF = {
    "ops.cli": (
        "native",
        "the command-line base (options, exit status) of every `python -m ops.X` tool, the backends' own "
        "(ops.ort.build, ops.trt.headers, ops.cross.verify, ...) included: it imports only the core, and the "
        "backends and tools build on it, as on what ops/native shares; the op library never needs it",
    ),
}
# (importer prefix, imported prefix): why a backend may use another one.
BACKEND_ALLOWANCES = {
    ("ops.ort.session", "ops.onnx"): "ORT runs exported ONNX graphs: a session reads a model's opforge nodes with "
    "the ONNX backend's schemas (onnx_supported)",
    ("ops.onnx", "ops.ort.session"): "ops.onnx.ort_session, the README's name for an ORT session with the native "
    "libraries registered, forwards to ops.ort.session",
    ("ops.cross", "ops.ort"): "cross-building builds the ORT library for the target",
    ("ops.cross", "ops.trt"): "cross-building builds the TensorRT plugin library and drives its harness under qemu",
    ("ops.cross.verify", "ops.onnx"): "the emulated checks export each op's sample model to feed the harness",
    ("ops.trt.harness", "ops.onnx"): "the plugin host harness reads the exported node's attributes as TensorRT's "
    "ONNX parser would",
}
# (importer prefix, imported prefix): why a tool may use another one.
TOOL_ALLOWANCES = {
    ("ops", "ops.precision"): "ops.export_onnx(precision='mixed-float16') is ops.precision's mixed export",
    ("ops.build", "ops.cross"): "python -m ops.build --target cross-builds",
    ("ops.deploy", "ops.check"): "deploy runs ops.check's TensorRT stages on the exported model",
    ("ops.export", "ops.check"): "export --check compares with the reference through ops.check's oracle",
    ("ops.scan", "ops.new"): "scan suggests `python -m ops.new` commands, planned with ops.new's planner",
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    return {module_name(p, root): p for p in root.rglob("*.py") if "csrc" not in p.parts}


def resolve(module: str, node, is_package: bool, known) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]


def imports(module: str, path: Path, known) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update(resolve(module, node, path.name == "__init__.py", known))
    return out


def is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def dependency_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """module -> the package's modules it imports (itself left out, ancestors included)."""
    known = modules(root)
    return {m: {i for i in imports(m, p, known) if i in known and i != m} for m, p in known.items()}


def without_ancestors(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {d for d in deps if not is_under(m, d)} for m, deps in graph.items()}


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


def layer(module: str) -> str:
    if module in LAYER_OF:
        return LAYER_OF[module][0]
    if is_under(module, "ops.core"):
        return "core"
    if is_under(module, "ops.native"):
        return "native"
    if any(is_under(module, b) for b in BACKENDS):
        return "backend"
    if is_under(module, "ops.library"):
        return "library"
    return "tool"


def unit(module: str) -> str:
    """The backend or tool a module belongs to: ops.onnx.export -> ops.onnx, ops.check.oracle -> ops.check."""
    return ".".join(module.split(".")[:2])


def allowed(importer: str, imported: str, table) -> bool:
    return any(is_under(importer, a) and is_under(imported, b) for a, b in table)


def violation(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None."""
    src, dst = layer(importer), layer(imported)
    if dst == "core" or is_under(importer, imported):  # the core is everyone's; so are one's own ancestors
        return None
    if src == "core":
        return f"the core imports {dst} {imported}"
    if dst == "native":
        return None if src != "library" else f"the op library imports {imported}"
    if src == "native":
        return f"ops/native imports {dst} {imported}"
    if dst == "backend":
        if src == "backend" and unit(importer) != unit(imported):
            return None if allowed(importer, imported, BACKEND_ALLOWANCES) else "a backend imports another backend"
        return None if src != "library" else f"the op library imports {imported}"
    if dst == "library":
        return None if src in ("tool", "library") else f"{src} imports the op library"
    # dst is a tool (or the public API `ops`)
    if src == "library" and imported == "ops":
        return None  # an op package uses the public API
    if src != "tool":
        return f"{src} imports the tool {imported}"
    if unit(importer) == unit(imported) and imported != "ops":
        return None
    return None if allowed(importer, imported, TOOL_ALLOWANCES) else "a tool imports another tool"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for m in sorted(graph):
        for d in sorted(graph[m]):
            why = violation(m, d)
            if why:
                out.append(f"{m} -> {d}: {why}")
    return out


def test_the_package_never_imports_its_tests():
    known = modules()
    offenders = {m: sorted(i for i in imports(m, p, known) if is_under(i, "tests")) for m, p in known.items()}
    assert not {m: i for m, i in offenders.items() if i}


def test_no_import_cycle_in_the_package():
    assert not cycles(without_ancestors(dependency_graph()))


def test_imports_follow_the_layers():
    assert layer_violations(dependency_graph()) == []


def test_every_allowance_is_used():
    """An allowance that no import needs any more is removed, so the tables say what is true."""
    edges = [(m, d) for m, deps in dependency_graph().items() for d in deps]
    for table in (BACKEND_ALLOWANCES, TOOL_ALLOWANCES):
        for a, b in table:
            assert any(is_under(m, a) and is_under(d, b) for m, d in edges), f"unused allowance {a} -> {b}"


def test_the_core_reaches_backends_only_through_hooks():
    """The registry and discovery know no backend: the torch backend registers its hooks when imported."""
    from ops.core import discovery, registry

    assert registry._ON_REGISTER and discovery._ON_OP_PACKAGE


def test_the_checker_sees_a_cycle():
    """The detector itself: a function-level export <-> fallback pair, as there once was, is found."""
    known = {"ops.onnx", "ops.onnx.export", "ops.onnx.fallback"}
    assert resolve("ops.onnx.fallback", ast.parse("from .export import x").body[0], False, known) == ["ops.onnx.export"]
    assert resolve("ops.onnx", ast.parse("from . import export").body[0], True, known) == ["ops.onnx.export"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_checker_sees_planted_back_edges():
    """Synthetic edges added to the real graph: each is reported, and the graph without them passes."""
    graph = dependency_graph()
    planted = {
        ("ops.core.registry", "ops.torch.register"): "the core imports backend",
        ("ops.core.paths", "ops.check"): "the core imports tool",
        ("ops.native.prototypes", "ops.torch.glue"): "ops/native imports backend",
        ("ops.torch.glue", "ops.trt.codegen"): "a backend imports another backend",
        ("ops.onnx.export", "ops.precision"): "backend imports the tool",
        ("ops.check.oracle", "ops.scan.trace"): "a tool imports another tool",
        ("ops.library.rms_norm", "ops.torch.register"): "the op library imports",
        ("ops.cli", "ops.torch.extension"): "ops/native imports backend",
        ("ops.core.discovery", "ops.cli"): "the core imports native",
        ("ops.library.rms_norm", "ops.cli"): "the op library imports ops.cli",
    }
    for (a, b), why in planted.items():
        bad = {m: set(d) for m, d in graph.items()}
        bad[a].add(b)
        found = layer_violations(bad)
        assert len(found) == 1 and found[0].startswith(f"{a} -> {b}: ") and why in found[0], (a, b, found)


def test_the_checker_reads_a_function_local_back_edge_in_a_copy_of_the_package(tmp_path):
    """A copy of ops/ whose registry imports a backend inside a function: reported as a layer violation and as
    a cycle (ops.torch.extension imports the registry at module level)."""
    copy = tmp_path / "ops"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so", "csrc", "plugins"))
    assert layer_violations(dependency_graph(copy)) == []
    registry = copy / "core" / "registry.py"
    registry.write_text(registry.read_text() + "\n\ndef planted():\n    from ..torch.extension import load\n")
    graph = dependency_graph(copy)
    assert layer_violations(graph) == [
        "ops.core.registry -> ops.torch.extension: the core imports backend ops.torch.extension"
    ]
    assert any("ops.core.registry" in c and "ops.torch.extension" in c for c in cycles(without_ancestors(graph)))
