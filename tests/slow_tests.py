"""Slow end-to-end tests (`@pytest.mark.slow`) run last, and beside the other tests in a second process.

The slow tests wait on subprocesses: op packages built with ninja and nvcc, a wheel installed into a fresh venv,
CMake projects, `ops.check` and nested pytest runs. The other tests are mostly one Python process. Run one after
the other, they left the second core of the 2-core CI machine idle for much of the run. So, when a run selects
both kinds, a second pytest process (the "beside" process) starts once collection is done and runs the slow
tests, costliest first, while this process runs the others. This process then takes the slow tests the beside
process has not started, cheapest first, and the two finish together. Each test runs once, in one of the two
processes: a group of slow tests (those of one module, so a module fixture such as the wheel's venv is made
once) belongs to the process that claims it first. The reports of the beside process come back here, so the
run reports every test as before: outcome, captured output, durations (`--durations`), `-x`.

Without the beside process (fewer than MIN_OTHERS other tests selected, `--slow-inline`, or
OPFORGE_SLOW_BESIDE=0) the slow tests run here, after the others. `-m "not slow"` leaves them out.

Both processes share the checkout's build directory. What they could both build there at once is built here
before the beside process starts (the TensorRT plugin harness and the fuzzer); the Jetson tests record their
results under a lock (tests/jetson/jetson_cases.py)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

MARK = "slow"
MIN_OTHERS = 20  # fewer other tests selected than this: a second process is not worth its start (torch's import)
DEFAULT_CPU_S = 60
BESIDE_OPTION = "--opforge-beside"  # internal: this process is the beside process; value: the shared directory
ENV_SWITCH = "OPFORGE_SLOW_BESIDE"  # "0": never start a beside process (set for the beside process itself)


def add_options(parser) -> None:
    parser.addoption(
        "--slow-inline",
        action="store_true",
        help="run the slow end-to-end tests (marked slow) in this process after the others, instead of beside "
        "them in a second process",
    )
    parser.addoption(BESIDE_OPTION, default=None, help=argparse.SUPPRESS)


def is_slow(item) -> bool:
    return item.get_closest_marker(MARK) is not None


def cpu_s(item) -> float:
    return item.get_closest_marker(MARK).kwargs.get("cpu_s", DEFAULT_CPU_S)


def group_of(item) -> str:
    """The unit a process claims: the slow tests of one module."""
    return item.nodeid.split("::")[0]


def _groups(items) -> dict[str, list]:
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(group_of(item), []).append(item)
    return groups


def _by_cost(groups: dict[str, list], costliest_first: bool) -> list:
    order = sorted(groups, key=lambda g: sum(cpu_s(i) for i in groups[g]), reverse=costliest_first)
    return [item for g in order for item in groups[g]]


class SlowTests:
    """The plugin, in this process (`beside` None) or in the beside process."""

    def __init__(self, config):
        self.config = config
        self.beside = config.getoption(BESIDE_OPTION)
        self.shared: Path | None = Path(self.beside) if self.beside else None
        self.proc: subprocess.Popen | None = None
        self.owned: set[str] = set()
        self.reports: dict[str, list[dict]] = {}
        self._offset = 0

    # ---- order -------------------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        slow = [i for i in items if is_slow(i)]
        if not slow:
            return
        if self.beside:  # the beside process: costliest first
            items[:] = _by_cost(_groups(items), costliest_first=True)
        else:  # here: the other tests, then the slow ones, cheapest first (the beside process starts at the other end)
            items[:] = [i for i in items if not is_slow(i)] + _by_cost(_groups(slow), costliest_first=False)

    # ---- this process: start the beside process, take or replay the slow tests ---------------------

    def pytest_collection_finish(self, session):
        if self.beside or self.config.option.collectonly or self.config.getoption("slow_inline"):
            return
        if os.environ.get(ENV_SWITCH) == "0":
            return
        slow = [i for i in session.items if is_slow(i)]
        if not slow or len(session.items) - len(slow) < MIN_OTHERS:
            return
        self.shared = _shared_dir(self.config)
        (self.shared / "claims").mkdir(parents=True, exist_ok=True)
        _build_what_both_would_build()
        ordered = _by_cost(_groups(slow), costliest_first=True)
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            f"--basetemp={self.shared / 'tmp'}",
            f"{BESIDE_OPTION}={self.shared}",
            *(f"--package={p}" for p in self.config.getoption("package", default=None) or ()),
            *(i.nodeid for i in ordered),
        ]
        log = open(self.shared / "beside.log", "w")  # closed in pytest_sessionfinish, when the process has ended
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.config.rootpath,
            env={**os.environ, ENV_SWITCH: "0"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with everything it started
        )
        self._log = log

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        if self.shared is None or not is_slow(item):
            return None
        group = group_of(item)
        if group in self.owned or self._claim(group):
            return None  # ours: the usual protocol
        if self.beside:  # taken by the other process: it reports it
            item.session._setupstate.teardown_exact(nextitem)
            return True
        self._replay(item)
        item.session._setupstate.teardown_exact(nextitem)  # nothing of this item was set up here
        return True

    def _claim(self, group: str) -> bool:
        path = self.shared / "claims" / group.replace("/", "_")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        self.owned.add(group)
        return True

    def _replay(self, item) -> None:
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for data in self._wait_for(item):
            report = self.config.hook.pytest_report_from_serializable(config=self.config, data=data)
            if report.skipped and isinstance(report.longrepr, list):  # JSON made the (path, line, reason) a list
                report.longrepr = tuple(report.longrepr)
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    def _wait_for(self, item) -> list[dict]:
        """The beside process's reports of the item (setup, call, teardown), once its teardown is reported."""
        while True:
            running = self.proc.poll() is None
            self._read()
            got = self.reports.get(item.nodeid, [])
            if any(d.get("when") == "teardown" for d in got):
                return got
            if not running:  # read after it ended: nothing more will come
                return self._lost(item, got)
            time.sleep(0.5)

    def _read(self) -> None:
        path = self.shared / "reports.jsonl"
        if not path.exists():
            return
        with open(path) as f:
            f.seek(self._offset)
            while True:
                line = f.readline()
                if not line.endswith("\n"):
                    break
                self._offset += len(line.encode())
                data = json.loads(line)
                self.reports.setdefault(data["nodeid"], []).append(data["report"])

    def _lost(self, item, got: list[dict]) -> list[dict]:
        """The beside process ended without reporting the item to its end: a failure that says so."""
        log = (self.shared / "beside.log").read_text(errors="replace")[-4000:]
        why = (
            f"the beside process (tests/slow_tests.py) exited with status {self.proc.returncode} before it "
            f"reported this test to its end; the end of its output ({self.shared / 'beside.log'}):\n{log}"
        )
        phases = {d.get("when") for d in got}
        made = [] if "setup" in phases else [pytest.TestReport(item.nodeid, item.location, {}, "passed", None, "setup")]
        made.append(
            pytest.TestReport(item.nodeid, item.location, {}, "failed", why, "teardown" if "call" in phases else "call")
        )
        if "call" not in phases:
            made.append(pytest.TestReport(item.nodeid, item.location, {}, "passed", None, "teardown"))
        return got + [self.config.hook.pytest_report_to_serializable(config=self.config, report=r) for r in made]

    def pytest_sessionfinish(self, session, exitstatus):
        if self.proc is None:
            return
        complete = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
        if complete and not (session.shouldfail or session.shouldstop):
            try:
                self.proc.wait(timeout=60)  # every slow test has been reported: it is ending
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:  # stopped early (-x, Ctrl-C): stop it and what it started
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(timeout=wait)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.proc.wait()
        self._log.close()

    # ---- the beside process: report every test's phases --------------------------------------------

    def pytest_runtest_logreport(self, report):
        if not self.beside:
            return
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        with open(self.shared / "reports.jsonl", "a") as f:
            f.write(json.dumps({"nodeid": report.nodeid, "report": data}) + "\n")


def _shared_dir(config) -> Path:
    """A directory of this run's temporary tree (pytest keeps the last few runs' and removes older ones)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        return factory.mktemp("beside", numbered=True)
    return Path(tempfile.mkdtemp(prefix="opforge-beside-"))


def _build_what_both_would_build() -> None:
    """The TensorRT plugin harness and the createPlugin fuzzer live in the checkout's build directory, and both
    processes' tests build them when missing (one compiler command each, no lock): built here first. A failure
    is left to the tests that need them to report."""
    try:
        from ops.trt.harness import host

        host.build_harness()
        host.build_fuzzer()
    except Exception:
        pass
