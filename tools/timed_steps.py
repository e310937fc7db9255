"""Run named shell steps in order, then print where the time went (`make demo` ends with this table).

    python3 tools/timed_steps.py NAME COMMAND [NAME COMMAND ...]

Each row has the step's wall time and its CPU time (user + system of every process it ran), then the machine's
load average at the start and the end: on a shared machine the wall time grows with the load while the CPU time
hardly changes, so the two together say whether a slow run was slow work or a busy machine.

Standard library only: it runs before the project's virtual environment exists. A failing step stops the run
with its exit status, after the table of the steps that ran."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time


def cpu_seconds() -> float:
    """User + system time of the finished child processes (and theirs: each parent waits for its own)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def main(argv: list[str]) -> int:
    if not argv or len(argv) % 2:
        print("usage: timed_steps.py NAME COMMAND [NAME COMMAND ...]", file=sys.stderr)
        return 2
    steps, rows, status = list(zip(argv[::2], argv[1::2])), [], 0
    load_before = load()
    for name, command in steps:
        start, cpu = time.perf_counter(), cpu_seconds()
        status = subprocess.run(command, shell=True).returncode
        result = "ok" if status == 0 else f"FAILED (exit {status})"
        rows.append((name, time.perf_counter() - start, cpu_seconds() - cpu, result))
        if status:
            break
    width = max(len("total"), *(len(name) for name, _ in steps))
    print(f"\nwhere the time went ({len(rows)} of {len(steps)} steps ran)")
    print(f"{'':{width + 2}}  {'wall':>7}    {'CPU':>7}")
    for name, seconds, cpu, result in rows:
        print(f"  {name:<{width}}  {seconds:7.1f} s  {cpu:7.1f} s  {result}")
    print(f"  {'total':<{width}}  {sum(r[1] for r in rows):7.1f} s  {sum(r[2] for r in rows):7.1f} s")
    print(
        f"load average {load_before} at the start, {load()} at the end ({os.cpu_count()} CPUs); CPU: user + system time"
    )
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
