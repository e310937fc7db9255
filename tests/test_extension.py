"""opforge's own compiled kernels: the build record matches the declarations, the fingerprint reads only
kernel sources, and a stale build makes the test suite fail (with the rebuild command), never skip."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import ops
from ops.core.packages import package
from ops.torch import extension

ROOT = Path(__file__).resolve().parents[1]


def test_the_built_extension_matches_the_declarations():
    assert extension.problem(package("ops.library")) is None
    assert extension.status()["loaded"]


def test_fingerprint_ignores_hidden_and_non_source_files():
    decl = ops.get_op("opforge::rms_norm").decl
    before = extension.fingerprint(decl)
    hidden = decl.kernel_dir / ".cache"
    existed = hidden.exists()
    hidden.mkdir(exist_ok=True)
    try:
        (hidden / "junk.cpp").write_text("int x;")
        (decl.kernel_dir / "notes.txt").write_text("not a source")
        assert extension.fingerprint(decl) == before
    finally:
        (hidden / "junk.cpp").unlink()
        (decl.kernel_dir / "notes.txt").unlink()
        if not existed:
            hidden.rmdir()


def test_fingerprint_follows_the_declaration_and_the_kernels():
    decl = ops.get_op("opforge::rms_norm").decl
    assert "eps" in extension.declaration_text(decl) and "float16" in extension.declaration_text(decl)
    assert len({extension.fingerprint(op.decl) for op in ops.core.registry.library_ops()}) == len(
        ops.core.registry.library_ops()
    )


def test_a_stale_build_fails_the_suite_with_the_rebuild_command(tmp_path):
    """A copy of the project with its (fresh) build, then one kernel file edited: the test suite must exit
    non-zero and say how to rebuild. Before, the compiled-op tests turned into skips and pytest exited 0."""
    copy = tmp_path / "project"
    # *.egg-info: pip may be rewriting it meanwhile (the wheel test, in the beside process: tests/slow_tests.py)
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", ".hypothesis", ".pytest_cache", "__pycache__", "*.egg-info"
    )
    shutil.copytree(ROOT, copy, ignore=ignore)
    kernel = copy / "csrc" / "scaled_gelu" / "scaled_gelu_cpu.cpp"
    kernel.write_text(kernel.read_text() + "\n// edited after the build\n")
    env = {**os.environ, "PYTHONPATH": str(copy)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/torch"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert "ops._C is stale: opforge::scaled_gelu" in out and "python -m ops.build" in out, out[-3000:]
