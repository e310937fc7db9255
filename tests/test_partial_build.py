"""A partial build of an op package (`python -m ops.build --ops ...`, what `make demo` runs): its record says so, the
extension loads, the ops it left out say so when called and in ops.check, and the package's TensorRT and ONNX
Runtime libraries are narrowed to the same ops. A full build is still required to hold every op: a record
without the mark that lacks an op stays a problem.

A two-op package in a temporary project, with a record written by hand and an empty Python module standing in for
the compiled extension (nothing here compiles: the build itself is what `make demo` and the suite's own builds
run)."""

import itertools
import json
import sys
from pathlib import Path

import pytest
import torch

import ops
from ops.check import FAIL
from ops.check.torch_stages import build as build_stage
from ops.check.torch_stages import extension_problem
from ops.core.discovery import import_package
from ops.core.errors import OpforgeError
from ops.core.packages import left_out, narrowed, partial_build
from ops.core.registry import ops_in
from ops.ort.build import library_decls
from ops.torch import extension
from ops.torch.build import generate_sources, select_ops
from ops.trt.build import plugin_decls

KERNELS = Path(__file__).resolve().parents[1] / "examples" / "user_package" / "mypkg" / "csrc"
_counter = itertools.count()
DECLARATION = """
import torch
from ops import Attr, Input, Output, Sample, register_op


@register_op("{ns}::{name}", inputs=[Input("x")], outputs=[Output("y")], attrs=[Attr("bound", float, 3.0)],
             samples=lambda device, dtype: [Sample(torch.randn(3, 5, dtype=dtype, device=device))])
def {name}(x, bound=3.0):
    return (bound * torch.tanh(x.float() / bound)).to(x.dtype)
"""


@pytest.fixture
def two_ops(tmp_path):
    """A project with the op package <top>.ops declaring <ns>::kept_<n> and <ns>::dropped_<n> (load=False: the record
    is written by each test before the extension loads). Op names are unique in the process: one name in two
    namespaces breaks the ONNX exporter for every later test. Returns (package, kept op, dropped op)."""
    n = next(_counter)
    top, ns = f"opforge_partial_{n}", f"partial_{n}"
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    pkg_dir = tmp_path / top / "ops"
    pkg_dir.mkdir(parents=True)
    (tmp_path / top / "__init__.py").write_text("")
    (pkg_dir / "__init__.py").write_text("import ops\n\nops.op_package(__name__, load=False)\n")
    for name in (f"kept_{n}", f"dropped_{n}"):
        (pkg_dir / f"{name}.py").write_text(DECLARATION.format(ns=ns, name=name))
        kdir = tmp_path / top / "csrc" / name
        kdir.mkdir(parents=True)
        for f in (KERNELS / "softclip").iterdir():
            (kdir / f.name.replace("softclip", name)).write_text(f.read_text())
    sys.path.insert(0, str(tmp_path))
    try:
        pkg = import_package(f"{top}.ops")
        kept, dropped = sorted(ops_in(pkg.name), key=lambda op: not op.decl.name.startswith("kept"))
        yield pkg, kept, dropped
    finally:
        sys.path[:] = [p for p in sys.path if p != str(tmp_path)]


def _record(pkg, built_ops, partial: bool):
    (pkg.extension_dir / f"{pkg.extension_leaf}.py").write_text("# stands in for the compiled extension\n")
    record = {"torch": torch.__version__, "cuda": False, "package": pkg.name}
    record["ops"] = {op.id: extension.fingerprint(op.decl) for op in built_ops}
    if partial:
        record["partial"] = True
    pkg.build_record.write_text(json.dumps(record))


def test_the_generated_build_of_a_partial_build_holds_its_ops_and_says_so(two_ops):
    pkg, kept, dropped = two_ops
    sources, _, record = generate_sources(pkg.name, only=[kept.id])
    assert record["partial"] is True and set(record["ops"]) == {kept.id}
    assert any(s.endswith(f"{kept.decl.namespace}_{kept.decl.name}_torch.cpp") for s in sources)
    assert not any(dropped.decl.name in s for s in sources)
    _, _, full = generate_sources(pkg.name)
    assert "partial" not in full and set(full["ops"]) == {kept.id, dropped.id}
    # an op named by its name alone, and every op named: a full build
    assert [op.id for op in select_ops(pkg.name, [kept.decl.name])] == [kept.id]
    assert "partial" not in generate_sources(pkg.name, only=[dropped.id, kept.id])[2]


def test_an_op_not_in_the_package_is_a_clear_error(two_ops):
    pkg, _, _ = two_ops
    with pytest.raises(OpforgeError, match=r"'opforge::rms_norm' is not an op with compiled kernels in op package"):
        select_ops(pkg.name, ["opforge::rms_norm"])


def test_a_partial_build_loads_and_the_ops_it_left_out_say_how_to_build_them(two_ops):
    pkg, kept, dropped = two_ops
    _record(pkg, [kept], partial=True)
    assert partial_build(pkg.name) == {kept.id}
    assert extension.problem(pkg) is None
    assert left_out(kept.id, pkg.name) is None
    why = left_out(dropped.id, pkg.name)
    assert why.startswith(f"{dropped.id} is not in this build of {pkg.extension}: a partial build of 1 ops")
    assert why.endswith(f"Build every op: python -m ops.build --package {pkg.name}")
    assert extension.load(pkg, strict=True)
    with pytest.raises(ops.ExtensionError, match=f"{dropped.id} is not in this build"):
        dropped(torch.randn(2, 3))
    # ops.check: the op it left out fails its build row with the reason, and every later stage points there
    build_row = build_stage(dropped, None)
    assert build_row.status == FAIL and build_row.detail == why
    assert "not in this partial build" in extension_problem(dropped)
    kept_row = build_stage(kept, None)
    assert kept_row.status != FAIL and "a partial build of 1 ops" in kept_row.detail
    assert extension_problem(kept) is None
    # the package's TensorRT and ONNX Runtime libraries hold the same ops
    assert [d.id for d in plugin_decls(pkg.name)] == [kept.id]
    assert [d.id for d in library_decls(pkg.name)] == [kept.id]
    assert narrowed([kept.decl, dropped.decl], pkg.name) == [kept.decl]


def test_an_op_of_no_package_is_never_left_out():
    assert partial_build(None) is None and left_out("ns::op", None) is None


def test_a_full_build_that_lacks_an_op_is_still_a_problem(two_ops):
    pkg, kept, dropped = two_ops
    _record(pkg, [kept], partial=False)
    assert partial_build(pkg.name) is None and left_out(dropped.id, pkg.name) is None
    assert f"{dropped.id} is declared but not in the built {pkg.extension}" in extension.problem(pkg)
    assert {d.id for d in plugin_decls(pkg.name)} == {kept.id, dropped.id}


def test_ops_with_trt_is_a_usage_error(capsys):
    from ops.build import main

    assert main(["--trt", "--ops", "opforge::rms_norm"]) == 2
    assert "python -m ops.build --ops ..., then python -m ops.build --trt" in capsys.readouterr().err
