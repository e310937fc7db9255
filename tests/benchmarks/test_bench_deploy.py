"""benchmarks/bench_deploy.py at tiny sizes: every part runs, the record it writes has the documented layout,
and every ratio is a finite positive number judged against its part's target. Timings are not checked."""

import importlib
import json
import math
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = {"ort": {"shape": (1, 4, 8), "warmup": 1, "repeat": 6},
        "kernels": {"shapes": ((4, 8),), "rounds": 3},
        "overhead": {"calls": 20, "batch": 5}}


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCHMARKS))  # bench_deploy imports its sibling scripts by name
        deploy = importlib.import_module("bench_deploy")
        rec = deploy.run(TINY, threads=[1], devices=["cpu"], command="bench_deploy under test")
    path = tmp_path_factory.mktemp("deploy") / "deploy.json"
    path.write_text(json.dumps(rec))  # what main writes: it must survive JSON as it is
    return json.loads(path.read_text()), deploy.table(rec)


def test_record_layout(record):
    rec, _ = record
    assert {"date", "command", "machine", "settings", "parts", "summary"} <= rec.keys()
    assert {"cpu", "cores", "torch", "gpu", "commit"} <= rec["machine"].keys()
    assert rec["command"] == "bench_deploy under test"
    assert set(rec["parts"]) == {"ort", "kernels", "overhead"}
    assert [r["case"] for r in rec["parts"]["ort"]["rows"]] == ["conv1d->rms_norm->scaled_gelu 1x4x8 threads=1"]
    assert len(rec["parts"]["kernels"]["rows"]) == 9  # 3 dtypes x (gelu none, gelu tanh, rms_norm) x 1 thread
    assert len(rec["parts"]["overhead"]["rows"]) == 8  # 2 ops x 2 shapes x with/without requires_grad


def test_rows_judged(record):
    rec, _ = record
    for name, part in rec["parts"].items():
        for row in part["rows"]:
            assert math.isfinite(row["ratio"]) and row["ratio"] > 0, (name, row)
            assert row["target"] == part["target"]
            assert row["met"] == (row["ratio"] <= row["target"])
    assert all(r["ok"] for r in rec["parts"]["kernels"]["rows"])


def test_summary_lists_every_miss(record):
    rec, table = record
    rows = [(name, r) for name, part in rec["parts"].items() for r in part["rows"]]
    missed = [(name, r["case"]) for name, r in rows if not r["met"]]
    summary = rec["summary"]
    assert [(m["part"], m["case"]) for m in summary["missed"]] == missed
    assert summary["rows"] == len(rows) and summary["met"] == len(rows) - len(missed)
    for m in summary["missed"]:
        assert m["over_by"] > 0 and m["over_by_pct"] == pytest.approx(100 * (m["ratio"] / m["target"] - 1))
    assert summary["incorrect"] == []
    assert len(table.splitlines()) == len(rows) + 2  # header, one line a row, the summary line
