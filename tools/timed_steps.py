"""Run named shell steps in order, then print where the time went (`make demo` ends with this table).

    python3 tools/timed_steps.py NAME COMMAND [NAME COMMAND ...]

Standard library only: it runs before the project's virtual environment exists. A failing step stops the run
with its exit status, after the table of the steps that ran."""

from __future__ import annotations

import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if not argv or len(argv) % 2:
        print("usage: timed_steps.py NAME COMMAND [NAME COMMAND ...]", file=sys.stderr)
        return 2
    steps, rows, status = list(zip(argv[::2], argv[1::2])), [], 0
    for name, command in steps:
        start = time.perf_counter()
        status = subprocess.run(command, shell=True).returncode
        rows.append((name, time.perf_counter() - start, "ok" if status == 0 else f"FAILED (exit {status})"))
        if status:
            break
    width = max(len("total"), *(len(name) for name, _ in steps))
    print(f"\nwhere the time went ({len(rows)} of {len(steps)} steps ran)")
    for name, seconds, result in rows:
        print(f"  {name:<{width}}  {seconds:7.1f} s  {result}")
    print(f"  {'total':<{width}}  {sum(s for _, s, _ in rows):7.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
