"""`python -m ops.check`: the report, its JSON, exit codes, and a clean message for user mistakes."""

import json
import subprocess
import sys

import torch

from ops import Input, Output, Sample, register_op
from ops.check import FAIL, PASS, SKIP, StageResult
from ops.check.__main__ import main, render
from ops.check.compare import compare


def test_json_report_for_a_library_op_passes_on_cpu():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.check",
            "opforge::rms_norm",
            "--json",
            "--quick",
            "--only",
            "declaration",
            "--only",
            "build",
            "--only",
            "torch",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    rows = report["ops"]["opforge::rms_norm"]
    assert report["ok"] and {r["status"] for r in rows} <= {PASS, SKIP}
    cpu = {r["stage"]: r for r in rows if r["stage"].startswith("torch.cpu")}
    assert set(cpu) == {"torch.cpu[float32]", "torch.cpu[float16]", "torch.cpu[bfloat16]"}
    assert all(r["status"] == PASS and r["metrics"]["rel_l2"] < 1e-2 for r in cpu.values())
    assert all(r["detail"] for r in rows if r["status"] == SKIP)  # a skip always says why


def test_unknown_op_is_a_clean_user_error(capsys):
    assert main(["no_such_op"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no op named 'no_such_op'") and "known ops:" in err and "Traceback" not in err


def test_a_failing_stage_fails_the_run(unique_id, capsys):
    def samples(device, dtype):
        return [Sample(torch.ones(3, dtype=dtype, device=device))]

    # The shape rule says [2] but the reference returns [3]: the declaration stage must catch it.
    op = register_op(
        unique_id("liar"), inputs=[Input("x")], outputs=[Output("y", shape=[2])], kernels=None, samples=samples
    )(lambda x: x + 1)
    assert main([op.id, "--only", "declaration"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "gives [2] but the reference returns [3]" in out and "0 passed, 1 failed" in out


def test_render_marks_every_status():
    text = render(
        "ns::op", [StageResult("a", PASS, "fine"), StageResult("b", FAIL, "broken"), StageResult("c", SKIP, "no GPU")]
    )
    assert "PASS" in text and "FAIL" in text and "skip" in text and "1 passed, 1 failed, 1 skipped" in text


def test_compare_never_passes_nan_and_reports_numbers():
    e = torch.tensor([1.0, 2.0, 3.0])
    assert compare(e.clone(), e, 1e-5, 1e-6)["ok"]
    assert not compare(torch.tensor([1.0, float("nan"), 3.0]), e, 1e-5, 1e-6)["ok"]
    m = compare(e + 1e-3, e, 1e-5, 1e-6)
    assert not m["ok"] and abs(m["max_abs"] - 1e-3) < 1e-6 and m["rel_l2"] > 0
    assert not compare(e[:2], e, 1, 1)["ok"]  # shape mismatch
