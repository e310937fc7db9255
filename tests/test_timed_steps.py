"""tools/timed_steps.py, the timer `make demo` ends with: every step's time, the total, and a failing step
stops the run with its exit status."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "timed_steps.py"


def run(*argv):
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True)


def test_each_step_and_the_total_are_timed():
    result = run("first", "true", "second", "sleep 0.2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "where the time went (2 of 2 steps ran)" in lines
    rows = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert set(rows) == {"first", "second", "total"} and rows["second"].endswith("s  ok")
    assert float(rows["total"].split()[1]) >= 0.2


def test_a_failing_step_stops_the_run_with_its_status():
    result = run("broken", "exit 3", "never", "true")
    assert result.returncode == 3
    assert "(1 of 2 steps ran)" in result.stdout and "FAILED (exit 3)" in result.stdout
    assert "never" not in result.stdout


def test_usage_error():
    assert run("name-without-command").returncode == 2
