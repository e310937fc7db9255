"""The command line every `python -m ops.X` tool shares: its common options and one exit-status contract.

A tool builds its parser with `parser()`, adds its own options, and hands it with the function that does the
work to `main()`:

    def main(argv=None) -> int:
        p = cli.parser("python -m ops.check", "Verify ops ...", packages="import this op package", json=True)
        p.add_argument("ops", nargs="*")
        return cli.main(p, run, argv)

    def run(args) -> int | cli.Report:
        ...  # raise OpforgeError for a user's mistake; return 1 for problems found, 0 when all is well

Options every tool gets the same way:
  --package PKG   (tools that work on op packages; repeatable) the op package(s) to work on or import first;
                  installed op packages (an `opforge.ops` entry point) are always loaded. `args.package` is a list
  --json          (tools with a machine-readable report) print the report as JSON on stdout, alone: whatever
                  else the tool or a library prints (tables, progress, exporter warnings) goes to stderr, down to
                  the file descriptor, so stdout always parses
  -v, --verbose   more detail: the commands a build runs; the traceback behind a user error
  -q, --quiet     the result and the problems only: no progress, notes or next steps

Exit status, the same for every tool:
  0  ok
  1  the tool ran and found problems: a failed check, a blocker, a failed build (BuildError)
  2  a usage or user error: bad arguments, an unknown op, a bad declaration, a missing dependency to install
     (any other OpforgeError, or an argparse error). One message on stderr, `error: <what was wrong, what was
     expected>. Fix: <what to do>`, and no traceback (-v adds it). Stdout stays empty
An exception that is not an OpforgeError is a bug (in opforge or in the code it ran): it is not caught, and
Python prints its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json as json_module
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from .core.discovery import load_for_cli
from .core.errors import BuildError, OpforgeError

OK, PROBLEMS, USAGE = 0, 1, 2

PACKAGE_HELP = "import this op package first (installed ones with an opforge.ops entry point are always loaded)"


class UsageError(OpforgeError):
    """The command line itself is wrong (what argparse rejects): exit status 2, with the usage line."""

    def __init__(self, message: str, usage: str = ""):
        super().__init__(message)
        self.usage = usage


@dataclass
class Report:
    """What a tool's run() returns when it has a --json report: with --json, `data` is printed as JSON on
    stdout; `status` is the exit status either way."""

    data: object
    status: int = OK


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line raises UsageError (one exit path for every user error) instead of
    printing and exiting inside parse_args()."""

    def error(self, message):
        raise UsageError(f"{message}. Fix: `{self.prog} --help` lists every option", self.format_usage())


def parser(
    prog: str | None,
    description: str,
    *,
    packages: str | None = None,
    json: bool | str = False,
    epilog: str | None = None,
    raw: bool = False,
) -> Parser:
    """A tool's parser with the common options (`prog` None: the script's name). `packages`: the help text of --package PKG (repeatable), for a
    tool that works on op packages (PACKAGE_HELP says the usual). `json`: add --json (a string is its help).
    `raw`: keep the description and epilog's line breaks."""
    p = Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter,
    )
    if packages:
        p.add_argument("--package", action="append", default=[], metavar="PKG", help=packages)
    if json:
        p.add_argument(
            "--json",
            action="store_true",
            help=json if isinstance(json, str) else "print the report as JSON on stdout (everything else: stderr)",
        )
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="more detail (commands run, error tracebacks)")
    loud.add_argument("-q", "--quiet", action="store_true", help="the result and the problems only")
    return p


def main(parser: Parser, run: Callable[[argparse.Namespace], int | Report | None], argv=None, namespace=None) -> int:
    """Parse `argv`, call `run(args)` and turn what happens into the exit status of the contract above."""
    args = None
    try:
        args = parser.parse_args(argv, namespace=namespace)
        as_json = getattr(args, "json", False) is True
        with stdout_to_stderr() if as_json else contextlib.nullcontext():
            result = run(args)
        if isinstance(result, Report):
            if as_json:
                print(json_module.dumps(result.data, indent=1, default=str), flush=True)
            return result.status
        return OK if result is None else int(result)
    except OpforgeError as e:
        if args is not None and getattr(args, "verbose", False):
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, UsageError) and e.usage:
            print(e.usage, end="", file=sys.stderr)
        return PROBLEMS if isinstance(e, BuildError) else USAGE


def end_process(status: int) -> NoReturn:
    """End a `python -m ops.X` process with `status` (its `if __name__ == "__main__"` block; never in-process).
    At interpreter exit the cyclic collector walks every object still alive, and torch's import made about a
    million: half a second of a no-change `python -m ops.build` (benchmarks/bench_build.py). gc.freeze() first
    takes them out of its way. atexit handlers, weakref finalizers registered for exit, and the flushing of
    stdout/stderr run as before; objects caught in reference cycles are left to the OS instead of being collected
    (the tools close every file they write). Not where Triton was imported (a Triton op's build or check): its
    nanobind module prints a "leaked" line per object a cycle still holds at exit, dozens of lines; there the
    collector runs as usual."""
    if "triton" not in sys.modules:
        gc.freeze()
    sys.exit(status)


def load_packages(args) -> None:
    """Every installed op package, then those named with --package (what check, export, scan work on)."""
    load_for_cli(getattr(args, "package", []))


def note(args, text: str) -> None:
    """A line of progress or advice (not the result): printed unless --quiet."""
    if not getattr(args, "quiet", False):
        print(text)


@contextlib.contextmanager
def stdout_to_stderr():
    """While a --json tool runs, stdout is kept for the report alone: whatever a library prints (exporters,
    compilers, subprocesses) goes to stderr, down to the file descriptor, so the report always parses."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Python-level too: sys.stdout may not be fd 1 (pytest)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
