"""examples/model_ops: an op package outside opforge's tree with the ops real models bring, each passing every
stage of `ops.check` that can run here. Its embedding op's batch is its indices (input 0 is the table), its
pooling op's first sample passes the optional mask as an explicit None, and its box filter has an attribute
named `kernel` and an output named `out`."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.check import FAIL, PASS

pytestmark = pytest.mark.slow(cpu_s=27)  # ~80 CPU-s: the build and the full ops.check of the module fixture

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "examples" / "model_ops"
OPS = ("modelops::embedding_rows", "modelops::masked_pool", "modelops::box_blur")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """ops.check's JSON report on every op of the package, built in a copy (the tree stays clean)."""
    project = tmp_path_factory.mktemp("model_ops") / "model_ops"
    shutil.copytree(PACKAGE, project, ignore=shutil.ignore_patterns("build", "*.so", "_C.build.json", "__pycache__"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(project)])}
    build = subprocess.run(
        [sys.executable, "-m", "ops.build", "--package", "modelops.ops"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, "-m", "ops.check", "--package", "modelops.ops", "--json", *OPS],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    result = json.loads(done.stdout)
    return {op: rows for op, rows in result["ops"].items() if op.startswith("modelops::")}, done


def test_every_op_passes_every_stage_that_runs_here(report):
    rows, done = report
    assert set(rows) == set(OPS)
    failed = [f"{op} {r['stage']}: {r['detail'][:300]}" for op, rs in rows.items() for r in rs if r["status"] == FAIL]
    assert not failed and done.returncode == 0, failed
    for op, rs in rows.items():
        stages = {r["stage"]: r["status"] for r in rs}
        for needed in (
            "ort.cpu[float32]",
            "ort.cpu.batch[dynamo-20]",
            "ort.polygraphy[dynamo-20]",
            "trt.harness",
            "onnx.export[dynamo-18]",
            "onnx.export[torchscript-17]",
            "torch.opcheck[cpu]",
        ):
            assert stages.get(needed) == PASS, (op, needed, stages)


def test_the_embedding_is_exported_and_checked_along_its_indices(report):
    rows = {r["stage"]: r for r in report[0]["modelops::embedding_rows"]}
    assert rows["onnx.export[dynamo-18]"]["metrics"]["output_dims"][0] == ["batch", 5]  # rows [N, D], D fixed
    assert "idx.shape[0]) 1/3/8" in rows["ort.cpu.batch[dynamo-20]"]["detail"]


def test_an_explicit_none_first_sample_keeps_the_batch_name(report):
    rows = {r["stage"]: r for r in report[0]["modelops::masked_pool"]}
    for opset in (18, 20, 23):
        assert rows[f"onnx.export[dynamo-{opset}]"]["metrics"]["output_dims"][0] == ["batch", 3, 3, 4]
