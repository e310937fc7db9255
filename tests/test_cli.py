"""ops/cli.py, the command line every `python -m ops.X` tool shares: one exit status (0 ok, 1 problems found,
2 a user error with one message and no traceback), --json meaning a report alone on stdout, -v/-q."""

import importlib
import json
from pathlib import Path

import pytest
import torch

from ops import Input, Output, Sample, cli, register_op
from ops.check import FAIL
from ops.core.errors import BuildError, OpforgeError

# (module, argv that is a user error, words the message must hold): one semantic error per tool where it is
# cheap to reach, and an unknown option for each (argparse's errors take the same path).
USER_ERRORS = [
    ("ops.check.__main__", ["no_such_op"], "no op named 'no_such_op'"),
    ("ops.check.__main__", [], "name an op"),
    ("ops.build", ["--package", "no_such_package_xyz"], "cannot be imported"),
    ("ops.export", ["opforge::rms_norm"], "required: -o/--output"),
    ("ops.export", ["no_such_op", "-o", "x.onnx"], "no op named 'no_such_op'"),
    ("ops.scan.__main__", ["nocolon"], "expected module:function"),
    ("ops.new.cli", ["demo::thing", "--attr", "alpha"], "--attr"),
    ("ops.precision.__main__", ["no_colon_here"], "must be 'package.module:function'"),
    ("ops.precision.__main__", ["examples.fp16_overflow:make", "--json", "out.json"], "unrecognized arguments"),
    ("ops.trt.trtexec", ["m.onnx", "--shapes", "x:1x8"], "NAME:MIN,OPT,MAX"),
    ("ops.trt.headers", ["--fetch-it"], "unrecognized arguments: --fetch-it"),
    ("ops.ort.headers", ["--fetch-it"], "unrecognized arguments: --fetch-it"),
    ("ops.ort.build", ["--lst"], "unrecognized arguments: --lst"),
    ("ops.cross.toolchain", ["--chek"], "unrecognized arguments: --chek"),
    ("ops.cross.verify", [], "required: --table"),
    ("ops.scan.record_trt_table", [], "required: git_dir"),
]
TOOLS = sorted({module for module, _, _ in USER_ERRORS})


def _main(module: str):
    return importlib.import_module(module).main


