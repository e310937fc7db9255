"""python -m ops.scan: every blocker of a model in one run, the ops.new command for each, the JSON and the
table agree, the example models have none, and usage errors are one line with exit status 2.

The scans run in-process through the CLI's main() and share the per-call trial cache, so the file stays
well under a minute on two cores."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ops.scan.__main__ import main
from ops.scan.report import importable_module, suggested_namespace

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
MODELS = HERE / "scan_models.py"
ROOT = HERE.parents[1]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def two_blockers():
    """The default scan (opsets 17 and 20, both exporters) of RMSNorm + an undeclared custom op, as JSON."""
    with pytest.MonkeyPatch.context():
        import io
        from contextlib import redirect_stdout

        buffer = io.StringIO()
        with redirect_stdout(buffer):
            code = main([f"{MODELS}:two_blockers", "--json"])
    return code, json.loads(buffer.getvalue())


def by_name(report):
    return {e["operator"]: e for e in report["operators"]}


def test_every_blocker_in_one_run_with_its_ops_new_command(two_blockers):
    code, report = two_blockers
    assert code == 1
    assert [c["name"] for c in report["columns"]] == ["torchscript-17", "torchscript-20", "dynamo-20"]
    assert [c["name"] for c in report["columns"] if c["decides"]] == ["torchscript-17", "dynamo-20"]
    assert sorted(report["blockers"]) == ["aten::rms_norm", "scan_fixture::deform_sample"]
    ops = by_name(report)

    rms = ops["aten::rms_norm"]
    assert rms["kind"] == "aten" and rms["modules"] == ["norm"] and rms["calls"] == 1
    assert not rms["exports"]["torchscript-17"]["ok"]
    assert "aten::rms_norm" in rms["exports"]["torchscript-17"]["reason"]
    assert rms["exports"]["dynamo-20"]["ok"]  # the dynamo exporter decomposes it below opset 23
    assert {"Pow", "ReduceMean", "Mul"} <= set(rms["exports"]["dynamo-20"]["onnx_ops"])
    assert rms["blocked_by"] == ["torchscript-17"]
    # the recorded call's shapes and attribute values, so ops.new runs the operator on inputs it accepts
    assert rms["fix"] == (
        "python -m ops.new scan_models::rms_norm --like aten::rms_norm "
        "--shapes 'input=1x16x16x8 weight=8' --attr 'normalized_shape:list[int]=8'"
    )

    deform = ops["scan_fixture::deform_sample"]
    assert deform["kind"] == "custom"  # declared with torch.library, not with opforge
    assert all(not x["ok"] for x in deform["exports"].values())
    assert "scan_fixture" in deform["exports"]["dynamo-20"]["reason"]
    assert deform["blocked_by"] == ["torchscript-17", "dynamo-20"]
    # an operator of the model's own code: ops.new imports the model's module, which registers it
    assert deform["fix"] == (
        "python -m ops.new scan_models::deform_sample --like scan_fixture::deform_sample "
        "--import tests.scan.scan_models --shapes 'x=1x8x16x16 offset=1x2x16x16'"
    )

    # the operators around them export everywhere and are not blockers
    for name in ("aten::conv2d", "aten::relu", "aten::permute"):
        assert not ops[name]["blocker"] and all(x["ok"] for x in ops[name]["exports"].values()), name
    assert ops["aten::conv2d"]["calls"] == 3 and ops["aten::conv2d"]["modules"] == ["stem", "offset", "head"]
    assert ops["aten::conv2d"]["onnx_ops"] == ["Conv"] and ops["aten::conv2d"]["tensorrt"]["status"] == "supported"
    assert report["model"]["torchscript-17"]["ok"] is False and report["model"]["dynamo-20"]["ok"] is False


def test_real_aten_operators_refused_at_opset_17(capsys):
    """3-D grid sampling and antialiased bicubic resizing: both fail in the TorchScript exporter at 17, and
    both are reported in the same run; at dynamo-20 both export and TensorRT's table restricts them."""
    code, out, _ = run(capsys, f"{MODELS}:volumetric", "--opset", "17", "--exporter", "torchscript", "--json")
    report = json.loads(out)
    assert code == 1
    assert sorted(report["blockers"]) == ["aten::_upsample_bicubic2d_aa.vec", "aten::grid_sampler"]
    ops = by_name(report)
    assert "5D" in ops["aten::grid_sampler"]["exports"]["torchscript-17"]["reason"]
    assert ops["aten::_upsample_bicubic2d_aa.vec"]["fix"] == (
        "python -m ops.new scan_models::upsample_bicubic2d_aa --like aten::_upsample_bicubic2d_aa.vec "
        "--shapes 'input=1x3x16x16' --attr 'align_corners:bool=False' --attr 'scale_factors:list[float]=0.5,0.5'"
    )
    assert not ops["aten::mean"]["blocker"]


