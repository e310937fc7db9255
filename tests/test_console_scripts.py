"""Every console script declared in pyproject.toml resolves and answers --help."""

import importlib
from pathlib import Path

import pytest
import tomllib

SCRIPTS = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_answers_help(name, capsys):
    module, _, attr = SCRIPTS[name].partition(":")
    main = getattr(importlib.import_module(module), attr)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_every_cli_module_is_a_console_script():
    assert {v.split(":")[0] for v in SCRIPTS.values()} >= {"ops.check.__main__", "ops.build", "ops.export"}
