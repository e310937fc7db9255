"""tools/timed_steps.py, the timer `make demo` ends with: every step's time, the total, and a failing step
stops the run with its exit status."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "timed_steps.py"


def run(*argv):
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True)


def test_each_step_and_the_total_are_timed():
    result = run("first", "true", "second", "sleep 0.2", "busy", f"{sys.executable} -c 'sum(range(2 * 10**7))'")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "where the time went (3 of 3 steps ran)" in lines
    header = lines.index("where the time went (3 of 3 steps ran)") + 1
    assert lines[header].split() == ["wall", "CPU"]
    rows = {line.split()[0]: line.split() for line in lines[header + 1 :] if line.startswith("  ")}
    assert set(rows) == {"first", "second", "busy", "total"} and rows["second"][-1] == "ok"
    wall = {name: float(row[1]) for name, row in rows.items()}
    cpu = {name: float(row[3]) for name, row in rows.items()}
    assert wall["total"] >= 0.2 and wall["second"] >= 0.2
    assert cpu["second"] < 0.1 < cpu["busy"]  # sleeping takes no CPU time; a child's work is counted
    assert lines[-1].startswith("load average ") and "CPU: user + system time" in lines[-1]


def test_a_failing_step_stops_the_run_with_its_status():
    result = run("broken", "exit 3", "never", "true")
    assert result.returncode == 3
    assert "(1 of 2 steps ran)" in result.stdout and "FAILED (exit 3)" in result.stdout
    assert "never" not in result.stdout


def test_usage_error():
    assert run("name-without-command").returncode == 2