def test_volumetric_grid_sample_is_a_blocker_below_opset_20_and_the_library_op_is_suggested(capsys):
    """F.grid_sample on 5-D input: the TorchScript exporter refuses it at 17 (GridSample is 4-D only before opset
    20); at 20 both exporters write GridSample, which TensorRT's table restricts to 4-D input. The scan names
    opforge::grid_sample3d (its reference calls aten::grid_sampler on 5-D input) besides the ops.new command."""
    code, out, _ = run(capsys, f"{MODELS}:volumetric", "--json")
    report = json.loads(out)
    assert code == 1 and "aten::grid_sampler" in report["blockers"]
    gs = by_name(report)["aten::grid_sampler"]
    assert gs["blocked_by"] == ["torchscript-17"]
    assert not gs["exports"]["torchscript-17"]["ok"] and "5D" in gs["exports"]["torchscript-17"]["reason"]
    assert gs["exports"]["torchscript-20"]["ok"] and gs["exports"]["dynamo-20"]["ok"]
    assert gs["onnx_ops"] == ["GridSample"]
    trt_note = {v["op"]: v for v in gs["tensorrt"]["onnx_ops"]}["GridSample"]
    assert trt_note["status"] == "restricted" and "4D" in trt_note["note"]
    assert [d["op"] for d in gs["library_ops"]] == ["opforge::grid_sample3d"]
    assert gs["library_ops"][0]["declared_at"].startswith("ops/library/grid_sample3d.py:")
    assert "torch.ops.opforge.grid_sample3d" in gs["library_note"]
    assert gs["fix"].startswith("python -m ops.new scan_models::grid_sampler --like aten::grid_sampler ")
    # the bicubic resize has no opforge op: no suggestion of one
    assert "library_ops" not in by_name(report)["aten::_upsample_bicubic2d_aa.vec"]

    code, text, _ = run(capsys, f"{MODELS}:volumetric")
    row = next(line for line in text.splitlines() if line.startswith("aten::grid_sampler "))
    assert row.split()[3:6] == ["FAIL", "ok", "ok"] and row.rstrip().endswith("BLOCKER")  # ts-17* ts-20 dyn-20*
    assert gs["library_note"] in text


def test_planar_grid_sample_gets_no_volumetric_suggestion(capsys):
    """4-D grid sampling at opset 11 (no GridSample before 16) blocks too, but opforge::grid_sample3d is 5-D only."""
    code, out, _ = run(capsys, f"{MODELS}:planar_warp", "--opset", "11", "--exporter", "torchscript", "--json")
    report = json.loads(out)
    gs = by_name(report)["aten::grid_sampler"]
    assert code == 1 and gs["blocker"] and "library_ops" not in gs


def test_json_and_table_report_the_same_facts(capsys):
    target = f"{MODELS}:volumetric"
    code_json, out_json, _ = run(capsys, target, "--opset", "17", "20", "--exporter", "torchscript", "--json")
    code_text, out_text, _ = run(capsys, target, "--opset", "17", "--opset", "20", "--exporter", "torchscript")
    report = json.loads(out_json)
    assert code_json == code_text == 1
    lines = out_text.splitlines()
    header = next(line for line in lines if line.startswith("operator"))
    assert header.split()[3:5] == ["ts-17*", "ts-20*"]  # --exporter torchscript: it decides both opsets
    for e in report["operators"]:
        row = next(line for line in lines if line.startswith(e["operator"] + " "))
        cells = row.split()
        assert cells[1] == str(e["calls"])
        statuses = ["ok" if e["exports"][c]["ok"] else "FAIL" for c in ("torchscript-17", "torchscript-20")]
        assert [c for c in cells if c in ("ok", "FAIL")][:2] == statuses, row
        assert row.rstrip().endswith("BLOCKER") == e["blocker"]
        for op in e["onnx_ops"]:
            assert op in row
        if e["blocker"]:
            assert e["fix"] in out_text
    assert f"TensorRT: {report['tensorrt']['ref']} @ {report['tensorrt']['commit'][:12]}" in out_text


