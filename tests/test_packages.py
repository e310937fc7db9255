"""Op packages: ops declared in a user's own package, kernels found relative to the declaring module, each
package with its own extension and build record, several packages in one process, duplicate ids named."""

import itertools
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ops
from ops.core.discovery import import_package, op_package
from ops.core.errors import DeclarationError, OpforgeError
from ops.core.packages import package
from ops.core.registry import ops_in
from ops.torch import extension

EXAMPLE_KERNELS = Path(__file__).resolve().parents[1] / "examples" / "user_package" / "mypkg" / "csrc" / "softclip"
_counter = itertools.count()

DECLARATION = """
import torch
from ops import Attr, Input, Output, Sample, register_op


@register_op("{ns}::softclip_{n}", inputs=[Input("x")], outputs=[Output("y")], attrs=[Attr("bound", float, 3.0)],
             samples=lambda device, dtype: [Sample(torch.randn(3, 5, dtype=dtype, device=device))]{extra})
def softclip_{n}(x, bound=3.0):
    return (bound * torch.tanh(x.float() / bound)).to(x.dtype)
"""


def make_package(root: Path, *, kernels_at="pkg/csrc", extra="", init="ops.op_package(__name__)") -> str:
    """A user project under `root`: <top>/ops/softclip.py declaring <ns>::softclip, kernels at `kernels_at`
    (relative to the project, with 'pkg' standing for the top-level package). Returns the package name."""
    n = next(_counter)
    top = f"opforge_user_pkg_{n}"
    ns = f"userns_{n}"
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    decl_dir = root / top / "ops"
    decl_dir.mkdir(parents=True)
    (root / top / "__init__.py").write_text("")
    (decl_dir / "__init__.py").write_text(f"import ops\n\n{init}\n")
    (decl_dir / "softclip.py").write_text(DECLARATION.format(ns=ns, extra=extra, n=n))
    if kernels_at:  # the op is softclip_<n>: an op name shared across namespaces breaks onnx.reference's
        kdir = root / kernels_at.replace("pkg", top) / f"softclip_{n}"  # schema table later in the process
        kdir.mkdir(parents=True)
        for f in EXAMPLE_KERNELS.iterdir():
            (kdir / f.name.replace("softclip", f"softclip_{n}")).write_text(f.read_text())
    sys.path.insert(0, str(root))
    return f"{top}.ops"


@pytest.fixture
def project(tmp_path):
    yield tmp_path
    sys.path[:] = [p for p in sys.path if p != str(tmp_path)]


def test_an_op_package_declares_its_ops_and_finds_its_kernels_beside_them(project):
    name = import_package(make_package(project)).name
    (op,) = ops_in(name)
    assert op.decl.package == name
    assert op.decl.kernel_dir == (project / name.split(".")[0] / "csrc" / op.decl.name).resolve()
    pkg = package(name)
    assert pkg.extension == f"{name}._C"
    assert pkg.build_record == project / name.split(".")[0] / "ops" / "_C.build.json"
    assert pkg.plugin_library == f"{name.replace('.', '_')}_trt_plugins"
    assert pkg.build_dir == project / "build" / "opforge" / name  # the user's project, never opforge's tree
    assert op in ops.all_ops() and ops.get_op(op.id) is op


def test_kernels_at_the_project_root_are_found_too(project):
    name = import_package(make_package(project, kernels_at="csrc")).name
    assert ops_in(name)[0].decl.kernel_dir.parent == (project / "csrc").resolve()


def test_missing_kernels_name_every_place_looked(project):
    with pytest.raises(
        DeclarationError,
        match=r"kernels.*none found \(looked in .*ops/csrc/softclip_\d+, .*"
        r"csrc/softclip_\d+.*kernels=None",
    ):
        import_package(make_package(project, kernels_at=None))


def test_an_unbuilt_package_imports_and_its_op_says_how_to_build(project):
    name = import_package(make_package(project)).name
    (op,) = ops_in(name)
    assert f"python -m ops.build --package {name}" in extension.status(name)["error"]
    with pytest.raises(ops.ExtensionError, match=f"{name}._C is not built.*ops.build --package {name}"):
        op(torch.randn(2, 3))
    with pytest.raises(ops.ExtensionError, match="not built"):
        ops.load_extension(name)


