"""Loading ops._C: a missing, stale or foreign build is reported with the rebuild command."""

import json

import pytest

import ops
from ops import extension


@pytest.fixture
def build_record(tmp_path, monkeypatch):
    path = tmp_path / "_C.build.json"
    monkeypatch.setattr(extension, "BUILD_INFO", path)
    return path


def test_missing_build_record(build_record):
    assert "not built" in extension._problem() and extension.REBUILD in extension._problem()


def test_built_for_another_torch(build_record):
    build_record.write_text(json.dumps({"torch": "1.0.0", "ops": {}}))
    assert "built for torch 1.0.0" in extension._problem()


def test_stale_op(build_record):
    import torch

    record = {"torch": torch.__version__, "ops": {op.id: extension.fingerprint(op.decl) for op in
                                                  ops.registry.library_ops()}}
    build_record.write_text(json.dumps(record))
    assert extension._problem() is None or "not built" in extension._problem()
    record["ops"]["opforge::rms_norm"] = "0" * 16
    build_record.write_text(json.dumps(record))
    problem = extension._problem()
    assert "stale" in problem and "opforge::rms_norm" in problem and extension.REBUILD in problem


def test_fingerprint_ignores_hidden_and_non_source_files(tmp_path, monkeypatch):
    decl = ops.get_op("opforge::rms_norm").decl
    before = extension.fingerprint(decl)
    hidden = decl.kernel_dir / ".cache"
    existed = hidden.exists()
    hidden.mkdir(exist_ok=True)
    try:
        (hidden / "junk.cpp").write_text("int x;")
        assert extension.fingerprint(decl) == before
    finally:
        (hidden / "junk.cpp").unlink()
        if not existed:
            hidden.rmdir()