@pytest.mark.parametrize("module, argv, says", USER_ERRORS, ids=[f"{m}:{' '.join(a)}" for m, a, _ in USER_ERRORS])
def test_a_user_error_exits_2_with_one_message_and_no_traceback(module, argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a tool might write lands in the checkout
    assert _main(module)(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and says in err, err
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("module", TOOLS)
def test_a_bad_command_line_names_what_is_wrong_the_fix_and_the_usage(module, capsys):
    """(Tools with a required argument name the missing argument first: argparse checks those first.)"""
    assert _main(module)(["--no-such-option"]) == 2
    out, err = capsys.readouterr()
    first, *rest = err.splitlines()
    assert first.startswith(("error: unrecognized arguments: --no-such-option.", "error: the following arguments"))
    assert first.endswith(" --help` lists every option") and "Fix: `python -m " in first
    assert rest[0].startswith("usage: python -m ")
    assert out == "" and "Traceback" not in err


@pytest.mark.parametrize("module", TOOLS)
def test_every_tool_has_the_common_options(module, capsys):
    with pytest.raises(SystemExit) as e:
        _main(module)(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "-v, --verbose" in text and "-q, --quiet" in text


def test_new_quiet_leaves_out_the_advice(tmp_path, capsys):
    from ops.new.cli import main

    argv = ["demo::quiet", "--input", "x", "--output", "y:like(x)", "--dir", str(tmp_path), "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("demo::quiet: wrote") and "Next:" not in out and (tmp_path / "quiet.py").is_file()


def test_verbose_adds_the_traceback_of_a_user_error(capsys):
    from ops.check.__main__ import main

    assert main(["no_such_op", "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: no op named 'no_such_op'")


# --- exit status 1: the tool ran and found problems -----------------------------------------------------------


def _liar(unique_id):
    def samples(device, dtype):
        return [Sample(torch.ones(3, dtype=dtype, device=device))]

    # The shape rule says [2] but the reference returns [3]: the declaration stage fails.
    return register_op(
        unique_id("liar"), inputs=[Input("x")], outputs=[Output("y", shape=[2])], kernels=None, samples=samples
    )(lambda x: x + 1)


def test_check_exits_1_on_a_failed_stage_and_its_json_says_why(unique_id, capsys):
    from ops.check.__main__ import main

    op = _liar(unique_id)
    assert main([op.id, "--only", "declaration", "--json"]) == 1
    out, _ = capsys.readouterr()
    report = json.loads(out)
    assert report["ok"] is False and report["ops"][op.id][0]["status"] == FAIL


def test_check_quiet_prints_only_the_ops_that_failed(unique_id, capsys):
    from ops.check.__main__ import main

    liar = _liar(unique_id)
    assert main(["opforge::rms_norm", liar.id, "--only", "declaration", "-q"]) == 1
    out = capsys.readouterr().out
    assert liar.id in out and "opforge::rms_norm" not in out
    assert main(["opforge::rms_norm", "--only", "declaration", "-q"]) == 0
    assert capsys.readouterr().out == ""


def test_check_json_passes_and_parses(capsys):
    from ops.check.__main__ import main

    assert main(["opforge::rms_norm", "--only", "declaration", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and set(report["ops"]) == {"opforge::rms_norm"}


def test_scan_exits_1_on_blockers_with_a_json_report(capsys):
    from ops.scan.__main__ import main

    models = Path(__file__).parent / "scan" / "scan_models.py"
    code = main([f"{models}:two_blockers", "--opset", "17", "--exporter", "torchscript", "--json"])
    out, _ = capsys.readouterr()
    assert code == 1 and json.loads(out)["blockers"]


def test_a_build_failure_exits_1_a_user_error_2(capsys):
    def build_fails(args):
        raise BuildError("building x._C failed: x.cpp:1: error: expected ';'")

    def user_error(args):
        raise OpforgeError("no op named 'x'. Fix: name one")

    assert cli.main(cli.parser("python -m ops.fake", "fake"), build_fails, []) == cli.PROBLEMS
    assert cli.main(cli.parser("python -m ops.fake", "fake"), user_error, []) == cli.USAGE
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("error: building x._C failed") and lines[1] == "error: no op named 'x'. Fix: name one"


def test_an_internal_error_keeps_its_traceback():
    def bug(args):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        cli.main(cli.parser("python -m ops.fake", "fake"), bug, [])


# --- --json: the report alone on stdout -----------------------------------------------------------------------


def test_json_keeps_stdout_for_the_report(capfd):
    """Whatever the tool or a library prints while it runs goes to stderr, down to the file descriptor."""
    import os

    def run(args):
        print("human text")
        os.write(1, b"a library writing to fd 1\n")
        return cli.Report({"ok": True}, cli.OK)

    assert cli.main(cli.parser("python -m ops.fake", "fake", json=True), run, ["--json"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out) == {"ok": True}
    assert "human text" in err and "a library writing to fd 1" in err


def test_trtexec_json_is_the_argument_list(capsys):
    from ops.trt.trtexec import main

    assert main(["m.onnx", "--shapes", "x:1x8,4x8,16x8", "--plugins", "/opt/libp.so", "--json", "-q"]) == 0
    cmd = json.loads(capsys.readouterr().out)
    assert cmd[:2] == ["trtexec", "--onnx=m.onnx"] and "--minShapes=x:1x8" in cmd


def test_export_json_says_what_was_written(tmp_path, capsys):
    pytest.importorskip("onnx")
    from ops.export import main

    assert main(["opforge::rms_norm", "-o", str(tmp_path / "r.onnx"), "--opset", "17", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["opset"] == 17 and report["custom_ops"] == ["opforge::rms_norm"] and "wrote" in err


@pytest.mark.parametrize("module", ["ops.trt.headers", "ops.ort.headers", "ops.cross.toolchain"])
def test_the_finders_json_parses_found_or_not(module, capsys):
    code = _main(module)(["--check", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and isinstance(report, dict)
    if module.endswith("headers"):
        assert (report["path"] is None) == (code == 1)