def _fake_build(pkg, ops_record):
    """A record and an (empty) extension file: enough for the pre-load checks, which never load it."""
    import importlib.machinery

    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (pkg.extension_dir / f"{pkg.extension_leaf}{suffix}").write_bytes(b"")
    pkg.build_record.write_text(json.dumps({"torch": torch.__version__, "cuda": False, "ops": ops_record}))


def test_stale_and_foreign_builds_are_detected_before_loading(project):
    name = make_package(project, init="ops.op_package(__name__, load=False)")
    pkg = import_package(name)
    (op,) = ops_in(name)
    _fake_build(pkg, {op.id: extension.fingerprint(op.decl)})
    assert extension.problem(pkg) is None
    (op.decl.kernel_dir / f"{op.decl.name}_cpu.cpp").write_text("// edited\n")
    assert f"{name}._C is stale: {op.id}" in extension.problem(pkg)
    record = json.loads(pkg.build_record.read_text())
    pkg.build_record.write_text(json.dumps({**record, "torch": "1.0.0"}))
    assert "built for torch 1.0.0" in extension.problem(pkg)


def test_an_installed_package_without_kernel_sources_uses_its_record(project):
    """A wheel may ship the compiled extension and not the sources: the declaration still validates (its
    op is in the build record) and staleness cannot be checked, so the record is trusted."""
    name = make_package(project, init="ops.op_package(__name__, load=False)")
    top = project / name.split(".")[0]
    shutil.rmtree(top / "csrc")
    n = name.split(".")[0].rsplit("_", 1)[1]
    (top / "ops" / "_C.build.json").write_text(
        json.dumps({"torch": torch.__version__, "ops": {f"userns_{n}::softclip_{n}": "0"}})
    )
    (op,) = ops_in(import_package(name).name)
    assert extension.fingerprint(op.decl) is None
    _fake_build(package(name), {op.id: "0"})
    assert extension.problem(package(name)) is None  # no sources: the record is trusted, not reported stale


def test_two_packages_in_one_process_and_a_duplicate_id_names_both(project, tmp_path_factory):
    first = import_package(make_package(project)).name
    other = tmp_path_factory.mktemp("other")
    try:
        second = make_package(other)
        import_package(second)
        assert {op.decl.package for op in ops.all_ops()} >= {first, second, "ops.library"}
        # the same id again, from a third package: both places are named
        (other / second.split(".")[0] / "ops" / "again.py").write_text(
            (other / second.split(".")[0] / "ops" / "softclip.py").read_text().replace("def softclip", "def again_")
        )
        with pytest.raises(DeclarationError, match=r"declared at .*softclip.py:\d+ and again at .*again.py:\d+"):
            __import__(f"{second}.again")
    finally:
        sys.path[:] = [p for p in sys.path if p != str(other)]


def test_an_op_package_with_options_cannot_be_redeclared_differently(project):
    name = import_package(make_package(project, init="ops.op_package(__name__, load=False)")).name
    op_package(name, load=False)  # the same options again: harmless
    with pytest.raises(OpforgeError, match="declared twice with different options"):
        op_package(name, extension=f"{name}._other", load=False)


def test_import_package_errors_are_clear(project):
    with pytest.raises(OpforgeError, match="cannot be imported"):
        import_package("no_such_package_anywhere.ops")
    (project / "empty_ops_pkg").mkdir()
    (project / "empty_ops_pkg" / "__init__.py").write_text("")
    sys.path.insert(0, str(project))
    with pytest.raises(OpforgeError, match="declares no ops"):
        import_package("empty_ops_pkg")


def test_opforge_own_library_is_an_op_package_with_its_historical_names():
    pkg = package("ops.library")
    assert pkg.extension == "ops._C" and pkg.plugin_library == "opforge_trt_plugins"
    assert {op.id for op in ops_in("ops.library")} >= {"opforge::rms_norm", "opforge::scaled_gelu"}


def test_import_ops_does_not_generate_glue_or_import_backends():
    """`import ops` registers the declarations and checks the build record; code generation, ONNX and
    TensorRT modules are loaded only when used."""
    import subprocess

    code = textwrap.dedent("""
        import sys, ops
        heavy = [m for m in ("ops.torch.glue", "ops.onnx", "ops.trt.build", "onnx", "onnxruntime", "ops.check")
                 if m in sys.modules]
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
