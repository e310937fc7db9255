"""tests/slow_tests.py, the plugin that runs the tests marked slow beside the others in a second pytest process: in
a nested run, every test runs once, and the reports of the beside process (a pass, a failure, a skip) read here
as if they had run here (a replayed skip once ended the whole CI run in an INTERNALERROR)."""

import os
from pathlib import Path

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent

CONFTEST = """
import slow_tests


def pytest_addoption(parser):
    slow_tests.add_options(parser)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow(cpu_s=60): slow")
    config.pluginmanager.register(slow_tests.SlowTests(config), "opforge-slow-tests")
"""

MODULE = """
import os
import time
from pathlib import Path

import pytest


@pytest.mark.parametrize("i", range(25))
def test_quick(i):
    Path(f"quick.{os.getpid()}").touch()
    time.sleep(0.2)  # long enough for the beside process to start and claim the slow tests


@pytest.mark.slow(cpu_s=5)
def test_slow_passes():
    Path(f"slow.{os.getpid()}").touch()


@pytest.mark.slow(cpu_s=5)
def test_slow_fails():
    assert 1 == 2, "as meant"


@pytest.mark.slow(cpu_s=5)
def test_slow_skips():
    pytest.skip("on purpose")
"""


def test_slow_tests_run_once_beside_the_others_and_report_here(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("OPFORGE_SLOW_BESIDE", raising=False)
    monkeypatch.syspath_prepend(str(TESTS))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_mixed=MODULE)
    result = pytester.runpytest_subprocess("-rfs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=26, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*test_mixed.py*on purpose*"])
    result.stdout.fnmatch_lines(["*FAILED*test_slow_fails*as meant*"])
    assert "INTERNALERROR" not in result.stdout.str()
    quick, slow = ({p.suffix for p in pytester.path.glob(f"{kind}.*")} for kind in ("quick", "slow"))
    assert len(quick) == 1 and len(slow) == 1 and quick != slow, (quick, slow)  # the slow ones ran beside


def test_inline_runs_them_here(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_mixed=MODULE)
    result = pytester.runpytest_subprocess("--slow-inline", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=26, failed=1, skipped=1)
    quick, slow = ({p.suffix for p in pytester.path.glob(f"{kind}.*")} for kind in ("quick", "slow"))
    assert quick == slow and len(quick) == 1  # one process ran both
