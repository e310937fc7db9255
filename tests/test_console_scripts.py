"""Every console script declared in pyproject.toml resolves and answers --help, and every tool built on ops/cli.py
has one."""

import importlib
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
NOT_USER_FACING = {
    "ops.scan.record_trt_table",  # a maintainer's tool: records onnx-tensorrt's tables into the repository
    "ops.deploy",  # example_main, the command line of the scripts in examples/
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_answers_help(name, capsys):
    module, _, attr = SCRIPTS[name].partition(":")
    main = getattr(importlib.import_module(module), attr)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_every_cli_module_is_a_console_script():
    tools = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "ops").rglob("*.py")
        if path != ROOT / "ops" / "cli.py" and re.search(r"\bcli\.main\(", path.read_text())
    }
    assert {"ops.check.__main__", "ops.build", "ops.export", "ops.new.cli", "ops.precision.__main__"} <= tools
    assert {v.split(":")[0] for v in SCRIPTS.values()} == tools - NOT_USER_FACING
    assert all(name.startswith("opforge-") for name in SCRIPTS)