@pytest.mark.parametrize("name", ["segmentation", "optical_flow", "detection"])
def test_example_models_have_no_blocker_at_opset_20(name, capsys):
    code, out, err = run(capsys, f"{EXAMPLES / name}.py:example", "--opset", "20", "--exporter", "dynamo", "--json")
    report = json.loads(out)
    assert code == 0, report["blockers"]
    assert report["blockers"] == [] and report["model"]["dynamo-20"]["ok"]
    ops = by_name(report)
    declared = [e for e in report["operators"] if e["kind"] == "opforge"]
    assert declared, "each example calls at least one opforge op"
    for e in declared:  # an opforge op becomes its own custom node, i.e. its TensorRT plugin
        assert e["onnx_ops"] == [e["operator"]] and e["tensorrt"]["status"] == "plugin", e
    assert ops["aten::conv2d"]["onnx_ops"] == ["Conv"]
    assert err == ""


def test_suggestions():
    assert suggested_namespace("examples.segmentation") == "segmentation"
    assert suggested_namespace("__main__") == "custom" and suggested_namespace("aten") == "custom"
    assert importable_module(f"{MODELS}:two_blockers") == "tests.scan.scan_models"
    assert importable_module("pkg.models:make") == "pkg.models" and importable_module("/elsewhere/m.py:f") is None


def test_the_suggested_ops_new_commands_work(two_blockers, tmp_path):
    """Each blocker's command, run as printed (from the project root, into a fresh op package via --dir),
    writes a declaration and kernel skeletons: ops.new accepted the operator, the shapes and the attributes."""
    _, report = two_blockers
    package = tmp_path / "scanned_ops"
    package.mkdir()
    (package / "__init__.py").write_text("import ops\n\nops.op_package(__name__)\n")
    for name in report["blockers"]:
        command = by_name(report)[name]["fix"]
        argv = shlex.split(command)[1:] + ["--dir", str(package)]
        done = subprocess.run(
            [sys.executable, *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=600,
        )
        assert done.returncode == 0, f"{command}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
        op_name = shlex.split(command)[3].split("::")[1]
        assert (package / f"{op_name}.py").is_file() and (package / "csrc" / op_name / f"{op_name}_cpu.cpp").is_file()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["nocolon"], "expected module:function"),
        (["ops.nonexistent_module:make"], "cannot import module 'ops.nonexistent_module'"),
        (["missing/file.py:make"], "missing/file.py does not exist"),
        ([f"{MODELS}:no_such_function"], "has no function 'no_such_function'"),
        ([f"{MODELS}:not_a_pair"], "not (model, example_args)"),
        ([f"{MODELS}:two_blockers", "--opset", "9"], "opset 9 is outside 11-23"),
        ([f"{MODELS}:two_blockers", "--opset", "seventeen"], "--opset takes integers"),
        ([f"{MODELS}:two_blockers", "--opset", "23", "--exporter", "torchscript"], "writes opsets up to 20"),
        (
            [f"{MODELS}:two_blockers", "--trt-version", "7.0"],
            "no onnx-tensorrt operator table is recorded for TensorRT 7.0",
        ),
        ([f"{MODELS}:two_blockers", "--namespace", "My-Models"], "--namespace must be a lower-case identifier"),
    ],
)
def test_user_errors_are_one_line_with_exit_status_2(argv, expected, capsys):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err
    assert "Fix:" in err


def test_help_explains_the_columns(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for words in ("ts-N, dyn-N", "decides", "TensorRT V", "blocker", "Exit status"):
        assert words in out


def test_scanning_with_package_fills_it_into_the_suggestions(capsys):
    code, out, _ = run(capsys, f"{MODELS}:two_blockers", "--json", "--package", "ops.library")
    report = json.loads(out)
    assert code == 1 and report["blockers"]
    for name in report["blockers"]:
        entry = by_name(report)[name]
        assert entry["fix"].endswith(" --package ops.library"), entry["fix"]
        assert "python -m ops.build --package ops.library" in entry["fix_note"], entry["fix_note"]
